"""Signal separation: cosine similarity of clean, noisy and test class-mean activations."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from actlab.analysis import blocks
from actlab.analysis.blocks import FLOOR_GROUPINGS, FLOOR_PERMUTATIONS, GROUPINGS, HALVES, SEED

PAIRS: dict[str, tuple[str, str, str]] = {
    "cos_clean_noisy_by_original": ("clean", "noisy_by_original", "clean class c vs noisy probes whose ORIGINAL label is c"),
    "cos_clean_noisy_by_assigned": ("clean", "noisy_by_assigned", "clean class c vs noisy probes whose ASSIGNED label is c"),
    "cos_clean_test": ("clean", "test", "clean class c vs test class c"),
    "cos_noisy_by_original_test": ("noisy_by_original", "test", "noisy by original label c vs test class c"),
    "cos_noisy_by_assigned_test": ("noisy_by_assigned", "test", "noisy by assigned label c vs test class c"),
}
"""Separation variables: name -> (grouping a, grouping b, description)."""


def class_means(act: xr.DataArray, n_classes: int | None = None) -> xr.DataArray:
    """Mean activation per grouping and class.

    Parameters
    ----------
    act : xr.DataArray, dims (epoch, sample, unit)
        With probe coords ``group``, ``label``, ``original_label``.
    n_classes : int, optional
        Defaults to the largest label + 1.

    Returns
    -------
    xr.DataArray, float64, dims (epoch, grouping, class, unit)
        NaN where a (grouping, class) cell has no sample; lazy for dask input.
    """
    act = blocks.check_activations(act)
    codes = blocks.codes_of(act)
    n_classes = n_classes or blocks.infer_n_classes(act)
    counts = blocks.group_counts(codes, n_classes)
    sums = blocks.map_epochs(
        act, lambda x: blocks.group_sums(x, codes, n_classes), (len(GROUPINGS), n_classes, act.sizes["unit"]), np.float64
    )
    return means_dataarray(blocks.means_from_sums(sums, counts), act["epoch"], act["unit"], counts, act.name)


def half_means(act: xr.DataArray, n_classes: int | None = None, seed: int = SEED) -> xr.DataArray:
    """Mean activation of two random halves of the clean probes of each class (:func:`blocks.half_codes`).

    Parameters
    ----------
    act : xr.DataArray, dims (epoch, sample, unit)
        With probe coords ``group``, ``label``, ``original_label``.
    n_classes : int, optional
    seed : int
        Seed of the split into halves.

    Returns
    -------
    xr.DataArray, float64, dims (epoch, half, class, unit)
        With coord ``count`` (half, class); lazy for dask input.
    """
    act = blocks.check_activations(act)
    codes = blocks.codes_of(act)
    halves = blocks.half_codes(codes, seed)
    n_classes = n_classes or blocks.infer_n_classes(act)
    counts = blocks.group_counts(halves, n_classes)
    segments = blocks.segments_of(codes, blocks.onehot_groupings(halves, n_classes))  # the probe groups, as the fused pass
    sums = blocks.map_epochs(act, lambda x: blocks.group_sums(x, halves, n_classes, segments),
                             (len(HALVES), n_classes, act.sizes["unit"]), np.float64)
    return half_means_dataarray(blocks.means_from_sums(sums, counts), act["epoch"], act["unit"], counts)


def half_means_dataarray(means, epoch: xr.DataArray, unit: xr.DataArray, counts: np.ndarray) -> xr.DataArray:
    """Label an (epoch, half, class, unit) array of clean-half class means."""
    return xr.DataArray(
        means, dims=("epoch", "half", "class", "unit"),
        coords={"epoch": epoch.values, "half": list(HALVES), "class": np.arange(counts.shape[1]), "unit": unit.values,
                "count": (("half", "class"), counts, {"long_name": "samples per half and class"})},
        name="half_mean", attrs={"long_name": "class-mean activation of a random half of the clean probes", "units": "1"},
    )


def noise_floor(halves: xr.DataArray) -> xr.Dataset:
    """Cosine between the class means of two random halves of the clean probes: what no separation looks like.

    Parameters
    ----------
    halves : xr.DataArray, dims (epoch, half, class, unit)
        From :func:`half_means`.

    Returns
    -------
    xr.Dataset
        ``cos_clean_halves`` (epoch, class), ``cos_clean_halves_mean`` (epoch,) and ``half_count`` (class,).
    """
    cos = _cosines(halves, "half", [(HALVES[0], HALVES[1])])[:, 0]
    count = halves["count"].sel(half=HALVES[0])
    return xr.Dataset({  # the cosines keep the attrs of the half means, as xarray's ufuncs and reductions do
        "cos_clean_halves": (("epoch", "class"), cos, {**halves.attrs,
            "long_name": "noise floor: cosine between the class means of two random halves of the clean probes",
            "units": "1"}),
        "cos_clean_halves_mean": ("epoch", _class_mean(cos), {**halves.attrs,
            "long_name": "mean over classes of cos_clean_halves (separation noise floor)", "units": "1"}),
        "half_count": ("class", count.values, {**count.attrs, "long_name": "clean probes in each half of a class",
                                               "units": "1"}),
    }, coords={"epoch": halves["epoch"].variable, "class": halves["class"].variable})


def _cosines(means: xr.DataArray, dim: str, pairs: list[tuple[str, str]]) -> Any:
    """Cosines over ``unit`` between the class means at labels a and b of ``dim`` for each pair (a, b):
    (epoch, pair, class), NumPy, or dask for dask ``means`` (computed chunk by chunk as :func:`blocks.cosine`)."""
    labels = list(means[dim].values)
    a, b = ([labels.index(pair[k]) for pair in pairs] for k in (0, 1))
    data = means.transpose("epoch", dim, "class", "unit").data

    def cosines(x: np.ndarray) -> np.ndarray:
        return np.stack([blocks.cosine(x[:, i], x[:, j]) for i, j in zip(a, b)], axis=1)

    if isinstance(data, np.ndarray):
        return cosines(data)
    return data.rechunk({1: -1, 2: -1, 3: -1}).map_blocks(cosines, chunks=(data.chunks[0], (len(pairs),), data.chunks[2]),
                                                          drop_axis=3, dtype=np.float64)


def _class_mean(cos: Any) -> Any:
    """Mean over the last axis (class) of the finite cosines, NaN where none is (``np.nanmean``'s sums and counts,
    without its warning, whose filters are not thread-safe); NumPy or dask."""
    kept = ~np.isnan(cos)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(np.where(kept, cos, 0.0), axis=-1) / np.sum(kept, axis=-1, dtype=np.intp)


def floor_null(act: xr.DataArray, n_permutations: int = FLOOR_PERMUTATIONS, seed: int = SEED,
               n_classes: int | None = None) -> xr.DataArray:
    """Clean-noisy class-mean cosines with clean and noisy membership permuted within each class.

    Select the few epochs wanted first (``act.sel(epoch=[...])``): each costs ``n_permutations`` products of
    every class's clean and noisy probes.

    Parameters
    ----------
    act : xr.DataArray, dims (epoch, sample, unit)

    Returns
    -------
    xr.DataArray of float64, dims (epoch, grouping, permutation, class), grouping :data:`FLOOR_GROUPINGS`
    (:func:`actlab.analysis.blocks.permuted_cosines`; lazy for dask input)
    """
    act = blocks.check_activations(act)
    codes = blocks.codes_of(act)
    n_classes = n_classes or blocks.infer_n_classes(act)
    members = [blocks.null_memberships(codes, n_classes, n_permutations, seed, noisy=g) for g in FLOOR_GROUPINGS]
    data = blocks.map_epochs(act, lambda x: np.stack([blocks.permuted_cosines(x, m, n_classes) for m in members]),
                             (len(FLOOR_GROUPINGS), n_permutations, n_classes), np.float64)
    return floor_null_dataarray(data, act["epoch"].values, n_classes)


def floor_null_dataarray(data, epochs: np.ndarray, n_classes: int) -> xr.DataArray:
    """Label an (epoch, grouping, permutation, class) array of permuted clean-noisy cosines."""
    return xr.DataArray(data, dims=("epoch", "grouping", "permutation", "class"),
                        coords={"epoch": epochs, "grouping": list(FLOOR_GROUPINGS),
                                "permutation": np.arange(np.shape(data)[2]), "class": np.arange(n_classes)},
                        name="floor_null", attrs={"long_name": "clean-noisy class-mean cosine, clean/noisy membership "
                                                               "permuted within each class", "units": "1"})


def floor_test(separated: xr.Dataset, null: xr.DataArray) -> xr.Dataset:
    """The noise floor of the clean-noisy cosines as a permutation distribution, and the test against it.

    For each grouping g of :data:`FLOOR_GROUPINGS` the statistic is ``cos_clean_<g>_mean`` (the mean over
    classes of the cosine between a class's clean mean and its noisy mean); its null is the same mean over
    the same classes with clean and noisy membership permuted within each class (:func:`floor_null`), so the
    floor compares samples of the sizes observed (n clean against m noisy probes of each class). Under the
    hypothesis that a class's clean and noisy probes come from one distribution the test is exact at any
    n and m. A separation is a cosine lower than its floor: the p-value is one-sided,
    (1 + #{null <= observed}) / (1 + permutations).

    Parameters
    ----------
    separated : xr.Dataset
        :func:`separation_from_means` output (``cos_clean_<g>`` (epoch, class)).
    null : xr.DataArray, dims (epoch, grouping, permutation, class)
        :func:`floor_null` at some of ``separated``'s epochs.

    Returns
    -------
    xr.Dataset over ``separated``'s epochs, NaN at epochs without a null: for each grouping g
    ``cos_clean_<g>_null`` (epoch, permutation), ``cos_clean_<g>_floor`` (its mean), ``_floor_low``,
    ``_floor_high`` (2.5 and 97.5 % points) and ``_p_value`` (epoch,); attrs ``null_epochs``,
    ``floor_permutations``, ``p_floor``.
    """
    epochs = separated["epoch"].values
    n_permutations = null.sizes["permutation"]
    null_epochs = null["epoch"].values
    rows = [int(np.flatnonzero(epochs == epoch)[0]) for epoch in null_epochs]
    cells_of = null.transpose("epoch", "grouping", "permutation", "class").values  # read once, not per epoch
    groupings = list(null["grouping"].values)
    variables = {}
    for g in FLOOR_GROUPINGS:
        name = f"cos_clean_{g}"
        observed_of = separated[name].transpose("epoch", "class").values
        values = np.full((len(epochs), n_permutations), np.nan)
        p_value = np.full(len(epochs), np.nan)
        for k, i in enumerate(rows):
            observed = observed_of[i]
            cells = cells_of[k, groupings.index(g)]
            kept = np.isfinite(observed) & np.isfinite(cells).all(axis=0)
            if not kept.any():
                continue
            values[i] = cells[:, kept].mean(axis=1)
            p_value[i] = (1 + np.sum(values[i] <= observed[kept].mean())) / (1 + n_permutations)
        finite = np.isfinite(values).all(axis=1)
        low, high = (np.array([np.percentile(row, q) if ok else np.nan for row, ok in zip(values, finite)])
                     for q in (2.5, 97.5))
        with np.errstate(invalid="ignore"):
            floor = np.where(finite, values.mean(axis=1), np.nan)
        words = f"clean-noisy cosine ({g.replace('_', ' ')}) with clean/noisy membership permuted within each class"
        variables[f"{name}_null"] = (("epoch", "permutation"), values, {"long_name": f"mean over classes of the {words}",
                                                                       "units": "1"})
        variables[f"{name}_floor"] = ("epoch", floor, {"long_name": f"noise floor: mean of {name}_null", "units": "1"})
        variables[f"{name}_floor_low"] = ("epoch", low, {"long_name": f"2.5 % point of {name}_null", "units": "1"})
        variables[f"{name}_floor_high"] = ("epoch", high, {"long_name": f"97.5 % point of {name}_null", "units": "1"})
        variables[f"{name}_p_value"] = ("epoch", p_value, {
            "long_name": f"one-sided permutation p-value of {name}_mean below its floor: (1 + #{{null <= observed}}) / "
                         "(1 + permutations)", "units": "1"})
    return xr.Dataset(variables, coords={"epoch": epochs, "permutation": np.arange(n_permutations)},
                      attrs={"null_epochs": [int(e) for e in null_epochs], "floor_permutations": int(n_permutations),
                             "p_floor": 1.0 / (1 + n_permutations)})


def means_dataarray(means, epoch: xr.DataArray, unit: xr.DataArray, counts: np.ndarray, layer=None) -> xr.DataArray:
    """Label an (epoch, grouping, class, unit) array of class means."""
    n_classes = counts.shape[1]
    return xr.DataArray(
        means,
        dims=("epoch", "grouping", "class", "unit"),
        coords={
            "epoch": epoch.values,
            "grouping": list(GROUPINGS),
            "class": np.arange(n_classes),
            "unit": unit.values,
            "count": (("grouping", "class"), counts, {"long_name": "samples per grouping and class"}),
        },
        name="class_mean",
        attrs={"long_name": "class-mean activation", "units": "1", "layer": str(layer)},
    )


def separation_from_means(means: xr.DataArray, halves: xr.DataArray | None = None) -> xr.Dataset:
    """Cosine similarities between class means of different groupings.

    Parameters
    ----------
    means : xr.DataArray, dims (epoch, grouping, class, unit)
        As returned by :func:`class_means`, with coord ``count`` (grouping, class).
    halves : xr.DataArray, dims (epoch, half, class, unit), optional
        From :func:`half_means`: adds the :func:`noise_floor` variables.

    Returns
    -------
    xr.Dataset, dims (epoch, class)
        The :data:`PAIRS` variables (epoch, class), their ``_mean`` over classes (epoch,) and
        ``count`` (grouping, class); attrs ``warnings`` lists classes without samples and ``first_epoch``
        the first epoch (the initialisation when it is 0).
    """
    counts = means["count"]
    cos = _cosines(means, "grouping", [(a, b) for a, b, _ in PAIRS.values()])
    es, means_over_classes = ("epoch", "class"), _class_mean(cos)
    variables = {}  # one Dataset made from Variables, no alignment; the cosines keep the attrs of the means
    for k, (name, (_, _, description)) in enumerate(PAIRS.items()):
        variables[name] = (es, cos[:, k], {**means.attrs, "long_name": f"cosine similarity, {description}", "units": "1"})
        variables[f"{name}_mean"] = ("epoch", means_over_classes[:, k], {
            **means.attrs, "long_name": f"mean over classes of {name}", "units": "1"})
    variables["count"] = (("grouping", "class"), counts.transpose("grouping", "class").values, {
        **counts.attrs, "long_name": "samples per grouping and class"})
    if halves is not None:
        variables.update({name: var.variable for name, var in noise_floor(halves).data_vars.items()})
    out = xr.Dataset(variables, coords={"epoch": means["epoch"].variable, "class": means["class"].variable,
                                        "grouping": means["grouping"].variable})
    out.attrs["warnings"] = empty_class_warnings(counts.values, means.attrs.get("layer"))
    out.attrs["first_epoch"] = int(means["epoch"].values[0])
    return out


def empty_class_warnings(counts: np.ndarray, layer=None) -> list[str]:
    """One message per (grouping, class) with no sample."""
    where = f" (layer {layer})" if layer not in (None, "None") else ""
    return [
        f"class {c} has no {GROUPINGS[g].replace('_', ' ')} probes{where}; its cosines are NaN"
        for g, c in zip(*np.nonzero(counts == 0))
    ]


def signal_separation(act: xr.DataArray, n_classes: int | None = None, seed: int = SEED) -> xr.Dataset:
    """Clean/noisy/test signal separation of one layer, with its noise floor.

    Parameters
    ----------
    act : xr.DataArray, dims (epoch, sample, unit)
    n_classes : int, optional
    seed : int
        Seed of the clean halves of the noise floor (:func:`noise_floor`).

    Returns
    -------
    xr.Dataset, dims (epoch, class); see :func:`separation_from_means`
    """
    return separation_from_means(class_means(act, n_classes), half_means(act, n_classes, seed))


def depth_trend(per_class: xr.DataArray, first: xr.DataArray | None = None, *, n_bootstrap: int = 999, seed: int = 0,
                level: float = 0.95) -> dict[str, float | int | None]:
    """Trend of a class-mean cosine with depth, and its change since the first recorded epoch.

    The slope is the least-squares slope of the mean over classes against the layer's depth (1, 2, ... in
    the given order); it is the mean of the per-class slopes. With ``first`` (the same cosines at the first
    recorded epoch) the tested quantity is the change of slope since then: the untrained network already
    has a depth trend, so only a change says something about training. Its p-value is the exact two-sided
    sign-flip test over classes of the per-class slope changes
    (:func:`actlab.analysis.inference.sign_flip_p_value`); the intervals resample the classes with replacement
    (seeded) and refit. A falling cosine is a separation growing with depth.

    Parameters
    ----------
    per_class : xr.DataArray, dims (layer, class)
        One cosine per layer and class (e.g. ``cos_clean_noisy_by_original`` at one epoch).
    first : xr.DataArray, dims (layer, class), optional
        The same at the first recorded epoch.
    n_bootstrap : int
        Resamples of the classes.
    seed : int
        Seed of the resampling.
    level : float
        Coverage of the percentile intervals.

    Returns
    -------
    dict
        ``slope`` (cosine per layer of depth), ``low``, ``high`` (its interval), ``slope_first``, ``change``
        (= slope - slope_first), ``change_low``, ``change_high``, ``p_value`` (of the change; None without
        ``first``), ``n_classes``, ``n_layers``, ``n_bootstrap``; None values when fewer than two layers or no
        finite cosine.
    """
    from actlab.analysis.inference import sign_flip_p_value

    values = np.asarray(per_class.transpose("layer", "class").values, dtype=float)
    base = None if first is None else np.asarray(first.transpose("layer", "class").values, dtype=float)
    keep = np.isfinite(values).all(axis=0) & (True if base is None else np.isfinite(base).all(axis=0))
    out: dict[str, float | int | None] = {
        "slope": None, "low": None, "high": None, "slope_first": None, "change": None, "change_low": None,
        "change_high": None, "p_value": None, "n_classes": int(keep.sum()), "n_layers": int(values.shape[0]),
        "n_bootstrap": int(n_bootstrap)}
    if values.shape[0] < 2 or not keep.any():
        return out
    depth = np.arange(1, values.shape[0] + 1, dtype=float)
    centred = (depth - depth.mean()) / np.sum((depth - depth.mean()) ** 2)
    slopes = centred @ values[:, keep]  # per class
    picks = np.random.default_rng(seed).integers(0, len(slopes), size=(n_bootstrap, len(slopes)))
    tail = 100 * (1 - level) / 2
    resampled = slopes[picks].mean(axis=1)
    out.update(slope=float(slopes.mean()), low=float(np.percentile(resampled, tail)),
               high=float(np.percentile(resampled, 100 - tail)))
    if base is not None:
        changes = slopes - centred @ base[:, keep]
        resampled = changes[picks].mean(axis=1)
        out.update(slope_first=float((centred @ base[:, keep]).mean()), change=float(changes.mean()),
                   change_low=float(np.percentile(resampled, tail)), change_high=float(np.percentile(resampled, 100 - tail)),
                   p_value=sign_flip_p_value(changes))
    return out
