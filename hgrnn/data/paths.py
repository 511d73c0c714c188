"""Output files: per-video names `<out_dir>/<video id><suffix>`, never outside `out_dir`,
never over an input; and whole-or-nothing writes (:func:`replacing`).

Every command that writes one file per video (`visualize`, `predict`, `detect`, ...)
names it with :func:`output_path`. A video id comes from a CSV, a file name or the
command line; ids that cannot name a file inside a folder (empty, '.', '..', holding '/'
or NUL, or too long for a file name) are refused in one line naming them, before anything
is written. An output is written under a temporary name (`<name>.partial`) and renamed
when complete, so that a failed write (a full disk) leaves neither a partial file nor a
temporary behind, and the error names the file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: longest file name (bytes) that Linux and macOS file systems take
MAX_NAME_BYTES = 255


class OutputPathError(ValueError):
    """A video id that cannot name an output file, an output that is an input, or an
    output that could not be written (the message names the file)."""


def video_id_problem(video_id) -> str | None:
    """Why `video_id` cannot be a file name inside a folder, or None when it can."""
    if not isinstance(video_id, str):
        return f"is a {type(video_id).__name__}, not a string"
    if video_id == "":
        return "is empty"
    if video_id in (".", ".."):
        return "names a folder ('.' or '..'), not a file"
    if "/" in video_id:
        return "holds '/' (a path, not a name)"
    if "\0" in video_id:
        return "holds a NUL character"
    if len(video_id.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"is longer than a file name may be ({MAX_NAME_BYTES} bytes)"
    return None


def output_path(out_dir, video_id, suffix: str, *, inputs=()) -> Path:
    """`out_dir / (video_id + suffix)`, checked: the id names a file inside `out_dir`
    (else OutputPathError naming the id) and that file is none of `inputs` (paths the
    command reads; OutputPathError naming both)."""
    problem = video_id_problem(video_id)
    if problem is None and len((video_id + suffix).encode("utf-8", "surrogateescape")) \
            > MAX_NAME_BYTES:
        problem = f"with {suffix!r} is longer than a file name may be ({MAX_NAME_BYTES} bytes)"
    if problem is not None:
        raise OutputPathError(f"video id {video_id!r} {problem}: it cannot name an output "
                              f"file in {out_dir}")
    path = Path(out_dir) / (video_id + suffix)
    for source in inputs:
        if source is not None and _same_file(path, source):
            raise OutputPathError(f"{path} would overwrite the input {source}; choose another "
                                  "output folder")
    return path


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:                          # one of them does not exist (yet)
        return Path(os.path.abspath(a)) == Path(os.path.abspath(b))


@contextlib.contextmanager
def replacing(path):
    """Write `path` whole or not at all: yields the temporary path `<path>.partial` to
    write (in the same folder, so the final rename is atomic); renamed to `path` when the
    block ends without an exception, removed when it raises. An OSError (a full disk, a
    read-only folder) becomes OutputPathError naming `path`. Give writers that pick a
    format by extension the format explicitly."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise OutputPathError(f"{path}: {err.strerror or err}") from None
        raise
