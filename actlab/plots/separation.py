"""Separation of the probe groups per layer over training (:mod:`actlab.analysis.separation`): heatmap and lines."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from actlab.plots.seeds import draw_band, replica_stack, replicas, seeds_title
from actlab.plots.style import PHASE_COLOR, layer_style, new_figure, set_epoch_axis, styled


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


def _separation_limits(separation: xr.Dataset) -> tuple[float, float]:
    values = np.concatenate([separation[f"cos_clean_{g}_mean"].values.ravel() for g in GROUPINGS_SHOWN])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-6:
        low, high = low - 0.05, high + 0.05
    return low, high


@styled
def plot_separation_heatmap(results: Any) -> Figure:
    """Clean-noisy signal separation as a layer x epoch heatmap, one panel per grouping of noisy probes.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Uses node ``/separation``, variables ``cos_clean_noisy_by_original_mean`` and
        ``cos_clean_noisy_by_assigned_mean`` (layer, epoch); replicas of an ensemble show the
        median over seeds (their spread: :func:`plot_separation_lines`).

    Returns
    -------
    Figure
        Two heatmaps with a shared colour scale: cosine between clean and noisy class means,
        averaged over classes; darker = lower cosine = stronger separation.
    """
    trees = replicas(results)
    separation = xr.Dataset({f"cos_clean_{g}_mean": replica_stack(trees, "separation", f"cos_clean_{g}_mean").median("seed")
                             for g in GROUPINGS_SHOWN})
    layers = [str(v) for v in separation["layer"].values]
    epochs = separation["epoch"].values
    vmin, vmax = _separation_limits(separation)
    fig, axes = new_figure(1, 2, width=10.0, height=0.6 * len(layers) + 2.2, sharey=True)
    image = None
    for ax, (grouping, label) in zip(axes[0], GROUPINGS_SHOWN.items()):
        values = separation[f"cos_clean_{grouping}_mean"].transpose("layer", "epoch").values
        image = ax.imshow(
            np.ma.masked_invalid(values), aspect="auto", interpolation="nearest", cmap="viridis", vmin=vmin, vmax=vmax,
            origin="upper",
        )
        if values.size <= 120:
            for (row, col), value in np.ndenumerate(values):
                if np.isfinite(value):
                    shade = (value - vmin) / (vmax - vmin)
                    ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color="black" if shade > 0.55 else "white")
        ax.set_title(f"Clean vs {label}".replace(" grouped", "\ngrouped"))
        label_layer_epoch_axes(ax, layers, epochs)
    axes[0, 0].set_ylabel("layer (input side at top)")
    bar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9, pad=0.02)
    bar.set_label("cosine of clean and noisy class means\n(mean over classes; lower = stronger separation)")
    median = "" if len(trees) == 1 else f", median over {len(trees)} seeds (spread: see the separation lines)"
    fig.suptitle(f"Clean-noisy signal separation by layer and epoch{median}")
    return fig


FLOOR_STYLE: dict[str, Any] = {"linestyle": (0, (3, 2)), "linewidth": 0.8, "alpha": 0.9}
"""Noise floor of a layer's separation: thin and dashed, in the layer's colour."""


def draw_separation(ax: Axes, results: Any, grouping: str, *, markersize: float = 2.5) -> None:
    """One line per layer (median over seeds, min-max band) of the clean-noisy cosine, with the layer's noise floor.

    The noise floor (``cos_clean_halves_mean``: cosine between the means of two random halves of the clean
    probes) is drawn thin and dashed in the layer's colour (median over seeds); a cosine at or above it is
    no separation.
    """
    trees = replicas(results)
    cosine = replica_stack(trees, "separation", f"cos_clean_{grouping}_mean")
    floor = replica_stack(trees, "separation", "cos_clean_halves_mean").median("seed")
    epochs = cosine["epoch"].values
    for i, layer in enumerate(str(v) for v in cosine["layer"].values):
        style = layer_style(layer, i)
        draw_band(ax, epochs, cosine.sel(layer=layer), **style, marker="o", markersize=markersize, label=layer)
        ax.plot(epochs, floor.sel(layer=layer).values, color=style["color"], **FLOOR_STYLE)


def floor_handle() -> Line2D:
    """Legend entry of the noise-floor lines."""
    return Line2D([], [], color=PHASE_COLOR, **FLOOR_STYLE, label="noise floor of the layer\n(clean half vs clean half)")


@styled
def plot_separation_lines(results: Any, *, log_x: bool = False) -> Figure:
    """Clean-noisy signal separation over epochs, one line per layer, one panel per grouping of noisy probes.

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
        Two panels with a shared y axis: cosine of clean and noisy class means (mean over classes), and
        each layer's noise floor as a thin dashed line of its colour.
    """
    trees = replicas(results)
    fig, axes = new_figure(1, 2, width=10.0, height=3.8, sharey=True)
    for ax, (grouping, label) in zip(axes[0], GROUPINGS_SHOWN.items()):
        draw_separation(ax, trees, grouping)
        ax.set_title(f"Clean vs {label}".replace(" grouped", "\ngrouped"))
        set_epoch_axis(ax, log_x=log_x)
    axes[0, 0].set_ylabel("cosine of clean and noisy class means\n(lower = stronger separation)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend([*handles, floor_handle()], [*labels, floor_handle().get_label()], loc="outside right center",
               frameon=False, title="layer")
    fig.suptitle(seeds_title("Clean-noisy signal separation over training, per layer (mean over classes)", len(trees)))
    return fig
