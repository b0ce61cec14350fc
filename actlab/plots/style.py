"""The shared look of every actlab figure: the Okabe-Ito palette, series and layer styles, curve, group and phase
styles, the rc settings (:func:`styled`), and the epoch-axis helpers (phases and instabilities, named in legends)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
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
    "test": {"color": OKABE_ITO["black"], "marker": "s", "label": "test"},
}
"""Probe group -> colour, marker and legend label."""


PHASES: dict[str, dict[str, Any]] = {
    "first_minimum": {"label": "test-loss minimum", "linestyle": (0, (5, 2))},
    "clean_learned": {"label": "clean samples learned", "linestyle": (0, (1, 1.5))},
    "peak": {"label": "double-descent peak", "linestyle": "-."},
    "second_minimum": {"label": "second minimum", "linestyle": (0, (8, 2, 1, 2, 1, 2))},
    "memorisation": {"label": "noisy labels memorised", "linestyle": (0, (2, 2.5))},
}
"""Training phases marked on epoch axes: phase name -> legend label and line style (grey, behind the data)."""


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
        steps = (1, 2, 5) if high <= 300 else (1, 3)  # over more decades, fewer ticks: "500" and "1000" run together
        nice = [t for t in [0, *(k * 10**d for d in range(6) for k in steps)] if low <= t <= high]
        ax.xaxis.set_major_locator(FixedLocator(nice))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_locator(NullLocator())
    if label:
        ax.set_xlabel(f"{EPOCH_LABEL}{' (log scale above 1)' if log_x else ''}")


def mark_phases(ax: Axes, phases: Mapping[str, float | None] | None) -> list[Line2D]:
    """Draw a grey vertical line, styled by phase (:data:`PHASES`), at each known phase epoch (``None`` is skipped).

    Returns
    -------
    list of Line2D
        Legend entries, ``test-loss minimum (epoch 13)``: the lines are named in the legend, not over the data.
    """
    handles = []
    for name, epoch in (phases or {}).items():
        if name not in PHASES or epoch is None or not np.isfinite(epoch):
            continue
        style = PHASES[name]
        ax.axvline(float(epoch), color=PHASE_COLOR, linestyle=style["linestyle"], linewidth=1.1, alpha=0.85, zorder=0.5)
        handles.append(Line2D([], [], color=PHASE_COLOR, linestyle=style["linestyle"], linewidth=1.1,
                              label=f"{style['label']} (epoch {epoch:g})"))
    return handles


INSTABILITY_LABEL = "training instability (train accuracy drop)"


INSTABILITY_COLOR = "#d62728"


def mark_instabilities(ax: Axes, unstable: xr.DataArray | None, *, label: str = INSTABILITY_LABEL,
                       max_epochs: int = 4) -> list[Patch]:
    """Shade each run of consecutive unstable epochs (``unstable``: bool over ``epoch``) from one epoch before it.

    A short run would be a hairline on a long (or log) epoch axis, so each also gets a broad red line at its
    first epoch.

    Returns
    -------
    list of Patch
        One legend entry naming the first ``max_epochs`` runs (``label: epochs 20, 89``); empty when none.
    """
    if unstable is None or not bool(unstable.any()):
        return []
    epochs = unstable["epoch"].values
    flags = unstable.values.astype(bool)
    starts = np.flatnonzero(flags & ~np.r_[False, flags[:-1]])
    ends = np.flatnonzero(flags & ~np.r_[flags[1:], False])
    for start, end in zip(starts, ends):
        ax.axvspan(float(epochs[max(start - 1, 0)]), float(epochs[end]), color=INSTABILITY_COLOR, alpha=0.15, linewidth=0, zorder=0)
        ax.axvline(float(epochs[start]), color=INSTABILITY_COLOR, linewidth=2.5, alpha=0.45, zorder=0)
    named = ", ".join(str(int(epochs[start])) for start in starts[:max_epochs]) + (", ..." if len(starts) > max_epochs else "")
    return [Patch(color=INSTABILITY_COLOR, alpha=0.4, label=f"{label}: epoch{'s' if len(starts) > 1 else ''} {named}")]
