"""Benchmark of ``--test-size`` on a small CPU run (prints, never asserts).

On a CPU, a run on a 2,000-image subset evaluates every epoch on the whole training subset and on the
test set; with all 10,000 CIFAR-10 test images the evaluation can cost more than the training. This
records the same MLP7 run (2,000 training images, one thread) with the full test set and with
``--test-size 2000``, alternating, ``--rounds`` of each, and prints the median seconds per epoch of each
(from the stored ``wall_time`` of epochs 2 to the last) and their ratio.

    ACTLAB_DATA=../shared/data python benchmarks/bench_test_size.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import actlab


def epoch_seconds(out: Path, test_size: int | None, epochs: int) -> float:
    """Median wall time of epochs 2..``epochs`` of one fresh ``actlab record`` with one thread."""
    command = [sys.executable, "-m", "actlab.cli", "record", "--model", "mlp7", "--dataset", "cifar10", "--train-size", "2000",
               "--epochs", str(epochs), "--record-epochs", f"0,{epochs}", "--probe-clean", "100", "--probe-noisy", "100",
               "--probe-test", "100", "--device", "cpu", "--out", str(out), "--no-progress"]
    if test_size is not None:
        command += ["--test-size", str(test_size)]
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    wall = actlab.open_run(out).metrics["wall_time"].values
    return float(np.median(np.diff(wall)[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at start, {os.cpu_count()} cores")
    times: dict[str, list[float]] = {"all 10,000 test images": [], "--test-size 2000": []}
    with tempfile.TemporaryDirectory(prefix="actlab-bench-") as tmp:
        for round_ in range(args.rounds):
            for (name, runs), size in zip(times.items(), (None, 2000)):
                runs.append(epoch_seconds(Path(tmp) / f"r{round_}-{size}", size, args.epochs))
                print(f"round {round_ + 1}: {name}: {runs[-1]:.2f} s per epoch", flush=True)
    full, small = (statistics.median(runs) for runs in times.values())
    print(f"MLP7, 2,000 training images, one thread: {full:.2f} s per epoch with all test images, {small:.2f} s with "
          f"--test-size 2000 (median of {args.rounds}); ratio {full / small:.2f}x")
    print(f"load average {os.getloadavg()[0]:.2f} at end (this benchmark alone accounts for about 1)")


if __name__ == "__main__":
    main()
