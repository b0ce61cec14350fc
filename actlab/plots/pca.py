"""PCA trajectories of the probe groups per layer (:mod:`actlab.analysis.pca`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from actlab.plots.seeds import replica_stack, replicas, results_node
from actlab.plots.style import GROUP_STYLE, new_figure, styled


@styled
def plot_pca_trajectories(
    results: Any,
    *,
    layers: Sequence[str] | None = None,
    groupings: Sequence[str] = ("clean", "noisy_by_assigned", "test"),
    max_classes: int = 10,
) -> Figure:
    """Trajectories of class means in the plane of the first two principal components, one panel per layer.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Uses node ``/pca``: ``trajectory`` (layer, grouping, epoch, class, component) and
        ``explained_variance_ratio`` (layer, component). Of replicas only the first is drawn: each seed
        has its own principal components, so trajectories cannot be averaged; the axis labels give the
        range of the explained variance over the seeds.
    layers : sequence of str, optional
        Layers to show (default all).
    groupings : sequence of str
        Groupings to draw (coordinate ``grouping``); noisy probes are grouped by assigned label by default.
    max_classes : int
        Draw at most this many classes (the first ones) to keep panels readable.

    Returns
    -------
    Figure
        Per layer: each class mean's path over recorded epochs (thin line, start dot, end marker
        labelled with the class), colour and marker by grouping; axes say the variance explained.
    """
    trees = replicas(results)
    pca = results_node(trees[0], "pca")
    ratios = replica_stack(trees, "pca", "explained_variance_ratio")
    layers = [str(v) for v in pca["layer"].values] if layers is None else list(layers)
    unknown = [g for g in groupings if g not in pca["grouping"].values]
    if unknown:
        raise ValueError(f"groupings {unknown} not in results; choose from {list(pca['grouping'].values)}")
    ncols = min(3, len(layers))
    nrows = -(-len(layers) // ncols)
    fig, axes = new_figure(nrows, ncols, width=3.6 * ncols + 1.6, height=3.3 * nrows + 0.6)
    group_style = {
        "clean": GROUP_STYLE["clean"],
        "noisy_by_original": {**GROUP_STYLE["noisy"], "label": "noisy train, by original label"},
        "noisy_by_assigned": {**GROUP_STYLE["noisy"], "label": "noisy train, by assigned label"},
        "test": GROUP_STYLE["test"],
    }
    classes = pca["class"].values[:max_classes]
    epochs = pca["epoch"].values
    for ax, layer in zip(axes.flat, layers):
        ratio = ratios.sel(layer=layer).values
        trajectory = pca["trajectory"].sel(layer=layer)
        for grouping in groupings:
            style = group_style[grouping]
            for c in classes:
                xy = trajectory.sel(grouping=grouping, **{"class": c}).isel(component=[0, 1]).transpose("epoch", "component").values
                keep = np.all(np.isfinite(xy), axis=1)
                if not keep.any():
                    continue
                xy = xy[keep]
                ax.plot(xy[:, 0], xy[:, 1], color=style["color"], linewidth=0.8, alpha=0.55)
                ax.plot(xy[0, 0], xy[0, 1], "o", color=style["color"], markersize=2.5, alpha=0.6)
                ax.plot(xy[-1, 0], xy[-1, 1], style["marker"], color=style["color"], markersize=5, markeredgecolor="white", markeredgewidth=0.5)
                ax.annotate(str(int(c)), xy[-1], xytext=(3, 2), textcoords="offset points", fontsize=6, color=style["color"])
        ax.set_title(f"{layer}")
        ax.set_xlabel(f"PC1 ({_variance(ratio[:, 0])})")
        ax.set_ylabel(f"PC2 ({_variance(ratio[:, 1] if ratio.shape[1] > 1 else np.full(len(ratio), np.nan))})")
    for ax in list(axes.flat)[len(layers):]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], color=group_style[g]["color"], marker=group_style[g]["marker"], linewidth=0.8, label=group_style[g]["label"])
        for g in groupings
    ]
    handles.append(Line2D([], [], color="grey", marker="o", markersize=2.5, linestyle="none", label=f"epoch {int(epochs[0])} (start)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    title = f"Class-mean trajectories in the first two principal components, epochs {int(epochs[0])}-{int(epochs[-1])} (numbers: class at the last epoch)"
    if len(trees) > 1:
        title += f"\nfirst of {len(trees)} seeds shown: each seed has its own components"
    fig.suptitle(title)
    return fig


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%" if np.isfinite(fraction) else "n/a"


def _variance(fractions: np.ndarray) -> str:
    """Explained variance of a component in the first seed, and its range when there are several seeds."""
    text = f"{_percent(fractions[0])} of variance"
    if len(fractions) > 1:
        text += f"; {_percent(np.nanmin(fractions))}-{_percent(np.nanmax(fractions))} over {len(fractions)} seeds"
    return text
