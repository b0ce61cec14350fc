"""From block statistics to results: the per-layer arrays of the fused pass and the analyses built from them.

:class:`Statistics` gathers the :class:`~actlab.analysis.blocks.BlockStats` of every (layer, epoch) block
and says when a layer is complete. Each analysis is an :class:`Assembly`: ``layer(name)`` builds one
layer's part as soon as that layer is complete (while the pass reads the next layers), and
``combine(parts)`` stacks the parts of all layers into result nodes. Both call the same functions as the
composable API, so the math lives in :mod:`~actlab.analysis.blocks` and the analysis modules only.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any, Protocol

import numpy as np
import xarray as xr

from actlab.analysis import blocks, large_activation, paths, separation
from actlab.analysis.blocks import GROUPINGS, BlockPlan, BlockStats, Moments
from actlab.analysis.pca import PCA, pca_trajectories
from actlab.analysis.run import Run

Node = xr.Dataset | dict[str, xr.Dataset]
"""One result node, or several keyed by child path (``""`` is the analysis node itself)."""


class Statistics:
    """Per-layer arrays filled block by block; memory is O(layers x epochs x (classes + top units) x units) until
    each layer's analyses have read them and :meth:`release` drops that layer's largest arrays.

    Parameters
    ----------
    run : Run
    plan : BlockPlan
    """

    def __init__(self, run: Run, plan: BlockPlan) -> None:
        n_epochs, n_classes = len(run.epochs), plan.n_classes
        self.run, self.plan = run, plan
        self.sums: dict[str, np.ndarray] = {}
        self.half_sums: dict[str, np.ndarray] = {}
        self.mean_abs: dict[str, np.ndarray] = {}
        self.max_abs: dict[str, np.ndarray] = {}
        self.moments: dict[str, Moments] = {}
        self.path_cosines: dict[str, np.ndarray] = {}
        self.null_clean_path: dict[str, dict[int, blocks.PackedPaths]] = {name: {} for name in run.layer_names}
        self.floor_null: dict[str, dict[int, np.ndarray]] = {name: {} for name in run.layer_names}
        self.last_top_units: dict[str, np.ndarray] = {}
        self.last_top_values: dict[str, np.ndarray] = {}
        self.predicted = np.full((n_epochs, run.n_samples), -1, dtype=np.int64)
        self.blocks_added = dict.fromkeys(run.layer_names, 0)
        self._moments_lock = threading.Lock()
        for name in run.layer_names:
            width = int(run.layer_specs[name]["width"])
            # the sums of a float32 block are float32 products (blocks.group_sums): kept in float32 without loss
            self.sums[name] = np.zeros((n_epochs, len(GROUPINGS), n_classes, width), dtype=np.float32)
            self.half_sums[name] = np.zeros((n_epochs, len(blocks.HALVES), n_classes, width), dtype=np.float32)
            self.mean_abs[name] = np.zeros((n_epochs, width))
            self.max_abs[name] = np.zeros((n_epochs, width))
            self.moments[name] = Moments(0, np.zeros(width), np.zeros((width, width)))
            self.path_cosines[name] = np.zeros((n_epochs, len(blocks.PATH_SOURCES), len(plan.test_index), n_classes),
                                               dtype=np.float32)

    def add(self, layer: str, index: int, stats: BlockStats) -> bool:
        """Store the statistics of block (``layer``, ``index``); True when that completes the layer.

        The first block's float64 moments of a layer become the layer's (a 4,096-unit layer's are 134 MB): the
        caller passes ``stats`` on and does not use its moments again."""
        self.sums[layer][index] = stats.sums
        self.half_sums[layer][index] = stats.half_sums
        self.mean_abs[layer][index] = stats.mean_abs
        self.max_abs[layer][index] = stats.max_abs
        with self._moments_lock:
            if stats.moments is not None and self.moments[layer].n == 0 and stats.moments.scatter.dtype == np.float64:
                self.moments[layer] = stats.moments  # the layer's first block: its moments taken over, not copied
            elif stats.moments is not None:
                self.moments[layer].update(stats.moments)
        self.path_cosines[layer][index] = stats.path_cosines
        if stats.null_clean_path is not None:  # packed: kept until the layer is assembled
            self.null_clean_path[layer][index] = blocks.PackedPaths.pack(stats.null_clean_path)
        if stats.floor_null is not None:
            self.floor_null[layer][index] = stats.floor_null
        if stats.top_values is not None:
            self.last_top_units[layer] = stats.top_units
            self.last_top_values[layer] = stats.top_values
        if stats.predicted is not None:
            self.predicted[index] = stats.predicted
        self.blocks_added[layer] += 1
        return self.is_complete(layer)

    def merge_moments(self, layer: str, moments: Moments) -> None:
        """Merge the moments of part of a block of ``layer`` (a range of its samples) into the layer's
        (thread-safe: blocks read in ranges hand their ranges' moments over from the worker threads)."""
        with self._moments_lock:
            self.moments[layer].update(moments)

    def release(self, layer: str) -> None:
        """Drop the largest per-epoch arrays of ``layer`` (its class sums, half sums and path cosines, its moments and
        its nulls) once every analysis has built its part of the layer: the pass then holds them for the layers it
        is reading, not for every layer (330 epochs of 3,000 probes: about 87 MB for each 512-unit layer).
        A released layer's arrays are gone: :meth:`means` and the analyses' ``layer`` raise KeyError for it."""
        with self._moments_lock:
            for arrays in (self.sums, self.half_sums, self.path_cosines, self.moments):
                arrays.pop(layer, None)
            self.null_clean_path[layer] = {}
            self.floor_null[layer] = {}

    def is_complete(self, layer: str) -> bool:
        """Whether every block of ``layer`` has been added."""
        return self.blocks_added[layer] == len(self.run.epochs)

    def means(self, layer: str) -> xr.DataArray:
        """Class means of ``layer`` (epoch, grouping, class, unit), float64."""
        return separation.means_dataarray(blocks.means_from_sums(self.sums[layer], self.plan.counts),
                                          xr.DataArray(self.run.epochs), xr.DataArray(np.arange(self.sums[layer].shape[-1])),
                                          self.plan.counts, layer)

    def sample_coords(self) -> dict[str, xr.Variable]:
        """The probe coords of dim ``sample``."""
        return {k: v.variable for k, v in self.run.probes["sample"].coords.items()}


class Assembly(Protocol):
    """One analysis built layer by layer from :class:`Statistics`."""

    def layer(self, name: str) -> Any:
        """This analysis's part for layer ``name``, once the layer is complete (thread-safe)."""

    def combine(self, parts: list[Any]) -> Node:
        """The result node(s) from the parts of all layers, in layer order."""


def layer_stack(datasets: list[xr.Dataset], names: list[str]) -> xr.Dataset:
    """Concatenate per-layer datasets along a new dim ``layer``.

    Attrs are the first dataset's, less the attr ``layer`` (the one layer a per-layer array names) on every
    variable that now has the dim ``layer``.
    """
    stacked = xr.concat(datasets, dim=xr.Variable("layer", names, {"long_name": "layer"}), combine_attrs="override")
    for variable in stacked.variables.values():
        if "layer" in variable.dims:
            variable.attrs.pop("layer", None)
    return stacked


class SeparationAssembly:
    """Node ``/separation``: cosines between class means of the groupings, with the clean-halves noise floor and
    the permutation test of the clean-noisy cosines against their floor (:func:`separation.floor_test`)."""

    def __init__(self, stats: Statistics) -> None:
        self.stats = stats

    def layer(self, name: str) -> xr.Dataset:
        stats, plan = self.stats, self.stats.plan
        halves = separation.half_means_dataarray(blocks.means_from_sums(stats.half_sums[name], plan.half_counts),
                                                 xr.DataArray(stats.run.epochs),
                                                 xr.DataArray(np.arange(stats.half_sums[name].shape[-1])), plan.half_counts)
        separated = separation.separation_from_means(stats.means(name), halves)
        found, epochs = stats.floor_null[name], stats.run.epochs
        indices = sorted(found)
        data = (np.stack([found[i] for i in indices]) if indices
                else np.zeros((0, len(blocks.FLOOR_GROUPINGS), plan.floor_permutations, plan.n_classes)))
        tested = separation.floor_test(separated, separation.floor_null_dataarray(data, epochs[indices], plan.n_classes))
        return separated.merge(tested).assign_attrs({**separated.attrs, **tested.attrs})

    def combine(self, parts: list[xr.Dataset]) -> xr.Dataset:
        out = layer_stack(parts, self.stats.run.layer_names)
        out["count"] = out["count"].isel(layer=0, drop=True)
        out["half_count"] = out["half_count"].isel(layer=0, drop=True)
        out.attrs["warnings"] = separation.empty_class_warnings(out["count"].values)  # the same in every layer
        out.attrs["seed"] = self.stats.plan.seed
        return out


class PCAAssembly:
    """Node ``/pca`` and a child per layer: the PCA fitted on the pooled moments and the class-mean trajectories."""

    def __init__(self, stats: Statistics, n_components: int, fit_indices: np.ndarray) -> None:
        self.stats, self.n_components, self.fit_indices = stats, n_components, fit_indices

    def layer(self, name: str) -> tuple[PCA, xr.DataArray]:
        fitted = PCA(self.n_components).fit_moments(self.stats.moments[name])
        return fitted, pca_trajectories(fitted, self.stats.means(name))

    def combine(self, parts: list[tuple[PCA, xr.DataArray]]) -> dict[str, xr.Dataset]:
        names = self.stats.run.layer_names
        pad = {"component": np.arange(max(fitted.components_.sizes["component"] for fitted, _ in parts))}
        node = layer_stack(
            [
                xr.Dataset({
                    "explained_variance_ratio": fitted.explained_variance_ratio_,
                    "explained_variance": fitted.explained_variance_,
                    "trajectory": trajectory,
                }).reindex(pad)
                for fitted, trajectory in parts
            ],
            names,
        )
        node.attrs.update(n_samples_seen={name: fitted.n_samples_seen_ for name, (fitted, _) in zip(names, parts)},
                          fit_epochs=[int(e) for e in self.stats.run.epochs[self.fit_indices]],
                          method="exact PCA of the activations of all probes pooled over fit_epochs: per-block mean and "
                                 "centred scatter merged in float64, eigh of the covariance")
        children = {name: xr.Dataset({"components": fitted.components_.reindex(pad), "mean": fitted.mean_})
                    for name, (fitted, _) in zip(names, parts)}
        return {"": node, **children}


class LargeActivationAssembly:
    """Node ``/large_activation`` and a child per layer: the dominant unit and what explains its magnitude.

    ``features`` is a future of :func:`~actlab.analysis.large_activation.image_features` of the probe images.
    The explanation reads the output layer's predictions at the last epoch: the output layer must be complete
    before the other layers' parts are built.
    """

    def __init__(self, stats: Statistics, features: cf.Future, *, n_top: int, min_ratio_to_median: float,
                 min_ratio_to_second: float, n_permutations: int, n_bootstrap: int, seed: int) -> None:
        self.stats, self.features = stats, features
        self.n_top, self.n_permutations, self.n_bootstrap, self.seed = n_top, n_permutations, n_bootstrap, seed
        self.min_ratio_to_median, self.min_ratio_to_second = min_ratio_to_median, min_ratio_to_second

    def layer(self, name: str) -> tuple[xr.Dataset, xr.Dataset]:
        stats, run = self.stats, self.stats.run
        last = stats.predicted[-1]
        predicted = xr.DataArray(last, dims="sample") if np.all(last >= 0) else None
        mags = large_activation.magnitudes_dataset(stats.mean_abs[name], stats.max_abs[name], run.epochs,
                                                   np.arange(stats.mean_abs[name].shape[1]))
        found = large_activation.dominant_unit(mags, n_top=self.n_top, min_ratio_to_median=self.min_ratio_to_median,
                                               min_ratio_to_second=self.min_ratio_to_second)
        if int(stats.last_top_units[name][0]) != int(found["dominant_unit"]):
            raise RuntimeError(f"dominant unit of {name} disagrees between block and layer statistics")
        values = xr.DataArray(stats.last_top_values[name][0], dims="sample", coords=stats.sample_coords(),
                              name="dominant_unit_activation",
                              attrs={"long_name": f"|activation| of the dominant unit at epoch {run.epochs[-1]}", "units": "1"})
        explained = large_activation.explain_unit(values, run.probes, predicted, n_permutations=self.n_permutations,
                                                  n_bootstrap=self.n_bootstrap, seed=self.seed,
                                                  input_features=self.features.result())
        return (xr.merge([found, explained], combine_attrs="override").reindex(rank=np.arange(self.n_top)),
                xr.Dataset({**mags.data_vars, "dominant_unit_activation": values}))

    def combine(self, parts: list[tuple[xr.Dataset, xr.Dataset]]) -> dict[str, xr.Dataset]:
        names = self.stats.run.layer_names
        node = layer_stack([found for found, _ in parts], names)
        node.attrs.update(min_ratio_to_median=self.min_ratio_to_median, min_ratio_to_second=self.min_ratio_to_second,
                          n_permutations=self.n_permutations, n_bootstrap=self.n_bootstrap,
                          p_floor=1.0 / (1 + self.n_permutations), seed=self.seed,
                          explained_epoch=int(self.stats.run.epochs[-1]))
        return {"": node, **{name: child for name, (_, child) in zip(names, parts)}}


class PathsAssembly:
    """Node ``/paths``: clean or noisy path of every test probe, the split between correct and wrong predictions,
    and its permutation null. Reads the output layer's predictions at every epoch: the output layer must be
    complete before the other layers' parts are built."""

    SHARED = ("predicted", "correct", "relevant_class", "n_correct", "n_wrong")
    """Variables without a layer dim, the same in every layer's part."""

    def __init__(self, stats: Statistics, relevant: str, n_bootstrap: int) -> None:
        self.stats, self.relevant, self.n_bootstrap = stats, relevant, n_bootstrap
        self._counts: np.ndarray | None = None
        self._counts_lock = threading.Lock()

    def bootstrap_counts(self) -> np.ndarray:
        """The resamples of the test probes (:func:`~actlab.analysis.paths.bootstrap_counts`), drawn once for
        every layer's split null (thread-safe)."""
        with self._counts_lock:
            if self._counts is None:
                self._counts = paths.bootstrap_counts(len(self.stats.plan.test_index), self.n_bootstrap,
                                                      self.stats.plan.seed)
            return self._counts

    def layer(self, name: str) -> tuple[xr.Dataset, xr.Dataset]:
        stats, run, plan = self.stats, self.stats.run, self.stats.plan
        if np.any(stats.predicted < 0):
            raise RuntimeError("predictions from the output layer are missing")
        if len(plan.test_index) == 0:
            raise ValueError("the run has no test probes; path attribution needs them")
        predicted = xr.DataArray(stats.predicted, dims=("epoch", "sample"), coords={"epoch": run.epochs, **stats.sample_coords()})
        test = run.probes["sample"].isel(sample=plan.test_index)
        attributed = paths.attribute_paths(paths.cosines_dataarray(stats.path_cosines[name], run.epochs, test, plan.n_classes),
                                           predicted, self.relevant)
        found = self.stats.null_clean_path[name]  # packed; unpacked one epoch at a time
        null = paths.path_split_null_of(attributed, {int(run.epochs[i]): found[i].unpack for i in sorted(found)},
                                        plan.null_permutations, n_bootstrap=self.n_bootstrap, seed=plan.seed,
                                        counts=self.bootstrap_counts() if found else None)
        return attributed, null

    def combine(self, parts: list[tuple[xr.Dataset, xr.Dataset]]) -> xr.Dataset:
        shared = list(self.SHARED)
        node = layer_stack([attributed.drop_vars(shared).merge(null, combine_attrs="drop") for attributed, null in parts],
                           self.stats.run.layer_names)
        first, first_null = parts[0]
        node = node.merge(first[shared])
        counts = self.stats.plan.counts[[GROUPINGS.index(s) for s in blocks.PATH_SOURCES]]
        node.attrs.update(first.attrs, **first_null.attrs, warnings=separation.empty_class_warnings(counts),
                          first_epoch=int(self.stats.run.epochs[0]))
        return node
