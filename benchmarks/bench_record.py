"""Benchmark of the record side, measured side by side in one run (prints, never asserts).

The whole benchmark runs with denormal floats flushed to zero, as ``actlab record`` does on a CPU
(:func:`actlab.record.setup.flushed_denormals`, set before the first torch operation so that torch's
intra-op threads inherit it), so every loop below computes with the same arithmetic.

(a) training throughput of one epoch of MLP7 (same model, initialisation, Adam, batch size, data), no
    evaluation on any side; interleaved rounds (5 by default), best time kept:
    - actlab ``Trainer.train_epoch``: a fresh permutation per epoch from a seeded ``torch.Generator``,
      mini-batches by index slicing of the normalised training tensor, forward, cross-entropy,
      ``zero_grad(set_to_none=True)``, backward, Adam step, the mean loss accumulated as a tensor and
      returned as a float;
    - bare loop: the same work written out inline, with nothing else: its own seeded generator, the same
      ``randperm`` and slicing per epoch, the same step and the same loss accumulation;
    - torchvision ``DataLoader`` (shuffle) with per-sample ``ToTensor`` + ``Normalize``, same step.
    P1b = Trainer / bare (target <= 1.10): the cost of the Trainer's structure over the same work inline, the
    median of the per-round ratios with their range (single rounds swing from 0.95 to 1.34 under load).
(b) recording overhead: the same seeded run (same data, model, epochs) through ``actlab.record.record``,
    recording every epoch with full-size probes (1000 clean, 1000 noisy, 1000 test, the defaults),
    checkpoints every 10 epochs and at the last (the default), metrics every epoch, store writes on the
    background thread, vs the identical ``Trainer.train_epoch`` + ``evaluate`` loop with no store, capture
    or checkpoint; order without / with / without, the two baselines averaged. A recorded epoch and a
    checkpoint cost a fixed time, whatever the training set, so (b) trains few epochs on a training set
    just large enough for 1000 noisy probes and derives the default CIFAR-10 run from the measured costs:

        r  = (overhead - C x c) / R       cost of one recorded epoch (R recorded epochs, C checkpoints here)
        c  = time of one checkpoint save, measured directly (save_checkpoint of the run's state)
        T  = 50000 x (train s/sample) + 60000 x (evaluated s/sample)   one full CIFAR-10 epoch, from the
             per-sample times of the baseline runs (evaluation covers the 50000 training and 10000 test images)
        P2 = (40 x r + 31 x c) / (300 x T)   the default run: 300 epochs, log:40, checkpoints at 0, 10, ..., 300
    (target P2 <= 5 %). P2 as measured is the overhead relative to this short run; the default run's figure is
    an extrapolation from r, c and T and is printed as one.
(c) store write speed: MB/s of activations + parameters through ``RunWriter.write_epoch`` (synchronous,
    every recorded epoch of (b) written again) and store size on disk vs raw float32; then the cost of durability
    and digests, side by side: the same writes as shipped (each shard's digest taken from the bytes written, every
    file and folder of an epoch fsynced before its commit) and with ``fsync_paths`` and ``shard_digest`` patched out
    of the writer, in interleaved rounds, best kept.
(d) per-sample trajectories (``dynamics/``: loss, margin, correct, correct_original of every training sample at
    every epoch): their extra cost in the evaluation the trainer runs anyway (``Trainer.evaluate_samples`` vs the
    same pass computing the metrics alone, interleaved, best kept), the time of ``RunWriter.write_dynamics`` of one
    epoch of 50000 samples (the last epoch of (b) tiled; synchronous here, on the background writer in a run), and
    the bytes on disk per epoch per 10000 samples, from the store of (b):

        P3 = (e x 50000 / n + w) / T   the share of a full CIFAR-10 epoch (T of (b)) that the trajectories add
    (e = the extra evaluation time per epoch of n training samples, w = the write of one epoch of 50000).

CIFAR-sized synthetic data (3x32x32) by default; ``--cifar`` uses the real CIFAR-10 from $ACTLAB_DATA
(cut to ``--n-train`` / ``--b-train``).

    python benchmarks/bench_record.py                       # about 2 minutes on 2 idle cores
    python benchmarks/bench_record.py --b-epochs 20 --repeats 5 --threads 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=2048, help="training samples of (a) (default: 2048)")
    parser.add_argument("--n-test", type=int, default=1024, help="test samples (default: 1024)")
    parser.add_argument("--width", type=int, default=512, help="hidden width of MLP7 (default: 512)")
    parser.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default: 128)")
    parser.add_argument("--b-train", type=int, default=3334,
                        help="training samples of (b), 30%% of them noisy: 1000 noisy probes (default: 3334)")
    parser.add_argument("--b-epochs", type=int, default=8, help="epochs of (b), every one recorded (default: 8)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of (a): best time kept, P1b the median ratio of its rounds (default: 5)")
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
    return {name: min(times) for name, times in interleaved_times(repeats, funcs).items()}


def interleaved_times(repeats: int, funcs: dict) -> dict[str, list[float]]:
    """Wall time of each function in each of ``repeats`` rounds that run them in turn."""
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeats):
        for name, func in funcs.items():
            start = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - start)
    return times


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

    # bare loop: the Trainer's epoch written out inline (own model, same tensors, same seeded reshuffle)
    bare_model, bare_opt = fresh()
    x_train, y_train, batch = trainer.x_train, trainer.y_train, args.batch_size
    generator = torch.Generator().manual_seed(0)

    def bare_epoch() -> float:
        bare_model.train()
        order = torch.randperm(n, generator=generator)
        total = torch.zeros(())
        for start in range(0, n, batch):
            index = order[start:start + batch]
            loss = F.cross_entropy(bare_model(x_train[index]), y_train[index])
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()
            total += loss.detach() * len(index)
        return float(total) / n

    bare_epoch()  # warm-up

    # plain torchvision DataLoader with per-sample ToTensor + Normalize
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(data.mean.tolist(), data.std.tolist())])

    class Images(Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return transform(images_hwc[i]), int(labels[i])

    loader_model, loader_opt = fresh()
    loader = DataLoader(Images(), batch_size=args.batch_size, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(0))

    def loader_epoch() -> None:
        loader_model.train()
        for x, y in loader:
            loss = F.cross_entropy(loader_model(x), y)
            loader_opt.zero_grad(set_to_none=True)
            loss.backward()
            loader_opt.step()

    loader_epoch()  # warm-up
    rounds = interleaved_times(args.repeats, {"ours": trainer.train_epoch, "bare": bare_epoch, "loader": loader_epoch})
    t_ours, t_loader, t_bare = (min(rounds[name]) for name in ("ours", "loader", "bare"))
    # P1b per round: the Trainer against the bare loop run right after it (single rounds swing under load)
    p1b = np.array(rounds["ours"]) / np.array(rounds["bare"])

    print(f"(a) training throughput, MLP7 width {args.width}, batch {args.batch_size}, {n} samples, {args.threads} threads, "
          f"denormals flushed, best of {args.repeats} interleaved rounds")
    for name, t in (("actlab Trainer.train_epoch", t_ours), ("bare loop, same reshuffle + step", t_bare),
                    ("torchvision DataLoader+ToTensor", t_loader)):
        print(f"    {name:34s} {t:7.2f} s/epoch  {n / t:9.0f} samples/s")
    print(f"    P1a Trainer speed-up over DataLoader   {t_loader / t_ours:6.2f}x   (target >= 1.3x)")
    print(f"    P1b Trainer time / bare loop           {float(np.median(p1b)):6.3f}x   (target <= 1.10x; median of "
          f"{len(p1b)} interleaved rounds, range {p1b.min():.3f} to {p1b.max():.3f}; load average {os.getloadavg()[0]:.2f})")


def recording_config(args: argparse.Namespace, out: Path):
    """The record settings of (b): every epoch recorded, default probes (1000 per group) and checkpoints."""
    from actlab.record import RecordConfig

    common = dict(model="mlp7", width=args.width, batch_size=args.batch_size, epochs=args.b_epochs, device="cpu",
                  record_epochs="every:1", progress=False, out=str(out), overwrite=True)
    if args.cifar:
        return RecordConfig(dataset="cifar10", train_size=args.b_train, test_size=args.n_test, download=False, **common)
    spec = f"train={args.b_train},test={args.n_test},classes=10,shape=3x32x32"
    return RecordConfig(dataset="synthetic", synthetic=spec, **common)


def train_without_recording(config) -> tuple[float, float, float, dict[str, float]]:
    """The training + per-epoch evaluation loop of ``record`` (denormals flushed) with no store, capture or checkpoint.

    Returns the total wall time (data preparation included, as in ``record``), the time in
    ``train_epoch``, the time in ``evaluate`` and the metrics of the last epoch.
    """
    from actlab.record import Trainer, make_mlp, prepare_data
    from actlab.record.setup import flushed_denormals

    start = time.perf_counter()
    data = prepare_data(config)
    device = torch.device("cpu")
    with flushed_denormals(config.flush_denormal):  # as ``record`` does
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


def checkpoint_seconds(config, work: Path, repeats: int = 3) -> float:
    """Best wall time of one ``save_checkpoint`` of a fresh Trainer's state (model, Adam moments, generators)."""
    from actlab.record import Trainer, make_mlp, prepare_data
    from actlab.record.trainer import save_checkpoint

    data = prepare_data(config)
    model = make_mlp(config.model, int(np.prod(data.dataset.image_shape)), data.dataset.n_classes, config.width)
    trainer = Trainer(model, data, torch.device("cpu"), batch_size=config.batch_size, seed=config.seed)
    trainer.train_epoch()  # Adam state exists, as in every checkpoint after epoch 0
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        save_checkpoint(work / "checkpoint.pt", trainer.state(1, 0.0))
        best = min(best, time.perf_counter() - start)
    return best


