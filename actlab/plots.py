"""Figures of a stored run and of its analysis results (matplotlib, no pyplot state).

Every function takes data or results objects and returns a new
:class:`matplotlib.figure.Figure`; nothing is shown or saved here (see
:func:`actlab.report.save_figure`). Figures share one style: the Okabe-Ito
colour-blind-safe palette, line styles that also separate curves in grey
print, labelled axes with units and titles saying what is shown.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
}
"""The Okabe-Ito palette, distinguishable under the common colour-vision deficiencies."""

CYCLE: tuple[str, ...] = tuple(OKABE_ITO[name] for name in ("blue", "vermillion", "green", "orange", "purple", "sky_blue", "black", "yellow"))
"""Colour order for an arbitrary number of series (layers, runs)."""

LINESTYLES: tuple[Any, ...] = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (7, 2)))


def series_style(index: int) -> dict[str, Any]:
    """Colour and line style of the ``index``-th series; no two of the first len(CYCLE) x len(LINESTYLES) share both."""
    return {"color": CYCLE[index % len(CYCLE)], "linestyle": LINESTYLES[(index + index // len(CYCLE)) % len(LINESTYLES)]}


OUTPUT_STYLE: dict[str, Any] = {"color": "#7f7f7f", "linestyle": "-", "linewidth": 2.6}
"""Style of the layer named ``output`` in every figure: a colour outside :data:`CYCLE`, thick and solid."""


def layer_style(name: str, position: int) -> dict[str, Any]:
    """Style of a layer from its name, so that one layer looks the same in runs of any depth.

    ``hiddenK`` -> :func:`series_style` ``(K - 1)``; ``output`` -> :data:`OUTPUT_STYLE`; any other
    name -> :func:`series_style` ``(position)``, its position in the run's layers.
    """
    if name == "output":
        return dict(OUTPUT_STYLE)
    hidden = re.fullmatch(r"hidden(\d+)", name)
    return series_style(int(hidden.group(1)) - 1 if hidden else position)


CURVES: dict[str, dict[str, Any]] = {
    "train_clean": {"label": "train, clean samples", "color": OKABE_ITO["blue"], "linestyle": "-"},
    "train_noisy": {"label": "train, noisy samples vs assigned (noisy) label", "color": OKABE_ITO["vermillion"], "linestyle": "--"},
    "train_noisy_true": {"label": "train, noisy samples vs original label", "color": OKABE_ITO["orange"], "linestyle": ":"},
    "test": {"label": "test", "color": OKABE_ITO["black"], "linestyle": "-"},
}
"""The four decomposed metric curves: metric prefix -> legend label and style."""

GROUP_STYLE: dict[str, dict[str, Any]] = {
    "clean": {"color": OKABE_ITO["blue"], "marker": "o", "label": "clean train"},
    "noisy": {"color": OKABE_ITO["vermillion"], "marker": "^", "label": "noisy train"},
    "test": {"color": OKABE_ITO["green"], "marker": "s", "label": "test"},
}
"""Probe group -> colour, marker and legend label."""

PHASES: dict[str, dict[str, Any]] = {
    "first_minimum": {"label": "1st min", "linestyle": (0, (4, 2))},
    "peak": {"label": "peak", "linestyle": "-."},
    "second_minimum": {"label": "2nd min", "linestyle": (0, (4, 2))},
    "memorisation": {"label": "memorised", "linestyle": ":"},
}
"""Training phases marked on epoch axes: phase name -> short label and line style (grey, behind the data)."""

PHASE_COLOR = "#555555"

RC: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.6,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "svg.fonttype": "none",
}
"""Matplotlib rc settings applied to every actlab figure."""

EPOCH_LABEL = "epoch"

P = ParamSpec("P")
R = TypeVar("R")


def styled(func: Callable[P, R]) -> Callable[P, R]:
    """Run a figure-building function under the actlab rc settings (:data:`RC`)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context(RC):
            return func(*args, **kwargs)

    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 7.0, height: float = 3.2, **subplot_kw: Any) -> tuple[Figure, np.ndarray]:
    """A figure with a 2-d array of axes; call it inside a :func:`styled` function.

    Uses :class:`matplotlib.figure.Figure` directly (no pyplot), so figures are
    garbage-collected and work with any backend, headless included.
    """
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def set_epoch_axis(ax: Axes, *, log_x: bool, label: bool = True) -> None:
    """Label an epoch axis; with ``log_x`` use a symmetric log scale, linear below 1 so epoch 0 stays visible."""
    if log_x:
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.4)
        low, high = ax.get_xlim()
        if low < 0:  # the linear autoscale margin (5% of all epochs) would take a third of a symlog axis
            low = -0.25
            ax.set_xlim(low, high)
        nice = [t for t in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if low <= t <= high]
        ax.xaxis.set_major_locator(FixedLocator(nice))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_locator(NullLocator())
    if label:
        ax.set_xlabel(f"{EPOCH_LABEL}{' (log scale)' if log_x else ''}")


