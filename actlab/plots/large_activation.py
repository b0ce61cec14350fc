"""Large activations per layer (:mod:`actlab.analysis.large_activation`) and the input-or-output explanation of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from actlab.plots.curves import phases_from_results, unstable_in_any
from actlab.plots.seeds import draw_band, replica_stack, replicas, results_node, seeds_title
from actlab.plots.style import OKABE_ITO, PHASE_COLOR, layer_style, mark_instabilities, mark_phases, new_figure, set_epoch_axis, styled


def _floor_log_axis(ax: Axes, values: np.ndarray, decades: float = 4.0) -> None:
    """Show at most ``decades`` decades below the largest value on a log axis (silent units leave the bottom)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size:
        ax.set_ylim(bottom=max(float(positive.min()), float(positive.max()) / 10**decades) / 1.5)


def _unit_label(trees: Sequence[Any], layer: str) -> str:
    """Legend label of a layer's followed unit: its number (one run) or in how many seeds it is dominant."""
    dominant = replica_stack(trees, "large_activation", "is_dominant").sel(layer=layer).values.astype(bool)
    if len(trees) == 1:
        unit = int(results_node(trees[0], "large_activation")["dominant_unit"].sel(layer=layer).values)
        return f"{layer} unit {unit}" + (" (dominant)" if dominant[0] else "")
    return f"{layer} (dominant in {int(dominant.sum())} of {len(trees)} seeds)"


@styled
def plot_large_activation(results: Any, *, log_x: bool = False) -> Figure:
    """Magnitude of each layer's dominant unit over training beside the test loss (shared epoch axis).

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Uses ``/large_activation`` (``unit_mean_abs``, ``unit_ratio_to_median``, ``dominant_unit``,
        ``is_dominant``, ``emergence_epoch``; dims layer, epoch) and ``/curves`` (``test_loss``).
        Replicas of an ensemble: median lines and min-max bands (each seed follows its own largest
        unit), emergence at the median over the seeds where the unit is dominant.
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Top: mean |activation| of the unit that is largest at the last epoch, per layer (log scale);
        middle: the same as a multiple of the layer's median unit, with the dominance threshold; bottom: test
        loss. A diamond on a layer's line marks the epoch its unit becomes dominant; phases as grey lines.
    """
    trees = replicas(results)
    magnitude = replica_stack(trees, "large_activation", "unit_mean_abs")
    ratio = replica_stack(trees, "large_activation", "unit_ratio_to_median")
    emergence = replica_stack(trees, "large_activation", "emergence_epoch").median("seed")
    layers = [str(v) for v in magnitude["layer"].values]
    epochs = magnitude["epoch"].values
    fig, axes = new_figure(3, 1, width=8.6, height=7.6, sharex=True, height_ratios=[1.2, 1.0, 0.9])
    ax_mag, ax_ratio, ax_loss = axes[:, 0]
    emerged = False
    for i, layer in enumerate(layers):
        style = {**layer_style(layer, i), "marker": "o", "markersize": 2.5}
        draw_band(ax_mag, epochs, magnitude.sel(layer=layer), label=_unit_label(trees, layer), **style)
        draw_band(ax_ratio, epochs, ratio.sel(layer=layer), **style)
        epoch = float(emergence.sel(layer=layer).values)
        if np.isfinite(epoch):  # a diamond on the layer's own line, at the epoch nearest to the emergence
            at = int(np.argmin(np.abs(epochs - epoch)))
            for ax, values in ((ax_mag, magnitude), (ax_ratio, ratio)):
                ax.plot(epochs[at], float(values.sel(layer=layer).median("seed").values[at]), "D", color=style["color"],
                        markersize=7, markeredgecolor="black", markeredgewidth=0.8, zorder=4)
            emerged = True
    ax_mag.set_yscale("log")
    _floor_log_axis(ax_mag, magnitude.values)
    ax_mag.set_ylabel("mean |activation|\nof the unit (log)")
    ax_mag.set_title("Largest unit of each layer at the last epoch, followed over training\n"
                     "(a line leaving the bottom: the unit falls silent)")
    ax_ratio.set_yscale("log")
    threshold = float(trees[0].attrs.get("parameters", {}).get("min_ratio_to_median", 10.0))
    _floor_log_axis(ax_ratio, ratio.values)
    ax_ratio.set_ylim(top=max(ax_ratio.get_ylim()[1], 2 * threshold))  # the threshold line always inside the axis
    ax_ratio.axhline(threshold, color=PHASE_COLOR, linestyle="--", linewidth=1.0)
    ax_ratio.set_ylabel("ratio to the layer's\nmedian unit (log)")
    marks = [Line2D([], [], color=PHASE_COLOR, linestyle="--", linewidth=1.0, label=f"dominance threshold: {threshold:g}x the median")]
    if emerged:
        marks.append(Line2D([], [], color="white", marker="D", markersize=7, markeredgecolor="black", linestyle="none",
                            label="dominance emerges (diamond on the layer's line)"))
    if all("curves" in tree.children for tree in trees):
        loss = replica_stack(trees, "curves", "test_loss")
        draw_band(ax_loss, loss["epoch"].values, loss, color=OKABE_ITO["black"], label="test loss")
        unstable = unstable_in_any(trees)
        for ax in (ax_mag, ax_ratio, ax_loss):
            phase_marks = mark_phases(ax, phases_from_results(trees)) + mark_instabilities(ax, unstable)
        marks += phase_marks
    ax_loss.set_ylabel("test cross-entropy\n(nats)")
    for ax in (ax_mag, ax_ratio):
        set_epoch_axis(ax, log_x=log_x, label=False)
    set_epoch_axis(ax_loss, log_x=log_x)
    handles, labels = ax_mag.get_legend_handles_labels()
    fig.legend([*handles, *marks], [*labels, *(m.get_label() for m in marks)], loc="outside right center", frameon=False,
               fontsize=7)
    fig.suptitle(seeds_title("Large activations over training, beside the test loss", len(trees)))
    return fig


