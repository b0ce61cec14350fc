"""Where the whole-loop cost of ``Recorder(..., observe=True)`` comes from: interleaved rounds of six loops, split
into the recorder's own calls and the store writes running beside the loop (prints, never asserts).

The user's loop of bench_recorder.py (MLP7, Adam, batch 128, synthetic 3x32x32 data), each loop a fresh model:

    plain             no recorder
    observed          a bare ObservedEpoch fed every batch (no recorder, no store)
    recorder          a recorder without observe, epoch 0 recorded only (the default schedule's usual epoch)
    both              a recorder given every batch through observe, epoch 0 recorded only
    both, every       the same, every epoch recorded (activations of 1000 probes and every parameter)
    both, waited      "both", the loop waiting at each end_epoch until the store writes it queued are done (a
                      diagnosis: the writes then never run beside the training steps)

Each round runs every kind once, in an order rotated from round to round (no kind always first or last). Per kind,
the median over the rounds of: the loop's time without the recorder's creation and close; the same without its
first epoch ("steady": epoch 1 runs beside the background write of epoch 0, queued at the creation; a 300-epoch run
has that once); the time inside observe/add and inside end_epoch/take; and "writes", the time the background
writer spent on store writes while the loop ran (the write calls timed in the writer thread, cut to the loop).
On a GPU this loop is bound by kernel launches and the host's Python: a thread that holds the interpreter lock
(GIL) delays every launch of the training thread, so "writes" beside a loop can cost that loop more than their
own time would suggest. (A first version ran "both, waited" instead of "both, 2 s": the loop waiting at each
end_epoch until the writes it queued were done, so that they never ran beside the training steps; see
docs/benchmarks/bench_observe_h200.txt.)

    python benchmarks/bench_observe.py --device cuda --n-train 20000 --width 512 --epochs 8 --rounds 4
    python benchmarks/bench_observe.py --n-train 2000 --width 16 --epochs 3 --rounds 2 --threads 1   # a CPU check of the script
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

import actlab
from actlab.record import make_mlp
from actlab.record import recorder as recorder_module
from actlab.record.observed import ObservedEpoch
from actlab.record.recorder import COMMIT_SECONDS

KINDS = ("plain", "observed", "recorder", "both", "both, every", "both, 2 s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--n-train", type=int, default=20000, help="training samples (default: 20000)")
    parser.add_argument("--width", type=int, default=512, help="hidden width of MLP7 (default: 512)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per loop (default: 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser.parse_args()


SPANS: list[tuple[float, float]] = []
"""(start, end) of every store write of a recorder, timed in the thread that ran it."""


def time_store_writes() -> None:
    """Make every store write of :class:`~actlab.store.RunWriter` that a recorder queues append its span to
    :data:`SPANS` (the class's methods wrapped: the write of epoch 0, queued by a recorder's creation, included)."""
    from actlab.store import RunWriter

    for name in ("write_metrics", "write_dynamics", "write_epoch", "add_user_metrics"):
        method = getattr(RunWriter, name)

        def timed(self, *args, _method=method):
            start = time.perf_counter()
            try:
                return _method(self, *args)
            finally:
                SPANS.append((start, time.perf_counter()))

        setattr(RunWriter, name, timed)


def overlap(spans: list[tuple[float, float]], start: float, stop: float) -> float:
    """Seconds of ``spans`` inside [start, stop]."""
    return sum(max(0.0, min(b, stop) - max(a, start)) for a, b in spans)


def loop(kind: str, args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, work: Path) -> dict[str, float]:
    """One loop of ``kind``: its total and steady times, the time inside the recorder's calls and the writes beside."""
    device = x.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n = len(x)
    torch.manual_seed(0)
    model = make_mlp("mlp7", 3072, 10, args.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rec = obs = None
    recorder_module.COMMIT_SECONDS = 2.0 if kind == "both, 2 s" else COMMIT_SECONDS
    if kind.startswith("both"):
        rec = actlab.Recorder(model, out=work / kind, probes=np.arange(min(1000, n)), epochs=args.epochs,
                              record_epochs="every:1" if kind == "both, every" else "0", train=(x, y), observe=True,
                              overwrite=True)
    elif kind == "recorder":
        rec = actlab.Recorder(model, out=work / kind, probes=(x[:1000], y[:1000]), epochs=args.epochs, record_epochs="0",
                              overwrite=True)
    elif kind == "observed":
        labels = y.cpu().numpy()
        obs = ObservedEpoch(labels, labels, device, every_sample_once=True)
    inside_add = inside_end = 0.0
    generator = torch.Generator().manual_seed(0)
    sync()
    start = first_epoch_end = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(n, generator=generator)
        for first in range(0, n, 128):
            index = order[first:first + 128]
            on_device = index.to(device)
            logits, labels = model(x[on_device]), y[on_device]
            tick = time.perf_counter()
            if rec is not None and kind.startswith("both"):
                rec.observe(index, logits, labels)
            elif obs is not None:
                obs.add(index, logits, labels)
            inside_add += time.perf_counter() - tick
            loss = F.cross_entropy(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        tick = time.perf_counter()
        if rec is not None:
            rec.end_epoch(epoch)
        elif obs is not None:
            obs.take(epoch)
        inside_end += time.perf_counter() - tick
        if epoch == 1:
            sync()
            first_epoch_end = time.perf_counter()
    sync()
    stop = time.perf_counter()
    if rec is not None:
        rec.close()
    return {"total": stop - start, "steady": stop - first_epoch_end, "add": inside_add, "end": inside_end,
            "writes": overlap(SPANS, start, stop)}


def main() -> None:
    args = parse_args()
    time_store_writes()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((args.n_train, 3, 32, 32)).astype(np.float32)).to(args.device)
    y = torch.from_numpy(rng.integers(0, 10, args.n_train)).to(args.device)
    work = Path(tempfile.mkdtemp(prefix="actlab-bench-observe-"))
    try:
        loop("plain", args, x[:1024], y[:1024], work)  # warm-up
        rows: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        for r in range(args.rounds):
            for kind in KINDS[r % len(KINDS):] + KINDS[:r % len(KINDS)]:
                rows[kind].append(loop(kind, args, x, y, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {kind: {key: float(np.median([row[key] for row in rows[kind]])) for key in rows[kind][0]} for kind in KINDS}
    base = median["plain"]
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"{where}, torch {torch.__version__}, MLP7 width {args.width}, batch 128, n={args.n_train}, {args.epochs} epochs, "
          f"{args.rounds} rounds in rotated order; medians over the rounds, seconds; cost = over plain's median")
    print(f"  {'kind':14s} {'total':>7s} {'(range)':>15s} {'cost':>7s} {'steady':>7s} {'cost':>7s} "
          f"{'observe':>8s} {'end_epoch':>9s} {'writes':>7s}")
    for kind in KINDS:
        m, totals = median[kind], [row["total"] for row in rows[kind]]
        print(f"  {kind:14s} {m['total']:7.3f} ({min(totals):6.3f}-{max(totals):6.3f}) "
              f"{100 * (m['total'] - base['total']) / base['total']:+6.1f}% {m['steady']:7.3f} "
              f"{100 * (m['steady'] - base['steady']) / base['steady']:+6.1f}% {m['add']:8.3f} {m['end']:9.3f} "
              f"{m['writes']:7.3f}")


if __name__ == "__main__":
    main()
