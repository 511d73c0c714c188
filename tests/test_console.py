"""hgrnn.console: one-line warnings, progress bars that suit a log file."""

import io
import os
import subprocess
import sys
import time
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


def test_progress_on_a_log_is_whole_lines_at_a_low_rate(monkeypatch):
    log = io.StringIO()                 # not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(console, "LOG_INTERVAL_S", 3600.0)    # no refresh in between
    for _ in console.progress_bar(range(2000), desc="work"):
        pass
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2, lines                # the first and the last, nothing between
    assert lines[0].startswith("work:   0%") and lines[-1].startswith("work: 100%")
    assert "2000/2000" in lines[-1]


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
