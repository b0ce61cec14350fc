"""Benchmark of ``actlab record --seeds``: K replicas as one vectorised ensemble vs K sequential single runs.

Both sides train the same K models (seeds 0..K-1, one shared data seed) on the same data with the
same batches: the sequential side is actlab's single-run :class:`~actlab.record.trainer.Trainer`,
one replica after the other; the ensemble side is :class:`~actlab.record.ensemble.EnsembleTrainer`.
Each epoch is measured side by side (sequential, then ensemble, alternating), so a shared machine
slows both alike. Timed per epoch: training (every mini-batch step of all replicas) and the
evaluation that ``actlab record`` runs after it (loss and accuracy on the whole training and test
set); not timed: data preparation, model building and the store writes. Denormals are flushed on
the CPU, as ``actlab record`` does. At the end, the largest difference in test loss between an
ensemble replica and the single run of its seed shows that both sides trained the same models.

What to expect on a CPU: about the same time as the sequential runs (measured 0.9-1.6x per epoch on
2 cores). The work is dense products that already run near the cores' peak for one replica, and
stacking replicas does not reduce it; what the ensemble saves (fewer, larger operations, one fused
Adam step) is small there. On a busy, oversubscribed machine the many small multi-threaded
operations of the sequential runs slow down more than the ensemble's few large ones, which can show
ratios of 4-5x that measure the contention, not the ensemble; ``--threads 1`` avoids it.

CIFAR-sized synthetic data (3x32x32, 10 classes) by default, so no download is needed;
``--data-dir`` uses the real CIFAR-10 found there (cut to ``--n-train`` / ``--n-test``).

    python benchmarks/bench_ensemble.py                     # MLP7, width 512, batch 128, K=8: under a minute on 2 idle cores
    python benchmarks/bench_ensemble.py --threads 1         # one thread each side (a shared, busy machine)
    python benchmarks/bench_ensemble.py --data-dir $ACTLAB_DATA --epochs 5
    CUBLAS_WORKSPACE_CONFIG=:4096:8 python benchmarks/bench_ensemble.py --device cuda --exact   # TF32 off, deterministic

``--exact`` turns TF32 off for matrix products and cuDNN and asks torch for deterministic algorithms (warning where
an operation has none), so that a difference left between a replica and its single run comes from the arithmetic
of the two sides (the order of the sums in batched against single products, fused against unfused Adam), not from
TF32 rounding or atomics.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=8, help="K, seeds 0..K-1 (default: 8)")
    parser.add_argument("--model", default="mlp7", help="model (default: mlp7)")
    parser.add_argument("--width", type=int, default=512, help="hidden width (default: 512)")
    parser.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default: 128)")
    parser.add_argument("--n-train", type=int, default=1024, help="training samples (default: 1024)")
    parser.add_argument("--n-test", type=int, default=512, help="test samples (default: 512)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--exact", action="store_true", help="TF32 off and deterministic algorithms (set "
                                                                 "CUBLAS_WORKSPACE_CONFIG=:4096:8 on a GPU)")
    parser.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-bin/: real CIFAR-10 instead of synthetic data")
    return parser.parse_args()


def make_config(args: argparse.Namespace):
    from actlab.record import RecordConfig

    common = {"model": args.model, "width": args.width, "batch_size": args.batch_size, "epochs": args.epochs,
              "device": args.device, "progress": False, "seeds": list(range(args.replicas))}
    if args.data_dir:
        return RecordConfig(dataset="cifar10", data_dir=args.data_dir, download=False, train_size=args.n_train,
                            test_size=args.n_test, **common)
    return RecordConfig(dataset="synthetic", synthetic=f"train={args.n_train},test={args.n_test},classes=10,shape=3x32x32",
                        **common)


def matmul_flops_per_epoch(model: torch.nn.Module, n_train: int, n_evaluated: int) -> float:
    """Floating-point operations of the linear layers' products in one epoch of one replica.

    Training: forward, gradient of the input and of the weight, 3 x 2 x in x out per sample; evaluation: the
    forward product, 2 x in x out per sample. Everything else (activations, loss, Adam) is left out, so the
    count is a lower bound of the work.
    """
    macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 6.0 * macs * n_train + 2.0 * macs * n_evaluated


def sgemm_rate(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Best float32 matrix-product rate of the machine (FLOP/s) over ``repeats`` square products of ``size``."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def timed(func) -> tuple[float, object]:
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.exact:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    from actlab.record.setup import seeded_model, flushed_denormals
    from actlab.record.ensemble import (
        EnsembleMLP,
        EnsembleTrainer,
        _prepare,
        replica_configs,
    )
    from actlab.record.models import mlp_layer_specs
    from actlab.record.trainer import Trainer, resolve_device

    config = make_config(args)
    device = resolve_device(args.device)
    replicas = replica_configs(config, config.run_dir)
    data = _prepare(replicas)
    with flushed_denormals(device.type == "cpu"):
        models = [seeded_model(replica, d, device) for replica, d in zip(replicas, data)]
        specs = mlp_layer_specs(models[0])
        ensemble = EnsembleTrainer(EnsembleMLP(models, specs).to(device), data, device, config.seeds,
                                   batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
                                   lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
        singles = [Trainer(model, d, device, batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
                           lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, seed=replica.seed,
                           cuda_graphs=False)
                   for model, replica, d in zip(models, replicas, data)]
        print(f"{args.replicas} x {args.model} width {args.width}, batch {args.batch_size}, {len(data[0].noisy.labels)} "
              f"training / {len(data[0].dataset.test_labels)} test samples ({data[0].dataset.name}), device {device}, "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}, TF32 matmul "
              f"{torch.backends.cuda.matmul.allow_tf32} cudnn {torch.backends.cudnn.allow_tf32}, deterministic "
              f"{torch.are_deterministic_algorithms_enabled()}")
        print(f"{'epoch':>5} {'sequential train':>17} {'ensemble train':>15} {'ratio':>6} {'sequential eval':>16} "
              f"{'ensemble eval':>14} {'ratio':>6} {'ratio train+eval':>17}")
        ratios, sequential_seconds = [], []
        for epoch in range(1, args.epochs + 1):
            seq_train = sum(timed(single.train_epoch)[0] for single in singles)
            seq_eval, seq_metrics = 0.0, []
            for single in singles:
                seconds, metrics = timed(single.evaluate)
                seq_eval += seconds
                seq_metrics.append(metrics)
            ens_train = timed(ensemble.train_epoch)[0]
            ens_eval, ens_metrics = timed(ensemble.evaluate)
            ratio = (seq_train + seq_eval) / (ens_train + ens_eval)
            ratios.append(ratio)
            sequential_seconds.append(seq_train + seq_eval)
            print(f"{epoch:>5} {seq_train:>16.2f}s {ens_train:>14.2f}s {seq_train / ens_train:>5.2f}x {seq_eval:>15.2f}s "
                  f"{ens_eval:>13.2f}s {seq_eval / ens_eval:>5.2f}x {ratio:>16.2f}x")
        n_train, n_evaluated = len(data[0].noisy.labels), len(data[0].noisy.labels) + len(data[0].dataset.test_labels)
        work = args.replicas * matmul_flops_per_epoch(models[0], n_train, n_evaluated)
        sequential_rate = work / float(np.median(sequential_seconds))
        peak = sgemm_rate(device)
    print(f"compute-bound limit: the machine's sgemm rate {peak / 1e9:.0f} GFLOP/s (best of 5 2048 x 2048 products) / "
          f"the sequential runs' rate {sequential_rate / 1e9:.0f} GFLOP/s (their linear layers' products, a lower bound, "
          f"over the median epoch) = {peak / sequential_rate:.2f}x: no ensemble of the same products beats it")
    # EnsembleTrainer.evaluate gives (metrics, trajectories) per replica
    gap = max(abs(s["test_loss"] - e["test_loss"]) / abs(s["test_loss"]) for s, (e, _) in zip(seq_metrics, ens_metrics))
    weights = max(float(np.max(np.abs(ensemble.model.replica_parameters(k)[name] - value.detach().cpu().numpy())) /
                        np.max(np.abs(value.detach().cpu().numpy())))
                  for k, single in enumerate(singles) for name, value in single.model.state_dict().items())
    print(f"median ratio sequential / ensemble (train + eval): {np.median(ratios):.2f}x; "
          f"largest relative test-loss difference replica vs single run after {args.epochs} epochs: {gap:.1e}; "
          f"largest difference of a weight, relative to the largest weight of its tensor: {weights:.1e}")


if __name__ == "__main__":
    main()
