"""What a user sees besides results: warnings and log records as one line each, progress
bars that suit both a terminal and a log file.

Library code warns with `warnings.warn` (so that callers and tests can catch it) and
reports what it does through `logging` (a logger per module, under "hgrnn"); it never
prints. The command line installs `show_warnings_as_lines`, which prints each distinct
warning once as `Warning: ...` instead of Python's two lines with a source location, and
`show_logs_as_lines`, which prints the "hgrnn" loggers' records from INFO up as one line
each on stderr. Progress goes through `progress_bar` (tqdm): on a terminal, log records
are written above the bar (`tqdm.contrib.logging.logging_redirect_tqdm`) instead of
through it; on a log file a bar is a few whole lines.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings

#: the library's root logger: every module logs to a child of it (`logging.getLogger(__name__)`)
LOGGER = "hgrnn"
#: off a terminal a bar prints its first line, one line at each 1/PROGRESS_LINES of its
#: total, and its last line; a bar without a total prints a line at most this often
PROGRESS_LINES = 4
LOG_INTERVAL_S = 30.0

_shown: set = set()


def _format_warning(message, category, filename, lineno, line=None) -> str:
    text = str(message)
    if text in _shown:          # the same condition met twice in one run says nothing new
        return ""
    _shown.add(text)
    if _redirect["open"]:
        # a terminal bar is open: write the line above it (Python calls formatwarning only
        # to show a warning, never to record one, and writes what it returns: nothing)
        from tqdm import tqdm
        tqdm.write(f"Warning: {text}", file=sys.stderr)
        return ""
    return f"Warning: {text}\n"


def show_warnings_as_lines() -> None:
    """Print each distinct warning once, as `Warning: MESSAGE` on stderr (above the
    progress bars open on a terminal). Only the format changes: filters,
    `warnings.catch_warnings(record=True)` and pytest.warns work as before."""
    warnings.formatwarning = _format_warning


class _StderrHandler(logging.StreamHandler):
    """A handler writing to sys.stderr as it is when a record comes (click's test runner
    and pytest replace it), one line per record: the message, after `Warning: ` or
    `Error: ` from WARNING up."""

    def __init__(self):
        super().__init__()
        self.setFormatter(_LineFormatter())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):            # StreamHandler sets it; the property decides
        pass


class _LineFormatter(logging.Formatter):
    def format(self, record) -> str:
        text = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"Error: {text}"
        if record.levelno >= logging.WARNING:
            return f"Warning: {text}"
        return text


def show_logs_as_lines(level: int = logging.INFO) -> None:
    """Print the records of the "hgrnn" loggers from `level` up on stderr, one line each
    (idempotent: a second call adds no second handler)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(level)


class _LineWriter:
    """A file for tqdm that turns its in-place refreshes into whole lines."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar (`tqdm(iterable, **kwargs)`) on stderr. On a terminal, log records of the
    "hgrnn" loggers are written above the bar while it is open. Off a terminal (a log
    file, CI) the bar prints whole lines: the first, one at each 1/PROGRESS_LINES of the
    total (every LOG_INTERVAL_S seconds without a total) and the last, however often the
    caller refreshes it."""
    terminal_bar, log_bar = _bar_classes()
    if not _is_terminal(sys.stderr):
        kwargs.setdefault("mininterval", 0.5)
        kwargs.setdefault("file", _LineWriter(sys.stderr))
        return log_bar(iterable, **kwargs)
    return terminal_bar(iterable, **kwargs)


_classes: tuple = ()
_redirect: dict = {"open": 0, "context": None}


def _bar_classes():
    """(the terminal bar, the log bar): tqdm subclasses, made at the first bar (importing
    tqdm takes 0.1-0.2 s: kept out of `hgrnn --help`)."""
    global _classes
    if _classes:
        return _classes
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    class TerminalBar(tqdm):
        """While at least one bar is open, the "hgrnn" logger's line handler
        (`show_logs_as_lines`) writes through tqdm.write, above the bars."""

        def __init__(self, *args, **kwargs):
            self._redirected = False
            super().__init__(*args, **kwargs)
            logger = logging.getLogger(LOGGER)
            if not self.disable and any(isinstance(h, _StderrHandler) for h in logger.handlers):
                if _redirect["open"] == 0:
                    context = logging_redirect_tqdm([logger], tqdm)
                    context.__enter__()
                    _redirect["context"] = context
                _redirect["open"] += 1
                self._redirected = True

        def close(self):
            try:
                super().close()
            finally:
                if self._redirected:
                    self._redirected = False
                    _redirect["open"] -= 1
                    if _redirect["open"] == 0:
                        _redirect["context"].__exit__(None, None, None)
                        _redirect["context"] = None

    class LogBar(tqdm):
        """Whole lines at the start, at each 1/PROGRESS_LINES of the total and at the end."""

        def __init__(self, *args, **kwargs):
            self._next_n, self._line_t = None, -math.inf   # the first display is a line
            super().__init__(*args, **kwargs)

        def display(self, msg=None, pos=None):
            closing = self.disable                  # close() disables, then displays
            if not closing:
                if self._next_n is not None and self.n < self._next_n:
                    return True
                if self.total and self.n >= self.total:    # the closing line says it
                    return True
                if not self.total and time.time() - self._line_t < LOG_INTERVAL_S:
                    return True
            self.fp.write(self.__str__())
            self.fp.flush()
            self._line_t = time.time()
            if self.total:
                # the next fraction k / PROGRESS_LINES (k < PROGRESS_LINES) above n: the last
                # line is the closing one
                k = math.floor(self.n * PROGRESS_LINES / self.total) + 1
                mark = math.ceil(k * self.total / PROGRESS_LINES)
                self._next_n = mark if k < PROGRESS_LINES and mark < self.total else math.inf
            return True

    _classes = (TerminalBar, LogBar)
    return _classes


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
