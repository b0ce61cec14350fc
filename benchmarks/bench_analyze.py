"""Benchmark the fused analysis pass against one plain read of the same store.

Builds a synthetic run store through ``actlab.store.RunWriter`` (6 hidden layers x 512 units + a 10-unit
output layer, 3000 probes x 85 epochs = 3.14 GB raw float32 by default, the store the issue's numbers refer
to; ``--epochs 40`` = 1.48 GB), then, each in a fresh subprocess, (1) the plain read: what a user reading the store
with zarr pays, every (layer, epoch) block decoded once with the same thread pool (each chunk's CRC32C checked by the
codecs, no actlab check, no shard digest), through zarr-python's codec pipeline, through zarrs' where installed,
and through actlab's own shard decoder (``actlab.store.pipeline``), and (2) ``actlab.analysis.open_run`` (its
checks) then ``analyze`` (every block's shard checked against the digest committed with it as it is read: schema
5 reads its index and inner-chunk CRC32Cs, schema 4 hashes the whole shard) through the fastest, actlab's; prints
wall time, peak RSS of each and their ratios, interleaved reads / analyse / reads / ... with each analysis compared
with the mean of the reads either side, the CPU time of each, the per-block cost of each statistic, and the load
average. It never asserts.

    python benchmarks/bench_analyze.py                      # temp dir, 3.1 GB: about 2 minutes on 2 cores
    python benchmarks/bench_analyze.py --epochs 40          # 1.5 GB: about 1 minute
    python benchmarks/bench_analyze.py --dir /data/bench --epochs 20 --keep
    python benchmarks/bench_analyze.py --pca-epochs 8        # what fitting the PCA on fewer epochs saves
    python benchmarks/bench_analyze.py --scaling            # how time and memory grow with probes and with bytes
    python benchmarks/bench_analyze.py --memory-check       # peak RSS at 50,000 probes x 4,096 units (target < 1 GB)

``--scaling`` builds one store after another (each deleted once measured, unless ``--keep``): 3,000, 12,000 and
48,000 probes at about 3 GB (85, 21 and 5 epochs), and 3,000 probes at 0.74 GB (20 epochs) and 12 GB (330 epochs;
``--max-gb`` and ``--min-gb`` leave out stores above and below them), and prints for each the plain read (mean of the reads before and after),
the full analysis, their ratio and the analysis's peak RSS, side by side in one table. ``--memory-check`` builds
one hidden layer of 4,096 units and the output layer, 50,000 probes x 2 epochs (1.6 GB, 800 MB a block), and runs
the pass over the blocks alone, then the analysis, once each: both epochs are null and PCA epochs, so every block
statistic is computed on a block far above the block budget (``ACTLAB_BLOCK_BYTES``); then the analysis once more
with glibc's own cap on malloc arenas (``MALLOC_ARENA_MAX`` = 8 a core) instead of ``open_run``'s
(:mod:`actlab.analysis.allocator`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_store(run_dir: Path, *, layers: int, units: int, probes: int, epochs: int, classes: int, seed: int = 0) -> None:
    """Write a synthetic run with class structure, label noise and one large unit in hidden1."""
    from actlab.store import METRICS, LayerSpec, ProbeSet, RunWriter, Subsets

    rng = np.random.default_rng(seed)
    n_clean, n_noisy = probes * 7 // 15, probes * 3 // 15
    n_test = probes - n_clean - n_noisy
    group = np.repeat(np.array([0, 1, 2], dtype=np.int8), [n_clean, n_noisy, n_test])
    original = rng.integers(0, classes, probes)
    label = original.copy()
    label[group == 1] = (original[group == 1] + rng.integers(1, classes, n_noisy)) % classes
    images = rng.integers(0, 256, (probes, 3, 32, 32), dtype=np.uint8)
    probe_set = ProbeSet(images=images, dataset_index=np.arange(probes), group=group, label=label,
                         original_label=original, is_noisy=group == 1)
    specs = [LayerSpec(f"hidden{i + 1}", units, units, "relu", f"body.{2 * i}") for i in range(layers)]
    specs.append(LayerSpec("output", classes, units, "identity", "head"))
    writer = RunWriter.create(run_dir, config={"model": "synthetic"}, dataset={"class_names": [str(c) for c in range(classes)]},
                              layers=specs, probes=probe_set, subsets=Subsets.of_probes(probe_set),
                              record_epochs=list(range(epochs)), n_epochs=epochs - 1,
                              replace=True)
    centres = {s.name: rng.standard_normal((classes, s.width)).astype(np.float32) for s in specs}
    params = {}
    for epoch in range(epochs):
        preacts = {}
        for s in specs:
            x = rng.standard_normal((probes, s.width), dtype=np.float32)
            x += centres[s.name][label]
            if s.name == "hidden1":
                x[:, 0] += (epoch / epochs) * 40 * images[:, 0, 0, 0] / 255
            preacts[s.name] = x
        writer.write_epoch(epoch, preacts, params)
        loss = 1.0 + 0.3 * np.exp(-((epoch - epochs / 3) / (epochs / 10)) ** 2) + np.exp(-epoch / 3)
        writer.write_metrics({epoch: {**{m: 0.5 for m in METRICS}, "test_loss": loss, "train_noisy_acc": min(1, epoch / epochs * 1.5)}})
        print(f"\rwriting epoch {epoch + 1}/{epochs}", end="", file=sys.stderr)
    writer.mark_complete()
    print(file=sys.stderr)


def child(mode: str, run_dir: str, workers: int, settings: dict) -> None:
    """Run one measurement in this (fresh) process and print it as JSON."""
    import concurrent.futures as cf

    import zarr

    from actlab.analysis import analyze, open_run, summary
    from actlab.store import for_reading, read_attrs, read_slot, store_path

    baseline = _peak_rss_mb()
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    if mode == "read":
        # what a user reading the store with zarr pays: every layer's preact at every recorded epoch decoded (CRC32C
        # of each chunk checked by the codecs), through the pipeline chosen (read_slot); no actlab check, no shard digest
        store = store_path(run_dir)
        arrays = [for_reading(zarr.open_array(store / "layers" / spec["name"] / "preact", mode="r", zarr_format=3))
                  for spec in read_attrs(run_dir)["layers"]]
        with cf.ThreadPoolExecutor(workers) as pool:
            jobs = [(array, slot) for array in arrays for slot in range(array.shape[0])]
            total = sum(pool.map(lambda job: read_slot(*job).nbytes, jobs))
        extra = {"bytes": total, "open_s": 0.0}
    elif mode == "pass":  # the fused pass alone: every block read and reduced, PCA and nulls at every epoch
        from threadpoolctl import threadpool_limits

        from actlab.analysis import pipeline
        from actlab.analysis.assembly import Statistics

        run = open_run(run_dir)
        stats = Statistics(run, pipeline.block_plan(run))
        every = np.arange(len(run.epochs))
        with threadpool_limits(limits=1, user_api="blas"):
            pipeline._stream_blocks(stats, "post", every, every, lambda name: None, scheduler=None, max_workers=workers,
                                    progress=False, extras={}, budget=pipeline.chunked.block_bytes(), relevant="predicted")
        extra = {"open_s": 0.0}
    else:  # the analysis as a user runs it: the open (its checks) and every block read checked against its shard digest
        run = open_run(run_dir)
        opened = time.perf_counter() - start
        results = analyze(run, progress=False, max_workers=workers, **settings)
        found = summary(results)
        extra = {"errors": found["errors"], "large_activation": (found["large_activation"] or {}).get("layer"),
                 "double_descent": found["double_descent"]["present"] if found["double_descent"] else None,
                 "open_s": opened}
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    peak = _peak_rss_mb()
    print(json.dumps({"mode": mode, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "rss_after_imports_mb": baseline,
                      **extra}))


def _peak_rss_mb() -> float:
    """Peak RSS of this process (MB) since it was started: VmHWM, which starts afresh at exec. getrusage's
    ru_maxrss keeps the parent's RSS at the fork before the exec, so a child of a parent that built a large store
    reported that size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far, all its threads together."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def kernels(run_dir: str, n_blocks: int = 8) -> dict:
    """Median single-threaded CPU time of the read and of each block statistic, over ``n_blocks`` hidden blocks.

    CPU time of this process (BLAS limited to one thread; the read's CPU time includes its decoding threads),
    which other processes on a loaded machine lengthen less than they lengthen wall time.
    """
    from threadpoolctl import threadpool_limits

    from actlab.analysis import blocks, open_run, probes, similarity
    from actlab.analysis.pipeline import block_plan

    run = open_run(run_dir)
    plan = block_plan(run)
    predicted = np.stack([np.argmax(run.read_block(run.layer_names[-1], i), axis=1) for i in range(len(run.epochs))])
    extras = {"probes": probes.ProbesAlongTraining(run, run.layer_names),
              "cka": similarity.SimilarityAlongTraining(run, run.layer_names)}
    found: dict[str, np.ndarray] = {}
    steps = {
        "read": lambda name, i, x: run.read_block(name, i),
        "group sums": lambda name, i, x: found.update(
            sums=blocks.group_sums(x, plan.all_codes, plan.n_classes, plan.segments)[: len(blocks.GROUPINGS)]),
        "magnitudes": lambda name, i, x: blocks.unit_magnitudes(x, nonnegative=run.is_relu(name)),
        "path cosines": lambda name, i, x: blocks.path_cosines(x, found["sums"], plan.counts, plan.test_rows),
        "PCA moments": lambda name, i, x: blocks.Moments.from_block(x),
        "path null, every class": lambda name, i, x: blocks.null_clean_paths(x, plan),
        # what the pass computes for a hidden layer: each test probe's predicted class only
        "path null": lambda name, i, x: blocks.null_clean_paths(x, plan, predicted[i, plan.test_index]),
        "floor null": lambda name, i, x: [blocks.permuted_cosines(x, members, plan.n_classes)
                                          for members in (m.unpack() for m in plan.floor_members)],
        **{f"extra {name}": lambda name, i, x, extra=extra: extra.reduce(x) for name, extra in extras.items()},
    }
    times: dict[str, list[float]] = {step: [] for step in steps}
    picks = [(run.layer_names[k % (len(run.layer_names) - 1)], (k * 7) % len(run.epochs)) for k in range(n_blocks)]
    with threadpool_limits(limits=1, user_api="blas"):
        for name, i in picks:
            x = run.read_block(name, i)
            for step, call in steps.items():
                start = time.process_time()
                call(name, i, x)
                times[step].append(time.process_time() - start)
    return {step: 1000 * float(np.median(seconds)) for step, seconds in times.items()}


