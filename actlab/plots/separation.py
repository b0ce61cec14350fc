"""Separation of the probe groups per layer over training (:mod:`actlab.analysis.separation`): heatmap and lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from actlab.plots.seeds import draw_band, replica_stack, replicas, seeds_title
from actlab.plots.style import layer_style, new_figure, set_epoch_axis, styled


GROUPINGS_SHOWN: dict[str, str] = {
    "noisy_by_original": "noisy probes grouped by ORIGINAL (true) label",
    "noisy_by_assigned": "noisy probes grouped by ASSIGNED (noisy) label",
}
"""The two groupings of noisy probes in separation figures -> how panel titles name them."""


def _epoch_ticks(ax: Axes, epochs: np.ndarray, axis: str = "x", max_ticks: int = 12) -> None:
    """Label an index axis of categorical epochs with (a subset of) the epoch numbers."""
    step = max(1, int(np.ceil(len(epochs) / max_ticks)))
    positions = np.arange(0, len(epochs), step)
    if positions[-1] != len(epochs) - 1:
        positions = np.append(positions[:-1] if len(epochs) - 1 - positions[-1] < step / 2 else positions, len(epochs) - 1)
    labels = [str(int(epochs[i])) for i in positions]
    if axis == "x":
        ax.set_xticks(positions, labels)
    else:
        ax.set_yticks(positions, labels)


def label_layer_epoch_axes(ax: Axes, layers: list[str], epochs: np.ndarray) -> None:
    """Layer names down the y axis and (a subset of) the recorded epochs along the x axis of a layer x epoch map."""
    ax.set_yticks(np.arange(len(layers)), layers)
    _epoch_ticks(ax, epochs)
    ax.set_xlabel("recorded epoch (evenly spaced columns)")
    ax.grid(False)


def floor_distance(results: Any, grouping: str) -> xr.DataArray:
    """Clean-noisy cosine minus the layer's noise floor, per seed: below 0 is a cosine lower than chance gives.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Node ``/separation``: ``cos_clean_<grouping>_mean`` and the floor ``cos_clean_halves_mean`` (the cosine
        between the class means of two random halves of the clean probes), dims (layer, epoch).

    Returns
    -------
    xr.DataArray
        Dims (seed, layer, epoch).
    """
    trees = replicas(results)
    return (replica_stack(trees, "separation", f"cos_clean_{grouping}_mean")
            - replica_stack(trees, "separation", "cos_clean_halves_mean"))


def fits_annotation(fig: Figure, ax: Axes, n_columns: int, n_rows: int, chars: int = 5, fontsize: float = 7.0) -> bool:
    """Whether a ``chars``-character number of ``fontsize`` points fits in each cell of an image of ``ax``."""
    box = ax.get_position()
    width, height = fig.get_size_inches() * np.array([box.width, box.height])
    return width / n_columns * 72 >= 0.62 * fontsize * chars + 4 and height / n_rows * 72 >= fontsize + 4


@styled
def plot_separation_heatmap(results: Any) -> Figure:
    """Clean-noisy signal separation as a layer x epoch heatmap of the distance to the noise floor.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Uses node ``/separation``, variables ``cos_clean_noisy_by_original_mean``,
        ``cos_clean_noisy_by_assigned_mean`` and ``cos_clean_halves_mean`` (layer, epoch); replicas of an
        ensemble show the median over seeds (their spread: :func:`plot_separation_lines`).

    Returns
    -------
    Figure
        Two heatmaps, one per grouping of noisy probes, each with its own colour bar centred on 0 = the noise
        floor: cosine between clean and noisy class means (averaged over classes) minus the floor; blue =
        below the floor = separated. Cells are annotated only where their numbers fit.
    """
    trees = replicas(results)
    layers = [str(v) for v in replica_stack(trees, "separation", "cos_clean_halves_mean")["layer"].values]
    fig, axes = new_figure(1, 2, width=11.0, height=0.42 * len(layers) + 2.3, sharey=True)
    for ax, (grouping, label) in zip(axes[0], GROUPINGS_SHOWN.items()):
        distance = floor_distance(trees, grouping).median("seed").transpose("layer", "epoch")
        epochs = distance["epoch"].values
        values = distance.values
        finite = values[np.isfinite(values)]
        reach = float(np.max(np.abs(finite))) if finite.size and np.max(np.abs(finite)) > 0 else 1.0
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", interpolation="nearest", cmap="RdBu_r",
                          norm=TwoSlopeNorm(0.0, -reach, reach), origin="upper")
        if fits_annotation(fig, ax, len(epochs), len(layers)):
            for (row, col), value in np.ndenumerate(values):
                if np.isfinite(value):
                    ax.text(col, row, f"{value:+.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(value) > 0.6 * reach else "black")
        ax.set_title(f"Clean vs {label}".replace(" grouped", "\ngrouped"))
        label_layer_epoch_axes(ax, layers, epochs)
        bar = fig.colorbar(image, ax=ax, shrink=0.9, pad=0.02)
        bar.set_label("cosine minus noise floor\n(< 0: separated)")
    axes[0, 0].set_ylabel("layer (input side at top)")
    median = "" if len(trees) == 1 else f"\nmedian over {len(trees)} seeds (spread: see the separation lines)"
    fig.suptitle(f"Clean-noisy separation by layer and epoch: distance of the cosine to its noise floor{median}")
    return fig


FLOOR_STYLE: dict[str, Any] = {"color": "black", "linestyle": (0, (4, 2)), "linewidth": 1.0}
"""The noise floor, 0 on a distance-to-floor axis: one black dashed line."""


def draw_separation(ax: Axes, results: Any, grouping: str, *, layers: Sequence[str] | None = None,
                    markersize: float = 2.5) -> None:
    """One line per layer (median over seeds, min-max band) of the clean-noisy cosine minus the noise floor.

    The noise floor (``cos_clean_halves_mean``: cosine between the means of two random halves of the clean
    probes) is the line at 0; a layer below it is separated. ``layers`` restricts the layers drawn.
    """
    distance = floor_distance(results, grouping)
    epochs = distance["epoch"].values
    for i, layer in enumerate(str(v) for v in distance["layer"].values):
        if layers is None or layer in layers:
            draw_band(ax, epochs, distance.sel(layer=layer), **layer_style(layer, i), marker="o", markersize=markersize,
                      label=layer)
    ax.axhline(0.0, **FLOOR_STYLE, zorder=3)


def floor_handle() -> Line2D:
    """Legend entry of the noise-floor line."""
    return Line2D([], [], **FLOOR_STYLE, label="noise floor (0): clean half\nvs clean half of a class")


def split_output(layers: Sequence[str]) -> list[list[str]]:
    """Layers in panels: the hidden layers, then the output layer on its own (its cosines span a wider range)."""
    hidden = [layer for layer in layers if layer != "output"]
    return [part for part in (hidden, [layer for layer in layers if layer == "output"]) if part]


@styled
def plot_separation_lines(results: Any, *, log_x: bool = False) -> Figure:
    """Clean-noisy signal separation over epochs as the distance to the noise floor, one line per layer.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Uses node ``/separation`` (``cos_clean_noisy_by_*_mean``, ``cos_clean_halves_mean``; dims layer,
        epoch); replicas of an ensemble are drawn as median lines with min-max bands.
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Columns: the two groupings of noisy probes (shared y axis per row). Rows: the hidden layers, and the
        output layer on its own so that its wider range does not squash them. y: cosine of clean and noisy
        class means (mean over classes) minus the layer's noise floor; 0 (dashed) is the floor.
    """
    trees = replicas(results)
    layers = [str(v) for v in replica_stack(trees, "separation", "cos_clean_halves_mean")["layer"].values]
    rows = split_output(layers)
    fig, axes = new_figure(len(rows), 2, width=10.5, height=3.2 + 1.6 * (len(rows) - 1), sharex=True, sharey="row",
                           height_ratios=[2.0, 1.0][:len(rows)])
    for r, row_layers in enumerate(rows):
        for ax, (grouping, label) in zip(axes[r], GROUPINGS_SHOWN.items()):
            draw_separation(ax, trees, grouping, layers=row_layers)
            if r == 0:
                ax.set_title(f"Clean vs {label}".replace(" grouped", "\ngrouped"))
            set_epoch_axis(ax, log_x=log_x, label=r == len(rows) - 1)
        axes[r, 0].set_ylabel("cosine minus floor\n(< 0: separated)" + ("\n(output layer)" if row_layers == ["output"] else ""))
    handles, labels = [], []
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.append(handle)
            labels.append(label)
    fig.legend([*handles, floor_handle()], [*labels, floor_handle().get_label()], loc="outside right center",
               frameon=False, title="layer")
    fig.suptitle(seeds_title("Clean-noisy separation over training: cosine of the class means minus the layer's noise floor",
                             len(trees)))
    return fig
