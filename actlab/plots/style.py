"""The shared look of every actlab figure: the Okabe-Ito palette, series and layer styles, curve, group and phase
styles, the rc settings (:func:`styled`), and the epoch-axis helpers (phases, labels, instabilities)."""

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