EpochLabel = tuple[float, str, str]
"""A label of one epoch written above an axes: (epoch, text, colour)."""

EPOCH_LABEL_SIZE = 7
"""Font size (points) of the phase and instability labels above the axes."""


def mark_phases(ax: Axes, phases: Mapping[str, float | None] | None) -> list[EpochLabel]:
    """Draw a grey vertical line at each known phase epoch (``None`` entries are skipped).

    Returns
    -------
    list of EpochLabel
        The labels of the lines, for :func:`label_epochs` (which writes them outside the data area).
    """
    labels = []
    for name, epoch in (phases or {}).items():
        if name not in PHASES or epoch is None or not np.isfinite(epoch):
            continue
        style = PHASES[name]
        ax.axvline(float(epoch), color=PHASE_COLOR, linestyle=style["linestyle"], linewidth=0.9, alpha=0.7, zorder=0)
        labels.append((float(epoch), f"{style['label']} {epoch:g}", PHASE_COLOR))
    return labels


def label_epochs(ax: Axes, labels: Sequence[EpochLabel]) -> None:
    """Write epoch labels above the axes, rotated, one per epoch (texts of one epoch joined), never over the data.

    Call it after the title is set: the title is lifted over the labels.
    """
    merged: dict[float, tuple[list[str], str]] = {}
    for epoch, text, color in labels:
        merged.setdefault(epoch, ([], color))[0].append(text)
    for epoch, (texts, color) in merged.items():
        ax.text(epoch, 1.02, ", ".join(texts), transform=ax.get_xaxis_transform(), rotation=90, ha="center",
                va="bottom", fontsize=EPOCH_LABEL_SIZE, color=color, clip_on=False)
    if merged:
        longest = max(len(", ".join(texts)) for texts, _ in merged.values())
        ax.set_title(ax.get_title(), pad=0.6 * EPOCH_LABEL_SIZE * longest + 10)


INSTABILITY_LABEL = "training instability (train accuracy drop)"
INSTABILITY_COLOR = "#d62728"


def mark_instabilities(ax: Axes, unstable: xr.DataArray | None, *, label: str | None = INSTABILITY_LABEL,
                       max_labels: int = 4) -> list[EpochLabel]:
    """Shade each run of consecutive unstable epochs (``unstable``: bool over ``epoch``) from one epoch before it.

    Short runs are invisible as spans on a long (or log) epoch axis, so each run also gets a thin red
    line at its first epoch.

    Returns
    -------
    list of EpochLabel
        Labels of the first ``max_labels`` runs, for :func:`label_epochs`.
    """
    if unstable is None or not bool(unstable.any()):
        return []
    epochs = unstable["epoch"].values
    flags = unstable.values.astype(bool)
    starts = np.flatnonzero(flags & ~np.r_[False, flags[:-1]])
    ends = np.flatnonzero(flags & ~np.r_[flags[1:], False])
    for number, (start, end) in enumerate(zip(starts, ends)):
        ax.axvspan(float(epochs[max(start - 1, 0)]), float(epochs[end]), color=INSTABILITY_COLOR, alpha=0.15, linewidth=0,
                   zorder=0, label=label if number == 0 else None)
        ax.axvline(float(epochs[start]), color=INSTABILITY_COLOR, linewidth=0.8, alpha=0.6, zorder=0)
    return [(float(epochs[start]), f"unstable {int(epochs[start])}", INSTABILITY_COLOR) for start in starts[:max_labels]]


