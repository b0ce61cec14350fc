"""The fused analysis pass: every (layer, epoch) block is read once and feeds all analyses.

:func:`analyze` streams the blocks through a bounded pool (local threads or a
dask.distributed cluster), reduces each to :class:`~actlab.analysis.blocks.BlockStats`
and assembles the five analyses from those statistics with the same
functions the composable API uses. :func:`summary` condenses the results into
headline findings; :func:`save_results` / :func:`load_results` persist them.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import xarray as xr
import zarr
from threadpoolctl import threadpool_limits
from zarr.codecs import Crc32cCodec

from actlab import __version__
from actlab.analysis import (
    blocks,
    chunked,
    curves,
    dynamics,
    inference,
    large_activation,
    paths,
    probes,
    separation,
    similarity,
)
from actlab.analysis.assembly import (
    Assembly,
    LargeActivationAssembly,
    Node,
    PathsAssembly,
    PCAAssembly,
    SeparationAssembly,
    Statistics,
)
from actlab.analysis.blocks import BlockPlan, BlockStats, Moments
from actlab.analysis.pca import N_COMPONENTS, PCA_EPOCHS, pca_epoch_indices
from actlab.analysis.run import KINDS, Run, open_run, read_block, sample_layout
from actlab.errors import ConfigError, StoreError
from actlab.files import ZARR_KIND_ATTR, staged_dir
from actlab.location import files, location, zarr_store
from actlab.progress import Progress
from actlab.store import default_compressors

ANALYSES: tuple[str, ...] = ("curves", "separation", "pca", "large_activation", "paths", "dynamics")

NO_DYNAMICS = ("the store holds no per-sample trajectories (recorded before schema 4, or without per-sample evaluation); "
               "record the run again with this actlab to get learned epochs, forgetting and the mislabel ranking")
"""The one line of a run whose sample-dynamics analyses are skipped."""
"""Result nodes, in report order."""

EXTRAS: dict[str, str] = {"probes": "probes", "cka": "similarity"}
"""Optional analyses (``analyze(extras=...)``, ``actlab analyze --extra``) -> the result node each adds. Each block
of the fused pass feeds them too (a :class:`BlockExtra`): linear probes per layer x epoch
(:class:`~actlab.analysis.probes.ProbesAlongTraining`) and debiased linear CKA along training
(:class:`~actlab.analysis.similarity.SimilarityAlongTraining`)."""


class BlockExtra(Protocol):
    """An optional analysis fed by the fused pass: ``reduce`` (picklable, run where the block is read) makes a small
    value of each (sample, unit) block of the recorded epochs ``indices``, ``add`` takes it in the pass's thread,
    ``result`` assembles the node."""

    reduce: Callable[[np.ndarray], Any]
    indices: np.ndarray

    def add(self, layer: str, index: int, value: Any) -> None: ...

    def result(self) -> xr.Dataset: ...

ANALYSIS_REVISION = 7
"""Version of what the analyses compute; raised whenever a criterion or result changes meaning, so that
saved results from before are recomputed instead of reused (2: double-descent criterion 5 looks from
``smooth_window`` epochs before the peak; 3: null baselines (separation noise floor, path-attribution
permutation null), ratio to the median of the active units, ``explained_by`` from a paired bootstrap; 4: the
separation's noise floor as a within-class permutation test, 199 path permutations, exact image PCA; 5: clean
samples learned only at a high plateau, the test-loss minimum also without an interior peak, best and final test
values; 6: the ``dynamics`` node and root attr ``skipped``; 7: a node stacked along ``layer`` names no single layer
in its variables' attrs, and ``/separation``'s warnings name none)."""


@dataclass(frozen=True)
class _BlockTask:
    """One (layer, epoch) block to read and reduce to :class:`BlockStats` (picklable, for cluster workers)."""

    layer: str
    index: int
    read: tuple[Any, ...]
    """Arguments of :func:`~actlab.analysis.run.read_block` (:meth:`~actlab.analysis.run.Run.read_args`)."""
    keep_top_values: bool
    predictions: bool
    moments: bool
    null: bool
    ranges: chunked.Ranges | None = None
    """Ranges of samples the block is read in (:func:`~actlab.analysis.chunked.sample_ranges`); None: at once."""
    extras: tuple[bool, ...] = ()
    """Which of the extras' reducers this block feeds (the epoch is among the extra's ``indices``)."""
    budget: int = chunked.BLOCK_BYTES
    """The block budget (:func:`~actlab.analysis.chunked.block_bytes`)."""
    relevant: np.ndarray | None = None
    """Each test probe's relevant class at this epoch, given to a null block when known (its path null is then
    computed at those classes only, :func:`~actlab.analysis.blocks.null_paths`)."""

    @property
    def relu(self) -> bool:
        """Whether the block is read through a ReLU (:func:`~actlab.analysis.run.read_block`'s ``relu``)."""
        return bool(self.read[4])

    def statistics(self, plan: BlockPlan, x: np.ndarray | None = None,
                   moments_sink: Callable[[Moments], None] | None = None) -> BlockStats:
        """Reduce this block to its statistics: ``x`` if given (read whole), else read at once or range by range
        (the shard's digest checked before the first range is used, not again for each range; each range's
        moments handed to ``moments_sink`` when given, :func:`~actlab.analysis.chunked.chunked_statistics`)."""
        flags = dict(keep_top_values=self.keep_top_values, predictions=self.predictions, moments=self.moments,
                     null=self.null, relevant=self.relevant, nonnegative=self.relu)
        if self.ranges is None:
            return blocks.block_statistics(read_block(*self.read) if x is None else x, plan, **flags)
        *where, digest = self.read
        checked: list[bool] = []

        def read_range(start: int, stop: int) -> np.ndarray:
            block = read_block(*where, None if checked else digest, (start, stop))
            checked.append(True)
            return block

        return chunked.chunked_statistics(read_range, self.ranges, plan, sums_budget=chunked.null_sums_bytes(self.budget),
                                          moments_sink=moments_sink, **flags)


def _read_and_reduce(task: _BlockTask, plan: BlockPlan, extras: Sequence[Callable[[np.ndarray], Any]],
                     gate: threading.Semaphore | None = None,
                     moments_sink: Callable[[str, Moments], None] | None = None) -> tuple[BlockStats, list[Any]]:
    """The block's statistics, and what each of ``extras`` makes of it (or the exception it raised: an optional
    analysis that fails stops only itself; None where the block does not feed it, ``task.extras``). A block read
    in ranges gives the extras it feeds, which need whole blocks, an error each; ``gate`` (local threads only) bounds
    how many of those are reduced at once, and ``moments_sink`` (local threads only) takes their ranges' moments,
    ``moments_sink(layer, moments)``."""
    if task.ranges is not None:
        too_large = ConfigError(f"layer {task.layer} is read in ranges of samples (a block is larger than the block "
                                f"budget of {task.budget} bytes) and this analysis needs whole blocks; raise "
                                "ACTLAB_BLOCK_BYTES")
        with gate if gate is not None else contextlib.nullcontext():
            sink = None if moments_sink is None else functools.partial(moments_sink, task.layer)
            return task.statistics(plan, moments_sink=sink), [too_large if wanted else None for wanted in task.extras]
    x = read_block(*task.read)
    made: list[Any] = []
    for reduce, wanted in zip(extras, task.extras):
        try:
            made.append(reduce(x) if wanted else None)
        except Exception as exc:
            made.append(exc)
    return task.statistics(plan, x), made


def _completed(executor: cf.Executor, tasks: Sequence[_BlockTask], plan: Any, extras: Any, in_flight: int,
               gate: threading.Semaphore | None = None, moments_sink: Callable[[str, Moments], None] | None = None,
               ready: Callable[[_BlockTask], _BlockTask | None] | None = None,
               ) -> Iterator[tuple[_BlockTask, tuple[BlockStats, list[Any]]]]:
    """Each task's block statistics and extras' values (:func:`_read_and_reduce`) as they complete, with at most
    ``in_flight`` blocks submitted at a time, in the order of ``tasks``.

    ``plan`` is the :class:`BlockPlan` and ``extras`` the reducers of the :class:`BlockExtra`, or their futures on
    a cluster (sent to the workers once, not with every task). ``gate`` (local threads only) bounds how many blocks
    read in ranges are reduced at once; ``moments_sink`` (local threads only) takes their ranges' moments.
    ``ready(task)`` gives the task as it is to be submitted, or None while it waits for what an earlier task's
    result (handed over by this iterator) brings: it is then submitted once a later call gives it.

    Raises
    ------
    RuntimeError
        A task still waits when no task is in flight.
    """
    pending: dict[cf.Future, _BlockTask] = {}
    queue = iter(tasks)
    waiting: _BlockTask | None = None
    try:
        while True:
            while len(pending) < in_flight:
                task = waiting if waiting is not None else next(queue, None)
                if task is None:
                    break
                waiting = None if ready is None or (prepared := ready(task)) is not None else task
                if waiting is not None:
                    break
                task = task if ready is None else prepared
                pending[executor.submit(_read_and_reduce, task, plan, extras, gate, moments_sink)] = task
            if not pending:
                if waiting is not None:
                    raise RuntimeError(f"block ({waiting.layer}, epoch index {waiting.index}) waits for a result no "
                                       "block in flight gives")
                return
            # the finished futures leave ``pending`` before they are yielded: while the next blocks are awaited, no
            # statistics already handed over are held here (a block's null paths alone can be 33 MB)
            finished = [(pending.pop(future), future) for future in cf.wait(pending, return_when=cf.FIRST_COMPLETED)[0]]
            while finished:
                task, future = finished.pop()
                result = future.result()
                del future
                yield task, result
                del result
    finally:
        for future in pending:
            future.cancel()


@contextlib.contextmanager
def _executor(scheduler: str | None, max_workers: int) -> Iterator[tuple[cf.Executor, Callable[[Any], Any]]]:
    """Local threads (``scheduler`` None) or a dask.distributed cluster's executor, closed on exit, and how to share an
    argument of every task: as it is with threads, scattered to every worker once on a cluster."""
    if scheduler is None:
        with cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="actlab-analyze") as pool:
            yield pool, lambda value: value
        return
    if not isinstance(scheduler, str):
        raise ConfigError(f"scheduler must be None or a dask.distributed address string; got {type(scheduler).__name__}")
    try:
        from distributed import Client
    except ImportError as exc:
        raise ConfigError("scheduler needs dask.distributed, which is not installed; run `pip install distributed`") from exc
    try:
        client = Client(scheduler)
    except Exception as exc:
        raise ConfigError(f"cannot connect to the dask scheduler at {scheduler} ({exc}); check the address") from exc
    try:
        yield client.get_executor(pure=False), lambda value: client.scatter(value, broadcast=True)
    finally:
        client.close()


