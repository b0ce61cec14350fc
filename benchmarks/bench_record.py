"""Benchmark of the record side, measured side by side in one run (prints, never asserts).

(a) training throughput of MLP7 (same model, batch size, data) on the CPU:
    actlab's Trainer epoch (device tensors, seeded index slicing) vs a plain
    torchvision DataLoader + ToTensor/Normalize loop vs the bare
    forward/backward/step over pre-sliced batches; interleaved rounds, best kept;
(b) wall time of the same seeded training run (same data, model, epochs)
    through ``actlab.record.record`` at the DEFAULT settings (record schedule
    log:40, default probe sizes clipped to the data, metrics every epoch,
    checkpoints every 10 epochs, store writes on the background thread) vs the
    identical Trainer train_epoch + evaluate loop with no recording at all, run
    in the order without / with / without (baselines averaged). The default
    schedule's recorded epochs are a fixed cost, so (b) runs the default 300
    epochs on a cut training set; it also prints the measured cost per recorded
    epoch and, derived from the measured per-sample times, its share of one
    epoch on full CIFAR-10;
(c) store write throughput (MB/s of activations + parameters through
    RunWriter.write_epoch) and store size on disk vs raw float32 size, on the
    recorded run of (b).

CIFAR-sized synthetic data (3x32x32) by default; ``--cifar`` uses the real
CIFAR-10 from $ACTLAB_DATA (cut to ``--n-train`` / ``--b-train``).

    python benchmarks/bench_record.py                       # about 10 minutes on 2 cores
    python benchmarks/bench_record.py --b-train 5000 --threads 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=4096, help="training samples of (a) (default: 4096)")
    parser.add_argument("--n-test", type=int, default=1024, help="test samples (default: 1024)")
    parser.add_argument("--width", type=int, default=512, help="hidden width of MLP7 (default: 512)")
    parser.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default: 128)")
    parser.add_argument("--b-train", type=int, default=1000, help="training samples of (b) (default: 1000)")
    parser.add_argument("--b-epochs", type=int, default=300, help="epochs of (b), the default of actlab record (default: 300)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of (a), best kept (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--cifar", action="store_true", help="use real CIFAR-10 from $ACTLAB_DATA instead of synthetic data")
    return parser.parse_args()


def base_config(args: argparse.Namespace, out: Path):
    """The data settings of (a)."""
    from actlab.record import RecordConfig

    common = dict(model="mlp7", width=args.width, batch_size=args.batch_size, epochs=1, device="cpu",
                  progress=False, out=str(out), overwrite=True)
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

    def plain_epoch(batches):
        """One epoch of forward/backward/Adam over ``batches`` on a fresh model of its own."""
        model, opt = fresh()

        def epoch():
            model.train()
            for x, y in batches:
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        epoch()  # warm-up
        return epoch

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

    loader_epoch = plain_epoch(DataLoader(Images(), batch_size=args.batch_size, shuffle=True, num_workers=0))

    # bare forward/backward/step over batches sliced beforehand
    batches = [(trainer.x_train[i:i + args.batch_size].clone(), trainer.y_train[i:i + args.batch_size].clone())
               for i in range(0, n, args.batch_size)]
    bare_epoch = plain_epoch(batches)
    times = interleaved_best(args.repeats, {"ours": trainer.train_epoch, "loader": loader_epoch, "bare": bare_epoch})
    t_ours, t_loader, t_bare = times["ours"], times["loader"], times["bare"]

    print(f"(a) training throughput, MLP7 width {args.width}, batch {args.batch_size}, {n} samples, {args.threads} threads, "
          f"best of {args.repeats} interleaved rounds")
    for name, t in (("actlab Trainer.train_epoch", t_ours), ("torchvision DataLoader+ToTensor", t_loader),
                    ("bare fwd/bwd/step, pre-sliced", t_bare)):
        print(f"    {name:34s} {t:7.2f} s/epoch  {n / t:9.0f} samples/s")
    print(f"    Trainer speed-up over DataLoader loop  {t_loader / t_ours:6.2f}x   (target >= 1.3x)")
    print(f"    Trainer time vs bare loop              {t_ours / t_bare:6.3f}x   (target <= 1.10x)")


def default_schedule_config(args: argparse.Namespace, out: Path):
    """The record settings of (b): the defaults of RecordConfig (log:40, probes, checkpoints) on a cut training set."""
    from actlab.record import RecordConfig

    common = dict(model="mlp7", width=args.width, batch_size=args.batch_size, epochs=args.b_epochs, device="cpu",
                  progress=False, out=str(out), overwrite=True)
    if args.cifar:
        return RecordConfig(dataset="cifar10", train_size=args.b_train, download=False, **common)
    spec = f"train={args.b_train},test={args.n_test},classes=10,shape=3x32x32"
    return RecordConfig(dataset="synthetic", synthetic=spec, **common)


def train_without_recording(config) -> tuple[float, float, float, dict[str, float]]:
    """The training + per-epoch evaluation loop of ``record`` with no store, capture or checkpoint.

    Returns the total wall time (data preparation included, as in ``record``), the time in
    ``train_epoch``, the time in ``evaluate`` and the metrics of the last epoch.
    """
    from actlab.record import Trainer, make_mlp, prepare_data

    start = time.perf_counter()
    data = prepare_data(config)
    device = torch.device("cpu")
    torch.manual_seed(config.seed)
    model = make_mlp(config.model, int(np.prod(data.dataset.image_shape)), data.dataset.n_classes, config.width).to(device)
    trainer = Trainer(model, data, device, batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
                      lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, seed=config.seed)
    t_train = t_eval = 0.0
    for epoch in range(config.epochs + 1):
        if epoch > 0:
            tick = time.perf_counter()
            trainer.train_epoch()
            t_train += time.perf_counter() - tick
        tick = time.perf_counter()
        metrics = trainer.evaluate()
        t_eval += time.perf_counter() - tick
    return time.perf_counter() - start, t_train, t_eval, metrics


def bench_recording(args: argparse.Namespace, work: Path) -> Path:
    from actlab.record import record
    from actlab.record.api import checkpoint_epochs
    from actlab.store import open_store

    run_dir = work / "default"
    config = default_schedule_config(args, run_dir)
    record(config.replace(epochs=1, record_epochs="1", out=str(work / "warm")))  # warm-up: imports, allocator
    epochs, n_train = config.epochs, args.b_train
    print(f"(b) wall time with recording at the default schedule vs without, MLP7 width {args.width}, batch "
          f"{args.batch_size}, {n_train} train + {args.n_test} test samples, {epochs} epochs, {torch.get_num_threads()} threads")
    first, train_1, eval_1, metrics_1 = train_without_recording(config)
    start = time.perf_counter()
    record(config)
    t_record = time.perf_counter() - start
    second, train_2, eval_2, metrics_2 = train_without_recording(config)
    t_plain = (first + second) / 2
    view = open_store(run_dir)
    stored = {name: float(view.metrics[name].sel(epoch=epochs)) for name in metrics_1}
    same = all(np.isclose(stored[name], metrics_1[name], rtol=0, atol=0, equal_nan=True)
               and np.isclose(metrics_1[name], metrics_2[name], rtol=0, atol=0, equal_nan=True) for name in metrics_1)
    recorded = len(config.schedule)
    checkpoints = len(checkpoint_epochs(config))
    probes = view.attrs["config"]["resolved"]["probe_sizes"]
    overhead = t_record - t_plain
    print(f"    record: {config.record_epochs} = {recorded} recorded epochs, probes clean/noisy/test "
          f"{probes['clean']}/{probes['noisy']}/{probes['test']}, metrics every epoch, {checkpoints} checkpoint saves")
    print(f"    without recording (run 1 / run 3)     {first:7.1f} s / {second:.1f} s   (mean {t_plain:.1f} s, "
          f"{t_plain / epochs:.3f} s per epoch incl. evaluation)")
    print(f"    with recording    (run 2)             {t_record:7.1f} s")
    print(f"    overhead of recording                 {100 * overhead / t_plain:+7.1f} %   (target <= 5 %)")
    print(f"    final metrics identical in all runs   {'yes' if same else 'NO'}")
    per_record = overhead / recorded
    train_per_sample = (train_1 + train_2) / (2 * epochs * n_train)
    eval_per_sample = (eval_1 + eval_2) / (2 * (epochs + 1) * (n_train + args.n_test))
    cifar_epoch = 50000 * train_per_sample + 60000 * eval_per_sample
    print(f"    measured cost per recorded epoch      {per_record:7.3f} s   (all overhead / {recorded} recorded epochs)")
    print(f"    derived: one full CIFAR-10 epoch (50000 train + 60000 evaluated) ~ {cifar_epoch:.1f} s from the per-sample "
          f"times above; a recorded epoch is {100 * per_record / cifar_epoch:.1f} % of it; {recorded} of them over 300 such "
          f"epochs: {100 * recorded * per_record / (300 * cifar_epoch):+.2f} % (probes here {probes['clean']}/"
          f"{probes['noisy']}/{probes['test']}, at full size 1000/1000/1000)")
    return run_dir


def bench_store(run_dir: Path) -> None:
    from actlab.store import RunWriter, open_store, store_path

    view = open_store(run_dir)
    preacts = {name: ds["preact"].isel(epoch=-1).values for name, ds in view.layers.items()}
    params = {name: array.isel(epoch=-1).values for name, array in view.parameters.data_vars.items()}
    nbytes = sum(a.nbytes for a in preacts.values()) + sum(p.nbytes for p in params.values())
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
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    work = Path(tempfile.mkdtemp(prefix="actlab-bench-"))
    try:
        config = base_config(args, work / "run")
        print(f"actlab record benchmark: torch {torch.__version__}, {args.threads} threads, "
              f"{'CIFAR-10' if args.cifar else 'synthetic 3x32x32'} data, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f} at start")
        bench_training_loops(args, config)
        run_dir = bench_recording(args, work)
        bench_store(run_dir)
        print(f"load average {os.getloadavg()[0]:.2f} at end (this benchmark alone accounts for up to about {args.threads + 1}; more means other processes shared the cores)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
