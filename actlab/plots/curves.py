"""Loss and accuracy curves of a run (:mod:`actlab.analysis.curves`), with its training phases and instabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from actlab.plots.seeds import draw_band, replica_stack, replicas, results_node, seeds_title, stack_replicas
from actlab.plots.style import CURVES, INSTABILITY_LABEL, PHASES, mark_instabilities, mark_phases, new_figure, set_epoch_axis, styled


@styled
def plot_metrics(
    metrics: xr.Dataset | Sequence[xr.Dataset],
    *,
    phases: Mapping[str, float | None] | None = None,
    unstable: xr.DataArray | None = None,
    log_x: bool = False,
    title: str | None = None,
) -> Figure:
    """Decomposed loss and accuracy curves over training.

    Parameters
    ----------
    metrics : xr.Dataset or sequence of xr.Dataset
        Dims (epoch,): the variables of :data:`actlab.store.METRICS`, as
        ``open_store(run).metrics`` returns them; or those of the replicas (seeds) of one ensemble,
        drawn as the median with a min-max band.
    phases : mapping of phase name -> epoch, optional
        Epochs to mark (keys of :data:`PHASES`: ``first_minimum`` (the test-loss minimum), ``clean_learned``,
        ``peak``, ``second_minimum``, ``memorisation``); ``None`` values are skipped.
    unstable : xr.DataArray of bool, dims (epoch,), optional
        Epochs of training instability (:func:`actlab.analysis.curves.training_instabilities`),
        shaded so that a loss spike and the fall after it are not read as double descent.
    log_x : bool
        Symmetric-log epoch axis (recorded epochs are often log-spaced).
    title : str, optional
        Figure title; defaults to a description of the panels.

    Returns
    -------
    Figure
        Three panels over epochs: the test loss on its own axis (nats), the training losses by sample group
        (the loss of noisy samples against their original labels can grow tenfold and would squeeze it) and
        the accuracies (%); the phases and instabilities are drawn on each and named in the legend.
    """
    datasets = replicas(metrics)
    for dataset in datasets:
        missing = [f"{prefix}_{kind}" for prefix in CURVES for kind in ("loss", "acc") if f"{prefix}_{kind}" not in dataset]
        if missing:
            raise ValueError(f"metrics lack {missing}; pass open_store(run).metrics")
        if "epoch" not in dataset.dims:
            raise ValueError(f"metrics must have dim 'epoch'; got dims {tuple(dataset.dims)}")
    fig, axes = new_figure(1, 3, width=11.0, height=3.9, sharex=True)
    ax_test, ax_train, ax_acc = axes[0]
    for prefix, style in CURVES.items():
        loss = stack_replicas([dataset[f"{prefix}_loss"] for dataset in datasets])
        acc = 100.0 * stack_replicas([dataset[f"{prefix}_acc"] for dataset in datasets])
        draw_band(ax_test if prefix == "test" else ax_train, loss["epoch"].values, loss, color=style["color"],
                  linestyle=style["linestyle"], label=style["label"])
        draw_band(ax_acc, acc["epoch"].values, acc, color=style["color"], linestyle=style["linestyle"], label=style["label"])
    ax_test.set_ylabel("test cross-entropy (nats)")
    ax_test.set_title("Test loss")
    ax_train.set_ylabel("training cross-entropy (nats)")
    ax_train.set_title("Training loss by sample group")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(-2, 102)
    ax_acc.set_title("Accuracy by sample group")
    label = INSTABILITY_LABEL if len(datasets) == 1 else f"{INSTABILITY_LABEL} in at least one seed"
    for ax in (ax_test, ax_train, ax_acc):
        set_epoch_axis(ax, log_x=log_x)
        marks = mark_phases(ax, phases) + mark_instabilities(ax, unstable, label=label)
    handles, labels = ax_acc.get_legend_handles_labels()
    fig.legend([*handles, *marks], [*labels, *(m.get_label() for m in marks)], loc="outside lower center", ncol=3,
               frameon=False)
    default = "Training curves: clean, noisy (vs assigned and original labels) and test samples"
    fig.suptitle(seeds_title(title or default, len(datasets)))
    return fig


def phases_from_results(results: Any, curve: str = "test_loss") -> dict[str, float | None]:
    """Phase epochs to mark on epoch axes: the test-loss minimum, clean samples learned, double-descent peak and
    second minimum of ``curve`` (when present), noisy-label memorisation.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        One run's results, or its replicas: then each phase is the median epoch over the seeds where it was found.

    Returns
    -------
    dict
        Keys of :data:`PHASES` -> epoch, or None where not found (no double descent, never memorised). The
        first minimum (the test-loss minimum, where layer findings are read) is marked with or without a
        double descent.
    """
    per_seed = [_phases(tree, curve) for tree in replicas(results)]
    return {name: _median_found([phases[name] for phases in per_seed]) for name in PHASES}


def _median_found(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return float(np.median(found)) if found else None


def _phases(results: Any, curve: str) -> dict[str, float | None]:
    """:func:`phases_from_results` of one results tree."""
    curves = results_node(results, "curves")

    def value(name: str, **sel: Any) -> float | None:
        if name not in curves:
            return None
        v = float(curves[name].sel(sel).values) if sel else float(curves[name].values)
        return v if np.isfinite(v) else None

    present = bool(curves["dd_present"].sel(curve=curve).values) if "dd_present" in curves else False
    return {
        "first_minimum": value("dd_first_min_epoch", curve=curve),
        "clean_learned": value("clean_learned_epoch"),
        "peak": value("dd_peak_epoch", curve=curve) if present else None,
        "second_minimum": value("dd_second_min_epoch", curve=curve) if present else None,
        "memorisation": value("noisy_fitted_epoch"),
    }


def unstable_in_any(results: Any) -> xr.DataArray | None:
    """Epochs of training instability (``/curves`` ``unstable``) in at least one replica; None when not computed."""
    trees = replicas(results)
    if not all("unstable" in results_node(tree, "curves") for tree in trees):
        return None
    return replica_stack(trees, "curves", "unstable").any("seed")


@styled
def plot_curves(results: Any, *, log_x: bool = False) -> Figure:
    """Decomposed loss and accuracy curves of analysis results, with their phases marked.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Output of :func:`actlab.analysis.analyze` (uses node ``/curves``), or of each replica of an
        ensemble: median lines, min-max bands, median phase epochs (:func:`phases_from_results`).
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        See :func:`plot_metrics`; the markers are the test-loss minimum, the epoch clean samples are learned,
        the double-descent peak and second minimum (when present) and the epoch where noisy training
        samples are fitted (train accuracy against assigned labels >= 99 %); training instabilities are shaded.
    """
    trees = replicas(results)
    curves = [results_node(tree, "curves") for tree in trees]
    present = sum(bool(c["dd_present"].sel(curve="test_loss").values) for c in curves)
    if len(trees) == 1:
        title = "Training curves by sample group; test loss " + ("shows double descent" if present else "shows no double descent")
    else:
        title = f"Training curves by sample group; test loss shows double descent in {present} of {len(trees)} seeds"
    return plot_metrics(curves, phases=phases_from_results(trees), unstable=unstable_in_any(trees), log_x=log_x, title=title)
