"""Cost of the integrity check of ``open_run`` (prints, never asserts), side by side with one read of the data.

``actlab.store.damaged_chunks`` reads the index of every committed shard, compares its digest with the one committed
with its epoch (``layers/shard_digest``), and reads it whole to check the CRC32C of each inner chunk. This benchmark writes a store of CIFAR-sized
MLP7 activations (3000 probes, 7 layers of 512 units, 7 weights of 512 x 512, 5 recorded epochs) and times, in
interleaved rounds (best kept), ``damaged_chunks`` and one read of every committed ``preact`` through ``open_store``,
the least an analysis reads.

    PYTHONPATH=. python benchmarks/bench_integrity.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixtures_store import planted_probes, planted_subsets  # noqa: E402

from actlab.store import LayerSpec, ParameterSpec, RunWriter, damaged_chunks, open_store  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="actlab-bench-integrity-"))
    try:
        run = work / "run"
        rng = np.random.default_rng(0)
        probes, _ = planted_probes(rng, n_clean=1000, n_noisy=1000, n_test=1000)
        layers = [LayerSpec(f"hidden{i + 1}", 512, 512, "relu", f"linear{i + 1}") for i in range(7)]
        params = [ParameterSpec(f"linear{i + 1}.weight", (512, 512), "float32") for i in range(7)]
        epochs = [0, 1, 2, 3, 4]
        writer = RunWriter.create(run, config={}, dataset={"class_names": [str(c) for c in range(4)]}, layers=layers,
                                  parameters=params, probes=probes, subsets=planted_subsets(probes),
                                  record_epochs=epochs, n_epochs=4)
        for epoch in epochs:
            writer.write_epoch(epoch, {spec.name: rng.standard_normal((len(probes), 512)).astype(np.float32) for spec in layers},
                               {spec.name: rng.standard_normal(spec.shape).astype(np.float32) for spec in params})
        size = sum(path.stat().st_size for path in run.rglob("*") if path.is_file())

        def read_every_preact() -> None:
            for ds in open_store(run).layers.values():
                ds["preact"].values

        best = {"damaged_chunks": float("inf"), "read every preact": float("inf")}
        for _ in range(3):
            for name, func in (("damaged_chunks", lambda: damaged_chunks(run)), ("read every preact", read_every_preact)):
                start = time.perf_counter()
                func()
                best[name] = min(best[name], time.perf_counter() - start)
        print(f"actlab integrity benchmark: store {size / 1e6:.0f} MB, {len(epochs)} recorded epochs x 7 layers "
              f"(3000 x 512) + 7 weights (512 x 512), local folder, best of 3 interleaved rounds, "
              f"load average {os.getloadavg()[0]:.1f}")
        for name, seconds in best.items():
            print(f"    {name:<22} {seconds:6.2f} s")
        print(f"    damaged_chunks / one read of every preact  {best['damaged_chunks'] / best['read every preact']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
