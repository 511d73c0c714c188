"""File-level safety of the feature store: one writer at a time, a clean stop on a full
disk, no handle or lock inherited by forked children, h5py read errors as `StoreError`.

- `StoreError`: the one exception of the store layer (re-exported by `hgrnn.data.store`).

- `WriterLock(path)`: an exclusive lock held by the process that writes `path`, from before
  the existence check until the writer is closed: `flock` on the sidecar file `PATH.lock`,
  which names the holder (pid, host, command). A second writer of the same store (or of the
  same `merge-stores` output) is refused with a message naming the first; the kernel
  releases the lock when its holder dies, even by SIGKILL, so no stale lock ever blocks.
  `lock_holder(path)` reads who holds it (for a reader that meets HDF5's own file lock).
- `abandon_h5(f)`: close an h5py File after a write error without writing anything more to
  it. Its descriptor is pointed at /dev/null first, so what HDF5 still flushes while
  closing goes nowhere: the file stays exactly as it was at the writer's last flush (every
  complete video kept) and h5py prints no "Exception ignored" noise or crashes.
- `forget_in_child(obj)`: after `fork()` (DataLoader workers, joblib) the child drops its
  copy of `obj`'s descriptors (`obj._forget_in_child()`), so an orphaned child never holds
  the parent's file lock nor flushes into the parent's file.
- `write_error(path, err)`: the one-line StoreError for a failed write (disk full: the free
  space left and what to do).
- `read_errors(path, video)`: a context manager that turns the exceptions h5py raises on a
  damaged file (KeyError, RuntimeError, OSError, ValueError...) into a StoreError naming
  the file, the video when known, and what to do.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import fcntl
import os
import re
import shutil
import socket
import sys
import weakref

LOCK_SUFFIX = ".lock"
_MIB = 1024 * 1024
_DISK_ERRNOS = {errno_codes.ENOSPC: "the disk is full", errno_codes.EDQUOT: "the disk quota is exceeded",
                errno_codes.EFBIG: "the file size limit is reached"}

_children_forget = weakref.WeakSet()


class StoreError(Exception):
    """A store that cannot be opened, read or written; the message names the file (and the
    video and dataset when there is one)."""


def _after_fork_in_child():
    for obj in list(_children_forget):
        try:
            obj._forget_in_child()
        except Exception:  # noqa: BLE001 - a child must start whatever happens here
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)


def forget_in_child(obj) -> None:
    """Call `obj._forget_in_child()` in every child forked while `obj` lives."""
    _children_forget.add(obj)


def _holder_text() -> str:
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
    return f"pid {os.getpid()} on {socket.gethostname()}: {command[:200]}"


def lock_holder(path) -> str | None:
    """Who holds the writer lock of store `path`, as its lock file names them ("pid 12 on
    host: hgrnn extract-features ..."), or None without a lock file. A lock file exists
    only while its writer runs, or after a writer was killed (then the text is stale)."""
    try:
        with open(str(path) + LOCK_SUFFIX, "rb") as fh:
            return fh.read(400).decode("utf-8", "replace").strip() or None
    except OSError:
        return None


class WriterLock:
    """Exclusive lock of the process writing `path` (flock on `path + ".lock"`).

    acquire() raises StoreError naming the holder when another process has it. A folder
    where the lock file cannot be created (read-only) gets no lock: nothing can be created
    there either, and HDF5's own lock still guards an existing file opened for writing.
    """

    def __init__(self, path):
        self.path = str(path)
        self.lock_path = self.path + LOCK_SUFFIX
        self._fd = None
        self._pid = None

    @property
    def held(self) -> bool:
        """True while this process holds the lock through this object."""
        return self._fd is not None and self._pid == os.getpid()

    def acquire(self) -> "WriterLock":
        if self.held:
            return self
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                if err.errno in (errno_codes.EACCES, errno_codes.EROFS, errno_codes.EPERM):
                    return self
                folder = os.path.dirname(os.path.abspath(self.path))
                if not os.path.isdir(folder):
                    raise StoreError(f"{self.path}: directory {folder} does not exist") from None
                raise write_error(self.lock_path, err) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                try:
                    holder = os.read(fd, 400).decode("utf-8", "replace").strip() or "unknown"
                finally:
                    os.close(fd)
                raise StoreError(
                    f"{self.path}: is being written by another process ({holder}); wait for "
                    f"it to finish (then run this again to continue), or write elsewhere")
            # a holder unlinks the file before it unlocks: the file we locked must still be
            # the one at lock_path, or we raced with a release and try again
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, (_holder_text() + "\n").encode())
        self._fd, self._pid = fd, os.getpid()
        forget_in_child(self)
        return self

    def release(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)
            os.close(self._fd)
        self._fd = self._pid = None

    def _forget_in_child(self):
        # the child's copy of the descriptor shares the parent's lock: close it (the
        # parent keeps the lock) and never unlink the parent's lock file
        if self._fd is not None and self._pid != os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = self._pid = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _to_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def h5_descriptor(f):
    """The OS file descriptor of an open h5py File (sec2 driver), or None."""
    try:
        fd = f.id.get_vfd_handle()
    except Exception:  # noqa: BLE001 - another driver, a closed file
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def detach_h5(f) -> None:
    """Point the descriptor of h5py File `f` at /dev/null: from now on nothing HDF5 writes
    reaches the file (its content stays as last flushed) and the file's HDF5 lock, shared
    with this descriptor, is no longer held through it."""
    fd = h5_descriptor(f)
    if fd is not None:
        _to_devnull(fd)


def abandon_h5(f) -> None:
    """Close h5py File `f` after a write error without touching the file any more."""
    detach_h5(f)
    with contextlib.suppress(Exception):
        f.close()


def error_errno(err):
    """The errno of an OSError, or the one h5py embeds in its message ("errno = 28")."""
    code = getattr(err, "errno", None)
    if isinstance(code, int):
        return code
    m = re.search(r"errno = (\d+)", str(err))
    return int(m.group(1)) if m else None


def free_bytes(path) -> int | None:
    folder = os.path.dirname(os.path.abspath(str(path)))
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def write_error(path, err, needed=None, done=None):
    """StoreError for a failed write of `path`: what failed, the free space left, what is
    kept and what to do. needed: bytes the failed write needed (approximate); done: a text
    saying what was kept, e.g. "the 12 complete videos are kept"."""
    path = str(path)
    code = error_errno(err)
    free = free_bytes(path)
    where = os.path.dirname(os.path.abspath(path))
    if code in _DISK_ERRNOS:
        what = _DISK_ERRNOS[code]
        space = f"{free / _MIB:.1f} MiB free in {where}" if free is not None else ""
        if needed:
            space += f"{'; ' if space else ''}the video being written needs about " \
                     f"{needed / _MIB:.1f} MiB"
        what += f" ({space})" if space else ""
        todo = "free some space and run the same command again to continue"
    elif code in (errno_codes.EACCES, errno_codes.EPERM, errno_codes.EROFS):
        what = f"cannot write: {os.strerror(code)}"
        todo = "choose a folder you can write to, or fix its permissions"
    elif code is not None:
        what = f"cannot write: {os.strerror(code)}"
        todo = "fix that and run the same command again to continue"
    else:
        what = f"write failed ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        todo = "run the same command again to continue"
    kept = f"; {done}" if done else ""
    return StoreError(f"{path}: {what}{kept}; {todo}")


def is_write_error(err) -> bool:
    return isinstance(err, (OSError, RuntimeError)) and error_errno(err) is not None


@contextlib.contextmanager
def read_errors(path, video=None, dataset=None):
    """Turn h5py's exceptions while reading a store into a one-line StoreError naming the
    file (and video/dataset) and what to do. StoreError passes through unchanged."""
    try:
        yield
    except StoreError:
        raise
    except (KeyError, RuntimeError, OSError, ValueError, TypeError, IndexError,
            AttributeError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        first = re.sub(r"^[\"']|[\"']$", "", first)
        if video is not None:
            where = f"{path}: videos/{video}" + (f"/{dataset}" if dataset else "")
            todo = (f"run `hgrnn inspect --check {path}`; re-extract that video, or "
                    f"`hgrnn merge-stores` the good videos into a new store")
        else:
            where = f"{path}" + (f": {dataset}" if dataset else "")
            todo = (f"the file's HDF5 structure is damaged; run `hgrnn inspect --check "
                    f"{path}`, restore it from a copy, or re-extract")
        raise StoreError(f"{where}: unreadable ({type(err).__name__}: {first}); {todo}") from None
