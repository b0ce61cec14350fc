"""share_arenas: threads started after open_run share at most MAX_ARENAS malloc arenas (glibc)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest
from fixtures_store import cached_planted

from actlab.analysis import allocator

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")

# six threads each hold a 1 MB array while all six allocate (so each would take an arena of its own), then
# malloc_info(3) lists the arenas (one <heap nr="..."> element each) in a file
COUNT_ARENAS = textwrap.dedent("""
    import ctypes, sys, tempfile, threading
    import numpy as np
    {before}
    barrier = threading.Barrier(6)
    def hold():
        block = np.ones(2**17)
        barrier.wait()
    threads = [threading.Thread(target=hold) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        handle = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, handle)
        libc.fclose(handle)
        print(open(out.name).read().count("<heap nr="))
""")


def arenas_after(before: str, env: dict[str, str] | None = None) -> int:
    environ = {key: value for key, value in os.environ.items() if key != allocator.ARENA_VARIABLE}
    found = subprocess.run([sys.executable, "-c", COUNT_ARENAS.format(before=before)], capture_output=True, text=True,
                           env={**environ, **(env or {})})
    assert found.returncode == 0, found.stderr
    return int(found.stdout.strip())


def test_threads_share_the_capped_arenas_after_open_run(tmp_path_factory):
    run_dir = cached_planted(tmp_path_factory).run_dir
    uncapped = arenas_after("")
    assert uncapped > allocator.MAX_ARENAS  # the control: without the cap the threads take arenas of their own
    assert arenas_after(f"import actlab; actlab.open_run({str(run_dir)!r})") <= allocator.MAX_ARENAS
    assert arenas_after("from actlab.analysis import allocator; assert allocator.share_arenas(1)") == 1


def test_the_environment_variable_wins():
    assert arenas_after("from actlab.analysis import allocator; assert not allocator.share_arenas(1)",
                        env={allocator.ARENA_VARIABLE: "3"}) == 3


def test_max_arenas_is_checked():
    with pytest.raises(ValueError, match="max_arenas must be >= 1; got 0"):
        allocator.share_arenas(0)
