"""Why the fused analysis costs more than a read plus nothing: reading and computing block statistics side by side.

Times 150 block reads (``Run.read_block``) and 150 ``blocks.block_statistics`` calls (the PCA moments on one
block in five, as in a pass; no path null), each alone, then both at once on two threads of one process,
then both at once in two processes, and prints how much each slowed the other. On 2 cores a read and the
statistics can run side by side only where they do not wait for each other; zarr's event loop holds the GIL
for most of a read. It never asserts.

    python benchmarks/bench_overlap.py              # builds a small store (2 layers x 512 units, 3000 probes, 20 epochs)
    python benchmarks/bench_overlap.py --dir DIR    # DIR/run from bench_analyze.py --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analyze import build_store  # noqa: E402

N_BLOCKS = 150


def _setup(run_dir: str):
    from actlab.analysis import blocks, open_run
    from actlab.analysis.pipeline import block_plan

    run = open_run(run_dir)
    plan = block_plan(run)
    hidden = run.layer_names[:-1]
    jobs = [(hidden[k % len(hidden)], k % len(run.epochs)) for k in range(N_BLOCKS)]
    x = run.read_block(hidden[0], len(run.epochs) // 2)
    return run, plan, jobs, x, blocks


def _reads(run, jobs) -> float:
    start = time.perf_counter()
    for name, index in jobs:
        run.read_block(name, index)
    return time.perf_counter() - start


def _statistics(plan, x, blocks) -> float:
    start = time.perf_counter()
    for k in range(N_BLOCKS):
        blocks.block_statistics(x, plan, keep_top_values=False, predictions=False, moments=k % 5 == 0, null=False)
    return time.perf_counter() - start


def child(run_dir: str, what: str, start_at: float) -> None:
    """One side in its own process, started at ``start_at`` (so that two processes overlap); prints JSON."""
    from threadpoolctl import threadpool_limits

    run, plan, jobs, x, blocks = _setup(run_dir)
    time.sleep(max(0.0, start_at - time.time()))
    with threadpool_limits(limits=1, user_api="blas"):
        seconds = _reads(run, jobs) if what == "read" else _statistics(plan, x, blocks)
    print(json.dumps({what: seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="a folder holding run/ from bench_analyze.py --keep (default: build one)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(str(args.dir / "run"), args.child[0], float(args.child[1]))
        return
    base = args.dir or Path(tempfile.mkdtemp(prefix="actlab-overlap-"))
    try:
        if not (base / "run").exists():
            build_store(base / "run", layers=2, units=512, probes=3000, epochs=20, classes=10)
        from threadpoolctl import threadpool_limits

        run, plan, jobs, x, blocks = _setup(str(base / "run"))
        print(f"{N_BLOCKS} reads and {N_BLOCKS} block statistics of 3000 x {x.shape[1]} blocks; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f} at start")
        with threadpool_limits(limits=1, user_api="blas"):
            alone = {"read": _reads(run, jobs), "statistics": _statistics(plan, x, blocks)}
            threads: dict[str, float] = {}
            workers = [threading.Thread(target=lambda: threads.update(read=_reads(run, jobs))),
                       threading.Thread(target=lambda: threads.update(statistics=_statistics(plan, x, blocks)))]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        start_at = time.time() + 8  # both children import and open the run first
        children = [subprocess.Popen([sys.executable, __file__, "--dir", str(base), "--child", what, str(start_at)],
                                     stdout=subprocess.PIPE, text=True) for what in ("read", "statistics")]
        processes: dict[str, float] = {}
        for process in children:
            processes.update(json.loads(process.communicate()[0].strip().splitlines()[-1]))
        for what in ("read", "statistics"):
            print(f"{what:10s} alone {alone[what]:.2f} s | beside the other on two threads {threads[what]:.2f} s "
                  f"({threads[what] / alone[what] - 1:+.0%}) | in two processes {processes[what]:.2f} s "
                  f"({processes[what] / alone[what] - 1:+.0%})")
        print(f"load average {os.getloadavg()[0]:.2f} at end")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
