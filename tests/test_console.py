"""hgrnn.console: one-line warnings, progress bars that suit a log file."""

import io
import json
import logging
import os
import subprocess
import sys
import warnings

from click.testing import CliRunner

from hgrnn import console
from hgrnn.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_warning_printed_once_as_one_line():
    code = ("import warnings\n"
            "from hgrnn.console import show_warnings_as_lines\n"
            "show_warnings_as_lines()\n"
            "warnings.simplefilter('always')\n"
            "for _ in range(3):\n"
            "    warnings.warn('weights: NONE -- random')\n"
            "warnings.warn('another thing')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["Warning: weights: NONE -- random",
                                        "Warning: another thing"]


def test_progress_on_a_log_is_a_few_whole_lines(monkeypatch):
    """Off a terminal a bar is its first line, one at each quarter and its last, however
    often it is refreshed (train-head sets a postfix every step: `make demo > log` was 2,005
    bar lines of 2,050)."""
    log = io.StringIO()                 # not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    bar = console.progress_bar(total=2000, desc="work", unit="step")
    for step in range(2000):
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (step + 1):.4f}")   # forces a refresh each time
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert [line.split("|")[0] for line in lines] == [
        "work:   0%", "work:  25%", "work:  50%", "work:  75%", "work: 100%"], lines
    assert "2000/2000" in lines[-1] and "loss=0.0005" in lines[-1]
    log.truncate(0)
    log.seek(0)
    bar = console.progress_bar(total=2, desc="short", mininterval=0)
    bar.update(1)
    bar.update(1)                                  # 100 %: said once, by close
    bar.close()
    bar = console.progress_bar(total=4, desc="jump", mininterval=0)
    bar.update(4)                                  # from 0 % straight to the end
    bar.close()
    assert [line.split("|")[0] for line in log.getvalue().splitlines()] == [
        "short:   0%", "short:  50%", "short: 100%", "jump:   0%", "jump: 100%"], log.getvalue()


def test_progress_on_a_log_without_a_total_or_kept_is_first_and_last(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(console, "LOG_INTERVAL_S", 3600.0)    # no line in between
    for _ in console.progress_bar(iter(range(500)), desc="load", leave=False):
        pass
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("load: 0") and "500" in lines[-1], lines
    for _ in console.progress_bar(range(3), desc="off", disable=True):
        pass
    assert len(log.getvalue().splitlines()) == 2


def test_log_records_are_one_line_each_and_go_above_a_terminal_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    logger = logging.getLogger("hgrnn")
    monkeypatch.setattr(logger, "handlers", [])            # restored after the test
    console.show_logs_as_lines()
    console.show_logs_as_lines()                           # idempotent: one handler
    assert len(logger.handlers) == 1
    log = logging.getLogger("hgrnn.pipeline.something")
    log.info("plain %d", 1)
    log.warning("careful")
    assert term.getvalue() == "plain 1\nWarning: careful\n"
    term.seek(0)
    term.truncate()
    bar = console.progress_bar(total=10, desc="work")
    bar.update(3)
    log.info("above the bar")
    bar.close()
    # tqdm.write clears the bar's line first, so the record is a line of its own (written
    # plainly it would follow the bar's text: "work:  30%|...]above the bar")
    assert "\rabove the bar\n" in term.getvalue(), repr(term.getvalue())
    assert logger.handlers[0].__class__.__name__ == "_StderrHandler"   # restored at close
    assert logger.handlers[0].__class__.__name__ == "_StderrHandler"   # restored at close


def test_warnings_go_above_a_terminal_bar():
    # a process of its own: pytest records warnings instead of showing them
    code = ("import io, json, sys, warnings\n"
            "class Terminal(io.StringIO):\n"
            "    def isatty(self):\n"
            "        return True\n"
            "sys.stderr = Terminal()\n"
            "from hgrnn import console\n"
            "console.show_warnings_as_lines()\n"
            "console.show_logs_as_lines()\n"
            "bar = console.progress_bar(total=10, desc='work')\n"
            "bar.update(3)\n"
            "warnings.warn('above the bar')\n"
            "bar.close()\n"
            "warnings.warn('no bar now')\n"
            "print(json.dumps(sys.stderr.getvalue()))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr
    text = json.loads(proc.stdout)
    # tqdm.write clears the bar's line first (written plainly, the warning would follow the
    # bar's text on its line)
    assert "\rWarning: above the bar\n" in text, repr(text)
    assert text.endswith("\nWarning: no bar now\n"), repr(text)


def test_version_names_the_program():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and r.output.strip().startswith("hgrnn ") and "python" not in r.output


def test_warnings_stay_catchable(monkeypatch):
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    console.show_warnings_as_lines()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("still recorded")
    assert [str(w.message) for w in caught] == ["still recorded"]