EXPLAINED_COLORS: dict[str, str] = {"input": OKABE_ITO["blue"], "output": OKABE_ITO["black"], "undecided": "#7f7f7f"}
"""Colour of each ``explained_by`` verdict: blue means the input here as in the bars, no output target's colour is reused."""


EXPLAINED_RULE = ("rule: input if the interval lies above 0 and input p < 0.05;\n"
                  "output if it lies below 0 and the best target's p < 0.05; otherwise undecided")
"""The rule of ``/large_activation`` ``explained_by`` (:func:`actlab.analysis.large_activation.explained_by`)."""


def _draw_bars(ax: Axes, positions: np.ndarray, stack: xr.DataArray, width: float, **style: Any) -> None:
    """Bars at the median over seeds, a black min-max whisker when there are several seeds."""
    ax.bar(positions, stack.median("seed").values, width, **style)
    if stack.sizes["seed"] > 1:
        median = stack.median("seed").values
        ax.errorbar(positions, median, yerr=[median - stack.min("seed").values, stack.max("seed").values - median],
                    fmt="none", ecolor="black", elinewidth=0.8, capsize=1.5)


def _draw_r2_difference(ax: Axes, trees: Sequence[Any], layers: Sequence[str]) -> None:
    """R^2(input) - R^2(best output target) per layer with its paired-bootstrap interval, coloured by ``explained_by``."""
    difference = replica_stack(trees, "large_activation", "r2_difference")
    low = replica_stack(trees, "large_activation", "r2_difference_low")
    high = replica_stack(trees, "large_activation", "r2_difference_high")
    verdicts = replica_stack(trees, "large_activation", "explained_by")
    n = len(trees)
    offsets = (np.arange(n) - (n - 1) / 2) * min(0.12, 0.6 / n)
    for x, layer in enumerate(layers):
        for seed, offset in enumerate(offsets):
            value = float(difference.sel(layer=layer).values[seed])
            verdict = str(verdicts.sel(layer=layer).values[seed])
            ax.errorbar(x + offset, value, yerr=[[value - float(low.sel(layer=layer).values[seed])],
                                                 [float(high.sel(layer=layer).values[seed]) - value]],
                        fmt="o", color=EXPLAINED_COLORS.get(verdict, "black"), markersize=4, capsize=2, elinewidth=1.0)
        seeds = [str(v) for v in verdicts.sel(layer=layer).values]
        text = seeds[0] if n == 1 else "\n".join(f"{v} {seeds.count(v)}/{n}" for v in dict.fromkeys(seeds))
        ax.annotate(text, (x, 1.0), xycoords=("data", "axes fraction"), xytext=(0, -2), textcoords="offset points",
                    ha="center", va="top", fontsize=7)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(np.arange(len(layers)), layers, rotation=30 if len(layers) > 5 else 0)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    top = float(np.nanmax(np.abs(np.r_[low.values.ravel(), high.values.ravel(), 0.1])))
    ax.set_ylim(-1.15 * top, 1.6 * top)
    ax.set_ylabel("R$^2$ input $-$ R$^2$ best output target")
    ax.set_title("Input minus output explanation (95 % paired-bootstrap interval)")
    ax.set_xlabel(EXPLAINED_RULE, fontsize=7)