@styled
def plot_metrics(
    metrics: xr.Dataset,
    *,
    phases: Mapping[str, float | None] | None = None,
    unstable: xr.DataArray | None = None,
    log_x: bool = False,
    title: str | None = None,
) -> Figure:
    """Decomposed loss and accuracy curves over training.

    Parameters
    ----------
    metrics : xr.Dataset
        Dims (epoch,): the variables of :data:`actlab.store.METRICS`, as
        ``open_store(run).metrics`` returns them.
    phases : mapping of phase name -> epoch, optional
        Epochs to mark (keys of :data:`PHASES`: ``first_minimum``, ``peak``,
        ``second_minimum``, ``memorisation``); ``None`` values are skipped.
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
        Two panels sharing the epoch axis: cross-entropy (nats) and accuracy (%).
    """
    missing = [f"{prefix}_{kind}" for prefix in CURVES for kind in ("loss", "acc") if f"{prefix}_{kind}" not in metrics]
    if missing:
        raise ValueError(f"metrics lack {missing}; pass open_store(run).metrics")
    if "epoch" not in metrics.dims:
        raise ValueError(f"metrics must have dim 'epoch'; got dims {tuple(metrics.dims)}")
    fig, axes = new_figure(1, 2, width=9.0, height=3.6)
    ax_loss, ax_acc = axes[0]
    epochs = metrics["epoch"].values
    for prefix, style in CURVES.items():
        loss = metrics[f"{prefix}_loss"].values
        acc = 100.0 * metrics[f"{prefix}_acc"].values
        ax_loss.plot(epochs, loss, color=style["color"], linestyle=style["linestyle"], label=style["label"])
        ax_acc.plot(epochs, acc, color=style["color"], linestyle=style["linestyle"], label=style["label"])
    ax_loss.set_ylabel("cross-entropy loss (nats)")
    ax_loss.set_title("Loss by sample group")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(-2, 102)
    ax_acc.set_title("Accuracy by sample group")
    for ax in (ax_loss, ax_acc):
        set_epoch_axis(ax, log_x=log_x)
        label_epochs(ax, mark_phases(ax, phases) + mark_instabilities(ax, unstable))
    handles, labels = ax_loss.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    fig.suptitle(title or "Training curves: clean, noisy (vs assigned and original labels) and test samples")
    return fig


# -- results figures ------------------------------------------------------------------------------------

GROUPINGS_SHOWN: dict[str, str] = {
    "noisy_by_original": "noisy probes grouped by ORIGINAL (true) label",
    "noisy_by_assigned": "noisy probes grouped by ASSIGNED (noisy) label",
}
"""The two groupings of noisy probes in separation figures -> how panel titles name them."""


def _node(results: Any, name: str) -> xr.Dataset:
    """Dataset of child ``name`` of an analysis results tree; ValueError naming the failure when absent."""
    if name not in results.children:
        reason = dict(results.attrs.get("errors", {})).get(name)
        raise ValueError(f"results have no '{name}' node ({reason or 'not computed'}); rerun actlab.analysis.analyze")
    return results[name].to_dataset()


def phases_from_results(results: Any, curve: str = "test_loss") -> dict[str, float | None]:
    """Phase epochs to mark on epoch axes: double-descent minima and peak of ``curve``, noisy-label memorisation.

    Returns
    -------
    dict
        Keys of :data:`PHASES` -> epoch, or None where not found (no double descent, never memorised).
    """
    curves = _node(results, "curves")

    def value(name: str, **sel: Any) -> float | None:
        if name not in curves:
            return None
        v = float(curves[name].sel(sel).values) if sel else float(curves[name].values)
        return v if np.isfinite(v) else None

    present = bool(curves["dd_present"].sel(curve=curve).values) if "dd_present" in curves else False
    phases = {
        "first_minimum": value("dd_first_min_epoch", curve=curve) if present else None,
        "peak": value("dd_peak_epoch", curve=curve) if present else None,
        "second_minimum": value("dd_second_min_epoch", curve=curve) if present else None,
        "memorisation": value("noisy_fitted_epoch"),
    }
    return phases