def bench_recording(args: argparse.Namespace, work: Path) -> tuple[Path, float]:
    from actlab.record import record
    from actlab.record.loop import checkpoint_epochs
    from actlab.store import open_store

    run_dir = work / "recorded"
    config = recording_config(args, run_dir)
    record(config.replace(epochs=1, record_epochs="1", out=str(work / "warm")))  # warm-up: imports, allocator
    epochs, n_train = config.epochs, args.b_train
    print(f"(b) recording overhead, MLP7 width {args.width}, batch {args.batch_size}, {n_train} train + {args.n_test} test "
          f"samples, {epochs} epochs, {torch.get_num_threads()} threads")
    first, train_1, eval_1, metrics_1 = train_without_recording(config)
    start = time.perf_counter()
    record(config)
    t_record = time.perf_counter() - start
    second, train_2, eval_2, metrics_2 = train_without_recording(config)
    t_plain = (first + second) / 2
    t_checkpoint = checkpoint_seconds(config, work)
    view = open_store(run_dir)
    stored = {name: float(view.metrics[name].sel(epoch=epochs)) for name in metrics_1}
    same = all(np.isclose(stored[name], metrics_1[name], rtol=0, atol=0, equal_nan=True)
               and np.isclose(metrics_1[name], metrics_2[name], rtol=0, atol=0, equal_nan=True) for name in metrics_1)
    recorded = len(config.schedule)
    checkpoints = len(checkpoint_epochs(config))
    probes = view.attrs["config"]["resolved"]["probe_sizes"]
    overhead = t_record - t_plain
    per_record = (overhead - checkpoints * t_checkpoint) / recorded
    train_per_sample = (train_1 + train_2) / (2 * epochs * n_train)
    eval_per_sample = (eval_1 + eval_2) / (2 * (epochs + 1) * (n_train + args.n_test))
    cifar_epoch = 50000 * train_per_sample + 60000 * eval_per_sample
    default_records, default_checkpoints, default_epochs = 40, 31, 300
    p2 = (default_records * per_record + default_checkpoints * t_checkpoint) / (default_epochs * cifar_epoch)
    print(f"    record: every epoch = {recorded} recorded epochs, probes clean/noisy/test "
          f"{probes['clean']}/{probes['noisy']}/{probes['test']}, metrics every epoch, {checkpoints} checkpoint saves")
    print(f"    without recording (run 1 / run 3)     {first:7.1f} s / {second:.1f} s   (mean {t_plain:.1f} s)")
    print(f"    with recording    (run 2)             {t_record:7.1f} s   overhead {overhead:+.1f} s")
    print(f"    P2 measured: recording overhead of this run {100 * overhead / t_plain:+.1f} % "
          f"({epochs} epochs of {n_train} samples, every epoch recorded)")
    print(f"    final metrics identical in all runs   {'yes' if same else 'NO'}")
    print(f"    c  one checkpoint save                {t_checkpoint:7.3f} s   (measured directly, best of 3)")
    print(f"    r  one recorded epoch                 {per_record:7.3f} s   ((overhead - {checkpoints} x c) / {recorded})")
    print(f"    T  one full CIFAR-10 epoch            {cifar_epoch:7.1f} s   (50000 x {1e3 * train_per_sample:.3f} ms trained "
          f"+ 60000 x {1e3 * eval_per_sample:.3f} ms evaluated, per-sample times of runs 1 and 3)")
    print(f"    P2 extrapolated (not measured) to the default CIFAR-10 run (300 epochs, log:40, 31 checkpoints) "
          f"= (40 r + 31 c) / (300 T) = {100 * p2:+.2f} %   (target <= 5 %), from the r, c and T measured above")
    return run_dir, cifar_epoch


