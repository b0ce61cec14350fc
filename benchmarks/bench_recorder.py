"""Overhead of ``actlab.Recorder`` on a user's own training loop, measured side by side in one run (prints, never
asserts).

The loop is the user's: MLP7, Adam, mini-batches of a shuffled CIFAR-shaped synthetic training set, on the CPU (or
``--device cuda``). It
runs without the recorder, with it, and without it again (the two baselines averaged). With the recorder, the time
spent inside the recorder (its creation, which records epoch 0, every ``end_epoch`` and ``close``) is also timed
directly, and split into:

    r = mean time of ``end_epoch`` at a recorded epoch (probe activations, every state_dict entry, store writes on
        the background thread), probes = ``--probes`` training samples;
    q = mean time of ``end_epoch`` at an epoch that is not recorded (metrics only);
    T = one full CIFAR-10 epoch of the loop: 50000 x the measured training time per sample;

    P4 = (40 r + 260 q) / (300 T)   the recorder's share of the default run (300 epochs, log:40; target <= 5 %)

r and q are the time spent inside end_epoch; the store writes it queues run beside the loop afterwards. On a GPU,
where the loop is bound by kernel launches and those writes hold the interpreter lock, they slow the loop by more
than r (bench_observe.py's "both, every" measures it).

With ``train=`` the recorder also evaluates the whole training set at every epoch (metrics and every sample's
trajectory): e = its time per training sample, and ``P5 = 300 x 50000 e / (300 T) = e / (train time per sample)``
is the extra share of that per-epoch evaluation, which the user's loop does not run otherwise.

With ``train=, observe=True`` the trajectories come from the loop's own logits instead (``rec.observe`` after each
forward pass): o = time inside ``observe`` per training sample, timed around each call, and q_o = mean time of
``end_epoch`` at an epoch that is not recorded (the epoch's outcomes copied once and written);

    P6 = (o + (q_o - q) / n_train) / (train time per sample)   the per-epoch share of ``observe`` (target <= 5 %)

q, e, o and q_o are means over the epochs after the first (the steady state of a long run): during the first, the
background thread still writes epoch 0, recorded when the recorder is made, and takes the Python interpreter lock
from the many small calls of the recorder.

side by side with P5 of ``train=`` and with the plain loop (the same loop's total time with ``observe``, also
printed, is noisier: it is the difference of two whole runs).

    python benchmarks/bench_recorder.py                     # about two minutes on 2 idle cores
    python benchmarks/bench_recorder.py --device cuda --n-train 20000 --epochs 8   # the same loop on a GPU

On a GPU, ``o`` is the host time of the ``observe`` calls: the copies they queue run on the GPU behind the training
step, so P6 there reads only the host's share, and the last line (the whole loop with ``observe`` against the plain
loop) is the measure of ``observe``'s cost.
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
    parser.add_argument("--n-train", type=int, default=2048, help="training samples (default: 2048)")
    parser.add_argument("--width", type=int, default=512, help="hidden width of MLP7 (default: 512)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (default: 4)")
    parser.add_argument("--probes", type=int, default=1000, help="probe samples (default: 1000)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the loop trains (default: cpu); on cuda the "
                                                        "recorder's timers wait for the GPU's queued work, except observe's")
    return parser.parse_args()


def user_loop(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, recorder=None, observe: bool = False
              ) -> tuple[float, float, dict]:
    """The user's training loop (handing each batch's logits to ``rec.observe`` where ``observe``); returns (total
    time, time inside the recorder, recorder times by kind)."""
    from actlab.record import make_mlp

    torch.manual_seed(0)
    model = make_mlp("mlp7", int(np.prod(x.shape[1:])), 10, args.width).to(x.device)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    inside = {"create": 0.0, "recorded": [], "other": [], "close": 0.0, "observe": [0.0] * args.epochs}
    sync()
    start = time.perf_counter()
    rec = None
    if recorder is not None:
        tick = time.perf_counter()
        rec = recorder(model)
        inside["create"] = time.perf_counter() - tick
    generator = torch.Generator().manual_seed(0)
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for first in range(0, len(x), 128):
            index = order[first:first + 128]
            on_device = index.to(x.device)
            logits, labels = model(x[on_device]), y[on_device]
            if observe:  # host time only: on cuda the copies it queues run behind the step (the whole-loop line)
                tick = time.perf_counter()
                rec.observe(index, logits, labels)
                inside["observe"][epoch - 1] += time.perf_counter() - tick
            loss = F.cross_entropy(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if rec is not None:
            sync()
            tick = time.perf_counter()
            rec.end_epoch(epoch)
            sync()
            inside["recorded" if epoch in rec.schedule else "other"].append(time.perf_counter() - tick)
    if rec is not None:
        tick = time.perf_counter()
        rec.close()
        inside["close"] = time.perf_counter() - tick
    sync()
    total = time.perf_counter() - start
    spent = inside["create"] + sum(inside["recorded"]) + sum(inside["other"]) + inside["close"] + sum(inside["observe"])
    return total, spent, inside


def steady(per_epoch: list[float]) -> float:
    """Mean over the epochs after the first, whose time shares the cores with the background write of epoch 0."""
    return float(np.mean(per_epoch[1:] if len(per_epoch) > 1 else per_epoch))


def main() -> None:
    import actlab

    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((args.n_train, 3, 32, 32)).astype(np.float32)).to(args.device)
    y = torch.from_numpy(rng.integers(0, 10, args.n_train)).to(args.device)
    probes = np.arange(min(args.probes, args.n_train))
    work = Path(tempfile.mkdtemp(prefix="actlab-bench-recorder-"))
    try:
        every = lambda model: actlab.Recorder(model, out=work / "every", probes=(x[probes], y[probes]), epochs=args.epochs,
                                              record_epochs="every:1", overwrite=True)
        first = lambda model: actlab.Recorder(model, out=work / "first", probes=(x[probes], y[probes]), epochs=args.epochs,
                                              record_epochs="0", overwrite=True)
        with_train = lambda model: actlab.Recorder(model, out=work / "train", probes=probes, epochs=args.epochs,
                                                   record_epochs="0", train=(x, y), overwrite=True)
        observing = lambda model: actlab.Recorder(model, out=work / "observe", probes=probes, epochs=args.epochs,
                                                  record_epochs="0", train=(x, y), observe=True, overwrite=True)
        user_loop(args, x[:256], y[:256])  # warm-up
        base_1, _, _ = user_loop(args, x, y)
        t_every, in_every, times_every = user_loop(args, x, y, every)
        t_observe, _, times_observe = user_loop(args, x, y, observing, observe=True)
        base_2, _, _ = user_loop(args, x, y)
        _, _, times_first = user_loop(args, x, y, first)
        _, _, times_train = user_loop(args, x, y, with_train)
        base = (base_1 + base_2) / 2
        r = float(np.mean(times_every["recorded"]))
        q = steady(times_first["other"])
        per_sample = base / (args.epochs * args.n_train)
        cifar_epoch = 50000 * per_sample
        p4 = (40 * r + 260 * q) / (300 * cifar_epoch)
        e = (steady(times_train["other"]) - q) / args.n_train
        o = steady(times_observe["observe"]) / args.n_train
        q_o = steady(times_observe["other"])
        p6 = (o + (q_o - q) / args.n_train) / per_sample
        where = torch.cuda.get_device_name() if x.device.type == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"actlab.Recorder overhead: torch {torch.__version__}, {where}, MLP7 width {args.width}, "
              f"Adam, batch 128, {args.n_train} synthetic 3x32x32 samples, {args.epochs} epochs, {len(probes)} probes")
        print(f"    user loop without recorder (run 1 / run 4)   {base_1:7.2f} s / {base_2:.2f} s   (mean {base:.2f} s)")
        print(f"    with recorder, every epoch recorded (run 2)  {t_every:7.2f} s   ({100 * (t_every - base) / base:+.1f} % of "
              f"this short run; {in_every:.2f} s inside the recorder: creation with epoch 0 {times_every['create']:.2f} s, "
              f"close {times_every['close']:.2f} s)")
        print(f"    r  end_epoch at a recorded epoch             {r:7.3f} s")
        print(f"    q  end_epoch at an epoch not recorded        {q:7.4f} s")
        print(f"    T  one CIFAR-10 epoch of this loop           {cifar_epoch:7.1f} s   (50000 x {1e3 * per_sample:.3f} ms)")
        print(f"    P4 recorder overhead of the default run = (40 r + 260 q) / (300 T) = {100 * p4:+.2f} %   (target <= 5 %)")
        print(f"    e  per-epoch evaluation of train=, per sample {1e3 * e:7.4f} ms   "
              f"P5 = e / (train time per sample) = {100 * e / per_sample:+.1f} % per epoch (only with train=)")
        print(f"    o  observe, per training sample              {1e3 * o:7.4f} ms   q_o end_epoch not recorded {q_o:.4f} s")
        print(f"    P6 trajectories from observe = (o + (q_o - q) / n_train) / (train time per sample) = {100 * p6:+.2f} % "
              f"per epoch   (target <= 5 %; P5 of train= above)")
        training = t_observe - times_observe["create"] - times_observe["close"]
        print(f"    with observe, whole loop (run 3)             {t_observe:7.2f} s   without creation with epoch 0 "
              f"({times_observe['create']:.2f} s) and close: {training:.2f} s, {100 * (training - base) / base:+.1f} % over "
              "the plain loop's mean")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
