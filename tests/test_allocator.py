"""hgrnn.allocator: freed memory is kept for the next array (glibc), numpy's huge-page
advice off. Each case in a fresh interpreter: the settings are process-wide."""

import ctypes.util
import os
import platform
import subprocess
import sys

import pytest

# a 64 MB array made, freed and made again: the page faults of the second one
SECOND_ARRAY_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "reuse":
    from hgrnn.allocator import reuse_freed_memory
    print(reuse_freed_memory())
else:
    print(None)
a = np.ones(8 << 20)
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(8 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_array_faults(mode):
    # no huge pages either way, so that pages of 4 KB are counted
    env = dict(os.environ, NUMPY_MADVISE_HUGEPAGE="0")
    out = subprocess.run([sys.executable, "-c", SECOND_ARRAY_FAULTS, mode], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(platform.system() != "Linux" or not ctypes.util.find_library("c")
                    or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_reused_without_page_faults():
    took, reused = _second_array_faults("reuse")
    _, plain = _second_array_faults("plain")
    assert took == "True"
    assert plain > 8000              # 64 MB = 16,384 pages of 4 KB
    assert reused < plain / 10


def test_numpy_huge_page_advice_is_off():
    code = ("import numpy._core.multiarray as m\n"
            "from hgrnn.allocator import reuse_freed_memory\n"
            "reuse_freed_memory()\n"
            "print(m._set_madvise_hugepage(False))\n")      # returns the setting it replaced
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
