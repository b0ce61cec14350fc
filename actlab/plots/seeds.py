"""Results of several seeds in one figure: the replicas of a results tree or list, their stack along ``seed``, and the
median line with its min-max band."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.lines import Line2D


def results_node(results: Any, name: str) -> xr.Dataset:
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
    return stack_replicas([results_node(tree, node)[var] for tree in replicas(results)])


BAND_ALPHA = 0.12
"""Opacity of the min-max band over seeds (light, and drawn under every line, so that overlapping bands leave the
median lines visible)."""


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
    (line,) = ax.plot(x, stack.median("seed").values, **{"zorder": 2.5, **style})
    if stack.sizes["seed"] > 1:
        ax.fill_between(x, stack.min("seed").values, stack.max("seed").values, color=line.get_color(), alpha=BAND_ALPHA,
                        linewidth=0, zorder=1)
    return line
