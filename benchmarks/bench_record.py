"""Benchmark of the record side, measured side by side in one run (prints, never asserts).

(a) training throughput of MLP7 (same model, batch size, data) on the CPU:
    actlab's Trainer epoch (device tensors, seeded index slicing) vs a plain
    torchvision DataLoader + ToTensor/Normalize loop vs the bare
    forward/backward/step over pre-sliced batches;
(b) wall time of ``actlab.record.record`` recording every epoch vs recording
    only the last one, the per-record-epoch cost, and what that cost means at
    the default schedule (log:40 over 300 epochs) on this data and on full CIFAR-10;
(c) store write throughput (MB/s of activations + parameters through
    RunWriter.write_epoch) and store size on disk vs raw float32 size.

CIFAR-sized synthetic data (3x32x32) by default; ``--cifar`` uses the real
CIFAR-10 from $ACTLAB_DATA (cut to ``--n-train``).

    python benchmarks/bench_record.py                       # a few minutes on 1 core
    python benchmarks/bench_record.py --n-train 20000 --epochs 6 --threads 4
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=4096, help="training samples (default: 4096)")
    parser.add_argument("--n-test", type=int, default=1024, help="test samples (default: 1024)")
    parser.add_argument("--width", type=int, default=512, help="hidden width of MLP7 (default: 512)")
    parser.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default: 128)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed variant in (b) (default: 3)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per comparison, best kept (default: 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1, the steadiest on a shared machine)")
    parser.add_argument("--cifar", action="store_true", help="use real CIFAR-10 from $ACTLAB_DATA instead of synthetic data")
    return parser.parse_args()


def base_config(args: argparse.Namespace, out: Path):
    from actlab.record import RecordConfig

    common = dict(model="mlp7", width=args.width, batch_size=args.batch_size, epochs=args.epochs, device="cpu",
                  progress=False, out=str(out), overwrite=True, checkpoint_every=0)
    if args.cifar:
        return RecordConfig(dataset="cifar10", train_size=args.n_train, download=False, **common)
    spec = f"train={args.n_train},test={args.n_test},classes=10,shape=3x32x32"
    return RecordConfig(dataset="synthetic", synthetic=spec, **common)


def interleaved_best(repeats: int, funcs: dict) -> dict:
    """Best wall time of each function over ``repeats`` rounds that run them in turn (fair on a shared machine)."""
    best = {name: float("inf") for name in funcs}
    for _ in range(repeats):
        for name, func in funcs.items():
            start = time.perf_counter()
            func()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_training_loops(args: argparse.Namespace, config) -> None:
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from actlab.record import Trainer, make_mlp, prepare_data

    data = prepare_data(config)
    n = len(data.dataset.train_labels)
    images_hwc = np.ascontiguousarray(data.dataset.train_images.transpose(0, 2, 3, 1))
    labels = data.noisy.labels
    shape = data.dataset.image_shape

    def fresh():
        torch.manual_seed(0)
        model = make_mlp("mlp7", int(np.prod(shape)), 10, args.width)
        return model, torch.optim.Adam(model.parameters(), lr=1e-4)

    # actlab trainer
    model, _ = fresh()
    trainer = Trainer(model, data, torch.device("cpu"), batch_size=args.batch_size, seed=0)
    trainer.train_epoch()  # warm-up

    # plain torchvision DataLoader with per-sample ToTensor + Normalize
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(data.mean.tolist(), data.std.tolist())])

    class Images(Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return transform(images_hwc[i]), int(labels[i])

    loader = DataLoader(Images(), batch_size=args.batch_size, shuffle=True, num_workers=0)
    model, opt = fresh()

    def loader_epoch():
        model.train()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    loader_epoch()

    # bare forward/backward/step over batches sliced beforehand
    batches = [(trainer.x_train[i:i + args.batch_size].clone(), trainer.y_train[i:i + args.batch_size].clone())
               for i in range(0, n, args.batch_size)]
    model, opt = fresh()

    def bare_epoch():
        model.train()
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    bare_epoch()
    times = interleaved_best(args.repeats, {"ours": trainer.train_epoch, "loader": loader_epoch, "bare": bare_epoch})
    t_ours, t_loader, t_bare = times["ours"], times["loader"], times["bare"]

    print(f"(a) training throughput, MLP7 width {args.width}, batch {args.batch_size}, {n} samples, {args.threads} threads")
    for name, t in (("actlab Trainer.train_epoch", t_ours), ("torchvision DataLoader+ToTensor", t_loader),
                    ("bare fwd/bwd/step, pre-sliced", t_bare)):
        print(f"    {name:34s} {t:7.2f} s/epoch  {n / t:9.0f} samples/s")
    print(f"    speed-up over DataLoader loop       {t_loader / t_ours:6.2f}x   (target >= 1.3x)")
    print(f"    time vs bare loop                   {t_ours / t_bare:6.3f}x   (target <= 1.10x)")


def bench_recording(args: argparse.Namespace, config, work: Path) -> Path:
    from actlab.record import record
    from actlab.record.config import log_epochs

    last = str(config.epochs)
    record(config.replace(record_epochs="1", out=str(work / "warm"), epochs=1))  # warm-up: imports, allocator
    run_dir = work / "every"
    times = interleaved_best(args.repeats, {
        "plain": lambda: record(config.replace(record_epochs=last, out=str(work / "plain"))),
        "every": lambda: record(config.replace(record_epochs="every:1", out=str(run_dir))),
    })
    t_plain, t_every = times["plain"], times["every"]
    extra = config.epochs  # recorded epochs beyond the single one of the plain run
    per_record = (t_every - t_plain) / extra
    per_epoch = t_plain / (config.epochs + 1)
    n_train = args.n_train
    default_records, default_epochs = len(log_epochs(40, 300)), 300
    projected = (default_records - 1) * per_record / (default_epochs * per_epoch)
    projected_cifar = (default_records - 1) * per_record / (default_epochs * per_epoch * 50000 / n_train)
    print(f"(b) recording overhead, {config.epochs} epochs, probes 1000/1000/1000 (clipped to what is available)")
    print(f"    record last epoch only              {t_plain:7.2f} s  ({per_epoch:.2f} s per epoch incl. evaluation)")
    print(f"    record every epoch                  {t_every:7.2f} s  (+{100 * (t_every / t_plain - 1):.1f} %)")
    print(f"    cost per recorded epoch             {per_record:7.3f} s")
    print(f"    projected at default log:40 / 300 epochs on {n_train} samples: +{100 * projected:.1f} %   (target <= 5 %)")
    print(f"    projected at default log:40 / 300 epochs on CIFAR-10 (50000):  +{100 * projected_cifar:.1f} %")
    return run_dir


def bench_store(run_dir: Path) -> None:
    from actlab.store import RunWriter, open_store, store_path

    view = open_store(run_dir)
    preacts = {name: ds["preact"].isel(epoch=-1).values for name, ds in view.layers.items()}
    params = {name: (ds["weight"].isel(epoch=-1).values, ds["bias"].isel(epoch=-1).values) for name, ds in view.layers.items()}
    nbytes = sum(a.nbytes for a in preacts.values()) + sum(w.nbytes + b.nbytes for w, b in params.values())
    writer = RunWriter.open(run_dir)
    epochs = writer.record_epochs
    start = time.perf_counter()
    for epoch in epochs:
        writer.write_epoch(epoch, preacts, params)
    elapsed = time.perf_counter() - start
    on_disk = sum(p.stat().st_size for p in store_path(run_dir).rglob("*") if p.is_file())
    raw = nbytes * len(epochs)
    print(f"(c) store, {len(epochs)} recorded epochs x {nbytes / 1e6:.1f} MB (preact float32 + weights + biases)")
    print(f"    write throughput (RunWriter.write_epoch, synchronous)   {raw / 1e6 / elapsed:7.1f} MB/s")
    print(f"    store size on disk {on_disk / 1e6:.1f} MB vs raw float32 {raw / 1e6:.1f} MB  (ratio {on_disk / raw:.2f})")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="actlab-bench-"))
    try:
        config = base_config(args, work / "run")
        print(f"actlab record benchmark: torch {torch.__version__}, {args.threads} threads, "
              f"{'CIFAR-10' if args.cifar else 'synthetic 3x32x32'} data")
        bench_training_loops(args, config)
        run_dir = bench_recording(args, config, work)
        bench_store(run_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