@styled
def plot_curves(results: Any, *, log_x: bool = False) -> Figure:
    """Decomposed loss and accuracy curves of analysis results, with their phases marked.

    Parameters
    ----------
    results : xr.DataTree
        Output of :func:`actlab.analysis.analyze` (uses node ``/curves``).
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        See :func:`plot_metrics`; the markers are the double-descent first minimum,
        peak and second minimum of the test loss (when present) and the epoch where
        noisy training samples are fitted (train accuracy against assigned labels >= 99 %);
        training instabilities are shaded.
    """
    curves = _node(results, "curves")
    present = bool(curves["dd_present"].sel(curve="test_loss").values)
    title = "Training curves by sample group; test loss " + ("shows double descent" if present else "shows no double descent")
    unstable = curves["unstable"] if "unstable" in curves else None
    return plot_metrics(curves, phases=phases_from_results(results), unstable=unstable, log_x=log_x, title=title)


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
    results : xr.DataTree
        Uses node ``/separation``, variables ``cos_clean_noisy_by_original_mean`` and
        ``cos_clean_noisy_by_assigned_mean`` (layer, epoch).

    Returns
    -------
    Figure
        Two heatmaps with a shared colour scale: cosine between clean and noisy class means,
        averaged over classes; darker = lower cosine = stronger separation.
    """
    separation = _node(results, "separation")
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
        ax.set_title(f"Clean vs {label}")
        ax.set_yticks(np.arange(len(layers)), layers)
        _epoch_ticks(ax, epochs)
        ax.set_xlabel("recorded epoch (evenly spaced columns)")
        ax.grid(False)
    axes[0, 0].set_ylabel("layer (input side at top)")
    bar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9, pad=0.02)
    bar.set_label("cosine of clean and noisy class means\n(mean over classes; lower = stronger separation)")
    fig.suptitle("Clean-noisy signal separation by layer and epoch")
    return fig


@styled
def plot_separation_lines(results: Any, *, log_x: bool = False) -> Figure:
    """Clean-noisy signal separation over epochs, one line per layer, one panel per grouping of noisy probes.

    Parameters
    ----------
    results : xr.DataTree
        Uses node ``/separation`` (``cos_clean_noisy_by_*_mean``, dims layer, epoch).
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Two panels with a shared y axis: cosine of clean and noisy class means (mean over classes).
    """
    separation = _node(results, "separation")
    layers = [str(v) for v in separation["layer"].values]
    epochs = separation["epoch"].values
    fig, axes = new_figure(1, 2, width=10.0, height=3.8, sharey=True)
    for ax, (grouping, label) in zip(axes[0], GROUPINGS_SHOWN.items()):
        values = separation[f"cos_clean_{grouping}_mean"]
        for i, layer in enumerate(layers):
            ax.plot(
                epochs, values.sel(layer=layer).values, **layer_style(layer, i),
                marker="o", markersize=2.5, label=layer,
            )
        ax.set_title(f"Clean vs {label}")
        set_epoch_axis(ax, log_x=log_x)
    axes[0, 0].set_ylabel("cosine of clean and noisy class means\n(lower = stronger separation)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", frameon=False, title="layer")
    fig.suptitle("Clean-noisy signal separation over training, per layer (mean over classes)")
    return fig


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
    results : xr.DataTree
        Uses node ``/pca``: ``trajectory`` (layer, grouping, epoch, class, component) and
        ``explained_variance_ratio`` (layer, component).
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
    pca = _node(results, "pca")
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
        ratio = pca["explained_variance_ratio"].sel(layer=layer).values
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
        ax.set_xlabel(f"PC1 ({_percent(ratio[0])} of variance)")
        ax.set_ylabel(f"PC2 ({_percent(ratio[1] if len(ratio) > 1 else np.nan)} of variance)")
    for ax in list(axes.flat)[len(layers):]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], color=group_style[g]["color"], marker=group_style[g]["marker"], linewidth=0.8, label=group_style[g]["label"])
        for g in groupings
    ]
    handles.append(Line2D([], [], color="grey", marker="o", markersize=2.5, linestyle="none", label=f"epoch {int(epochs[0])} (start)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle(f"Class-mean trajectories in the first two principal components, epochs {int(epochs[0])}-{int(epochs[-1])} (numbers: class at the last epoch)")
    return fig


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%" if np.isfinite(fraction) else "n/a"


def _floor_log_axis(ax: Axes, values: np.ndarray, decades: float = 4.0) -> None:
    """Show at most ``decades`` decades below the largest value on a log axis (silent units leave the bottom)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size:
        ax.set_ylim(bottom=max(float(positive.min()), float(positive.max()) / 10**decades) / 1.5)


