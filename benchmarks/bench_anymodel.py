"""Benchmark of recording a ResNet: resnet18k (k=16) through actlab vs a plain PyTorch loop (prints, never asserts).

(a) epoch time: ``actlab.record`` (recording only the last epoch) vs a plain PyTorch loop doing the same work
    per epoch: the same model and initialisation, the same seeded shuffling (a CPU ``torch.Generator``, one
    ``randperm`` per epoch, batches sliced from tensors), Adam, then a forward pass over the training and
    test sets for loss and accuracy (what actlab evaluates every epoch). Denormals are flushed in both.
    The median epoch of each is compared, from actlab's stored ``wall_time`` and the loop's clock.
(b) recording cost at the default schedule: one recorded epoch (the probe forward with hooks and the channel
    means, a copy of every parameter, the synchronous write of one epoch to the store) is timed on the
    recorded run, then scaled to the default ``log:40`` over 300 epochs and the default probe sizes
    (1000 per group): overhead = 40 x cost(3000 probes) / (300 x epoch time).

Data: a class-stratified CIFAR-10 subset when $ACTLAB_DATA holds ``cifar-10-batches-bin/``, else synthetic
3x32x32 images.

    python benchmarks/bench_anymodel.py                     # about 3 minutes on 2 quiet cores

The recording cost is fixed per recorded epoch (3,000 probes) while an epoch grows with the training set, so (b)
needs a training set of realistic size: on 1,024 images the default schedule's probe forwards alone are a fifth
of training. The default, 5,000 images, keeps the run within 5 minutes.
    python benchmarks/bench_anymodel.py --n-train 5000 --epochs 5 --threads 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_RECORDED, DEFAULT_EPOCHS, DEFAULT_PROBES = 40, 300, 3000
"""The default schedule (log:40 over 300 epochs) and probe count (1000 per group) the overhead is scaled to."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=5000, help="training samples (default: 5000)")
    parser.add_argument("--n-test", type=int, default=1000, help="test samples (default: 1000)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each run, the median is kept (default: 2)")
    parser.add_argument("--width", type=int, default=16, help="k of resnet18k (default: 16)")
    parser.add_argument("--probes", type=int, default=128, help="probe samples per group of (b) (default: 128)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    return parser.parse_args()


def make_config(args: argparse.Namespace, out: Path):
    from actlab.record import RecordConfig

    cifar = Path(os.environ.get("ACTLAB_DATA", "data")) / "cifar-10-batches-bin" / "data_batch_1.bin"
    data = (dict(dataset="cifar10", download=False) if cifar.is_file()
            else dict(dataset="synthetic", synthetic=f"train={args.n_train},test={args.n_test},classes=10,shape=3x32x32"))
    return RecordConfig(model="resnet18k", width=args.width, epochs=args.epochs, train_size=args.n_train,
                        test_size=args.n_test, noise=0.2, record_epochs=str(args.epochs), probe_clean=args.probes,
                        probe_noisy=args.probes, probe_test=args.probes, checkpoint_every=0, device="cpu",
                        progress=False, out=str(out), **data)


def plain_loop(config, data) -> list[float]:
    """Epoch times of a plain PyTorch loop doing actlab's work per epoch (train, then evaluate both sets)."""
    from actlab.record.models import build_model
    from actlab.record.trainer import to_device_normalized

    device = torch.device("cpu")
    torch.manual_seed(config.seed)
    model = build_model("resnet18k", {}, data.dataset.image_shape, data.dataset.n_classes, config.width)
    x_train = to_device_normalized(data.dataset.train_images, data.mean, data.std, device)
    y_train = torch.as_tensor(data.noisy.labels)
    x_test = to_device_normalized(data.dataset.test_images, data.mean, data.std, device)
    y_test = torch.as_tensor(data.dataset.test_labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    times = []
    torch.set_flush_denormal(True)
    try:
        for _ in range(config.epochs):
            start = time.perf_counter()
            model.train()
            order = torch.randperm(len(x_train), generator=generator)
            for i in range(0, len(order), config.batch_size):
                index = order[i:i + config.batch_size]
                loss = F.cross_entropy(model(x_train[index]), y_train[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.inference_mode():
                for x, y in ((x_train, y_train), (x_test, y_test)):
                    for i in range(0, len(x), config.eval_batch_size):
                        logits = model(x[i:i + config.eval_batch_size])
                        F.cross_entropy(logits, y[i:i + config.eval_batch_size], reduction="none").cpu()
                        (logits.argmax(1) == y[i:i + config.eval_batch_size]).cpu()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_flush_denormal(False)
    return times


def recording_cost(run_dir: Path, config, data) -> float:
    """Seconds of one recorded epoch on ``run_dir``: probe capture, parameter copy, synchronous store write."""
    from actlab.record.setup import probe_set, seeded_model
    from actlab.record.hooks import ActivationCapture
    from actlab.record.models import parameter_arrays
    from actlab.record.trainer import to_device_normalized
    from actlab.store import LayerSpec, RunWriter, read_attrs

    device = torch.device("cpu")
    model = seeded_model(config, data, device)
    specs = [LayerSpec(**layer) for layer in read_attrs(run_dir)["layers"]]
    probes = probe_set(data)
    inputs = to_device_normalized(probes.images, data.mean, data.std, device)
    capture = ActivationCapture(model, {spec.name: spec.module for spec in specs})
    writer = RunWriter.open(run_dir)
    costs = []
    for _ in range(3):
        start = time.perf_counter()
        preacts = capture.collect(inputs, config.eval_batch_size, config.dtype, {s.name: s.reduce for s in specs})
        writer.write_epoch(config.epochs, preacts, parameter_arrays(model))
        costs.append(time.perf_counter() - start)
    return float(np.median(costs))


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from actlab.record import record
    from actlab.record.data import prepare_data
    from actlab.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(args, Path(tmp) / "run")
        data = prepare_data(config)
        print(f"resnet18k k={args.width} on {data.dataset.name}: {len(data.noisy.labels)} training and "
              f"{len(data.test_index)} test samples, batch {config.batch_size}, {config.epochs} epochs, "
              f"{torch.get_num_threads()} torch threads")
        plain = plain_loop(config, data)
        run_dir = record(config)
        wall = open_store(run_dir).metrics["wall_time"].values
        actlab_epochs = np.diff(wall)
        plain_again = plain_loop(config, data)  # the machine is shared: a baseline on either side
        plain_epoch = float(np.median(plain + plain_again))
        actlab_epoch = float(np.median(actlab_epochs))
        print(f"(a) epoch time   plain loop {plain_epoch:7.2f} s   actlab {actlab_epoch:7.2f} s   "
              f"ratio {actlab_epoch / plain_epoch:5.3f}  (target <= 1.10)")
        print(f"    plain epochs {np.round(plain + plain_again, 2).tolist()}  actlab epochs {np.round(actlab_epochs, 2).tolist()}")
        n_probes = 3 * args.probes
        cost = recording_cost(run_dir, config, data)
        scaled = cost * DEFAULT_PROBES / n_probes
        overhead = DEFAULT_RECORDED * scaled / (DEFAULT_EPOCHS * actlab_epoch)
        print(f"(b) one recorded epoch, {n_probes} probes: {cost:.2f} s; scaled to {DEFAULT_PROBES} probes {scaled:.2f} s; "
              f"default schedule ({DEFAULT_RECORDED} of {DEFAULT_EPOCHS} epochs) adds {100 * overhead:.1f} % of the "
              f"epoch time measured here  (target <= 5 %)")
        on_disk = sum(p.stat().st_size for p in (run_dir / "store.zarr").rglob("*") if p.is_file())
        print(f"    store {on_disk / 1e6:.1f} MB for {len(open_store(run_dir).epochs)} recorded epoch(s), channel means")


if __name__ == "__main__":
    main()
