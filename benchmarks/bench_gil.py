"""Which linear-algebra calls of the block kernels let two threads run side by side (prints, never asserts).

The fused analysis reduces blocks on threads. A call that holds Python's interpreter lock (GIL) while it computes
makes the other thread wait: SciPy's BLAS and LAPACK wrappers (``scipy.linalg.blas``, ``scipy.linalg.lapack``,
``cho_factor``/``cho_solve``) hold it, NumPy's products and ``numpy.linalg`` release it. Each pair below does the
same work, at the sizes of a 3,000-probe, 512-unit block (a class pool of 300 probes, 999 permutations), with BLAS
single-threaded: the time of two calls one after the other, then of the same two calls on two threads at once;
a speedup near 2 means the call releases the GIL.

    python benchmarks/bench_gil.py
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dsyrk, dtrmm, ssyrk
from scipy.linalg.lapack import dpotrf, sposv
from threadpoolctl import threadpool_limits


def timed(work, repeat: int) -> tuple[float, float]:
    """Seconds for ``work`` run twice in a row, and twice on two threads at once (``repeat`` calls each)."""
    def loop() -> None:
        for _ in range(repeat):
            work()
    start = time.perf_counter()
    loop()
    loop()
    serial = time.perf_counter() - start
    threads = [threading.Thread(target=loop) for _ in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return serial, time.perf_counter() - start


def main() -> None:
    rng = np.random.default_rng(0)
    pool = np.maximum(rng.standard_normal((300, 512)) + 1, 0)  # a class pool's rows (float64)
    indicator = (rng.random((999, 300)) < 0.3).astype(np.float64)
    gram = pool @ pool.T + 300 * np.eye(300)
    factor = np.linalg.cholesky(gram).T
    probes = rng.standard_normal((2400, 512)).astype(np.float32)  # a block's clean probes (float32)
    system = probes.T @ probes + 2400 * np.eye(512, dtype=np.float32)
    targets = rng.standard_normal((512, 10)).astype(np.float32)
    pairs = [
        ("pool Gram X X^T", lambda: dsyrk(1.0, pool.T, trans=1), lambda: pool @ pool.T),
        ("Cholesky of the pool Gram", lambda: dpotrf(gram, lower=0), lambda: np.linalg.cholesky(gram)),
        ("R i^T (trmm) / i G (matmul)", lambda: dtrmm(1.0, factor, indicator.T), lambda: indicator @ gram),
        ("probes' scatter X^T X", lambda: ssyrk(1.0, probes.T), lambda: probes.T @ probes),
        ("ridge solve (posv) / cholesky", lambda: sposv(system, targets), lambda: np.linalg.cholesky(system)),
        ("cho_factor / numpy cholesky", lambda: scipy.linalg.cho_factor(system), lambda: np.linalg.cholesky(system)),
    ]
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; BLAS single-threaded; 20 calls per loop; "
          "speedup = two loops in a row / the same two loops on two threads")
    print(f"{'work':32s} {'SciPy wrapper':>26s} {'NumPy':>26s}")
    with threadpool_limits(limits=1, user_api="blas"):
        for name, scipy_call, numpy_call in pairs:
            cells = []
            for call in (scipy_call, numpy_call):
                serial, parallel = timed(call, 20)
                cells.append(f"{1e3 * serial / 40:6.2f} ms, {serial / parallel:4.2f}x")
            print(f"{name:32s} {cells[0]:>26s} {cells[1]:>26s}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
