"""Sample dynamics of a run (:mod:`actlab.analysis.dynamics`): the training-dynamics map, learned epochs and the
area under the margin, clean and noisy training samples apart."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from actlab.plots.seeds import replicas, results_node
from actlab.plots.style import GROUP_STYLE, new_figure, styled

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