def bench_store(run_dir: Path, repeats: int) -> None:
    from actlab.store import RunWriter, open_store, store_path
    from actlab.store import writer as store_writer

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
    print(f"    store write speed (RunWriter.write_epoch, synchronous)  {raw / 1e6 / elapsed:7.1f} MB/s")
    print(f"    store size on disk {on_disk / 1e6:.1f} MB vs raw float32 {raw / 1e6:.1f} MB  (ratio {on_disk / raw:.2f})")

    def write_all() -> None:
        for epoch in epochs:
            writer.write_epoch(epoch, preacts, params)

    def write_all_unchecked() -> None:
        with mock.patch.object(store_writer, "fsync_paths", lambda paths, folders=(): None), \
                mock.patch.object(store_writer, "shard_digest", lambda read, size, n_chunks: bytes(32)):
            write_all()

    best = interleaved_best(repeats, {"shipped": write_all, "unchecked": write_all_unchecked})
    extra = (best["shipped"] - best["unchecked"]) / len(epochs)
    print(f"    write_epoch with fsyncs + shard digests {raw / 1e6 / best['shipped']:7.1f} MB/s, without them "
          f"{raw / 1e6 / best['unchecked']:7.1f} MB/s: time ratio {best['shipped'] / best['unchecked']:.2f}x, "
          f"{1000 * extra:+.0f} ms per recorded epoch (best of {repeats} interleaved rounds)")


