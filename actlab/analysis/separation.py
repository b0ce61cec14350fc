"""Signal separation: cosine similarity of clean, noisy and test class-mean activations."""

from __future__ import annotations

import numpy as np
import xarray as xr

from actlab.analysis import blocks
from actlab.analysis.blocks import GROUPINGS, HALVES, SEED

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
    cos = xr.apply_ufunc(blocks.cosine, halves.sel(half=HALVES[0], drop=True), halves.sel(half=HALVES[1], drop=True),
                         input_core_dims=[["unit"], ["unit"]], dask="parallelized", output_dtypes=[np.float64])
    cos = cos.drop_vars("count", errors="ignore")
    return xr.Dataset({
        "cos_clean_halves": cos.assign_attrs(
            long_name="noise floor: cosine between the class means of two random halves of the clean probes", units="1"),
        "cos_clean_halves_mean": cos.mean("class", skipna=True).assign_attrs(
            long_name="mean over classes of cos_clean_halves (separation noise floor)", units="1"),
        "half_count": halves["count"].sel(half=HALVES[0], drop=True).drop_vars("count", errors="ignore").assign_attrs(
            long_name="clean probes in each half of a class", units="1"),
    })


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
    out = xr.Dataset(coords={"epoch": means["epoch"], "class": means["class"]})
    for name, (a, b, description) in PAIRS.items():
        cos = xr.apply_ufunc(
            blocks.cosine, means.sel(grouping=a, drop=True), means.sel(grouping=b, drop=True),
            input_core_dims=[["unit"], ["unit"]], dask="parallelized", output_dtypes=[np.float64],
        )
        out[name] = cos.drop_vars("count", errors="ignore").assign_attrs(
            long_name=f"cosine similarity, {description}", units="1")
        out[f"{name}_mean"] = out[name].mean("class", skipna=True).assign_attrs(
            long_name=f"mean over classes of {name}", units="1")
    out["count"] = counts.drop_vars("count", errors="ignore").assign_attrs(long_name="samples per grouping and class")
    if halves is not None:
        out = out.merge(noise_floor(halves))
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


def depth_trend(per_class: xr.DataArray, *, n_bootstrap: int = 999, seed: int = 0, level: float = 0.95) -> dict[str, float | int | None]:
    """Trend of a class-mean cosine with depth: the least-squares slope over layers, with a bootstrap interval.

    The slope is fitted to the mean over classes against the layer's depth (1, 2, ... in the given
    order); its interval resamples the classes with replacement (seeded) and refits, so it says
    whether the trend holds across classes or rests on a few of them.

    Parameters
    ----------
    per_class : xr.DataArray, dims (layer, class)
        One cosine per layer and class (e.g. ``cos_clean_noisy_by_original`` at one epoch).
    n_bootstrap : int
        Resamples of the classes.
    seed : int
        Seed of the resampling.
    level : float
        Coverage of the percentile interval.

    Returns
    -------
    dict
        ``slope`` (cosine per layer of depth), ``low``, ``high`` (the interval), ``n_layers``,
        ``n_bootstrap``; None values when fewer than two layers or no finite cosine.
    """
    values = np.asarray(per_class.transpose("layer", "class").values, dtype=float)
    keep = np.isfinite(values).all(axis=0)
    values = values[:, keep]
    out: dict[str, float | int | None] = {"slope": None, "low": None, "high": None, "n_layers": int(values.shape[0]),
                                          "n_bootstrap": int(n_bootstrap)}
    if values.shape[0] < 2 or values.shape[1] == 0:
        return out
    depth = np.arange(1, values.shape[0] + 1, dtype=float)
    centred = (depth - depth.mean()) / np.sum((depth - depth.mean()) ** 2)
    picks = np.random.default_rng(seed).integers(0, values.shape[1], size=(n_bootstrap, values.shape[1]))
    slopes = centred @ values[:, picks].mean(axis=2)
    tail = 100 * (1 - level) / 2
    out.update(slope=float(centred @ values.mean(axis=1)), low=float(np.percentile(slopes, tail)),
               high=float(np.percentile(slopes, 100 - tail)))
    return out