@styled
def plot_explanation(results: Any, *, alpha: float = 0.05) -> Figure:
    """Input versus output explanation of each layer's largest unit: R^2 with p-values, their difference, eta^2.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Uses ``/large_activation``: ``input_r2``, ``input_p_value``, ``r2_difference``,
        ``r2_difference_low``/``_high``, ``explained_by``, ``best_output_target`` (layer) and
        ``output_r2``, ``output_eta2``, ``output_p_value`` (layer, target). Replicas of an ensemble:
        bars at the median with min-max whiskers, hatched when the median seed's p >= ``alpha``, one
        difference interval per seed.
    alpha : float
        Significance level; bars with (median) p >= alpha are drawn hatched and light.

    Returns
    -------
    Figure
        Top: grouped bars per layer of the cross-validated R^2 predicting the unit's per-sample
        |activation| from the input image, the assigned label, the original label and the
        predicted class; a bar whose permutation p >= ``alpha`` is hatched and light (the p-values are in the
        report's details).
        Bottom left: R^2 input minus R^2 of the best output target with its 95 % paired-bootstrap
        interval, coloured and labelled by the verdict ``explained_by``, and the rule that chose it.
        Bottom right: eta^2 of the three class targets.
    """
    trees = replicas(results)
    large = results_node(trees[0], "large_activation")
    layers = [str(v) for v in large["layer"].values]
    targets = [str(t) for t in large["target"].values]
    target_names = {"label": "assigned label", "original_label": "original label", "predicted": "predicted class"}
    colors = [OKABE_ITO["blue"], OKABE_ITO["vermillion"], OKABE_ITO["orange"], OKABE_ITO["green"]]
    output_r2 = replica_stack(trees, "large_activation", "output_r2")
    output_p = replica_stack(trees, "large_activation", "output_p_value")
    series = [("input image", replica_stack(trees, "large_activation", "input_r2"), replica_stack(trees, "large_activation", "input_p_value"))]
    series += [(target_names.get(t, t), output_r2.sel(target=t), output_p.sel(target=t)) for t in targets]
    fig = Figure(figsize=(11.0, 7.6), layout="constrained")
    axes = fig.subplot_mosaic([["r2", "r2"], ["difference", "eta"]], height_ratios=[1.1, 1.0])
    ax_r2, ax_eta = axes["r2"], axes["eta"]
    x = np.arange(len(layers))
    width = 0.8 / len(series)
    color_of = {name: colors[k % len(colors)] for k, (name, _, _) in enumerate(series)}
    for k, (name, r2, p) in enumerate(series):
        positions = x - 0.4 + width * (k + 0.5)
        color = color_of[name]
        for pos, layer in zip(positions, layers):
            values, p_values = r2.sel(layer=layer), p.sel(layer=layer).values
            value = float(values.median("seed").values)
            if not np.isfinite(value):
                continue
            significant = bool(np.median(p_values) < alpha)
            _draw_bars(ax_r2, np.array([pos]), values.expand_dims("layer", 1), width, color=color,
                       alpha=1.0 if significant else 0.35, hatch=None if significant else "//",
                       edgecolor="white" if significant else color, linewidth=0.5)
    ax_r2.axhline(0.0, color="black", linewidth=0.6)
    if len(trees) == 1:
        ax_r2.set_xticks(x, [f"{layer}\nunit {int(large['dominant_unit'].sel(layer=layer).values)}" for layer in layers])
    else:
        ax_r2.set_xticks(x, [f"{layer}\n(largest unit of each seed)" for layer in layers])
    ax_r2.set_ylabel("cross-validated R$^2$ (1 = fully predicted)")
    top = max(float(np.nanmax(np.r_[s[1].values.ravel(), 0.0])) for s in series)
    ax_r2.set_ylim(top=max(0.1, top) * 1.3 + 0.05)
    significance = "hatched: permutation p $\\geq$ " + (f"{alpha:g}" if len(trees) == 1 else f"{alpha:g} in the median seed")
    ax_r2.set_title(f"Predicting the unit's |activation| at the last epoch ({significance})")
    _draw_r2_difference(axes["difference"], trees, layers)
    eta = replica_stack(trees, "large_activation", "output_eta2")
    width_eta = 0.8 / len(targets)
    for k, t in enumerate(targets):
        _draw_bars(ax_eta, x - 0.4 + width_eta * (k + 0.5), eta.sel(target=t), width_eta, color=color_of[target_names.get(t, t)])
    ax_eta.set_xticks(x, layers)
    ax_eta.set_ylim(0, 1)
    ax_eta.set_ylabel("$\\eta^2$ (share of variance between classes)")
    ax_eta.set_title("Correlation ratio with the class targets (in-sample)")
    for ax in axes.values():
        ax.grid(axis="x", visible=False)
    handles = [Patch(facecolor=color, label=f"from {name}") for name, color in color_of.items()]
    handles += [Line2D([], [], color=color, marker="o", linestyle="none", label=f"verdict: {verdict}")
                for verdict, color in EXPLAINED_COLORS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, frameon=False)
    whiskers = "" if len(trees) == 1 else f"\nbars: median over {len(trees)} seeds, whiskers: min-max"
    fig.suptitle(f"Is the large activation explained by the inputs or by the outputs?{whiskers}")
    return fig
