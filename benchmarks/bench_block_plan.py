"""Benchmark the per-run constants of the fused pass (``actlab.analysis.blocks.BlockPlan``) as the probes grow.

The plan draws the permutations of the path null (199) and of the separation's noise floor (2 x 999) once per run,
on the main thread before any block is read: a fixed cost of every analysis, and a memory cost that grows with the
probes. For each probe count (7/15 clean, 3/15 noisy, the rest test, 10 classes, labels drawn at random), in a fresh
subprocess, it prints the CPU time of building the plan, the peak RSS before and after, and the size of the floor
memberships it keeps. It never asserts.

    python benchmarks/bench_block_plan.py                       # 3,000, 12,000 and 48,000 probes
    python benchmarks/bench_block_plan.py --probes 3000 48000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def child(n: int) -> dict:
    """Build one plan for ``n`` probes in this (fresh) process; its CPU time and peak RSS."""
    from actlab.analysis import blocks

    rng = np.random.default_rng(0)
    group = np.repeat(np.array(["clean", "noisy", "test"]), [n * 7 // 15, n * 3 // 15, n - n * 10 // 15])
    original = rng.integers(0, 10, n)
    label = original.copy()
    noisy = group == "noisy"
    label[noisy] = (original[noisy] + rng.integers(1, 10, noisy.sum())) % 10
    codes = blocks.grouping_codes(group, label, original)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.process_time()
    plan = blocks.BlockPlan(codes=codes, n_classes=10, test_index=np.flatnonzero(group == "test"), n_top=8,
                            null_permutations=199, floor_permutations=999)
    return {"cpu_s": time.process_time() - start, "rss_before_mb": before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "floor_members_mb": sum(members.nbytes for members in plan.floor_members) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, nargs="+", default=[3000, 12000, 48000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    print(f"BlockPlan (199 path permutations, 2 x 999 floor permutations, 10 classes); load average "
          f"{os.getloadavg()[0]:.2f} at start")
    for n in args.probes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        found = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{n} probes: {found['cpu_s']:.2f} s CPU, peak RSS {found['rss_before_mb']:.0f} -> "
              f"{found['peak_rss_mb']:.0f} MB (floor memberships kept: {found['floor_members_mb']:.0f} MB); "
              f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
