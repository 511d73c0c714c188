"""Memory allocation settings for commands that read and evaluate millions of rows.

The evaluator allocates and frees arrays of tens to hundreds of MB in turn (columns of a
5.6M-row result file, sort keys, gathered copies). By default glibc hands every block over
32 MB back to the kernel when it is freed, so the next array of that size page-faults its
memory in again, page by page, and numpy asks for transparent huge pages on large arrays,
which makes the kernel compact memory on those faults. On the 5.6M-row `eval-csv`
benchmark (BENCHMARKS.md, "Evaluator: ... page faults") that was ~1-2 s of system time out
of ~5 s. :func:`reuse_freed_memory` keeps freed blocks in the process for the next array
and turns numpy's huge-page request off; there the peak resident memory stays the same
(the memory kept is memory the process already had at its peak).

Process-wide, so only command entry points call them (never library code at import): the
process ends after the command, which returns the memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["reuse_freed_memory"]

# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4


def _no_numpy_huge_pages() -> None:
    """Turn off numpy's transparent-huge-page advice on large arrays (what the environment
    variable NUMPY_MADVISE_HUGEPAGE=0 does at numpy's import)."""
    try:
        import numpy._core.multiarray as multiarray
        multiarray._set_madvise_hugepage(False)
    except (ImportError, AttributeError):       # numpy < 2 keeps it in numpy.core
        try:
            import numpy.core.multiarray as multiarray
            multiarray._set_madvise_hugepage(False)
        except (ImportError, AttributeError):
            pass


def reuse_freed_memory() -> bool:
    """Keep freed memory for reuse (glibc: no mmap'ed blocks, no trimming of the heap top)
    and turn off numpy's transparent-huge-page advice. Returns whether the malloc settings
    took effect (False off glibc, e.g. macOS or musl, where nothing is changed).

    Not for `hgrnn eval`: there the blocks torch and the scoring batches free are kept but
    not reused by the evaluator's larger arrays (peak 1.97 -> 2.4 GiB at AVA validation
    scale; the huge-page advice alone made no measurable difference there)."""
    _no_numpy_huge_pages()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0)                # large blocks from the heap, not mmap
    ok &= mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)   # ... and never handed back to the kernel
    ok &= mallopt(_M_TOP_PAD, 64 << 20)         # grow the heap in 64 MB steps
    return bool(ok)
