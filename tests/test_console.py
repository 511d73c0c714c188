"""hgrnn.console: one-line warnings, progress bars that suit a log file."""

import io
import sys
import time
import warnings

from click.testing import CliRunner

from hgrnn import console
from hgrnn.cli import main


def test_warning_printed_once_as_one_line(capsys, monkeypatch):
    monkeypatch.setattr(console, "_shown", set())
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    console.show_warnings_as_lines()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        console.show_warnings_as_lines()        # catch_warnings restores showwarning on exit
        for _ in range(3):
            warnings.warn("weights: NONE -- random")
        warnings.warn("another thing")
    err = capsys.readouterr().err
    assert err.splitlines() == ["Warning: weights: NONE -- random", "Warning: another thing"]


def test_progress_on_a_log_is_whole_lines_at_a_low_rate(monkeypatch):
    log = io.StringIO()                 # not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(console, "LOG_INTERVAL_S", 0.05)
    for _ in console.progress_bar(range(200), desc="work"):
        time.sleep(0.001)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 2 <= len(lines) <= 12, lines        # first, a few at the interval, the last
    assert lines[-1].startswith("work: 100%") and "200/200" in lines[-1]


def test_version_names_the_program():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and r.output.strip().startswith("hgrnn ") and "python" not in r.output