def metrics_only(trainer) -> None:
    """The trainer's evaluation pass computing the per-epoch metrics alone: loss and hit against both labels of every
    training sample and the test label of every test sample, as ``Trainer.evaluate`` did before trajectories."""
    trainer.model.eval()
    with torch.inference_mode():
        for x, labels in ((trainer.x_train, (trainer.y_train, trainer.y_train_original)), (trainer.x_test, (trainer.y_test,))):
            parts = []
            for start in range(0, len(x), trainer.eval_batch_size):
                logits = trainer.model(x[start:start + trainer.eval_batch_size])
                logp = F.log_softmax(logits.float(), dim=1)
                pred = logits.argmax(dim=1)
                for y in labels:
                    target = y[start:start + trainer.eval_batch_size]
                    parts.append((-logp.gather(1, target[:, None])[:, 0], pred == target))
            [(loss.double().numpy(), hit.numpy()) for loss, hit in parts]


def bench_trajectories(args: argparse.Namespace, run_dir: Path, cifar_epoch: float, work: Path) -> None:
    from actlab.record import Trainer, make_mlp, prepare_data
    from actlab.store import DYNAMICS, LayerSpec, ProbeSet, RunWriter, Subsets, open_store, store_path

    config = recording_config(args, run_dir)
    data = prepare_data(config)
    torch.manual_seed(0)
    model = make_mlp(config.model, int(np.prod(data.dataset.image_shape)), data.dataset.n_classes, config.width)
    trainer = Trainer(model, data, torch.device("cpu"), batch_size=config.batch_size, seed=config.seed)
    trainer.evaluate_samples()  # warm-up
    times = interleaved_best(max(args.repeats, 5), {"with": trainer.evaluate_samples, "without": lambda: metrics_only(trainer)})
    n_train = len(trainer.x_train)
    extra = times["with"] - times["without"]

    view = open_store(run_dir)
    last = {name: view.dynamics[name].isel(epoch=-1).values for name in DYNAMICS}
    n_big, epochs = 50000, 10
    rows = {name: np.resize(values, n_big) for name, values in last.items()}
    probes = ProbeSet(images=np.zeros((1, 1, 1, 1), np.uint8), dataset_index=np.zeros(1, int), group=np.zeros(1, np.int8),
                      label=np.zeros(1, int), original_label=np.zeros(1, int), is_noisy=np.zeros(1, bool))
    labels = np.zeros(n_big, int)
    subsets = Subsets(train_index=np.arange(n_big), train_label=labels, train_original_label=labels,
                      train_is_noisy=np.zeros(n_big, bool), test_index=np.zeros(0, int), test_label=np.zeros(0, int))
    writer = RunWriter.create(work / "dynamics", config={}, dataset={}, layers=[LayerSpec("x", 1, 0, "identity", "x")],
                              probes=probes, subsets=subsets, record_epochs=[0], n_epochs=epochs - 1, dynamics=True)
    start = time.perf_counter()
    for epoch in range(epochs):
        writer.write_dynamics({epoch: rows})
    write = (time.perf_counter() - start) / epochs
    group = store_path(run_dir) / "dynamics"
    on_disk = sum(p.stat().st_size for p in group.rglob("*") if p.is_file() and p.parent != group / "epoch"
                  and "c" in p.relative_to(group).parts)
    n_epochs = view.dynamics.sizes["epoch"]
    per_10k = on_disk / n_epochs / (view.dynamics.sizes["train_sample"] / 10000)
    raw_10k = 10000 * sum(np.dtype(dtype).itemsize for _, _, dtype in DYNAMICS.values())
    p3 = (extra * 50000 / n_train + write) / cifar_epoch
    print(f"(d) per-sample trajectories (dynamics/), {n_train} training samples, best of {max(args.repeats, 5)} interleaved rounds")
    print(f"    evaluation with trajectories / metrics alone  {times['with']:7.3f} s / {times['without']:.3f} s   "
          f"(e = {1e3 * extra:+.1f} ms per epoch, ratio {times['with'] / times['without']:.3f})")
    print(f"    w  write_dynamics of one epoch of 50000 samples {1e3 * write:7.1f} ms   (synchronous, mean of {epochs})")
    print(f"    store size per epoch per 10000 samples        {per_10k / 1e3:7.1f} kB on disk   (raw {raw_10k / 1e3:.0f} kB; "
          f"from the {n_epochs} epochs of (b))")
    print(f"    P3 trajectory overhead of a full CIFAR-10 epoch = (e x 50000 / {n_train} + w) / T = {100 * p3:+.2f} %   "
          "(within the P2 budget of 5 %)")


def main() -> None:
    from actlab.record.setup import flushed_denormals

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
        with flushed_denormals(True):  # before the first torch operation, as in ``actlab record``
            bench_training_loops(args, config)
        run_dir, cifar_epoch = bench_recording(args, work)
        bench_trajectories(args, run_dir, cifar_epoch, work)
        bench_store(run_dir, max(args.repeats, 3))
        print(f"load average {os.getloadavg()[0]:.2f} at end (this benchmark alone accounts for up to about {args.threads + 1}; more means other processes shared the cores)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