def print_kernels(run_dir: Path, pca_epochs: int) -> None:
    """Print :func:`kernels` with the load average."""
    from actlab.analysis.probes import PROBE_EPOCHS

    steps = kernels(str(run_dir))
    print("one block, CPU time (BLAS single-threaded), median of 8 (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items())
          + " (read: Run.read_block, which compares the shard's digest before decoding it: the SHA-256 of the whole shard "
          "in a schema-4 store, of its index and inner-chunk CRC32Cs from schema 5 on)"
          + f" (the PCA moments at {pca_epochs} epochs of each layer, the path and floor nulls at <= 4, when asked for "
          f"the probes at <= {PROBE_EPOCHS} (default) or every epoch and cka at every epoch); load average "
          f"{os.getloadavg()[0]:.2f}")


def measure(mode: str, run_dir: Path, workers: int, settings: dict, pipeline: str,
            env: dict[str, str] | None = None) -> dict:
    """One measurement in a fresh process, reading through ``pipeline`` (``ACTLAB_READ_PIPELINE``), with ``env``
    added to the environment."""
    from actlab.store import READ_PIPELINE_VARIABLE

    out = subprocess.run([sys.executable, __file__, "--child", mode, "--dir", str(run_dir), "--workers", str(workers),
                          "--settings", json.dumps(settings)], check=True, capture_output=True, text=True,
                         env={**os.environ, READ_PIPELINE_VARIABLE: pipeline, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


SCALING = (("3,000 probes x 85 epochs", 3000, 85), ("12,000 probes x 21 epochs", 12000, 21),
           ("48,000 probes x 5 epochs", 48000, 5), ("3,000 probes x 20 epochs", 3000, 20),
           ("3,000 probes x 330 epochs", 3000, 330))
"""The stores of ``--scaling``: three probe counts at about the same bytes, then 3,000 probes at 0.74 and 12 GB."""


def raw_bytes(layers: int, units: int, probes: int, epochs: int, classes: int) -> int:
    """Bytes of the float32 activations of a store built by :func:`build_store`."""
    return 4 * probes * (layers * units + classes) * epochs


def scaling(args: argparse.Namespace, base: Path, pipeline: str) -> None:
    """Build each :data:`SCALING` store in turn; read, analyse, read; print one table."""
    rows = []
    for label, n_probes, n_epochs in SCALING:
        size = raw_bytes(args.layers, args.units, n_probes, n_epochs, args.classes)
        if not args.min_gb <= size / 1e9 <= args.max_gb:
            print(f"{label} ({size / 1e9:.2f} GB): left out, outside --min-gb {args.min_gb} .. --max-gb {args.max_gb}")
            continue
        run_dir = base / f"run-{n_probes}x{n_epochs}"
        if not (args.reuse and run_dir.exists()):
            build_store(run_dir, layers=args.layers, units=args.units, probes=n_probes, epochs=n_epochs,
                        classes=args.classes)
        before = measure("read", run_dir, args.workers, {}, pipeline)
        analysis = measure("analyze", run_dir, args.workers, {}, pipeline)
        after = measure("read", run_dir, args.workers, {}, pipeline)
        plain = (before["wall_s"] + after["wall_s"]) / 2
        rows.append((f"{label} ({size / 1e9:.2f} GB)", plain, analysis["wall_s"], analysis["peak_rss_mb"],
                     os.getloadavg()[0]))
        print(f"{rows[-1][0]}: plain read {plain:.1f} s, full analysis {analysis['wall_s']:.1f} s, errors "
              f"{analysis['errors']}, load {rows[-1][-1]:.2f}", flush=True)
        if not args.keep:
            shutil.rmtree(run_dir)
    print(f"\nscaling, one round each, reads through {pipeline}, workers={args.workers}:")
    print("| store | plain read | full analysis | ratio | analysis peak RSS | load average after |")
    print("|---|---|---|---|---|---|")
    for label, plain, analysis, peak, load in rows:
        print(f"| {label} | {plain:.1f} s | {analysis:.1f} s | {analysis / plain:.2f} | {peak:.0f} MB | {load:.2f} |")


def memory_check(args: argparse.Namespace, base: Path, pipeline: str) -> None:
    """Peak RSS of the analysis of 50,000 probes of a 4,096-unit layer (2 epochs), against the 1 GB target."""
    run_dir = base / "run-50000x4096"
    if not (args.reuse and run_dir.exists()):
        build_store(run_dir, layers=1, units=4096, probes=50000, epochs=2, classes=args.classes)
    from actlab.analysis.allocator import ARENA_VARIABLE, MAX_ARENAS
    from actlab.analysis.chunked import block_bytes

    blocks = measure("pass", run_dir, args.workers, {}, pipeline)
    analysis = measure("analyze", run_dir, args.workers, {}, pipeline)
    # glibc's default cap, 8 arenas a core: open_run leaves the allocator alone when the variable is set
    uncapped = measure("analyze", run_dir, args.workers, {}, pipeline, env={ARENA_VARIABLE: str(8 * (os.cpu_count() or 1))})
    print(f"memory check: 1 hidden layer of 4,096 units + output, 50,000 probes x 2 epochs "
          f"({raw_bytes(1, 4096, 50000, 2, args.classes) / 1e9:.2f} GB, {50000 * 4096 * 4 / 1e6:.0f} MB a block), block "
          f"budget {block_bytes() / 2**20:.0f} MiB, workers={args.workers}: full analysis {analysis['wall_s']:.0f} s "
          f"(CPU {analysis['cpu_s']:.0f} s), peak RSS {analysis['peak_rss_mb']:.0f} MB (after imports "
          f"{analysis['rss_after_imports_mb']:.0f} MB; target < 1000) with {MAX_ARENAS} malloc arenas (open_run's "
          f"cap), {uncapped['peak_rss_mb']:.0f} MB with glibc's {8 * (os.cpu_count() or 1)} ({uncapped['wall_s']:.0f} s, "
          f"CPU {uncapped['cpu_s']:.0f} s); errors {analysis['errors']}; the pass over the "
          f"blocks alone (every block read and reduced, PCA moments and nulls at both epochs, no assembly) "
          f"{blocks['wall_s']:.0f} s, peak RSS {blocks['peak_rss_mb']:.0f} MB; load average {os.getloadavg()[0]:.2f}")
    if not args.keep:
        shutil.rmtree(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="where to build the store (default: a temporary directory)")
    parser.add_argument("--layers", type=int, default=6, help="hidden layers; an output layer is added (default 6)")
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--probes", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=85, help="recorded epochs (default 85: 3.14 GB; 40: 1.48 GB)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved analysis rounds (default 2)")
    parser.add_argument("--reuse", action="store_true", help="reuse an existing store in --dir")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    parser.add_argument("--pca-epochs", type=int, help="analyze's pca_epochs (default: analyze's own, 16)")
    parser.add_argument("--path-permutations", type=int, help="analyze's path_permutations (default: analyze's own, 199)")
    parser.add_argument("--extra", default="", help="also time analyze with these extras (e.g. probes,cka) in each round, "
                                                    "side by side with the analysis without them; with probes, also "
                                                    "with the probes at every recorded epoch (probe_epochs=None)")
    parser.add_argument("--scaling", action="store_true", help="print the scaling table (see above) instead")
    parser.add_argument("--max-gb", type=float, default=13.0, help="--scaling leaves out stores above this size")
    parser.add_argument("--min-gb", type=float, default=0.0, help="--scaling leaves out stores below this size")
    parser.add_argument("--memory-check", action="store_true",
                        help="peak RSS at 50,000 probes x 4,096 units instead (see above)")
    parser.add_argument("--kernels-only", action="store_true",
                        help="only build the store (unless --reuse finds it) and time the block statistics")
    parser.add_argument("--child", choices=["read", "pass", "analyze"], help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, str(args.dir), args.workers, json.loads(args.settings))
        return
    base = args.dir or Path(tempfile.mkdtemp(prefix="actlab-bench-"))
    run_dir = base / "run"
    try:
        if args.scaling or args.memory_check:
            fastest = "actlab"
            print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; reads through {fastest}")
            (scaling if args.scaling else memory_check)(args, base, fastest)
            return
        raw = raw_bytes(args.layers, args.units, args.probes, args.epochs, args.classes)
        print(f"store: {args.layers} hidden layers + output, {args.units} units, {args.probes} probes, {args.epochs} epochs "
              f"= {raw / 1e9:.2f} GB raw float32 at {run_dir}; {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.2f} at start")
        if not (args.reuse and run_dir.exists()):
            start = time.perf_counter()
            build_store(run_dir, layers=args.layers, units=args.units, probes=args.probes, epochs=args.epochs,
                        classes=args.classes)
            print(f"build: {time.perf_counter() - start:.1f} s")
        from actlab.store import read_attrs

        print(f"store schema version {read_attrs(run_dir)['schema_version']}")
        if args.kernels_only:
            from actlab.analysis.pipeline import PCA_EPOCHS

            print_kernels(run_dir, args.pca_epochs or PCA_EPOCHS)
            return
        # interleaved: reads through every pipeline, analyse, reads, analyse, ..., reads; each analysis (through the
        # fastest pipeline) is compared with the reads either side
        settings = {name: value for name, value in (("pca_epochs", args.pca_epochs),
                                                     ("path_permutations", args.path_permutations)) if value is not None}
        if settings:
            print(f"analyze settings: {settings} (they change what the analysis computes)")
        pipelines = ["zarr-python"] + (["zarrs"] if importlib.util.find_spec("zarrs") else []) + ["actlab"]
        fastest = pipelines[-1]
        print(f"read pipelines: {', '.join(pipelines)}; the analysis reads through {fastest}")
        reads = {p: [measure("read", run_dir, args.workers, settings, p)] for p in pipelines}
        analyses, extended, every_epoch = [], [], []
        extras = [name for name in args.extra.split(",") if name]
        for _ in range(args.rounds):
            analyses.append(measure("analyze", run_dir, args.workers, settings, fastest))
            if extras:
                extended.append(measure("analyze", run_dir, args.workers, {**settings, "extras": extras}, fastest))
            if "probes" in extras:  # side by side: the probes at every recorded epoch instead of the default subset
                every_epoch.append(measure("analyze", run_dir, args.workers,
                                           {**settings, "extras": extras, "probe_epochs": None}, fastest))
            for p in pipelines:
                reads[p].append(measure("read", run_dir, args.workers, settings, p))
        ratios: dict[str, list[float]] = {p: [] for p in pipelines}
        floors, over_floor, zarr_python_floors, cpu_allowed = [], [], [], []
        cores = min(args.workers, os.cpu_count() or 1)
        for i, analysis in enumerate(analyses):
            plain = {p: (reads[p][i]["wall_s"] + reads[p][i + 1]["wall_s"]) / 2 for p in pipelines}
            for p in pipelines:
                ratios[p].append(analysis["wall_s"] / plain[p])
            # no schedule can finish the analysis before its CPU time is spread over every core
            floors.append(analysis["cpu_s"] / cores / plain[fastest])
            zarr_python_floors.append(analysis["cpu_s"] / cores / plain["zarr-python"])
            cpu_allowed.append(1.3 * cores * plain["zarr-python"])  # the most CPU a ratio of 1.3 leaves the analysis
            over_floor.append(ratios[fastest][-1] / floors[-1])
            read_words = " | ".join(
                f"plain read {p} {plain[p]:.1f} s ({raw / 1e9 / plain[p]:.2f} GB/s, CPU "
                f"{(reads[p][i]['cpu_s'] + reads[p][i + 1]['cpu_s']) / 2:.1f} s, peak RSS {reads[p][i]['peak_rss_mb']:.0f} MB)"
                for p in pipelines)
            ratio_words = ", ".join(f"/ read {p} {ratios[p][-1]:.2f}" for p in pipelines)
            print(f"round {i + 1}: {read_words} | full analysis {analysis['wall_s']:.1f} s (open_run "
                  f"{analysis['open_s']:.2f} s of it; CPU {analysis['cpu_s']:.1f} s), "
                  f"peak RSS {analysis['peak_rss_mb']:.0f} MB (after imports {analysis['rss_after_imports_mb']:.0f} MB) "
                  f"| analysis {ratio_words}; CPU floor {floors[-1]:.2f} (ratio / floor {over_floor[-1]:.2f}); "
                  f"errors {analysis['errors']}; load {os.getloadavg()[0]:.2f}")
        from actlab.analysis.probes import PROBE_EPOCHS

        for i, (plain_analysis, with_extras) in enumerate(zip(analyses, extended)):
            subset = f" (probes at <= {PROBE_EPOCHS} epochs of each layer, the default)" if "probes" in extras else ""
            words = (f"round {i + 1} with extras {extras}{subset}: {with_extras['wall_s']:.1f} s (CPU "
                     f"{with_extras['cpu_s']:.1f} s), peak RSS {with_extras['peak_rss_mb']:.0f} MB | ratio to the "
                     f"analysis without them {with_extras['wall_s'] / plain_analysis['wall_s']:.2f}, CPU ratio "
                     f"{with_extras['cpu_s'] / plain_analysis['cpu_s']:.2f} (target <= 1.5); errors {with_extras['errors']}")
            if every_epoch:
                every = every_epoch[i]
                words += (f" || probes at every recorded epoch (probe_epochs=None): {every['wall_s']:.1f} s (CPU "
                          f"{every['cpu_s']:.1f} s), peak RSS {every['peak_rss_mb']:.0f} MB | ratio "
                          f"{every['wall_s'] / plain_analysis['wall_s']:.2f}, CPU ratio "
                          f"{every['cpu_s'] / plain_analysis['cpu_s']:.2f}; errors {every['errors']}")
            print(words)
        from actlab.analysis.pipeline import PCA_EPOCHS

        print_kernels(run_dir, settings.get("pca_epochs", PCA_EPOCHS))
        print(f"CPU floor of the ratio: the analysis's CPU time / ({cores} cores x plain read through {fastest}), median "
              f"{float(np.median(floors)):.2f}; no schedule of this work brings the ratio below it on this machine")
        print(f"the same floor against the plain read through zarr-python: median "
              f"{float(np.median(zarr_python_floors)):.2f}; a ratio of 1.3 leaves the analysis at most "
              f"{float(np.median(cpu_allowed)):.1f} s of CPU on {cores} cores, it took "
              f"{float(np.median([a['cpu_s'] for a in analyses])):.1f} s")
        print(f"targets, medians over {len(analyses)} rounds (workers={args.workers}): full analysis / plain read "
              f"zarr-python {float(np.median(ratios['zarr-python'])):.2f} (target <= 1.3); full analysis / plain read "
              f"{fastest} {float(np.median(ratios[fastest])):.2f} = {float(np.median(over_floor)):.2f} x its CPU floor "
              f"(target <= 1.15); max peak RSS of the analysis {max(a['peak_rss_mb'] for a in analyses):.0f} MB "
              f"(target < 1000); load average {os.getloadavg()[0]:.2f} at end (the benchmark alone accounts for about "
              f"{args.workers})")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
