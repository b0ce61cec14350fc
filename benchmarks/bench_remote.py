"""Benchmark reading and analysing a run from a local S3 API server (moto) against the same run on local disk.

Builds a synthetic run with ``bench_analyze.build_store`` (default 3 hidden layers x 256 units + output,
1000 probes x 20 epochs = 63 MB raw float32), uploads it to a ``moto`` ThreadedMotoServer started on
127.0.0.1 (in-memory S3, same machine, so the ratios measure the S3 protocol path, not a network), then
times, for each copy: (1) ``open_run`` (every integrity check) plus one read of every (layer, epoch)
block, and (2) ``open_run`` plus ``analyze``. Prints the times and the ratios S3 / local. It never asserts.

    python benchmarks/bench_remote.py
    python benchmarks/bench_remote.py --layers 6 --units 512 --probes 3000 --epochs 40
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analyze import build_store  # noqa: E402


def read_all(run_path: str, workers: int) -> float:
    """Seconds to open the run (with its integrity checks) and read every block once."""
    from actlab.analysis import open_run

    start = time.perf_counter()
    run = open_run(run_path)
    jobs = [(name, i) for name in run.layer_names for i in range(len(run.epochs))]
    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda job: run.read_block(*job).nbytes, jobs))
    return time.perf_counter() - start


def analyse(run_path: str, workers: int) -> float:
    """Seconds to open the run and run every analysis."""
    from actlab.analysis import analyze, open_run

    start = time.perf_counter()
    analyze(open_run(run_path), progress=False, max_workers=workers)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    import fsspec

    base = Path(tempfile.mkdtemp(prefix="actlab-bench-remote-"))
    try:
        raw = 4 * args.probes * (args.layers * args.units + args.classes) * args.epochs
        print(f"store: {args.layers} hidden layers + output, {args.units} units, {args.probes} probes, {args.epochs} epochs "
              f"= {raw / 1e6:.0f} MB raw float32; S3: moto on 127.0.0.1:{port}; workers {args.workers}")
        local = base / "run"
        build_store(local, layers=args.layers, units=args.units, probes=args.probes, epochs=args.epochs, classes=args.classes)
        fs = fsspec.filesystem("s3")
        fs.mkdir("bench")
        start = time.perf_counter()
        fs.put(str(local / "store.zarr"), "bench/run/store.zarr", recursive=True)
        print(f"upload: {time.perf_counter() - start:.1f} s")
        url = "s3://bench/run"
        rows = {}
        for name, measure in (("open + read every block", read_all), ("open + analyze", analyse)):
            measure(str(local), args.workers)  # warm the page cache and imports
            rows[name] = (measure(str(local), args.workers), measure(url, args.workers))
        for name, (disk, s3) in rows.items():
            print(f"{name:24s} local disk {disk:6.2f} s | local S3 server {s3:6.2f} s | ratio S3 / disk {s3 / disk:5.2f}")
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
