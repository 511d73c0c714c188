"""What a user sees besides results: warnings as one line each, progress bars that suit
both a terminal and a log file.

Library code warns with `warnings.warn` (so that callers and tests can catch it); the
command line installs `show_warnings_as_lines`, which prints each distinct warning once as
`Warning: ...` instead of Python's two lines with a source location.
"""

from __future__ import annotations

import sys
import warnings

# On a log (CI, output redirected) tqdm would append hundreds of carriage-return updates to
# one line; there a bar prints a whole line at most this often.
LOG_INTERVAL_S = 30.0

_shown: set = set()


def _format_warning(message, category, filename, lineno, line=None) -> str:
    text = str(message)
    if text in _shown:          # the same condition met twice in one run says nothing new
        return ""
    _shown.add(text)
    return f"Warning: {text}\n"


def show_warnings_as_lines() -> None:
    """Print each distinct warning once, as `Warning: MESSAGE` on stderr. Only the format
    changes: filters, `warnings.catch_warnings(record=True)` and pytest.warns work as before."""
    warnings.formatwarning = _format_warning


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
    """`tqdm(iterable, **kwargs)` on a terminal; when stderr is not one, a plain line at
    most every LOG_INTERVAL_S seconds (plus the first and the last)."""
    from tqdm import tqdm       # 0.1-0.2 s: kept out of `hgrnn --help`
    if not _is_terminal(sys.stderr):
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("file", _LineWriter(sys.stderr))
    return tqdm(iterable, **kwargs)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
