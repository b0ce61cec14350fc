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
import textwrap
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
from matplotlib.transforms import ScaledTranslation

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
    datasets = replicas(metrics)
    for dataset in datasets:
        missing = [f"{prefix}_{kind}" for prefix in CURVES for kind in ("loss", "acc") if f"{prefix}_{kind}" not in dataset]
        if missing:
            raise ValueError(f"metrics lack {missing}; pass open_store(run).metrics")
        if "epoch" not in dataset.dims:
            raise ValueError(f"metrics must have dim 'epoch'; got dims {tuple(dataset.dims)}")
    fig, axes = new_figure(1, 2, width=9.0, height=3.6)
    ax_loss, ax_acc = axes[0]
    for prefix, style in CURVES.items():
        loss = stack_replicas([dataset[f"{prefix}_loss"] for dataset in datasets])
        acc = 100.0 * stack_replicas([dataset[f"{prefix}_acc"] for dataset in datasets])
        draw_band(ax_loss, loss["epoch"].values, loss, color=style["color"], linestyle=style["linestyle"], label=style["label"])
        draw_band(ax_acc, acc["epoch"].values, acc, color=style["color"], linestyle=style["linestyle"], label=style["label"])
    ax_loss.set_ylabel("cross-entropy loss (nats)")
    ax_loss.set_title("Loss by sample group")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(-2, 102)
    ax_acc.set_title("Accuracy by sample group")
    label = INSTABILITY_LABEL if len(datasets) == 1 else f"{INSTABILITY_LABEL} in at least one seed"
    for ax in (ax_loss, ax_acc):
        set_epoch_axis(ax, log_x=log_x)
        label_epochs(ax, mark_phases(ax, phases) + mark_instabilities(ax, unstable, label=label))
    handles, labels = ax_loss.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    default = "Training curves: clean, noisy (vs assigned and original labels) and test samples"
    fig.suptitle(seeds_title(title or default, len(datasets)))
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


def replicas(results: Any) -> list[Any]:
    """``results`` as a list of replicas: ``[results]`` for one results tree (or dataset), else the items of the sequence."""
    if isinstance(results, (xr.DataTree, xr.Dataset)):
        return [results]
    items = list(results)
    if not items:
        raise ValueError("no results: pass one results tree or a non-empty sequence of replicas")
    return items


def stack_replicas(arrays: Sequence[xr.DataArray]) -> xr.DataArray:
    """Arrays of the replicas of one ensemble stacked along a new first dim ``seed`` (0..N-1).

    Raises
    ------
    ValueError
        The replicas differ in their coordinates (epochs, layers...): they are not one ensemble.
    """
    try:
        return xr.concat(list(arrays), dim="seed", join="exact", coords="minimal", compat="override").assign_coords(
            seed=np.arange(len(arrays)))
    except ValueError as exc:
        raise ValueError(f"replicas of one ensemble must share their epochs and layers: {exc}") from exc


def replica_stack(results: Any, node: str, var: str) -> xr.DataArray:
    """Variable ``var`` of node ``node`` of one results tree or of each replica of a sequence, along a new dim ``seed``.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        Analysis results of one run, or of the replicas (seeds) of one ensemble (same epochs and layers).
    node, var : str
        Results node (``"curves"``, ``"separation"``...) and variable name.

    Returns
    -------
    xr.DataArray
        Dims ``("seed", *dims of var)``; ``seed`` has length 1 for one results tree.
    """
    return stack_replicas([_node(tree, node)[var] for tree in replicas(results)])


BAND_ALPHA = 0.2
"""Opacity of the min-max band over seeds."""


def band_note(n_seeds: int) -> str:
    """What a shaded band means, for legends and titles."""
    return f"band: min-max over {n_seeds} seeds"


def seeds_title(title: str, n_seeds: int) -> str:
    """``title``, with a line saying what the lines and bands are when there are several seeds."""
    return title if n_seeds == 1 else f"{title}\nlines: median over {n_seeds} seeds; {band_note(n_seeds)}"


