"""PCA trajectories of the probe groups per layer (:mod:`actlab.analysis.pca`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
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
        Per layer: each class mean's path over recorded epochs (hollow start dot, an arrowhead into the
        filled end marker), colour, line style and marker by grouping (clean solid blue, noisy dashed red,
        test dotted black); class numbers at the ends of the first grouping's paths where they do not
        touch each other; axes say the variance explained.
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
        "clean": {**GROUP_STYLE["clean"], "linestyle": "-"},
        "noisy_by_original": {**GROUP_STYLE["noisy"], "linestyle": "--", "label": "noisy train, by original label"},
        "noisy_by_assigned": {**GROUP_STYLE["noisy"], "linestyle": "--", "label": "noisy train, by assigned label"},
        "test": {**GROUP_STYLE["test"], "linestyle": ":"},
    }
    classes = pca["class"].values[:max_classes]
    epochs = pca["epoch"].values
    for ax, layer in zip(axes.flat, layers):
        ratio = ratios.sel(layer=layer).values
        trajectory = pca["trajectory"].sel(layer=layer)
        ends = []
        for grouping in groupings:
            style = group_style[grouping]
            for c in classes:
                xy = trajectory.sel(grouping=grouping, **{"class": c}).isel(component=[0, 1]).transpose("epoch", "component").values
                xy = xy[np.all(np.isfinite(xy), axis=1)]
                if not len(xy):
                    continue
                ax.plot(xy[:, 0], xy[:, 1], color=style["color"], linestyle=style["linestyle"], linewidth=0.9, alpha=0.6)
                ax.plot(xy[0, 0], xy[0, 1], "o", markerfacecolor="white", markeredgecolor=style["color"], markersize=3.5,
                        markeredgewidth=0.8)
                if len(xy) > 1:  # an arrowhead on the last step: the direction of time
                    ax.annotate("", xy[-1], xytext=xy[-2], arrowprops={"arrowstyle": "-|>", "color": style["color"],
                                                                     "lw": 0.9, "mutation_scale": 9, "shrinkA": 0, "shrinkB": 0})
                ax.plot(xy[-1, 0], xy[-1, 1], style["marker"], color=style["color"], markersize=4.5,
                        markeredgecolor="white", markeredgewidth=0.5)
                if grouping == groupings[0]:
                    ends.append((int(c), xy[-1], style["color"]))
        _label_classes(ax, ends)
        ax.set_title(f"{layer}")
        ax.set_xlabel(f"PC1 ({_variance(ratio[:, 0])})")
        ax.set_ylabel(f"PC2 ({_variance(ratio[:, 1] if ratio.shape[1] > 1 else np.full(len(ratio), np.nan))})")
    for ax in list(axes.flat)[len(layers):]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], color=group_style[g]["color"], linestyle=group_style[g]["linestyle"], marker=group_style[g]["marker"],
               linewidth=0.9, label=group_style[g]["label"])
        for g in groupings
    ]
    handles.append(Line2D([], [], color="grey", marker="o", markerfacecolor="white", markersize=3.5, linestyle="none",
                          label=f"epoch {int(epochs[0])} (start); arrowhead and filled marker: epoch {int(epochs[-1])}"))
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
    title = (f"Class-mean trajectories in the first two principal components, epochs {int(epochs[0])}-{int(epochs[-1])}\n"
             f"(numbers: class, at the end of its {group_style[groupings[0]]['label']} trajectory)")
    if len(trees) > 1:
        title += f"\nfirst of {len(trees)} seeds shown: each seed has its own components"
    fig.suptitle(title)
    return fig


def _label_classes(ax: Axes, ends: Sequence[tuple[int, np.ndarray, str]], spacing: float = 0.07) -> None:
    """Write each class number at the end of its trajectory, leaving out those that would touch a written one.

    ``spacing`` is the least distance between two labels, as a fraction of the axes (after autoscaling).
    """
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    placed: list[tuple[float, float]] = []
    for c, (x, y), color in ends:
        u, v = (x - x0) / ((x1 - x0) or 1.0), (y - y0) / ((y1 - y0) or 1.0)
        if all(abs(u - pu) > spacing or abs(v - pv) > spacing for pu, pv in placed) and 0 <= u <= 0.95 and 0 <= v <= 0.95:
            ax.annotate(str(c), (x, y), xytext=(3, 2), textcoords="offset points", fontsize=7, color=color, fontweight="bold")
            placed.append((u, v))


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%" if np.isfinite(fraction) else "n/a"


def _variance(fractions: np.ndarray) -> str:
    """Explained variance of a component in the first seed, and its range when there are several seeds."""
    text = f"{_percent(fractions[0])} of variance"
    if len(fractions) > 1:
        text += f";\n{_percent(np.nanmin(fractions))}-{_percent(np.nanmax(fractions))} over {len(fractions)} seeds"
    return text
