"""Sample dynamics (:mod:`actlab.analysis.dynamics`): of a run, the training-dynamics map, learned epochs and the
area under the margin, clean and noisy training samples apart; of several runs side by side, the learned-epoch
distributions and the ROC AUC of the mislabel ranking."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from actlab.plots.seeds import replicas, results_node
from actlab.plots.style import GROUP_STYLE, new_figure, series_style, styled

MAX_POINTS = 4000
"""Samples drawn per group in the map at most (an evenly spaced subset), so that the scatter stays readable."""


@styled
def plot_sample_dynamics(results: Any, *, log_x: bool = False) -> Figure:
    """Training-dynamics map, learned epochs and areas under the margin of the training samples.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Results of :func:`actlab.analysis.analyze` with a ``dynamics`` node; of an ensemble, the first replica
        is drawn.
    log_x : bool
        Unused (the panels have no epoch axis of recorded epochs); accepted like every report figure.

    Returns
    -------
    Figure
        Three panels: variability against confidence of the assigned-label probability (dataset cartography);
        histograms of the learned epoch (the memorised epoch of a noisy sample) and of the area under the margin,
        clean and noisy apart.
    """
    items = replicas(results)
    node = results_node(items[0], "dynamics")
    noisy = np.asarray(node["is_noisy"].values, dtype=bool)
    fig, axes = new_figure(1, 3, width=12.0, height=3.8)
    ax_map, ax_learned, ax_aum = axes[0]
    last = int(node.attrs["last_epoch"])
    bins_epoch = np.linspace(0, max(last, 1), min(last, 40) + 2)
    aum = node["aum"].values
    bins_aum = np.linspace(float(np.min(aum)), float(np.max(aum)), 41) if len(aum) else 10
    for group, mask in (("clean", ~noisy), ("noisy", noisy)):
        if not mask.any():
            continue
        style = GROUP_STYLE[group]
        index = np.flatnonzero(mask)
        shown = index[np.linspace(0, len(index) - 1, min(len(index), MAX_POINTS)).astype(int)]
        ax_map.scatter(node["confidence"].values[shown], node["variability"].values[shown], s=5, alpha=0.5,
                       color=style["color"], marker=style["marker"], label=f"{style['label']} ({mask.sum()})", linewidths=0)
        learned = node["learned_epoch"].values[mask]
        never = int(np.isnan(learned).sum())
        ax_learned.hist(learned[np.isfinite(learned)], bins=bins_epoch, color=style["color"], alpha=0.55, density=True,
                        label=f"{style['label']} ({never} never learned)")
        ax_aum.hist(aum[mask], bins=bins_aum, color=style["color"], alpha=0.55, density=True, label=style["label"])
    ax_map.set_xlabel("confidence (mean p of assigned label)")
    ax_map.set_ylabel("variability (std of p)")
    ax_map.set_title("Training-dynamics map")
    ax_map.legend(loc="upper left", fontsize=8)
    ax_learned.set_xlabel("learned epoch (stays correct from)")
    ax_learned.set_ylabel("density")
    ax_learned.set_title("Learned / memorised epoch")
    ax_learned.legend(fontsize=8)
    auc, p_value = float(node["aum_auc"]), float(node["aum_p_value"])
    ax_aum.set_xlabel("area under the margin (logit)")
    ax_aum.set_ylabel("density")
    ax_aum.set_title(f"Area under the margin: ROC AUC {auc:.3f}" if np.isfinite(auc) else "Area under the margin")
    ax_aum.legend(fontsize=8)
    if np.isfinite(p_value):
        floor = 1.0 / (1 + int(node.attrs["n_permutations"]))
        words = f"p <= {floor:.2g}" if p_value <= floor else f"p = {p_value:.2g}"
        ax_aum.text(0.02, 0.97, f"noisy vs clean, permutation {words}", transform=ax_aum.transAxes, va="top", fontsize=8)
    if len(items) > 1:
        fig.suptitle(f"first of {len(items)} replicas", fontsize=9)
    return fig


def learned_by_epoch(learned: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """Fraction of the samples learned (a finite learned epoch) at or before each of ``epochs``; samples never
    learned count in the denominator, so the curve ends at the learned fraction."""
    learned = np.asarray(learned, dtype=float)
    done = np.sort(learned[np.isfinite(learned)])
    return np.searchsorted(done, epochs, side="right") / max(len(learned), 1)


@styled
def plot_compare_dynamics(results_by_run: Mapping[str, Any], *, log_x: bool = False) -> Figure:
    """Learned-epoch distributions and the mislabel ranking's ROC AUC of several runs side by side.

    Parameters
    ----------
    results_by_run : mapping of run name -> xr.DataTree or list of xr.DataTree
        Results with a ``dynamics`` node; an ensemble's replicas as a list.
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Left: fraction of the clean training samples learned (solid) and of the noisy ones memorised (dashed) by
        each epoch, per run (an ensemble's samples pooled over its seeds). Right: ROC AUC of the area-under-the-margin
        ranking against the known noisy labels per run, each seed a dot and the median a bar, with the 95th
        percentile of each seed's permutation null (grey cross).
    """
    fig, axes = new_figure(1, 2, width=11.0, height=3.8)
    ax_learned, ax_auc = axes[0]
    names = list(results_by_run)
    for i, name in enumerate(names):
        nodes = [results_node(tree, "dynamics") for tree in replicas(results_by_run[name])]
        style = series_style(i)
        last = max(int(node.attrs["last_epoch"]) for node in nodes)
        epochs = np.arange(last + 1)
        for group, dashes in (("clean", "-"), ("noisy", "--")):
            learned = np.concatenate([node["learned_epoch"].values[np.asarray(node["is_noisy"].values, dtype=bool)
                                                                   == (group == "noisy")] for node in nodes])
            if len(learned):
                ax_learned.plot(epochs, learned_by_epoch(learned, epochs), linestyle=dashes, color=style["color"],
                                label=f"{name}, {group}" + (f" ({len(nodes)} seeds)" if len(nodes) > 1 else ""))
        aucs = np.array([float(node["aum_auc"]) for node in nodes])
        highs = np.array([float(node["aum_null_high"]) for node in nodes])
        if np.isfinite(aucs).any():
            ax_auc.scatter(np.full(len(aucs), i), aucs, color=style["color"], s=18, zorder=3)
            ax_auc.hlines(np.nanmedian(aucs), i - 0.25, i + 0.25, color=style["color"], linewidth=2)
            ax_auc.scatter(np.full(len(highs), i + 0.3), highs, color="0.5", marker="x", s=18)
    if log_x:
        ax_learned.set_xscale("symlog", linthresh=1)
    ax_learned.set_xlabel("epoch")
    ax_learned.set_ylabel("fraction learned (noisy: memorised)")
    ax_learned.set_ylim(0, 1.02)
    ax_learned.set_title("Learned epoch: clean solid, noisy dashed")
    ax_learned.legend(fontsize=7, loc="lower right")
    ax_auc.set_xticks(range(len(names)), names, rotation=20)
    ax_auc.set_ylabel("ROC AUC, area under the margin")
    ax_auc.axhline(0.5, color="0.7", linewidth=0.8, linestyle=":")
    ax_auc.set_title("Mislabel ranking (bar: median; x: null 95th pct)")
    return fig
