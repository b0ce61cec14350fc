"""Benchmark the analysis on a 2-worker dask.distributed LocalCluster against local threads, side by side.

Builds the synthetic store of ``bench_analyze.py`` (same flags and defaults: 6 hidden layers x 512 units +
output, 3000 probes x 85 epochs = 3.1 GB raw float32), then alternates ``analyze`` with local threads
(``--workers`` threads) and on a LocalCluster of ``--workers`` worker processes with one thread each, and
prints both wall times and their ratio. The cluster is started once, before the timings. It never asserts.

    python benchmarks/bench_distributed.py --layers 2 --units 128 --probes 600 --epochs 12   # small
    python benchmarks/bench_distributed.py                                                    # 3 GB default
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analyze import build_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="where to build the store (default: a temporary directory)")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--probes", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=85)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="threads, and cluster worker processes (default 2)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from distributed import LocalCluster

    from actlab.analysis import analyze, open_run

    base = args.dir or Path(tempfile.mkdtemp(prefix="actlab-bench-dist-"))
    run_dir = base / "run"
    try:
        raw = 4 * args.probes * (args.layers * args.units + args.classes) * args.epochs
        print(f"store: {args.layers} hidden layers + output, {args.units} units, {args.probes} probes, {args.epochs} epochs "
              f"= {raw / 1e9:.3f} GB raw float32")
        build_store(run_dir, layers=args.layers, units=args.units, probes=args.probes, epochs=args.epochs, classes=args.classes)
        run = open_run(run_dir)
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            times: dict[str, list[float]] = {"threads": [], "cluster": []}
            for _ in range(args.rounds):
                for name, scheduler in (("threads", None), ("cluster", cluster.scheduler_address)):
                    start = time.perf_counter()
                    analyze(run, progress=False, scheduler=scheduler, max_workers=args.workers)
                    times[name].append(time.perf_counter() - start)
        threads, cluster_s = float(np.median(times["threads"])), float(np.median(times["cluster"]))
        print(f"analyze, {args.workers} local threads:              {threads:.2f} s  (rounds {', '.join(f'{t:.2f}' for t in times['threads'])})")
        print(f"analyze, LocalCluster {args.workers} processes x 1 thread: {cluster_s:.2f} s  (rounds {', '.join(f'{t:.2f}' for t in times['cluster'])})")
        print(f"ratio cluster / threads: {cluster_s / threads:.2f}")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
