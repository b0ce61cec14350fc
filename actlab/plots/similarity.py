"""Representation similarity (:mod:`actlab.analysis.similarity`): settling curves and the layer x layer map of a
run; the layer x epoch CKA between compared runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from actlab.plots.separation import fits_annotation, label_layer_epoch_axes
from actlab.plots.seeds import draw_band, replica_stack, replicas, seeds_title
from actlab.plots.style import PHASE_COLOR, layer_style, new_figure, set_epoch_axis, styled


@styled
def plot_similarity(results: Any, *, log_x: bool = False) -> Figure:
    """Each layer's debiased linear CKA to its final state over training, and the layer x layer CKA at the end.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Uses node ``/similarity``: ``cka_to_final`` (layer, epoch) and ``cka`` (layer, epoch_pair, layer_other,
        epoch_other); replicas of an ensemble are drawn as median lines with min-max bands and a median map.
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Left: one line per layer, with the settling threshold dashed; right: CKA between the layers at the last
        recorded epoch.
    """
    trees = replicas(results)
    to_final = replica_stack(trees, "similarity", "cka_to_final")
    pairs = replica_stack(trees, "similarity", "cka").median("seed")
    threshold = float(trees[0]["similarity"].attrs.get("settled_cka", 0.95))
    layers = [str(v) for v in to_final["layer"].values]
    fig, axes = new_figure(1, 2, width=11.0, height=4.0)
    left, right = axes[0]
    epochs = to_final["epoch"].values
    for i, layer in enumerate(layers):
        draw_band(left, epochs, to_final.sel(layer=layer), **layer_style(layer, i), marker="o", markersize=2.5, label=layer)
    left.axhline(threshold, color=PHASE_COLOR, linestyle="--", linewidth=0.8, label=f"settled: stays >= {threshold:g}")
    set_epoch_axis(left, log_x=log_x)
    left.set_ylabel("debiased linear CKA with the layer's final state")
    left.set_title(seeds_title("When does each layer settle?", len(trees)))
    left.legend(fontsize=7, loc="lower right")
    last = int(pairs["epoch_pair"].values[-1])
    values = pairs.sel(epoch_pair=last, epoch_other=last).transpose("layer", "layer_other").values
    image = right.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    for (row, col), value in np.ndenumerate(values):
        right.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color="black" if value > 0.6 else "white")
    right.set_xticks(np.arange(len(layers)), layers, rotation=45, ha="right")
    right.set_yticks(np.arange(len(layers)), layers)
    right.grid(False)
    right.set_title(f"CKA between layers at epoch {last}")
    fig.colorbar(image, ax=right, shrink=0.9, pad=0.02).set_label("debiased linear CKA")
    return fig


@styled
def plot_cka_between_runs(cka: Mapping[str, xr.Dataset], *, reference: str) -> Figure:
    """Debiased linear CKA of each compared run with the reference run, as layer x epoch maps.

    Parameters
    ----------
    cka : mapping of run name -> xr.Dataset
        ``cka_same`` (epoch, layer) of :func:`actlab.workflow.cka_between_runs`.
    reference : str
        The run they are compared with (named in the titles).

    Returns
    -------
    Figure
        One map per run (rows: layers, input side at top; columns: the recorded epochs both runs hold), on one colour
        scale from 0 (unrelated) to 1 (the same up to rotation and scale); cells are annotated where their numbers fit.
    """
    names = list(cka)
    layers = max((len(ds["layer"]) for ds in cka.values()), default=1)
    fig, axes = new_figure(len(names), 1, width=11.0, height=(0.42 * layers + 1.6) * len(names) + 0.4)
    image = None
    for ax, name in zip(axes[:, 0], names):
        values = cka[name]["cka_same"].transpose("layer", "epoch")
        epochs = values["epoch"].values
        image = ax.imshow(np.ma.masked_invalid(values.values), aspect="auto", interpolation="nearest", cmap="viridis",
                          vmin=0.0, vmax=1.0, origin="upper")
        if fits_annotation(fig, ax, len(epochs), len(values["layer"])):
            for (row, col), value in np.ndenumerate(values.values):
                if np.isfinite(value):
                    ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if value > 0.6 else "white")
        label_layer_epoch_axes(ax, [str(v) for v in values["layer"].values], epochs)
        ax.set_title(f"{name} with {reference}")
    fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.9, pad=0.02).set_label("debiased linear CKA, same layer")
    fig.suptitle("Representation similarity between runs, layer by layer and epoch by epoch")
    return fig