@styled
def plot_large_activation(results: Any, *, log_x: bool = False) -> Figure:
    """Magnitude of each layer's dominant unit over training beside the test loss (shared epoch axis).

    Parameters
    ----------
    results : xr.DataTree
        Uses ``/large_activation`` (``unit_mean_abs``, ``unit_ratio_to_median``, ``dominant_unit``,
        ``is_dominant``, ``emergence_epoch``; dims layer, epoch) and ``/curves`` (``test_loss``).
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Top: mean |activation| of the unit that is largest at the last epoch, per layer (log scale);
        middle: the same as a multiple of the layer's median unit; bottom: test loss.
    """
    large = _node(results, "large_activation")
    layers = [str(v) for v in large["layer"].values]
    epochs = large["epoch"].values
    fig, axes = new_figure(3, 1, width=8.0, height=7.4, sharex=True, height_ratios=[1.2, 1.0, 0.9])
    ax_mag, ax_ratio, ax_loss = axes[:, 0]
    for i, layer in enumerate(layers):
        unit = int(large["dominant_unit"].sel(layer=layer).values)
        dominant = bool(large["is_dominant"].sel(layer=layer).values)
        style = {**layer_style(layer, i), "marker": "o", "markersize": 2.5}
        label = f"{layer} unit {unit}" + (" (dominant)" if dominant else "")
        ax_mag.plot(epochs, large["unit_mean_abs"].sel(layer=layer).values, label=label, **style)
        ax_ratio.plot(epochs, large["unit_ratio_to_median"].sel(layer=layer).values, **style)
        emergence = float(large["emergence_epoch"].sel(layer=layer).values)
        if np.isfinite(emergence):
            for ax in (ax_mag, ax_ratio, ax_loss):
                ax.axvline(emergence, color=style["color"], linestyle=":", linewidth=1.0, alpha=0.8)
    ax_mag.set_yscale("log")
    _floor_log_axis(ax_mag, large["unit_mean_abs"].values)
    ax_mag.set_ylabel("mean |activation|\nof the unit (log)")
    ax_mag.set_title("Largest unit of each layer at the last epoch, followed over training\n"
                     "(dotted: dominance emerges; a line leaving the bottom: the unit falls silent)")
    ax_mag.legend(loc="best", frameon=False, ncol=2)
    ax_ratio.set_yscale("log")
    _floor_log_axis(ax_ratio, large["unit_ratio_to_median"].values)
    threshold = float(results.attrs.get("parameters", {}).get("min_ratio_to_median", 10.0))
    ax_ratio.axhline(threshold, color=PHASE_COLOR, linestyle="--", linewidth=0.9)
    ax_ratio.text(1.0, threshold, f"dominance threshold x{threshold:g} ", transform=ax_ratio.get_yaxis_transform(), ha="right", va="bottom", fontsize=7, color=PHASE_COLOR)
    ax_ratio.set_ylabel("ratio to the layer's\nmedian unit (log)")
    if "curves" in results.children:
        curves = results["curves"].to_dataset()
        ax_loss.plot(curves["epoch"].values, curves["test_loss"].values, color=OKABE_ITO["black"], label="test loss")
        unstable = curves["unstable"] if "unstable" in curves else None
        label_epochs(ax_loss, mark_phases(ax_loss, phases_from_results(results)) + mark_instabilities(ax_loss, unstable, label=None))
        for ax in (ax_mag, ax_ratio):
            mark_instabilities(ax, unstable, label=None)
    ax_loss.set_ylabel("test cross-entropy\n(nats)")
    for ax in (ax_mag, ax_ratio):
        set_epoch_axis(ax, log_x=log_x, label=False)
    set_epoch_axis(ax_loss, log_x=log_x)
    fig.suptitle("Large activations over training, beside the test loss")
    return fig


