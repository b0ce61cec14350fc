"""Benchmark of ``--flush-denormal`` on a run that has interpolated its training set (prints, never asserts).

Once a network fits every training label, its per-sample losses reach 1e-30 and below and the
gradients of the backward pass become denormal floats, which x86 CPUs process many times slower.
This loads the model of a recorded run's checkpoint, rebuilds the run's training data, and times
the same forward + backward passes over the first batches with denormals kept and flushed to zero,
interleaved rounds, median kept.

    ACTLAB_DATA=../shared/data python benchmarks/bench_denormal.py runs/dd-search/lr1e-3
    python benchmarks/bench_denormal.py runs/dd-search/lr1e-3 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import actlab
from actlab.record.config import RecordConfig
from actlab.record.data import normalize_images, prepare_data
from actlab.record.models import make_mlp
from actlab.record.trainer import load_checkpoint
from actlab.store import CHECKPOINT_FILENAME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory holding store.zarr and checkpoint.pt")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    parser.add_argument("--batches", type=int, default=8, help="training batches timed per round (default: 8)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    run = actlab.open_run(args.run)
    settings = {k: v for k, v in run.attrs["config"].items() if k not in ("resolved", "environment")}
    config = RecordConfig.from_dict(settings)
    data = prepare_data(config)
    checkpoint = load_checkpoint(run.path / CHECKPOINT_FILENAME)
    images = data.dataset.train_images
    model = make_mlp(config.model, int(images[0].size), data.dataset.n_classes, config.width)
    model.load_state_dict(checkpoint["model"])
    n = min(len(images), args.batches * config.batch_size)
    x = torch.as_tensor(normalize_images(images[:n], data.mean, data.std)).reshape(n, -1)
    y = torch.as_tensor(data.noisy.labels[:n]).long()

    def step_ms(flush: bool) -> float:
        torch.set_flush_denormal(flush)
        start = time.perf_counter()
        for i in range(0, n, config.batch_size):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[i:i + config.batch_size]), y[i:i + config.batch_size]).backward()
        return 1000 * (time.perf_counter() - start) / -(-n // config.batch_size)

    with torch.no_grad():
        loss = float(F.cross_entropy(model(x), y))
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for flush in (False, True):
            times[flush].append(step_ms(flush))
    torch.set_flush_denormal(False)
    kept, flushed = statistics.median(times[False]), statistics.median(times[True])
    print(f"run {args.run}: checkpoint epoch {checkpoint['epoch']}, training loss on the timed batches {loss:.3g}, "
          f"{args.threads} thread(s)")
    print(f"forward + backward per batch of {config.batch_size}: denormals kept {kept:.1f} ms, flushed {flushed:.1f} ms, "
          f"ratio {kept / flushed:.2f}x")


if __name__ == "__main__":
    main()
