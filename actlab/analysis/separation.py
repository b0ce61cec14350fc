"""Signal separation: cosine similarity of clean, noisy and test class-mean activations."""

from __future__ import annotations

import numpy as np
import xarray as xr

from actlab.analysis import blocks
from actlab.analysis.blocks import GROUPINGS

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


def separation_from_means(means: xr.DataArray) -> xr.Dataset:
    """Cosine similarities between class means of different groupings.

    Parameters
    ----------
    means : xr.DataArray, dims (epoch, grouping, class, unit)
        As returned by :func:`class_means`, with coord ``count`` (grouping, class).

    Returns
    -------
    xr.Dataset, dims (epoch, class)
        The :data:`PAIRS` variables (epoch, class), their ``_mean`` over classes (epoch,) and
        ``count`` (grouping, class); attrs ``warnings`` lists classes without samples.
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
    out.attrs["warnings"] = empty_class_warnings(counts.values, means.attrs.get("layer"))
    return out


def empty_class_warnings(counts: np.ndarray, layer=None) -> list[str]:
    """One message per (grouping, class) with no sample."""
    where = f" (layer {layer})" if layer not in (None, "None") else ""
    return [
        f"class {c} has no {GROUPINGS[g].replace('_', ' ')} probes{where}; its cosines are NaN"
        for g, c in zip(*np.nonzero(counts == 0))
    ]


def signal_separation(act: xr.DataArray, n_classes: int | None = None) -> xr.Dataset:
    """Clean/noisy/test signal separation of one layer.

    Parameters
    ----------
    act : xr.DataArray, dims (epoch, sample, unit)
    n_classes : int, optional

    Returns
    -------
    xr.Dataset, dims (epoch, class); see :func:`separation_from_means`
    """
    return separation_from_means(class_means(act, n_classes))
