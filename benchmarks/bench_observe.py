"""Where the whole-loop cost of ``Recorder(..., observe=True)`` comes from: interleaved rounds of four loops (prints,
never asserts).

The user's loop of bench_recorder.py (MLP7, Adam, batch 128, synthetic 3x32x32 data) run plain, with a bare
:class:`~actlab.record.observed.ObservedEpoch` fed every batch (no recorder, no store), with a recorder that records
epoch 0 only (no observe), and with a recorder given every batch through ``observe``; each loop's time without the
recorder's creation and close, the median of the rounds with its range. On a GPU, where this loop is bound by kernel
launches, the differences show which part slows the loop.

    python benchmarks/bench_observe.py --device cuda --n-train 20000 --width 512 --epochs 8 --rounds 3
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
from actlab.record.observed import ObservedEpoch

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
parser.add_argument("--n-train", type=int, default=20000, help="training samples (default: 20000)")
parser.add_argument("--width", type=int, default=512, help="hidden width of MLP7 (default: 512)")
parser.add_argument("--epochs", type=int, default=8, help="epochs per loop (default: 8)")
parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
args = parser.parse_args()
device, n, width, epochs, rounds = args.device, args.n_train, args.width, args.epochs, args.rounds
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.standard_normal((n, 3, 32, 32)).astype(np.float32)).to(device)
y = torch.from_numpy(rng.integers(0, 10, n)).to(device)
work = Path(tempfile.mkdtemp())

def loop(kind: str) -> float:
    """Time of one loop of ``kind`` (seconds), without the recorder's creation and close."""
    torch.manual_seed(0)
    model = make_mlp("mlp7", 3072, 10, width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rec = obs = None
    if kind == "recorder+observe":
        rec = actlab.Recorder(model, out=work / kind, probes=np.arange(min(1000, n)), epochs=epochs, record_epochs="0", train=(x, y), observe=True, overwrite=True)
    elif kind == "recorder only":
        rec = actlab.Recorder(model, out=work / kind, probes=(x[:1000], y[:1000]), epochs=epochs, record_epochs="0", overwrite=True)
    elif kind == "ObservedEpoch alone":
        yc = y.cpu().numpy()
        obs = ObservedEpoch(yc, yc, torch.device(device), every_sample_once=True)
    g = torch.Generator().manual_seed(0)
    sync(); start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=g)
        for first in range(0, n, 128):
            index = order[first:first + 128]
            d = index.to(device)
            logits, labels = model(x[d]), y[d]
            if kind == "recorder+observe":
                rec.observe(index, logits, labels)
            elif obs is not None:
                obs.add(index, logits, labels)
            loss = F.cross_entropy(logits, labels)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if rec is not None:
            rec.end_epoch(epoch)
        elif obs is not None:
            obs.take(epoch)
    sync(); total = time.perf_counter() - start
    if rec is not None:
        rec.close()
    return total

kinds = ["plain", "ObservedEpoch alone", "recorder only", "recorder+observe"]
loop("plain")
times = {k: [] for k in kinds}
for r in range(rounds):
    for k in kinds:
        times[k].append(loop(k))
base = np.median(times["plain"])
print(f"{device} n={n} width={width} epochs={epochs} rounds={rounds}; loop time without creation/close, median (range)")
for k in kinds:
    t = np.array(times[k]); print(f"  {k:22s} {np.median(t):6.3f} s ({t.min():.3f}-{t.max():.3f})  {100*(np.median(t)-base)/base:+6.1f} %")
shutil.rmtree(work, ignore_errors=True)
