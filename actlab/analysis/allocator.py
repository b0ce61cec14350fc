"""The C allocator's arenas, shared by the threads of the fused pass.

glibc's malloc gives each thread an arena of its own, up to eight per core. Memory that one thread frees is
then reused only by that thread: a freed array below the mmap threshold, which rises to 32 MB as large arrays
are freed, stays in its thread's arena. The pass's threads each allocate and free arrays of tens of MB per
block (ranges, products, nulls), so every thread's arena grows to its own peak, and the process holds the sum
of those peaks. Two arenas for the whole process bound that at two. ``python benchmarks/bench_analyze.py
--memory-check`` shows the peak RSS of 50,000 probes of a 4,096-unit layer with and without the cap, side by
side.
"""

from __future__ import annotations

import ctypes
import os
import platform

ARENA_VARIABLE = "MALLOC_ARENA_MAX"
"""glibc's environment variable for the most malloc arenas; when it is set, :func:`share_arenas` leaves the
allocator alone."""

MAX_ARENAS = 2
"""Malloc arenas the analysis allows the process (glibc's default: eight per core)."""

_M_ARENA_MAX = -8
"""``mallopt`` parameter number of ``M_ARENA_MAX`` (glibc's ``malloc.h``)."""


def share_arenas(max_arenas: int = MAX_ARENAS) -> bool:
    """Cap this process's glibc malloc arenas at ``max_arenas`` (``mallopt(M_ARENA_MAX, ...)``).

    Threads that already have an arena keep it; threads that allocate for the first time after the call
    share the capped ones. Nothing is done where the C library is not glibc, or where the environment sets
    :data:`ARENA_VARIABLE` (the user's choice, read by glibc at start-up, wins).

    Parameters
    ----------
    max_arenas : int
        At least 1.

    Returns
    -------
    bool
        Whether the cap was set.
    """
    if max_arenas < 1:
        raise ValueError(f"max_arenas must be >= 1; got {max_arenas}")
    if os.environ.get(ARENA_VARIABLE) or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(_M_ARENA_MAX, int(max_arenas)) == 1