def draw_band(ax: Axes, x: np.ndarray, stack: xr.DataArray, **style: Any) -> Line2D:
    """The median over dim ``seed`` of ``stack`` (seed, x) as a line; with several seeds also its min-max band.

    With one seed the line is the values themselves and nothing is shaded. With 5 seeds the min-max
    range is a distribution-free ~94 % interval of the median.
    """
    (line,) = ax.plot(x, stack.median("seed").values, **style)
    if stack.sizes["seed"] > 1:
        ax.fill_between(x, stack.min("seed").values, stack.max("seed").values, color=line.get_color(), alpha=BAND_ALPHA,
                        linewidth=0, zorder=line.get_zorder() - 0.1)
    return line


def phases_from_results(results: Any, curve: str = "test_loss") -> dict[str, float | None]:
    """Phase epochs to mark on epoch axes: double-descent minima and peak of ``curve``, noisy-label memorisation.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        One run's results, or its replicas: then each phase is the median epoch over the seeds where it was found.

    Returns
    -------
    dict
        Keys of :data:`PHASES` -> epoch, or None where not found (no double descent, never memorised).
    """
    per_seed = [_phases(tree, curve) for tree in replicas(results)]
    return {name: _median_found([phases[name] for phases in per_seed]) for name in PHASES}


