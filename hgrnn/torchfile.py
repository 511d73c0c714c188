"""Reading and writing torch files (checkpoints, weights, resume states) with one-line
errors that name the file.

`load(path)` reads with ``weights_only=True`` only. A file that needs more (pickled
Python objects: a foreign or malicious file) is refused in one line that says what it
holds; torch's own message, which suggests loading it unsafely, is never shown.
`save_atomic(obj, path)` writes a temporary file and renames it, and removes the
temporary again when writing fails (a full disk, an unwritable folder).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil


class TorchFileError(Exception):
    """A torch file that cannot be read or written; the message starts with its path."""


def _first_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load(path, what="checkpoint"):
    """torch.load(path, weights_only=True) on the CPU; TorchFileError for a missing, damaged
    or unsafe file."""
    import torch

    path = str(path)
    if not os.path.isfile(path):
        raise TorchFileError(f"{path}: no such {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # a reference to a Python object ("GLOBAL posix.system") is refused, naming it;
        # anything else is a damaged file. Never torch's advice to load unsafely.
        found = re.search(r"GLOBAL [\w.]+", str(err))
        if found is None:
            first = "invalid pickle data" if "weights only" in str(err).lower() \
                else _first_line(err)
            raise TorchFileError(f"{path}: not a readable {what}, truncated or damaged "
                                 f"(UnpicklingError: {first})") from None
        raise TorchFileError(f"{path}: refused: the file holds pickled Python objects that only "
                             f"an unsafe load could read ({found.group(0)}); it is not a {what} "
                             f"written by hgrnn") from None
    except Exception as err:  # noqa: BLE001 - zip, pickle and storage errors of a damaged file
        first = _first_line(err).split(". ")[0]            # torch adds sentences of advice
        raise TorchFileError(f"{path}: not a readable {what}, truncated or damaged "
                             f"({type(err).__name__}: {first})") from None


def write_error_text(path, err) -> str:
    """'PATH: cannot write: REASON' (with the free space for a full disk)."""
    path = str(path)
    reason = getattr(err, "strerror", None) or _first_line(err)
    text = f"{path}: cannot write: {reason}"
    if getattr(err, "errno", None) in (28, 122):            # ENOSPC, EDQUOT
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
            text += f" ({free / 2 ** 20:.1f} MiB free)"
    return text


def save_atomic(obj, path) -> None:
    """torch.save(obj) to PATH.tmp, then rename it to PATH; on failure no PATH.tmp is left
    and PATH is unchanged (TorchFileError for an OS error)."""
    import torch

    path = str(path)
    tmp = path + ".tmp"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(err, OSError) or (isinstance(err, RuntimeError)
                                        and "write" in str(err).lower()):
            raise TorchFileError(write_error_text(path, err)) from None
        raise