@styled
def plot_explanation(results: Any, *, alpha: float = 0.05) -> Figure:
    """Input versus output explanation of each layer's largest unit: cross-validated R^2 and eta^2 with p-values.

    Parameters
    ----------
    results : xr.DataTree
        Uses ``/large_activation``: ``input_r2``, ``input_p_value`` (layer) and ``output_r2``,
        ``output_eta2``, ``output_p_value`` (layer, target).
    alpha : float
        Significance level; bars with p >= alpha are drawn hatched and light.

    Returns
    -------
    Figure
        Left: grouped bars per layer of the cross-validated R^2 predicting the unit's per-sample
        |activation| from the input image, the assigned label, the original label and the
        predicted class, p-values above the bars. Right: eta^2 of the three class targets.
    """
    large = _node(results, "large_activation")
    layers = [str(v) for v in large["layer"].values]
    targets = [str(t) for t in large["target"].values]
    target_names = {"label": "assigned label", "original_label": "original label", "predicted": "predicted class"}
    colors = [OKABE_ITO["blue"], OKABE_ITO["vermillion"], OKABE_ITO["orange"], OKABE_ITO["green"]]
    series = [("input image", large["input_r2"].values, large["input_p_value"].values)]
    series += [(target_names.get(t, t), large["output_r2"].sel(target=t).values, large["output_p_value"].sel(target=t).values) for t in targets]
    fig, axes = new_figure(1, 2, width=11.0, height=4.4, width_ratios=[1.6, 1.0])
    ax_r2, ax_eta = axes[0]
    x = np.arange(len(layers))
    width = 0.8 / len(series)
    color_of = {name: colors[k % len(colors)] for k, (name, _, _) in enumerate(series)}
    for k, (name, r2, p) in enumerate(series):
        positions = x - 0.4 + width * (k + 0.5)
        color = color_of[name]
        for pos, value, pval in zip(positions, r2, p):
            if not np.isfinite(value):
                continue
            significant = bool(pval < alpha)
            ax_r2.bar(
                pos, value, width, color=color, alpha=1.0 if significant else 0.35, hatch=None if significant else "//",
                edgecolor="white" if significant else color, linewidth=0.5,
            )
            ax_r2.annotate(
                f"p={pval:.2g}", (pos, max(value, 0.0)), xytext=(0, 2), textcoords="offset points",
                ha="center", va="bottom", fontsize=6, rotation=90,
            )
    ax_r2.axhline(0.0, color="black", linewidth=0.6)
    ax_r2.set_xticks(x, [f"{layer}\nunit {int(large['dominant_unit'].sel(layer=layer).values)}" for layer in layers])
    ax_r2.set_ylabel("cross-validated R$^2$ (1 = fully predicted)")
    top = max(float(np.nanmax(np.r_[s[1], 0.0])) for s in series)
    ax_r2.set_ylim(top=max(0.1, top) * 1.25 + 0.05)
    ax_r2.set_title(f"Predicting the unit's |activation| at the last epoch (hatched: p $\\geq$ {alpha:g})")
    width_eta = 0.8 / len(targets)
    for k, t in enumerate(targets):
        ax_eta.bar(
            x - 0.4 + width_eta * (k + 0.5), large["output_eta2"].sel(target=t).values, width_eta,
            color=color_of[target_names.get(t, t)],
        )
    ax_eta.set_xticks(x, layers)
    ax_eta.set_ylim(0, 1)
    ax_eta.set_ylabel("$\\eta^2$ (share of variance between classes)")
    ax_eta.set_title("Correlation ratio with the class targets (in-sample)")
    for ax in (ax_r2, ax_eta):
        ax.grid(axis="x", visible=False)
    handles = [Patch(facecolor=color, label=f"from {name}") for name, color in color_of.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle("Is the large activation explained by the inputs or by the outputs?")
    return fig


@styled
def plot_path_attribution(results: Any, *, log_x: bool = False) -> Figure:
    """Share of test probes whose activation is closer to the clean than to the noisy signal, correct vs wrong predictions.

    Parameters
    ----------
    results : xr.DataTree
        Uses ``/paths``: ``clean_share_correct``, ``clean_share_wrong`` (layer, epoch),
        ``n_correct``, ``n_wrong`` (epoch).
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Two panels (correct, wrong test predictions), one line per layer: percentage of test
        probes following the clean path (cosine to the clean class mean >= cosine to the noisy
        class mean of the predicted class).
    """
    paths = _node(results, "paths")
    layers = [str(v) for v in paths["layer"].values]
    epochs = paths["epoch"].values
    fig, axes = new_figure(1, 2, width=10.0, height=3.8, sharey=True)
    panels = (
        ("clean_share_correct", "n_correct", "Correctly predicted test probes"),
        ("clean_share_wrong", "n_wrong", "Wrongly predicted test probes"),
    )
    for ax, (name, count, title) in zip(axes[0], panels):
        for i, layer in enumerate(layers):
            ax.plot(
                epochs, 100 * paths[name].sel(layer=layer).values, **layer_style(layer, i), marker="o", markersize=2.5, label=layer,
            )
        ax.axhline(50, color=PHASE_COLOR, linestyle=":", linewidth=0.8)
        n = paths[count].values
        ax.set_title(f"{title} (n = {int(n[-1])} at epoch {int(epochs[-1])})")
        set_epoch_axis(ax, log_x=log_x)
    axes[0, 0].set_ylim(-3, 103)
    axes[0, 0].set_ylabel("closer to clean than to noisy signal (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", frameon=False, title="layer")
    fig.suptitle("Path attribution: do test activations follow the clean or the noisy signal of the predicted class?")
    return fig


# -- comparison figures ---------------------------------------------------------------------------------


@styled
def plot_compare_test_loss(results_by_run: Mapping[str, Any], *, log_x: bool = False) -> Figure:
    """Test loss and test error of several runs overlaid, double-descent peaks marked.

    Parameters
    ----------
    results_by_run : mapping of run name -> xr.DataTree
        Analysis results (node ``/curves``) in the order to show them.
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Two panels sharing the epoch axis: test cross-entropy (nats) and test error (%).
    """
    fig, axes = new_figure(1, 2, width=10.0, height=3.8)
    ax_loss, ax_err = axes[0]
    for i, (name, results) in enumerate(results_by_run.items()):
        curves = _node(results, "curves")
        style = series_style(i)
        epochs = curves["epoch"].values
        ax_loss.plot(epochs, curves["test_loss"].values, label=name, **style)
        ax_err.plot(epochs, 100 * (1 - curves["test_acc"].values), **style)
        for ax, curve, scale in ((ax_loss, "test_loss", 1.0), (ax_err, "test_error", 100.0)):
            if bool(curves["dd_present"].sel(curve=curve).values):
                peak = float(curves["dd_peak_epoch"].sel(curve=curve).values)
                ax.plot(peak, scale * float(curves["dd_peak"].sel(curve=curve).values), "v", color=style["color"], markersize=7, markeredgecolor="white")
    for ax in (ax_loss, ax_err):
        set_epoch_axis(ax, log_x=log_x)
    ax_loss.set_ylabel("test cross-entropy (nats)")
    ax_loss.set_title("Test loss (triangle: double-descent peak)")
    ax_err.set_ylabel("test error (%)")
    ax_err.set_title("Test error (triangle: double-descent peak)")
    handles, labels = ax_loss.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), frameon=False)
    fig.suptitle("Test curves of the compared runs")
    return fig


