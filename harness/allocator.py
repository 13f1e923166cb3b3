"""Keep freed memory in the process for reuse, where the C library allows (glibc).

A training step frees and allocates the same large buffers every time: a memory layer's table
gradient alone is 34 MB at 512 x 512. glibc serves blocks that large with fresh mmap calls and
unmaps them on free, so every step faults the pages in again; on this project's CI machine that
is 6-9 ms per such gradient, more than computing it (see README, Speed). Turning off mmap for
large blocks and the trimming of the heap makes glibc reuse the freed memory instead. Peak
memory is unchanged; what the process once used stays reserved until it exits.

`keep_freed_memory()` is called by training runs and the bench; set HARNESS_KEEP_FREED_MEMORY=0
to leave the allocator alone. The same policy for a process that does not import the harness
(set before its first allocation, so it also covers what was allocated before this call):
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

DISABLE_ENV = "HARNESS_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
TRIM_THRESHOLD = 2**30  # return heap memory to the OS only beyond 1 GiB free at its top


@functools.cache
def keep_freed_memory() -> bool:
    """Apply the policy once per process; True when it is in force."""
    if os.environ.get(DISABLE_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
