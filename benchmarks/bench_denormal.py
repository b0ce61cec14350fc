"""Benchmark of ``--flush-denormal`` on a run that has interpolated its training set (prints, never asserts).

Once a network fits every training label, its per-sample losses reach 1e-30 and below and the
gradients of the backward pass become denormal floats, which x86 CPUs process many times slower.
This loads the model of a recorded run's checkpoint, rebuilds the run's training data, and times
the same forward + backward passes over the first batches with denormals kept and flushed to zero.
Each measurement runs in a fresh process that sets the flag before any torch operation, as
``actlab record`` does (torch's worker threads copy the flag when they start); processes alternate,
``--rounds`` of each, median kept.

    ACTLAB_DATA=../shared/data python benchmarks/bench_denormal.py runs/dd-search/lr1e-3
    python benchmarks/bench_denormal.py runs/dd-search/lr1e-3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import actlab
from actlab.record.config import RecordConfig
from actlab.record.data import normalize_images, prepare_data
from actlab.record.models import make_mlp
from actlab.record.trainer import load_checkpoint
from actlab.store import CHECKPOINT_FILENAME


def measure(run_dir: str, threads: int, batches: int, flush: bool) -> tuple[float, float, int]:
    """(milliseconds per forward + backward batch, training loss of those batches, checkpoint epoch)."""
    torch.set_flush_denormal(flush)  # before any parallel torch operation
    torch.set_num_threads(threads)
    run = actlab.open_run(run_dir)
    config = RecordConfig.from_dict(run.attrs["config"], strict=False, where=run_dir)  # as resume reads it
    data = prepare_data(config)
    checkpoint = load_checkpoint(run.path / CHECKPOINT_FILENAME)
    images = data.dataset.train_images
    model = make_mlp(config.model, int(images[0].size), data.dataset.n_classes, config.width)
    model.load_state_dict(checkpoint["model"])
    n = min(len(images), batches * config.batch_size)
    x = torch.as_tensor(normalize_images(images[:n], data.mean, data.std)).reshape(n, -1)
    y = torch.as_tensor(data.noisy.labels[:n]).long()
    with torch.no_grad():
        loss = float(F.cross_entropy(model(x), y))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for i in range(0, n, config.batch_size):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[i:i + config.batch_size]), y[i:i + config.batch_size]).backward()
        times.append(1000 * (time.perf_counter() - start) / -(-n // config.batch_size))
    return min(times), loss, int(checkpoint["epoch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory holding store.zarr and checkpoint.pt")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    parser.add_argument("--batches", type=int, default=8, help="training batches timed per measurement (default: 8)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per mode (default: 3)")
    parser.add_argument("--one", choices=["kept", "flushed"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.run, args.threads, args.batches, args.one == "flushed")))
        return
    times: dict[str, list[float]] = {"kept": [], "flushed": []}
    for _ in range(args.rounds):
        for mode in times:
            out = subprocess.run([sys.executable, __file__, args.run, "--threads", str(args.threads), "--batches",
                                  str(args.batches), "--one", mode], check=True, capture_output=True, text=True).stdout
            ms, loss, epoch = json.loads(out.splitlines()[-1])
            times[mode].append(ms)
    kept, flushed = statistics.median(times["kept"]), statistics.median(times["flushed"])
    print(f"run {args.run}: checkpoint epoch {epoch}, training loss on the timed batches {loss:.3g}, {args.threads} thread(s)")
    print(f"forward + backward per batch: denormals kept {kept:.1f} ms, flushed {flushed:.1f} ms, ratio {kept / flushed:.2f}x")


if __name__ == "__main__":
    main()