@styled
def plot_compare_separation(results_by_run: Mapping[str, Any], *, log_x: bool = False) -> Figure:
    """Clean-noisy separation per run: rows = grouping of noisy probes, columns = runs, one line per layer.

    Parameters
    ----------
    results_by_run : mapping of run name -> xr.DataTree
        Analysis results (node ``/separation``).
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Cosine of clean and noisy class means (mean over classes) over epochs; the y axis is shared.
    """
    names = list(results_by_run)
    fig, axes = new_figure(2, len(names), width=3.6 * len(names) + 1.4, height=6.2, sharey=True)
    for j, name in enumerate(names):
        separation = _node(results_by_run[name], "separation")
        layers = [str(v) for v in separation["layer"].values]
        for row, (grouping, label) in enumerate(GROUPINGS_SHOWN.items()):
            ax = axes[row, j]
            for i, layer in enumerate(layers):
                ax.plot(
                    separation["epoch"].values, separation[f"cos_clean_{grouping}_mean"].sel(layer=layer).values,
                    **layer_style(layer, i), marker="o", markersize=2, label=layer,
                )
            ax.set_title(f"{name}\nclean vs noisy by {label.split('by ')[1]}", fontsize=RC["axes.titlesize"] - 1)
            set_epoch_axis(ax, log_x=log_x, label=row == 1)
    for row in range(2):
        axes[row, 0].set_ylabel("cosine clean vs noisy\n(lower = more separated)")
    handles, labels = [], []
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="outside right center", frameon=False, title="layer")
    fig.suptitle("Clean-noisy signal separation of the compared runs (mean over classes)")
    return fig
