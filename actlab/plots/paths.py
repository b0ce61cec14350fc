"""Path attribution per layer over training (:mod:`actlab.analysis.paths`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import ScaledTranslation

from actlab.plots.seeds import draw_band, replica_stack, replicas, seeds_title
from actlab.plots.style import PHASE_COLOR, layer_style, set_epoch_axis, styled


def _draw_split(ax: Axes, trees: Sequence[Any]) -> None:
    """Per layer: the split (percentage points) as a median line with band, and its permutation null as error bars.

    The null (2.5-97.5 % of ``split_null``, a dash at its mean) exists at a few epochs only (``null_epochs``);
    its bars are shifted sideways a few points per layer so that they do not hide each other. With several
    seeds each end of a bar is the median over the seeds.
    """
    split = 100 * replica_stack(trees, "paths", "split")
    null = {end: 100 * replica_stack(trees, "paths", f"split_null_{end}").median("seed") for end in ("low", "mean", "high")}
    epochs = split["epoch"].values
    layers = [str(v) for v in split["layer"].values]
    for i, layer in enumerate(layers):
        style = layer_style(layer, i)
        draw_band(ax, epochs, split.sel(layer=layer), **style, marker="o", markersize=2.5, label=layer)
        low, centre, high = (null[end].sel(layer=layer).values for end in ("low", "mean", "high"))
        has_null = np.isfinite(low) & np.isfinite(high) & np.isfinite(centre)
        shift = ScaledTranslation((i - (len(layers) - 1) / 2) * 3 / 72, 0, ax.figure.dpi_scale_trans)
        bars = ax.errorbar(epochs[has_null], centre[has_null], yerr=[centre[has_null] - low[has_null], high[has_null] - centre[has_null]],
                           fmt="_", color=style["color"], markersize=6, capsize=2.5, elinewidth=1.2,
                           transform=ax.transData + shift, label=f"_null {layer}")
        for artist in bars.get_children():  # the last epoch's bars sit at the right edge: never cut them
            artist.set_clip_on(False)
    ax.axhline(0, color=PHASE_COLOR, linestyle=":", linewidth=0.8)
    shown = np.r_[split.values.ravel(), *(null[end].values.ravel() for end in ("low", "high")), 0.0]
    reach = float(np.nanmax(np.abs(shown)))
    ax.set_ylim(-1.1 * reach - 2, 1.1 * reach + 2)  # the data's range, not +-100
    ax.set_ylabel("split: % clean path, correct $-$ wrong\n(percentage points)")
    ax.set_title("Split between correct and wrong predictions, with its permutation null\n"
                 "(bars: 2.5-97.5 % of the null, dash at its mean, at the epochs where it was computed; "
                 "a split inside its bar is chance)")


@styled
def plot_path_attribution(results: Any, *, log_x: bool = False) -> Figure:
    """Share of test probes whose activation is closer to the clean than to the noisy signal, correct vs wrong predictions.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Uses ``/paths``: ``clean_share_correct``, ``clean_share_wrong``, ``split``, ``split_null_low``,
        ``split_null_mean``, ``split_null_high`` (layer, epoch), ``n_correct``, ``n_wrong`` (epoch).
        Replicas of an ensemble: median lines with min-max bands, null bars at the median over seeds.
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Top, two panels (correct, wrong test predictions), one line per layer: percentage of test
        probes following the clean path (cosine to the clean class mean >= cosine to the noisy
        class mean of the predicted class). Bottom: their difference, the split, with the 95 %
        interval of its permutation null where computed.
    """
    trees = replicas(results)
    fig = Figure(figsize=(10.0, 7.4), layout="constrained")
    axes = fig.subplot_mosaic([["correct", "wrong"], ["split", "split"]], sharex=True)
    axes["wrong"].sharey(axes["correct"])
    panels = (
        ("correct", "clean_share_correct", "n_correct", "Correctly predicted test probes"),
        ("wrong", "clean_share_wrong", "n_wrong", "Wrongly predicted test probes"),
    )
    for key, name, count, title in panels:
        ax = axes[key]
        share = 100 * replica_stack(trees, "paths", name)
        epochs = share["epoch"].values
        for i, layer in enumerate(str(v) for v in share["layer"].values):
            draw_band(ax, epochs, share.sel(layer=layer), **layer_style(layer, i), marker="o", markersize=2.5, label=layer)
        ax.axhline(50, color=PHASE_COLOR, linestyle=":", linewidth=0.8)
        n = replica_stack(trees, "paths", count).isel(epoch=-1).values
        counted = f"n = {int(n[0])}" if len(n) == 1 else f"n = {int(n.min())}-{int(n.max())}"
        ax.set_title(f"{title}\n({counted} at epoch {int(epochs[-1])})")
        set_epoch_axis(ax, log_x=log_x)
        ax.tick_params(labelbottom=True)
    axes["correct"].set_ylim(-3, 103)
    axes["correct"].set_ylabel("closer to clean than to noisy signal (%)")
    _draw_split(axes["split"], trees)
    set_epoch_axis(axes["split"], log_x=log_x)
    handles, labels = axes["correct"].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", frameon=False, title="layer")
    fig.suptitle(seeds_title("Path attribution: do test activations follow the clean or the noisy signal of the predicted class?", len(trees)))
    return fig
