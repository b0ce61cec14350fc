"""Linear-probe decodability per layer over training (:mod:`actlab.analysis.probes`): layer x epoch maps."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from actlab.plots.seeds import replicas, results_node, stack_replicas
from actlab.plots.separation import label_layer_epoch_axes
from actlab.plots.style import new_figure, styled

TARGETS_SHOWN: dict[str, str] = {
    "noisy_original": "ORIGINAL (true) label of the noisy probes",
    "noisy_assigned": "ASSIGNED (noisy) label of the noisy probes",
}
"""The two maps of :func:`plot_decodability` -> their panel titles."""


def probed_epochs_words(attrs: Any, n_shown: int, n_seeds: int = 1) -> str:
    """``"\ncolumns: the 16 of 85 recorded epochs probed"`` (``... probed in every seed`` for an ensemble), a line
    of the title of its own, or ``""`` when every recorded epoch is shown (``attrs``: of a ``/probes`` node; results from before the epoch
    subset were probed at every epoch and have no ``n_recorded_epochs``)."""
    recorded = attrs.get("n_recorded_epochs")
    if recorded is None or int(recorded) == n_shown:
        return ""
    return f"\ncolumns: the {n_shown} of {int(recorded)} recorded epochs probed" + (" in every seed" if n_seeds > 1 else "")


@styled
def plot_decodability(results: Any) -> Figure:
    """Accuracy of linear probes trained on clean probes, as layer x epoch maps of the noisy probes' two labels.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Uses node ``/probes``, variables ``accuracy``, ``chance`` and ``decodable`` (layer, epoch, target);
        replicas of an ensemble show the median over seeds.

    Returns
    -------
    Figure
        Two heatmaps with a shared colour scale 0..1: accuracy against the original label and against the
        assigned label; each cell holds its accuracy, starred where the label is decodable (BH q <= the FDR
        level within the layer x epoch family; an ensemble: in more than half the seeds). The columns are the
        epochs probed (an ensemble: those every seed was probed at); the title says how many of the recorded
        epochs they are when not all.
    """
    trees = replicas(results)
    nodes = [results_node(tree, "probes") for tree in trees]
    # the seeds of an ensemble are probed at the same evenly spaced epochs, but each also at its own phase epochs:
    # the maps show the epochs every seed was probed at
    common = sorted(set.intersection(*(set(node["epoch"].values.tolist()) for node in nodes)))
    nodes = [node.sel(epoch=common) for node in nodes]
    accuracy = stack_replicas([node["accuracy"] for node in nodes])
    decodable = stack_replicas([node["decodable"] for node in nodes]).astype(float).mean("seed") > 0.5
    chance = float(stack_replicas([node["chance"] for node in nodes]).sel(target=list(TARGETS_SHOWN)).median())
    median: xr.DataArray = accuracy.median("seed")
    layers = [str(v) for v in median["layer"].values]
    epochs = median["epoch"].values
    fig, axes = new_figure(1, 2, width=10.0, height=0.6 * len(layers) + 2.4, sharey=True)
    image = None
    for ax, (target, title) in zip(axes[0], TARGETS_SHOWN.items()):
        values = median.sel(target=target).transpose("layer", "epoch").values
        stars = decodable.sel(target=target).transpose("layer", "epoch").values
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", interpolation="nearest", cmap="magma",
                          vmin=0.0, vmax=1.0, origin="upper")
        if values.size <= 160:
            for (row, col), value in np.ndenumerate(values):
                if np.isfinite(value):
                    ax.text(col, row, f"{value:.2f}{'*' if stars[row, col] else ''}", ha="center", va="center",
                            fontsize=6.5, color="black" if value > 0.6 else "white")
        ax.set_title(title)
        label_layer_epoch_axes(ax, layers, epochs)
    axes[0, 0].set_ylabel("layer (input side at top)")
    bar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9, pad=0.02)
    bar.set_label(f"linear-probe accuracy (chance about {chance:.2f})")
    seeds = "" if len(trees) == 1 else f", median over {len(trees)} seeds"
    fig.suptitle(f"Which label a linear probe trained on clean probes reads from each layer{seeds}\n"
                 "* decodable: above chance by the label-permutation test, BH within layer x epoch"
                 + probed_epochs_words(nodes[0].attrs, len(epochs), len(trees)))
    return fig