def _median_found(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return float(np.median(found)) if found else None


def _phases(results: Any, curve: str) -> dict[str, float | None]:
    """:func:`phases_from_results` of one results tree."""
    curves = _node(results, "curves")

    def value(name: str, **sel: Any) -> float | None:
        if name not in curves:
            return None
        v = float(curves[name].sel(sel).values) if sel else float(curves[name].values)
        return v if np.isfinite(v) else None

    present = bool(curves["dd_present"].sel(curve=curve).values) if "dd_present" in curves else False
    return {
        "first_minimum": value("dd_first_min_epoch", curve=curve) if present else None,
        "peak": value("dd_peak_epoch", curve=curve) if present else None,
        "second_minimum": value("dd_second_min_epoch", curve=curve) if present else None,
        "memorisation": value("noisy_fitted_epoch"),
    }


def unstable_in_any(results: Any) -> xr.DataArray | None:
    """Epochs of training instability (``/curves`` ``unstable``) in at least one replica; None when not computed."""
    trees = replicas(results)
    if not all("unstable" in _node(tree, "curves") for tree in trees):
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
        See :func:`plot_metrics`; the markers are the double-descent first minimum,
        peak and second minimum of the test loss (when present) and the epoch where
        noisy training samples are fitted (train accuracy against assigned labels >= 99 %);
        training instabilities are shaded.
    """
    trees = replicas(results)
    curves = [_node(tree, "curves") for tree in trees]
    present = sum(bool(c["dd_present"].sel(curve="test_loss").values) for c in curves)
    if len(trees) == 1:
        title = "Training curves by sample group; test loss " + ("shows double descent" if present else "shows no double descent")
    else:
        title = f"Training curves by sample group; test loss shows double descent in {present} of {len(trees)} seeds"
    return plot_metrics(curves, phases=phases_from_results(trees), unstable=unstable_in_any(trees), log_x=log_x, title=title)


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
        ax.set_yticks(np.arange(len(layers)), layers)
        _epoch_ticks(ax, epochs)
        ax.set_xlabel("recorded epoch (evenly spaced columns)")
        ax.grid(False)
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
    pca = _node(trees[0], "pca")
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


def _floor_log_axis(ax: Axes, values: np.ndarray, decades: float = 4.0) -> None:
    """Show at most ``decades`` decades below the largest value on a log axis (silent units leave the bottom)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size:
        ax.set_ylim(bottom=max(float(positive.min()), float(positive.max()) / 10**decades) / 1.5)


def _unit_label(trees: Sequence[Any], layer: str) -> str:
    """Legend label of a layer's followed unit: its number (one run) or in how many seeds it is dominant."""
    dominant = replica_stack(trees, "large_activation", "is_dominant").sel(layer=layer).values.astype(bool)
    if len(trees) == 1:
        unit = int(_node(trees[0], "large_activation")["dominant_unit"].sel(layer=layer).values)
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
        middle: the same as a multiple of the layer's median unit; bottom: test loss.
    """
    trees = replicas(results)
    magnitude = replica_stack(trees, "large_activation", "unit_mean_abs")
    ratio = replica_stack(trees, "large_activation", "unit_ratio_to_median")
    emergence = replica_stack(trees, "large_activation", "emergence_epoch").median("seed")
    layers = [str(v) for v in magnitude["layer"].values]
    epochs = magnitude["epoch"].values
    fig, axes = new_figure(3, 1, width=8.0, height=7.4, sharex=True, height_ratios=[1.2, 1.0, 0.9])
    ax_mag, ax_ratio, ax_loss = axes[:, 0]
    for i, layer in enumerate(layers):
        style = {**layer_style(layer, i), "marker": "o", "markersize": 2.5}
        draw_band(ax_mag, epochs, magnitude.sel(layer=layer), label=_unit_label(trees, layer), **style)
        draw_band(ax_ratio, epochs, ratio.sel(layer=layer), **style)
        epoch = float(emergence.sel(layer=layer).values)
        if np.isfinite(epoch):
            for ax in (ax_mag, ax_ratio, ax_loss):
                ax.axvline(epoch, color=style["color"], linestyle=":", linewidth=1.0, alpha=0.8)
    ax_mag.set_yscale("log")
    _floor_log_axis(ax_mag, magnitude.values)
    ax_mag.set_ylabel("mean |activation|\nof the unit (log)")
    ax_mag.set_title("Largest unit of each layer at the last epoch, followed over training\n"
                     "(dotted: dominance emerges; a line leaving the bottom: the unit falls silent)")
    ax_mag.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=7)
    ax_ratio.set_yscale("log")
    _floor_log_axis(ax_ratio, ratio.values)
    threshold = float(trees[0].attrs.get("parameters", {}).get("min_ratio_to_median", 10.0))
    ax_ratio.axhline(threshold, color=PHASE_COLOR, linestyle="--", linewidth=0.9)
    ax_ratio.text(1.0, threshold, f"dominance threshold x{threshold:g} ", transform=ax_ratio.get_yaxis_transform(), ha="right", va="bottom", fontsize=7, color=PHASE_COLOR)
    ax_ratio.set_ylabel("ratio to the layer's\nmedian unit (log)")
    if all("curves" in tree.children for tree in trees):
        loss = replica_stack(trees, "curves", "test_loss")
        draw_band(ax_loss, loss["epoch"].values, loss, color=OKABE_ITO["black"], label="test loss")
        unstable = unstable_in_any(trees)
        label_epochs(ax_loss, mark_phases(ax_loss, phases_from_results(trees)) + mark_instabilities(ax_loss, unstable, label=None))
        for ax in (ax_mag, ax_ratio):
            mark_instabilities(ax, unstable, label=None)
    ax_loss.set_ylabel("test cross-entropy\n(nats)")
    for ax in (ax_mag, ax_ratio):
        set_epoch_axis(ax, log_x=log_x, label=False)
    set_epoch_axis(ax_loss, log_x=log_x)
    fig.suptitle(seeds_title("Large activations over training, beside the test loss", len(trees)))
    return fig


EXPLAINED_COLORS: dict[str, str] = {"input": OKABE_ITO["blue"], "output": OKABE_ITO["vermillion"], "undecided": "#7f7f7f"}
"""Colour of each ``explained_by`` verdict."""

EXPLAINED_RULE = ("rule: input if the interval lies above 0 and input p < 0.05;\n"
                  "output if it lies below 0 and the best target's p < 0.05; otherwise undecided")
"""The rule of ``/large_activation`` ``explained_by`` (:func:`actlab.analysis.large_activation.explained_by`)."""


def _p_text(p_values: np.ndarray, p_floor: float, alpha: float) -> str:
    """A bar's p-value: "p=0.03", "p<=0.005" at the permutation floor; with seeds, in how many p < alpha."""
    if len(p_values) > 1:
        return f"p<{alpha:g}: {int(np.sum(p_values < alpha))}/{len(p_values)}"
    p = float(p_values[0])
    return f"p$\\leq${p_floor:.2g}" if p <= p_floor * (1 + 1e-9) else f"p={p:.2g}"


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
    targets = replica_stack(trees, "large_activation", "best_output_target")
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
        if n == 1:
            text = f"{seeds[0]}\nvs {str(targets.sel(layer=layer).values[0]).replace('_', ' ')}"
        else:
            text = "\n".join(f"{v} {seeds.count(v)}/{n}" for v in dict.fromkeys(seeds))
        ax.annotate(text, (x, 1.0), xycoords=("data", "axes fraction"), xytext=(0, -2), textcoords="offset points",
                    ha="center", va="top", fontsize=7)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(np.arange(len(layers)), layers)
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
        bars at the median with min-max whiskers, p-values as the number of seeds with p < ``alpha``,
        one difference interval per seed.
    alpha : float
        Significance level; bars with (median) p >= alpha are drawn hatched and light.

    Returns
    -------
    Figure
        Top: grouped bars per layer of the cross-validated R^2 predicting the unit's per-sample
        |activation| from the input image, the assigned label, the original label and the
        predicted class, p-values above the bars (at the permutation floor: "p <= floor").
        Bottom left: R^2 input minus R^2 of the best output target with its 95 % paired-bootstrap
        interval, coloured and labelled by the verdict ``explained_by``, and the rule that chose it.
        Bottom right: eta^2 of the three class targets.
    """
    trees = replicas(results)
    large = _node(trees[0], "large_activation")
    p_floor = float(large.attrs.get("p_floor", 0.0))
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
            ax_r2.annotate(
                _p_text(p_values, p_floor, alpha), (pos, max(float(values.max("seed").values), 0.0)), xytext=(0, 2),
                textcoords="offset points", ha="center", va="bottom", fontsize=6, rotation=90,
            )
    ax_r2.axhline(0.0, color="black", linewidth=0.6)
    if len(trees) == 1:
        ax_r2.set_xticks(x, [f"{layer}\nunit {int(large['dominant_unit'].sel(layer=layer).values)}" for layer in layers])
    else:
        ax_r2.set_xticks(x, [f"{layer}\n(largest unit of each seed)" for layer in layers])
    ax_r2.set_ylabel("cross-validated R$^2$ (1 = fully predicted)")
    top = max(float(np.nanmax(np.r_[s[1].values.ravel(), 0.0])) for s in series)
    ax_r2.set_ylim(top=max(0.1, top) * 1.3 + 0.05)
    ax_r2.set_title(f"Predicting the unit's |activation| at the last epoch (hatched: p $\\geq$ {alpha:g})")
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
        ax.errorbar(epochs[has_null], centre[has_null], yerr=[centre[has_null] - low[has_null], high[has_null] - centre[has_null]],
                    fmt="_", color=style["color"], markersize=6, capsize=2.5, elinewidth=1.2,
                    transform=ax.transData + shift, label=f"_null {layer}")
    ax.axhline(0, color=PHASE_COLOR, linestyle=":", linewidth=0.8)
    ax.set_ylim(-105, 105)
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
        ax.set_title(f"{title} ({counted} at epoch {int(epochs[-1])})")
        set_epoch_axis(ax, log_x=log_x, label=False)
    axes["correct"].set_ylim(-3, 103)
    axes["correct"].set_ylabel("closer to clean than to noisy signal (%)")
    _draw_split(axes["split"], trees)
    set_epoch_axis(axes["split"], log_x=log_x)
    handles, labels = axes["correct"].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", frameon=False, title="layer")
    fig.suptitle(seeds_title("Path attribution: do test activations follow the clean or the noisy signal of the predicted class?", len(trees)))
    return fig


# -- comparison figures ---------------------------------------------------------------------------------


MAX_OVERLAID = 4
"""Compared runs drawn in one panel; more get one small panel each (small multiples)."""


def robust_top(values: np.ndarray, *, percentile: float = 99.0) -> float | None:
    """Upper y limit that leaves out rare extreme values (a loss spike), or None when nothing needs cutting.

    Extreme: more than the 1st-to-``percentile``-th percentile range above the ``percentile``-th percentile.
    The limit is the largest other value plus 5 % of the values' range below it.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    low, high = np.percentile(finite, [100 - percentile, percentile])
    kept = finite[finite <= high + (high - low)]
    if kept.size == finite.size:
        return None
    return float(kept.max() + 0.05 * (kept.max() - finite.min()))


def _draw_run_curve(ax: Axes, stack: xr.DataArray, style: Mapping[str, Any], top: float | None, *, label: str | None = None) -> None:
    """A run's curve (median over seeds, min-max band) with triangles at the top edge where it is cut above ``top``."""
    epochs = stack["epoch"].values
    draw_band(ax, epochs, stack, **style, label=label)
    if top is not None:
        cut = stack.max("seed").values > top
        (marks,) = ax.plot(epochs[cut], np.full(int(cut.sum()), top), "^", color=style["color"], markersize=6, clip_on=False,
                           markeredgecolor="white", markeredgewidth=0.5)
        marks.set_in_layout(False)


def _cut_note(stacks: Mapping[str, xr.DataArray], top: float | None, unit: str) -> str:
    """Which runs the y limit ``top`` cuts, and how high they go."""
    if top is None:
        return ""
    cut = []
    for name, stack in stacks.items():
        peak = stack.max("seed")
        if float(peak.max()) > top:
            epoch = int(peak["epoch"].values[int(np.nanargmax(peak.values))])
            cut.append(f"{name} (up to {float(peak.max()):.3g} {unit} at epoch {epoch})")
    return f"y axis cut at {top:.3g} {unit} (triangles: values above it): " + ", ".join(cut)


def _dd_peaks(ax: Axes, trees: Sequence[Any], curve: str, scale: float, color: str) -> None:
    """A triangle at the double-descent peak of ``curve`` of each replica where one was found."""
    for tree in trees:
        curves = _node(tree, "curves")
        if bool(curves["dd_present"].sel(curve=curve).values):
            ax.plot(float(curves["dd_peak_epoch"].sel(curve=curve).values), scale * float(curves["dd_peak"].sel(curve=curve).values),
                    "v", color=color, markersize=7, markeredgecolor="white")


def _run_label(name: str, trees: Sequence[Any]) -> str:
    return name if len(trees) == 1 else f"{name} ({len(trees)} seeds)"


@styled
def plot_compare_test_loss(results_by_run: Mapping[str, Any], *, log_x: bool = False) -> Figure:
    """Test loss and test error of several runs, double-descent peaks marked, extreme spikes cut off.

    Parameters
    ----------
    results_by_run : mapping of run name -> xr.DataTree or sequence of xr.DataTree
        Analysis results (node ``/curves``) in the order to show them; a sequence holds the replicas
        (seeds) of one ensemble, drawn as the median with a min-max band.
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Up to :data:`MAX_OVERLAID` runs: two panels sharing the epoch axis, test cross-entropy (nats) and
        test error (%), one line per run. More runs: small multiples, one loss and one error panel per
        run (shared axes, the other runs in light grey behind). A rare extreme value (a loss spike) cuts the
        y axis at the 99th percentile (:func:`robust_top`), said in the title and marked by triangles.
    """
    runs = {name: replicas(results) for name, results in results_by_run.items()}
    loss = {name: replica_stack(trees, "curves", "test_loss") for name, trees in runs.items()}
    error = {name: 100 * (1 - replica_stack(trees, "curves", "test_acc")) for name, trees in runs.items()}
    panels = (("test_loss", loss, 1.0, "test cross-entropy (nats)", "nats"), ("test_error", error, 100.0, "test error (%)", "%"))
    tops = [robust_top(np.concatenate([s.values.ravel() for s in stacks.values()])) for _, stacks, _, _, _ in panels]
    if len(runs) <= MAX_OVERLAID:
        fig, axes = new_figure(1, 2, width=10.0, height=3.8)
        cells = [(axes[0, 0], axes[0, 1])] * len(runs)
    else:
        ncols = int(np.ceil(np.sqrt(len(runs))))
        nrows = -(-len(runs) // ncols)
        fig, axes = new_figure(2 * nrows, ncols, width=2.6 * ncols + 0.8, height=3.2 * nrows + 1.2, sharex=True)
        for row in range(2 * nrows):
            for ax in axes[row]:
                ax.sharey(axes[row % 2, 0])
        cells = [(axes[2 * (k // ncols), k % ncols], axes[2 * (k // ncols) + 1, k % ncols]) for k in range(len(runs))]
        for k in range(len(runs), nrows * ncols):
            axes[2 * (k // ncols), k % ncols].set_axis_off()
            axes[2 * (k // ncols) + 1, k % ncols].set_axis_off()
    for i, (name, trees) in enumerate(runs.items()):
        style = series_style(i)
        for (curve, stacks, scale, _, _), ax, top in zip(panels, cells[i], tops):
            if len(runs) > MAX_OVERLAID:
                for other, stack in stacks.items():
                    if other != name:
                        ax.plot(stack["epoch"].values, stack.median("seed").values, color="#bbbbbb", linewidth=0.7, zorder=1)
                if curve == "test_loss":
                    ax.set_title(_run_label(name, trees), fontsize=RC["axes.titlesize"] - 1)
            _draw_run_curve(ax, stacks[name], style, top, label=_run_label(name, trees))
            _dd_peaks(ax, trees, curve, scale, style["color"])
    for (_, stacks, _, ylabel, _), top, row in zip(panels, tops, (0, 1)):
        for ax in (axes[row::2].flat if len(runs) > MAX_OVERLAID else [axes[0, row]]):
            if top is not None:
                bottom = min(float(np.nanmin(stack.values)) for stack in stacks.values())
                ax.set_ylim(bottom - 0.05 * (top - bottom), top)
            set_epoch_axis(ax, log_x=log_x, label=ax in axes[-1] or len(runs) <= MAX_OVERLAID)
        for ax in (axes[row::2, 0] if len(runs) > MAX_OVERLAID else [axes[0, row]]):
            ax.set_ylabel(ylabel)
    notes = [n for n in (_cut_note(stacks, top, unit) for (_, stacks, _, _, unit), top in zip(panels, tops)) if n]
    if len(runs) <= MAX_OVERLAID:
        axes[0, 0].set_title("Test loss (triangle: double-descent peak)")
        axes[0, 1].set_title("Test error (triangle: double-descent peak)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), frameon=False)
        title = "Test curves of the compared runs"
    else:
        title = "Test loss (upper panel of each run) and test error (lower) of the compared runs; grey: the other runs; ▼: double-descent peak"
    n_seeds = max(len(trees) for trees in runs.values())
    band = "" if n_seeds == 1 else "\nlines: median over the seeds of a run; bands: min-max over them"
    fig.suptitle(title + band + "".join(f"\n{textwrap.fill(note, 120)}" for note in notes))
    return fig


@styled
def plot_compare_separation(results_by_run: Mapping[str, Any], *, log_x: bool = False) -> Figure:
    """Clean-noisy separation per run: rows = grouping of noisy probes, columns = runs, one line per layer.

    Parameters
    ----------
    results_by_run : mapping of run name -> xr.DataTree or sequence of xr.DataTree
        Analysis results (node ``/separation``); a sequence holds the replicas of one ensemble.
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Cosine of clean and noisy class means (mean over classes) over epochs, each layer styled by its
        name (:func:`layer_style`) with its noise floor thin and dashed (:func:`draw_separation`); median
        lines and min-max bands for ensembles; the y axis is shared.
    """
    runs = {name: replicas(results) for name, results in results_by_run.items()}
    fig, axes = new_figure(2, len(runs), width=3.6 * len(runs) + 1.8, height=6.4, sharey=True)
    for j, (name, trees) in enumerate(runs.items()):
        for row, (grouping, label) in enumerate(GROUPINGS_SHOWN.items()):
            ax = axes[row, j]
            draw_separation(ax, trees, grouping, markersize=2)
            ax.set_title(f"{_run_label(name, trees)}\nclean vs noisy by {label.split('by ')[1]}", fontsize=RC["axes.titlesize"] - 1)
            set_epoch_axis(ax, log_x=log_x, label=row == 1)
    for row in range(2):
        axes[row, 0].set_ylabel("cosine clean vs noisy\n(lower = more separated)")
    handles, labels = [], []
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend([*handles, floor_handle()], [*labels, floor_handle().get_label()], loc="outside right center",
               frameon=False, title="layer")
    n_seeds = max(len(trees) for trees in runs.values())
    fig.suptitle(seeds_title("Clean-noisy signal separation of the compared runs (mean over classes)", n_seeds))
    return fig