def _combine(assembly: Assembly, parts: dict[str, cf.Future], layers: Sequence[str]) -> Node:
    return assembly.combine([parts[layer].result() for layer in layers])


def _stream_blocks(stats: Statistics, kind: str, pca_indices: np.ndarray, null_indices: np.ndarray,
                   layer_complete: Callable[[str], None], *, scheduler: str | None, max_workers: int, progress: bool,
                   extras: dict[str, BlockExtra], budget: int, relevant: str | None = None) -> dict[str, Exception]:
    """Read and reduce every block into ``stats`` and ``extras``, the output layer first; ``layer_complete(name)``
    is called as each layer's last block is in. Returns the first exception of each extra that failed on a block.
    A block larger than ``budget`` bytes is read in ranges of samples; on local threads, as many of those at once
    as the largest one's footprint (:func:`~actlab.analysis.chunked.range_footprint`) fits ``max_workers`` x
    ``budget`` times, at least one, since their moments and null sums do not shrink with the budget.

    With ``relevant`` (:data:`~actlab.analysis.paths.RELEVANT`), a null block is given its test probes' relevant
    classes (:func:`_relevant_classes`): a hidden layer's null block at epoch i is submitted once the output
    layer's block at epoch i is in, for ``"predicted"``."""
    run, plan = stats.run, stats.plan
    last, output = len(run.epochs) - 1, run.layer_names[-1]
    pca_set, null_set = set(pca_indices.tolist()), set(null_indices.tolist())
    ranges = {name: chunked.sample_ranges(*sample_layout(run.path, name, run.opened), budget) for name in run.layer_names}
    wanted = [set(extra.indices.tolist()) for extra in extras.values()]
    tasks = [
        _BlockTask(name, i, run.read_args(name, i, kind), keep_top_values=i == last, predictions=name == output,
                   moments=i in pca_set, null=i in null_set, ranges=ranges[name], budget=budget,
                   extras=tuple(i in indices for indices in wanted))
        for name in [output, *run.layer_names[:-1]] for i in range(len(run.epochs))
    ]
    footprints = [chunked.range_footprint(int(run.layer_specs[task.layer]["width"]), budget, plan, moments=task.moments,
                                          null=task.null) for task in tasks if task.ranges is not None]
    gate = (threading.BoundedSemaphore(max(1, min(max_workers, max_workers * budget // max(footprints))))
            if footprints and scheduler is None else None)
    with (_executor(scheduler, max_workers) as (executor, share),
          Progress(len(tasks), desc=f"analyze {Path(run.path).name}", unit="block", enabled=progress) as bar):
        reducers = share(tuple(extra.reduce for extra in extras.values())) if extras else ()
        failed: dict[str, Exception] = {}
        # on local threads the ranges' moments of a block read in ranges go straight into the layer's
        sink = stats.merge_moments if scheduler is None else None
        ready = None if relevant is None else functools.partial(_relevant_classes, stats, relevant)
        for task, (block, made) in _completed(executor, tasks, share(plan), reducers, 2 * max_workers, gate, sink,
                                              ready):
            if stats.add(task.layer, task.index, block):
                layer_complete(task.layer)
            for (name, extra), value, fed in zip(extras.items(), made, task.extras):
                if not fed:
                    continue
                if isinstance(value, Exception):
                    failed.setdefault(name, value)
                elif name not in failed:
                    extra.add(task.layer, task.index, value)
            del block, made  # not held while the next block is reduced (its moments alone can be 134 MB)
            bar.update(1)
    return failed


def _relevant_classes(stats: Statistics, relevant: str, task: _BlockTask) -> _BlockTask | None:
    """``task`` with its test probes' relevant classes when it is a null block of a run with test probes: their
    labels, or (``relevant="predicted"``) the output layer's predictions at its epoch, None while those are still
    to come; the output layer's own null blocks take every class (10 units make its products small)."""
    test_index = stats.plan.test_index
    if not task.null or not len(test_index):
        return task
    if relevant == "label":
        return replace(task, relevant=stats.run.probes["label"].values[test_index])
    if task.predictions:
        return task
    classes = stats.predicted[task.index, test_index]
    return replace(task, relevant=classes) if np.all(classes >= 0) else None


def _extra_result(extra: BlockExtra, failure: Exception | None) -> xr.Dataset:
    if failure is not None:
        raise failure
    return extra.result()


def null_epoch_indices(run: Run, learning_curves: xr.Dataset | None) -> np.ndarray:
    """Indices of the recorded epochs the path-attribution null is computed at.

    The first and the last recorded epoch and the :func:`phase_epochs` (from the learning curves, when
    they could be computed); at most four blocks per layer.
    """
    tree = xr.DataTree.from_dict({"/curves": learning_curves} if learning_curves is not None else {})
    wanted = {int(run.epochs[0]), *phase_epochs(tree, run.epochs).values()}
    return np.flatnonzero(np.isin(run.epochs, sorted(wanted)))


def analyze(
    run: Run | str | os.PathLike,
    *,
    progress: bool = True,
    scheduler: str | None = None,
    kind: str = "post",
    n_components: int = N_COMPONENTS,
    n_top: int = large_activation.N_TOP,
    min_ratio_to_median: float = large_activation.MIN_RATIO_TO_MEDIAN,
    min_ratio_to_second: float = large_activation.MIN_RATIO_TO_SECOND,
    n_permutations: int = large_activation.N_PERMUTATIONS,
    n_bootstrap: int = blocks.N_BOOTSTRAP,
    path_permutations: int = paths.PATH_PERMUTATIONS,
    floor_permutations: int = blocks.FLOOR_PERMUTATIONS,
    seed: int = blocks.SEED,
    relevant: str = paths.RELEVANT[0],
    pca_epochs: int | None = PCA_EPOCHS,
    max_workers: int | None = None,
    extras: Sequence[str] = (),
    probe_epochs: int | None = probes.PROBE_EPOCHS,
    block_bytes: int | None = None,
) -> xr.DataTree:
    """Run all analyses in one pass over the store.

    Parameters
    ----------
    run : Run or path
        An opened run or a run directory.
    progress : bool
        Show a tqdm bar over blocks (on a terminal or in Jupyter).
    scheduler : str, optional
        ``None`` for local threads, or a dask.distributed scheduler address (workers must see the run
        directory at the same path).
    kind : {"post", "pre"}
        Activations analysed (post-ReLU by default).
    n_components, n_top, min_ratio_to_median, min_ratio_to_second, n_permutations, seed, relevant
        Passed to the analyses, see ``docs/analysis.md``.
    n_bootstrap : int
        Resamples of the bootstrap intervals (large activation: input versus best output R^2; path attribution:
        excess of the split over its null).
    path_permutations : int
        Permutations of the path-attribution null, computed at the first, the last and the phase epochs only.
    floor_permutations : int
        Permutations of the separation's noise-floor test, computed at the same epochs.
    pca_epochs : int or None
        The PCA is fitted on the pooled activations of this many recorded epochs, evenly spaced, first and
        last included (``None``: every epoch). The unit x unit scatter matrix is the costliest block
        statistic, so fitting on a subset keeps the pass close to the cost of reading the store.
    max_workers : int, optional
        Blocks processed concurrently (default: CPU count); at most twice as many are in flight.
    extras : sequence of {"probes", "cka"}
        Optional analyses (:data:`EXTRAS`), fed by the same pass with ``seed`` and their own defaults (the
        probes' :data:`~actlab.analysis.probes.N_PERMUTATIONS`: a p-value floor low enough for Benjamini-Hochberg
        over a layer x epoch family); one that fails is named in ``errors`` and the others go on. They need whole
        blocks: on a layer read in ranges (``block_bytes``) they fail with that reason.
    probe_epochs : int or None
        The linear probes (``extras=["probes"]``) are computed at this many recorded epochs of each layer at most:
        the first, the phase epochs at which the findings are read, and the rest evenly spaced, the last included
        (:func:`~actlab.analysis.probes.probe_epoch_indices`); ``None``: every recorded epoch. A block costs more
        to probe than the rest of its statistics together. The ``/probes`` node's epochs are those probed.
    block_bytes : int, optional
        The block budget: a (layer, epoch) block larger than this many bytes is read in ranges of samples, two
        passes, its statistics combined from partial sums (:mod:`~actlab.analysis.chunked`; the same results up
        to float rounding). Default :envvar:`ACTLAB_BLOCK_BYTES`, else 64 MiB. Blocks read in ranges are reduced
        as many at once as their footprint (a range, and at PCA and null epochs the moments and the nulls' sums)
        fits ``max_workers`` x ``block_bytes``, at least one (on local threads). The image features of probes whose
        float32 pixels pass the budget are made before the pass instead of beside it.

    Returns
    -------
    xr.DataTree
        Nodes ``/curves``, ``/separation``, ``/pca``, ``/large_activation``, ``/paths``, and ``/probes`` and
        ``/similarity`` when asked for in ``extras``; root attrs ``errors`` maps each failed analysis to its message.

    Raises
    ------
    StoreError
        The store cannot be opened, a block cannot be read, or the store was replaced (``record --overwrite``)
        while it was read.
    ConfigError
        A parameter is invalid, or ``scheduler`` is given without dask.distributed.
    """
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}; got {kind!r}")
    if relevant not in paths.RELEVANT:
        raise ConfigError(f"relevant must be one of {paths.RELEVANT}; got {relevant!r}")
    for name, value in (("pca_epochs", pca_epochs), ("probe_epochs", probe_epochs)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 2):
            raise ConfigError(f"{name} must be None or an integer >= 2; got {value!r}")
    for name, value in (("n_components", n_components), ("n_top", n_top), ("n_permutations", n_permutations),
                        ("n_bootstrap", n_bootstrap), ("path_permutations", path_permutations),
                        ("floor_permutations", floor_permutations)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    if n_top < 2:
        raise ConfigError(f"n_top must be >= 2 (the dominance test compares rank 0 with rank 1); got {n_top}")
    unknown = sorted(set(extras) - set(EXTRAS)) if not isinstance(extras, str) else [extras]
    if unknown:
        raise ConfigError(f"extras must be a list drawn from {list(EXTRAS)}; got {unknown}")
    budget = chunked.block_bytes(block_bytes)
    run = run if isinstance(run, Run) else open_run(run)
    max_workers = int(max_workers or os.cpu_count() or 1)
    parameters = dict(kind=kind, n_components=n_components, n_top=n_top, min_ratio_to_median=min_ratio_to_median,
                      min_ratio_to_second=min_ratio_to_second, n_permutations=n_permutations, n_bootstrap=n_bootstrap,
                      path_permutations=path_permutations, floor_permutations=floor_permutations, seed=seed,
                      relevant=relevant, pca_epochs=pca_epochs, extras=[name for name in EXTRAS if name in extras],
                      probe_epochs=probe_epochs)
    with threadpool_limits(limits=1, user_api="blas"):  # parallel over blocks, not inside small BLAS calls
        return _analyze(run, kind, parameters, scheduler=scheduler, max_workers=max_workers, progress=progress,
                        budget=budget)


def block_plan(run: Run, *, n_top: int = large_activation.N_TOP, seed: int = blocks.SEED,
               null_permutations: int = paths.PATH_PERMUTATIONS,
               floor_permutations: int = blocks.FLOOR_PERMUTATIONS) -> BlockPlan:
    """The per-run constants of the fused pass (:class:`~actlab.analysis.blocks.BlockPlan`), from the run's probes."""
    probes = run.probes
    codes = blocks.grouping_codes(probes["group"].values, probes["label"].values, probes["original_label"].values)
    return BlockPlan(codes=codes, n_classes=run.n_classes, test_index=np.flatnonzero(probes["group"].values == "test"),
                     n_top=n_top, seed=seed, null_permutations=null_permutations,
                     floor_permutations=floor_permutations)


def _analyze(run: Run, kind: str, parameters: dict[str, Any], *, scheduler: str | None, max_workers: int,
             progress: bool, budget: int) -> xr.DataTree:
    n_components, n_top, relevant = parameters["n_components"], parameters["n_top"], parameters["relevant"]
    pca_indices = pca_epoch_indices(len(run.epochs), parameters["pca_epochs"])
    errors: dict[str, str] = {}
    nodes: dict[str, xr.Dataset] = {}

    def attempt(name: str, build: Callable[[], xr.Dataset | dict[str, xr.Dataset]]) -> None:
        try:
            built = build()
        except Exception as exc:  # isolate: the other analyses still run
            errors[name] = f"{type(exc).__name__}: {exc}"
            return
        for child, ds in (built.items() if isinstance(built, dict) else [("", built)]):
            nodes[f"/{name}/{child}" if child else f"/{name}"] = ds

    def image_features() -> np.ndarray:  # the images are read here and dropped once their features are made
        return large_activation.image_features(run.probe_images(), seed=parameters["seed"], max_bytes=budget)

    # the image features need the probe images only: they are made first, beside everything else (the plan, the
    # curves, the pass). Each analysis builds a layer's part as soon as the pass has all of that layer's blocks, on
    # threads beside the pass (the read leaves CPU free: it holds the GIL for most of its time); the other layers'
    # large-activation and path parts read the output layer's predictions, so the output layer is read first and
    # they wait for it
    with cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="actlab-assemble") as side:
        if 4 * int(np.prod(run.probes["image"].shape)) > budget:
            # float32 pixels beyond the block budget (50,000 CIFAR images: 614 MB): their features are made before
            # the pass, whose blocks their images, covariance and chunks (about 400 MB) would otherwise join; nothing
            # else runs meanwhile, so their BLAS products (the covariance) use every worker's core
            features: cf.Future = cf.Future()
            try:
                with threadpool_limits(limits=max_workers, user_api="blas"):
                    made = image_features()
                features.set_result(made)
            except Exception as exc:  # fails the large-activation analysis only, as on a side thread
                features.set_exception(exc)
        else:  # on a side thread while the pass reads
            features = side.submit(image_features)
        plan = block_plan(run, n_top=n_top, seed=parameters["seed"], null_permutations=parameters["path_permutations"],
                          floor_permutations=parameters["floor_permutations"])
        # the curves come before the pass: their phases place the path null
        attempt("curves", lambda: curves.learning_curves(run.metrics))
        if run.dynamics is not None:
            attempt("dynamics", lambda: dynamics.sample_dynamics(run.dynamics, seed=parameters["seed"]))
            skipped = {}
        else:
            skipped = {"dynamics": NO_DYNAMICS}
        null_indices = null_epoch_indices(run, nodes.get("/curves"))
        stats = Statistics(run, plan)
        extras: dict[str, BlockExtra] = {}
        own = {"probes": dict(probe_epochs=parameters["probe_epochs"], keep_epochs=null_indices), "cka": {}}
        for name, extra in (("probes", probes.ProbesAlongTraining), ("cka", similarity.SimilarityAlongTraining)):
            # with their own defaults: the probes' 999 permutations, for BH over a family
            if name in parameters["extras"]:
                try:
                    extras[EXTRAS[name]] = extra(run, run.layer_names, kind=kind, seed=parameters["seed"], **own[name])
                except Exception as exc:
                    errors[EXTRAS[name]] = f"{type(exc).__name__}: {exc}"
        assemblies: dict[str, Assembly] = {
            "separation": SeparationAssembly(stats),
            "pca": PCAAssembly(stats, n_components, pca_indices),
            "large_activation": LargeActivationAssembly(
                stats, features, n_top=n_top, min_ratio_to_median=parameters["min_ratio_to_median"],
                min_ratio_to_second=parameters["min_ratio_to_second"], n_permutations=parameters["n_permutations"],
                n_bootstrap=parameters["n_bootstrap"], seed=parameters["seed"]),
            "paths": PathsAssembly(stats, relevant, parameters["n_bootstrap"]),
        }
        parts: dict[str, dict[str, cf.Future]] = {name: {} for name in assemblies}

        waiting: list[str] = []  # layers complete before the output layer (blocks complete out of order)
        building: dict[str, int] = {}  # each submitted layer's parts not done yet
        building_lock = threading.Lock()

        def part_done(layer: str, _: cf.Future) -> None:
            with building_lock:
                building[layer] -= 1
                done = building[layer] == 0
            if done:  # every analysis has its part of the layer: its per-epoch arrays are no longer read
                stats.release(layer)

        def layer_complete(layer: str) -> None:
            waiting.append(layer)
            if stats.is_complete(run.layer_names[-1]):
                for complete in waiting:
                    building[complete] = len(assemblies)
                    for name, assembly in assemblies.items():
                        parts[name][complete] = side.submit(assembly.layer, complete)
                        parts[name][complete].add_done_callback(functools.partial(part_done, complete))
                waiting.clear()

        try:
            failed = _stream_blocks(stats, kind, pca_indices, null_indices, layer_complete, scheduler=scheduler,
                                    max_workers=max_workers, progress=progress, extras=extras, budget=budget,
                                    relevant=relevant)
            run.check_unchanged()  # every block was read from the store the run was opened on
        except BaseException as exc:
            side.shutdown(wait=True, cancel_futures=True)
            if isinstance(exc, StoreError):
                run.check_unchanged()  # a store replaced meanwhile explains a failed read better than damage does
            raise
        for name, assembly in assemblies.items():
            attempt(name, functools.partial(_combine, assembly, parts[name], run.layer_names))
    for name, extra in extras.items():
        attempt(name, functools.partial(_extra_result, extra, failed.get(name)))
    for ds in nodes.values():
        ds.attrs.setdefault("kind", kind)
    root = xr.Dataset(attrs={
        "run": str(run.path), "run_id": run.run_id or "", "store_digest": run.state_digest, "kind": kind, "epochs": [int(e) for e in run.epochs], "layers": list(run.layer_names),
        "n_classes": int(plan.n_classes), "actlab_version": __version__, "analysis_revision": ANALYSIS_REVISION,
        "errors": errors, "parameters": parameters, "skipped": skipped,
        "status": str(run.attrs.get("status")),
    })
    return xr.DataTree.from_dict({"/": root, **nodes})


# -- summary ------------------------------------------------------------------------------------------


def _number(value: Any) -> float | int | None:
    value = np.asarray(value).item() if np.ndim(value) == 0 else value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return value


def _epoch(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _dd_summary(node: xr.Dataset, curve: str) -> dict[str, Any]:
    dd = node.sel(curve=curve)
    out: dict[str, Any] = {"present": bool(dd["dd_present"]), "curve": curve}
    for name in ("first_min", "peak", "second_min"):
        out[f"{name}_epoch"] = _epoch(dd[f"dd_{name}_epoch"])
        out[name] = _number(float(dd[f"dd_{name}"]))
    out["final"] = _number(float(dd["dd_final"]))
    peak, final = out["peak"], out["final"]
    # the size of the second descent: how far the curve ends below its peak, relative to the peak
    out["descent"] = (peak - final) / abs(peak) if peak is not None and final is not None and peak != 0 else None
    out["instability_epoch"] = _epoch(dd["dd_instability_epoch"])
    return out


def _hidden_layers(results: xr.DataTree, node: xr.Dataset) -> list[str]:
    """Layers of ``node`` other than the output layer (the last one); all layers if that leaves none."""
    names = [str(n) for n in node["layer"].values]
    output = list(results.attrs.get("layers", names))[-1]
    return [n for n in names if n != output] or names


def phase_targets(results: xr.DataTree, last_epoch: int) -> dict[str, int]:
    """The epochs of the training phases themselves, before they are moved to a recorded epoch.

    ``test_loss_min``: first minimum of the smoothed test loss (its argmin when the curve has no interior peak,
    :func:`~actlab.analysis.curves.first_loss_minimum_epoch`); ``noisy_memorised``: noisy training samples
    fitted (accuracy on assigned labels >= 99 %); ``last``: ``last_epoch``. A phase that was not
    reached (or results without curves) is left out.
    """
    wanted: dict[str, Any] = {}
    if "curves" in results.children:
        curves = results["curves"].to_dataset()
        wanted["test_loss_min"] = _epoch(curves["test_loss_min_epoch"])
        wanted["noisy_memorised"] = _epoch(curves["noisy_fitted_epoch"])
    wanted["last"] = int(last_epoch)
    return {name: int(epoch) for name, epoch in wanted.items() if epoch is not None}


def phase_epochs(results: xr.DataTree, recorded: Sequence[int]) -> dict[str, int]:
    """The training phases at which layer-wise findings are read (:func:`phase_targets`), each moved to the
    nearest recorded epoch."""
    recorded = np.asarray(sorted(int(e) for e in recorded))
    if recorded.size == 0:
        return {}
    return {name: int(recorded[np.argmin(np.abs(recorded - epoch))])
            for name, epoch in phase_targets(results, int(recorded[-1])).items()}


def summary(results: xr.DataTree) -> dict[str, Any]:
    """Headline findings of :func:`analyze` results as a JSON-safe dict (keys in ``docs/analysis.md``)."""
    attrs = results.attrs
    errors = dict(attrs.get("errors", {}))
    out: dict[str, Any] = {"run": attrs.get("run"), "errors": errors}
    children = set(results.children)

    def section(name: str, node: str, build: Callable[[], Any]) -> None:
        if node not in children:
            out[name] = None
            return
        try:
            out[name] = build()
        except Exception as exc:
            out[name] = None
            errors[f"summary.{name}"] = f"{type(exc).__name__}: {exc}"

    def double_descent() -> dict[str, Any]:
        node = results["curves"].to_dataset()
        found = _dd_summary(node, "test_loss")
        found["test_error"] = _dd_summary(node, "test_error")
        return found

    def phases() -> dict[str, Any]:
        node = results["curves"].to_dataset()
        memorised = {f"{float(t):g}": _epoch(node["noisy_memorised_epoch"].sel(threshold=t)) for t in node["threshold"].values}
        return {"clean_learned": bool(node["clean_learned"]), "clean_learned_epoch": _epoch(node["clean_learned_epoch"]),
                "clean_plateau_acc": _number(float(node["clean_plateau_acc"])),
                "clean_learned_acc": float(node["clean_learned"].attrs["learned_acc"]),
                "clean_final_acc": _number(float(node["clean_final_acc"])),
                "noisy_memorised_epoch": memorised, "noisy_fitted_epoch": _epoch(node["noisy_fitted_epoch"])}

    def test_curve() -> dict[str, Any]:
        node = results["curves"].to_dataset()
        return {key: (_epoch if key.endswith("epoch") else _number)(float(node[var])) for key, var in (
            ("best_loss", "best_test_loss"), ("best_loss_epoch", "best_test_loss_epoch"), ("best_acc", "best_test_acc"),
            ("best_acc_epoch", "best_test_acc_epoch"), ("final_loss", "final_test_loss"), ("final_acc", "final_test_acc"),
            ("final_epoch", "final_epoch"))}

    def strongest_separation() -> dict[str, Any]:
        node = results["separation"].to_dataset()
        node = node.sel(layer=_hidden_layers(results, node))
        pairs = {g: f"cos_clean_{g}" for g in blocks.FLOOR_GROUPINGS}
        first = int(node["epoch"].values[0])
        floor_keys = {"floor": "_floor", "floor_low": "_floor_low", "floor_high": "_floor_high", "p_value": "_p_value"}

        # each (layer, epoch) variable read once into NumPy: a scalar .sel per value cost about 1 s on 7 layers
        tables = {var: node[var].transpose("layer", "epoch").values for var in node.data_vars
                  if set(node[var].dims) == {"layer", "epoch"}}
        layer_at = {name: i for i, name in enumerate(node["layer"].values.tolist())}
        epoch_at = {int(e): i for i, e in enumerate(node["epoch"].values.tolist())}

        def value(var: str, name: Any, epoch_value: int) -> float | None:
            return _number(float(tables[var][layer_at[name], epoch_at[epoch_value]])) if var in node else None

        def by_layer(epoch_value: int) -> dict[str, dict[str, Any]]:
            return {str(name): {**{g: value(f"{var}_mean", name, epoch_value) for g, var in pairs.items()},
                                **{f"{g}_{key}": value(var + suffix, name, epoch_value)
                                   for g, var in pairs.items() for key, suffix in floor_keys.items()},
                                **{f"{g}_epoch0": value(f"{var}_mean", name, first) for g, var in pairs.items()},
                                "noise_floor_halves": value("cos_clean_halves_mean", name, epoch_value)}
                    for name in node["layer"].values}

        def trends(epoch_value: int) -> dict[str, dict[str, Any]]:
            at, start = node.sel(epoch=epoch_value), node.sel(epoch=first)
            return {g: separation.depth_trend(at[var], None if epoch_value == first else start[var],
                                              seed=int(node.attrs.get("seed", 0)))
                    for g, var in pairs.items()}

        at_phases = {phase: {"epoch": e, "by_layer": by_layer(e), "depth_trend": trends(e)}
                     for phase, e in phase_epochs(results, node["epoch"].values).items()}
        last = at_phases["last"]["by_layer"] if "last" in at_phases else by_layer(int(node["epoch"].values[-1]))
        out = {"first_epoch": first, "first_epoch_is_initialisation": first == 0, "grouping": "noisy_by_original",
               "last_epoch": last, "at_phases": at_phases}
        # the strongest separation: the read (layer, epoch) cell whose cosine lies furthest below its own floor
        cells = [(at["by_layer"][layer]["noisy_by_original_floor"] - at["by_layer"][layer]["noisy_by_original"],
                  layer, at["epoch"]) for at in at_phases.values() for layer in at["by_layer"]
                 if at["by_layer"][layer]["noisy_by_original_floor"] is not None
                 and at["by_layer"][layer]["noisy_by_original"] is not None]
        if not cells:
            return {**out, **dict.fromkeys(("layer", "epoch", "cosine", "noise_floor", "noise_floor_low",
                                            "noise_floor_high", "floor_distance", "p_value", "cosine_epoch0"))}
        distance, layer, epoch = max(cells, key=lambda cell: cell[0])
        row = at_phases[next(p for p, at in at_phases.items() if at["epoch"] == epoch)]["by_layer"][layer]
        return {**out, "layer": layer, "epoch": epoch, "cosine": row["noisy_by_original"],
                "noise_floor": row["noisy_by_original_floor"], "noise_floor_low": row["noisy_by_original_floor_low"],
                "noise_floor_high": row["noisy_by_original_floor_high"], "floor_distance": distance,
                "p_value": row["noisy_by_original_p_value"], "cosine_epoch0": row["noisy_by_original_epoch0"]}

    def large() -> dict[str, Any]:
        node = results["large_activation"].to_dataset()
        hidden = _hidden_layers(results, node)
        last = node.sel(layer=hidden).isel(epoch=-1)
        dominant = last["is_dominant"].values
        candidates = np.flatnonzero(dominant) if dominant.any() else np.arange(len(hidden))
        ratio = last["ratio_to_median"].isel(rank=0).values[candidates]
        ratio = np.where(np.isnan(ratio), -np.inf, ratio)
        pick = hidden[int(candidates[int(np.argmax(ratio))])]
        row = node.sel(layer=pick)
        at = row.isel(epoch=-1)
        output_r2 = {str(t): _number(float(at["output_r2"].sel(target=t))) for t in node["target"].values}
        output_p = {str(t): _number(float(at["output_p_value"].sel(target=t))) for t in node["target"].values}
        n_permutations = int(node.attrs["n_permutations"])
        p_floor = 1.0 / (1 + n_permutations)
        top = at["top_mean_abs"].values
        at_phases = {
            phase: {"epoch": e, "mean_abs": _number(float(row["unit_mean_abs"].sel(epoch=e))),
                    "ratio_to_median": _number(float(row["unit_ratio_to_median"].sel(epoch=e)))}
            for phase, e in phase_epochs(results, node["epoch"].values).items()}
        return {
            "layer": pick, "unit": int(at["dominant_unit"]), "dominant": bool(at["is_dominant"]),
            "mean_abs": _number(float(top[0])), "ratio_to_median": _number(float(at["ratio_to_median"].isel(rank=0))),
            "ratio_to_second": _number(float(top[0] / top[1])) if len(top) > 1 and top[1] > 0 else None,
            "n_active": _epoch(at["n_active"]),
            "emergence_epoch": _epoch(at["emergence_epoch"]), "input_r2": _number(float(at["input_r2"])),
            "input_p_value": _number(float(at["input_p_value"])), "input_p_floor": p_floor, "output_r2": output_r2,
            "output_p_value": output_p, "output_p_floor": p_floor, "n_permutations": n_permutations,
            "best_output_target": str(at["best_output_target"].values),
            "r2_difference": _number(float(at["r2_difference"])), "r2_difference_low": _number(float(at["r2_difference_low"])),
            "r2_difference_high": _number(float(at["r2_difference_high"])), "explained_by": str(at["explained_by"].values),
            "at_phases": at_phases,
        }

    def path_split() -> dict[str, Any]:
        node = results["paths"].to_dataset()
        first = int(node["epoch"].values[0])
        n_permutations = int(node.attrs["n_permutations"])
        keys = {"split": "split", "null_mean": "split_null_mean", "null_low": "split_null_low",
                "null_high": "split_null_high", "excess": "split_excess", "excess_low": "split_excess_low",
                "excess_high": "split_excess_high", "p_value": "split_p_value"}

        # each variable read once into NumPy (layer, epoch[, permutation]), not a scalar .sel per value
        tables = {var: node[var].transpose("layer", "epoch").values
                  for var in ("clean_share_correct", "clean_share_wrong", *keys.values())}
        null = node["split_null"].transpose("layer", "epoch", "permutation").values
        epoch_at = {int(e): i for i, e in enumerate(node["epoch"].values.tolist())}

        def by_layer(epoch: int) -> dict[str, dict[str, Any]]:
            e, e0, split = epoch_at[int(epoch)], epoch_at[first], tables["split"]
            return {str(name): {
                "clean_share_correct": _number(float(tables["clean_share_correct"][i, e])),
                "clean_share_wrong": _number(float(tables["clean_share_wrong"][i, e])),
                **{key: _number(float(tables[var][i, e])) for key, var in keys.items()},
                "split_epoch0": _number(float(split[i, e0])),
                "split_gain": _number(float(split[i, e] - split[i, e0])),
                "gain_p_value": None if epoch == first else paths.split_change_p_value(
                    float(split[i, e]), float(split[i, e0]), null[i, e], null[i, e0]),
                "p_floor": 1.0 / (1 + n_permutations), "n_permutations": n_permutations,
            } for i, name in enumerate(node["layer"].values)}

        last = int(node["epoch"].values[-1])
        at_phases = {phase: {"epoch": e, "by_layer": by_layer(e)}
                     for phase, e in phase_epochs(results, node["epoch"].values).items()}
        return {"epoch": last, "first_epoch": first, "first_epoch_is_initialisation": first == 0,
                "by_layer": at_phases["last"]["by_layer"] if "last" in at_phases else by_layer(last), "at_phases": at_phases}

    def decodability() -> dict[str, Any]:
        node = results["probes"].to_dataset()
        keys = {"accuracy": "accuracy", "low": "accuracy_low", "high": "accuracy_high", "chance": "chance",
                "p_value": "p_value", "q_value": "q_value", "decodable": "decodable"}

        def by_layer(epoch: int) -> dict[str, dict[str, dict[str, Any]]]:
            at = node.sel(epoch=epoch)
            return {str(layer): {str(target): {key: _number(at[var].sel(layer=layer, target=target).values)
                                               for key, var in keys.items()}
                                 for target in node["target"].values}
                    for layer in node["layer"].values}

        last = int(node["epoch"].values[-1])
        return {"epoch": last, "n_permutations": int(node.attrs["n_permutations"]), "p_floor": float(node.attrs["p_floor"]),
                "fdr_level": float(node.attrs["fdr_level"]), "n_folds": int(node.attrs["n_folds"]),
                "by_layer": by_layer(last),
                "at_phases": {phase: {"epoch": e, "by_layer": by_layer(e)}
                              for phase, e in phase_epochs(results, node["epoch"].values).items()}}

    def settling() -> dict[str, Any]:
        node = results["similarity"].to_dataset()
        return {"settled_cka": float(node.attrs["settled_cka"]), "n_samples": int(node.attrs["n_samples"]),
                "settled_epoch": {str(layer): _epoch(node["settled_epoch"].sel(layer=layer))
                                  for layer in node["layer"].values},
                "at_phases": {phase: {"epoch": e, "cka_to_final": {
                    str(layer): _number(float(node["cka_to_final"].sel(layer=layer, epoch=e)))
                    for layer in node["layer"].values}}
                    for phase, e in phase_epochs(results, node["epoch"].values).items()}}

    recorded = [int(e) for e in attrs.get("epochs", [])]
    if recorded:
        nearest = phase_epochs(results, recorded)
        out["phase_epochs"] = {phase: {"phase_epoch": epoch, "recorded_epoch": nearest[phase]}
                               for phase, epoch in phase_targets(results, recorded[-1]).items()}
    section("double_descent", "curves", double_descent)
    section("phases", "curves", phases)
    section("test", "curves", test_curve)
    section("separation", "separation", strongest_separation)
    section("large_activation", "large_activation", large)
    section("paths", "paths", path_split)
    out["tests"] = family_decisions(out)
    if "probes" in children:
        section("probes", "probes", decodability)
    if "similarity" in children:
        section("similarity", "similarity", settling)
    section("dynamics", "dynamics", lambda: sample_dynamics_summary(results["dynamics"].to_dataset()))
    if attrs.get("skipped"):
        out["skipped"] = dict(attrs["skipped"])
    return json.loads(json.dumps(out, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _family_cells(found: dict[str, Any], family: str) -> list[tuple[dict[str, Any], str, str]]:
    """The tests of one family in a summary: (the dict holding the p-value, its p key, the name of the test) each
    once (a read epoch's rows under ``last_epoch`` or ``by_layer`` are the same dicts as under ``at_phases``)."""
    cells: list[tuple[dict[str, Any], str, str]] = []
    separation_found, paths_found, large = (found.get(name) for name in ("separation", "paths", "large_activation"))
    if family == "noise_floor" and separation_found:
        cells = [(row, f"{g}_p_value", f"{g}_below_floor") for at in separation_found["at_phases"].values()
                 for row in at["by_layer"].values() for g in blocks.FLOOR_GROUPINGS]
    if family == "depth_trend" and separation_found:
        cells = [(trend, "p_value", "changed") for at in separation_found["at_phases"].values()
                 for trend in at["depth_trend"].values()]
    if family == "path_split" and paths_found:
        cells = [(row, "p_value", "beyond_null") for at in paths_found["at_phases"].values()
                 for row in at["by_layer"].values()]
    if family == "split_change" and paths_found:
        cells = [(row, "gain_p_value", "gain_changed") for at in paths_found["at_phases"].values()
                 for row in at["by_layer"].values()]
    if family == "explained_by" and large:
        cells = [(large, "input_p_value", "input")] + [(large["output_p_value"], target, target)
                                                        for target in large["output_p_value"]]
    return list({(id(holder), key): (holder, key, name) for holder, key, name in cells}.values())


def family_decisions(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Benjamini-Hochberg within each family of :data:`actlab.analysis.inference.FAMILIES`, written into ``found``.

    Each tested cell gets its q-value next to its p-value (the p key with ``p_value`` replaced by ``q_value``)
    and its decision under the test's name (True: rejects at :data:`~actlab.analysis.inference.LEVEL`). The
    large activation's tests go to ``explained_by_q_value`` and ``explained_by_rejects`` (input and each output
    target), and its ``explained_by`` becomes :func:`explained_verdict`.

    Returns
    -------
    dict
        family name -> ``description``, ``method``, ``level``, ``size`` (tests with a p-value).
    """
    out = {}
    for family, description in inference.FAMILIES.items():
        cells = _family_cells(found, family)
        q_values = inference.benjamini_hochberg([holder.get(key) for holder, key, _ in cells])
        for (holder, key, name), q in zip(cells, q_values):
            if family == "explained_by":
                large = found["large_activation"]
                large.setdefault("explained_by_q_value", {})[name] = q
                large.setdefault("explained_by_rejects", {})[name] = inference.rejects(q)
            else:
                holder[key.replace("p_value", "q_value")] = q
                holder[name] = inference.rejects(q)
        out[family] = {"description": description, "method": inference.METHOD, "level": inference.LEVEL,
                       "size": sum(q is not None for q in q_values)}
    for family, decision, change in (("depth_trend", "changed", "change"), ("split_change", "gain_changed", "split_gain")):
        for holder, _, _ in _family_cells(found, family):
            holder["direction" if family == "depth_trend" else "gain_direction"] = direction(holder.get(decision),
                                                                                           holder.get(change))
    strongest = found.get("separation") or {}
    if strongest.get("layer") is not None:
        row = next(at for at in strongest["at_phases"].values() if at["epoch"] == strongest["epoch"])["by_layer"]
        strongest.update(q_value=row[strongest["layer"]]["noisy_by_original_q_value"],
                         below_floor=row[strongest["layer"]]["noisy_by_original_below_floor"])
    if found.get("large_activation"):
        found["large_activation"]["explained_by"] = explained_verdict(found["large_activation"])
    return out


def direction(rejected: bool | None, change: float | None) -> str | None:
    """``"increase"`` or ``"decrease"`` (the sign of ``change``) when its test rejected, ``"none"`` when it did
    not, None when it was not performed."""
    if rejected is None or change is None:
        return None
    return ("increase" if change > 0 else "decrease") if rejected else "none"


def explained_verdict(large: dict[str, Any]) -> str:
    """Rule: the large unit is explained by the *input* when the input's permutation test rejects in its family
    (Benjamini-Hochberg over the input and the three output targets), its CV R^2 is positive and the paired
    bootstrap interval of R^2(input) - R^2(best output) lies above 0; by the *output* when the best output
    target's test rejects, its R^2 is positive and that interval lies below 0; else *undecided*."""
    low, high = large.get("r2_difference_low"), large.get("r2_difference_high")
    best = large.get("best_output_target")
    best_r2 = (large.get("output_r2") or {}).get(best)
    rejects = large.get("explained_by_rejects") or {}
    if rejects.get("input") and (large.get("input_r2") or 0) > 0 and low is not None and low > 0:
        return "input"
    if rejects.get(best) and (best_r2 or 0) > 0 and high is not None and high < 0:
        return "output"
    return "undecided"


def sample_dynamics_summary(node: xr.Dataset) -> dict[str, Any]:
    """The ``dynamics`` section of :func:`summary`: epochs, per-group learned epochs and forgetting, the mislabel
    ranking's scores and its top-ranked samples (keys in ``docs/analysis.md``)."""
    n_permutations = int(node.attrs["n_permutations"])
    top = [{"train_sample": int(node["top_train_sample"].values[i]), "dataset_index": int(node["top_dataset_index"].values[i]),
            "label": int(node["top_label"].values[i]), "original_label": int(node["top_original_label"].values[i]),
            "is_noisy": bool(node["top_is_noisy"].values[i]), "aum": _number(float(node["top_aum"].values[i]))}
           for i in range(node.sizes.get("rank", 0))]
    return {
        "first_epoch": int(node.attrs["first_epoch"]), "last_epoch": int(node.attrs["last_epoch"]),
        "n_epochs": len(node.attrs["epochs"]), "skipped": str(node.attrs.get("skipped", "")) or None,
        "groups": dynamics.group_summary(node),
        "mislabel_ranking": {
            "score": "area under the margin, lowest first",
            **{name: _number(float(node[f"aum_{name}"])) for name in
               ("auc", "precision", "noise_rate", "null_mean", "null_high", "p_value")},
            "p_floor": 1.0 / (1 + n_permutations), "n_permutations": n_permutations,
        },
        "top_ranked": top,
    }


# -- persistence ---------------------------------------------------------------------------------------


def _variable_length_strings(ds: xr.Dataset) -> xr.Dataset:
    """Fixed-width unicode variables as object strings (Zarr v3 has a stable spec only for the latter)."""
    converted = {name: var.astype(object) for name, var in ds.variables.items() if var.dtype.kind == "U"}
    return ds.assign_coords({k: v for k, v in converted.items() if k in ds.coords}).assign(
        {k: v for k, v in converted.items() if k not in ds.coords})


def save_results(results: xr.DataTree, path: str | os.PathLike) -> Path:
    """Write results to a new Zarr folder, or replace results saved there before, atomically.

    ``path`` must be new, empty, or hold results saved by actlab (:func:`actlab.files.staged_dir`).
    """
    path = Path(path)
    with staged_dir(path, "results", marker_file=False) as built:
        write_results(results, built)
    return path


def write_results(results: xr.DataTree, path: str | os.PathLike) -> None:
    """Write results into the Zarr folder ``path`` (new or empty), marked as actlab results (``actlab_kind``).

    Every array ends its codecs with a CRC32C checksum, as in the run store, so that :func:`load_results` finds a
    flipped bit instead of returning a changed number.
    """
    portable = xr.DataTree.from_dict({node.path: _variable_length_strings(node.to_dataset(inherit=False))
                                      for node in results.subtree})
    portable.attrs[ZARR_KIND_ATTR] = "results"
    encoding = {node.path: {name: {"compressors": default_compressors()} for name in node.to_dataset(inherit=False).variables}
                for node in portable.subtree}
    portable.to_zarr(path, mode="a", zarr_format=3, consolidated=False, encoding=encoding)


def load_results(path: str | os.PathLike) -> xr.DataTree:
    """Read results written by :func:`save_results` (eagerly), from a local folder or a URL.

    Raises
    ------
    StoreError
        No results there, an array without a CRC32C checksum (written by an older actlab), or one whose chunk fails
        it (damaged); one line naming the array.
    """
    path = location(path)
    if files(path).size("zarr.json") is None:
        raise StoreError(f"{path} holds no saved analysis results; run `actlab analyze` first")
    store = zarr_store(path, read_only=True)
    try:
        arrays = list(_all_arrays(zarr.open_group(store, mode="r", zarr_format=3)))
    except Exception as exc:
        raise StoreError(f"{path}: saved results cannot be opened ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                         "they are damaged, run `actlab analyze` again") from exc
    for name, array in arrays:
        if not array.compressors or not isinstance(array.compressors[-1], Crc32cCodec):
            raise StoreError(f"{path}: array {name} has no CRC32C checksum (saved by an older actlab); run `actlab analyze` again")
    try:
        return xr.open_datatree(store, engine="zarr", consolidated=False, zarr_format=3).load()
    except Exception as exc:
        raise StoreError(f"{path}: saved results cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                         "they are damaged, run `actlab analyze` again") from exc


def _all_arrays(group: zarr.Group, prefix: str = "") -> Iterator[tuple[str, zarr.Array]]:
    """Every array below ``group``, with its path."""
    for name, member in group.members():
        if isinstance(member, zarr.Group):
            yield from _all_arrays(member, f"{prefix}{name}/")
        else:
            yield f"{prefix}{name}", member
