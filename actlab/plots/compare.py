"""Figures comparing several runs: test loss and separation, overlaid or one panel per run."""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from actlab.plots.seeds import draw_band, replica_stack, replicas, results_node, seeds_title
from actlab.plots.separation import GROUPINGS_SHOWN, draw_separation, floor_handle, split_output
from actlab.plots.style import RC, new_figure, series_style, set_epoch_axis, styled


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


def _dd_peaks(ax: Axes, trees: Sequence[Any], curve: str, scale: float, color: str) -> int:
    """A triangle at the double-descent peak of ``curve`` of each replica where one was found; how many were drawn."""
    drawn = 0
    for tree in trees:
        curves = results_node(tree, "curves")
        if bool(curves["dd_present"].sel(curve=curve).values):
            ax.plot(float(curves["dd_peak_epoch"].sel(curve=curve).values), scale * float(curves["dd_peak"].sel(curve=curve).values),
                    "v", color=color, markersize=7, markeredgecolor="white")
            drawn += 1
    return drawn


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
    peaks = 0
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
            peaks += _dd_peaks(ax, trees, curve, scale, style["color"])
    for (_, stacks, _, ylabel, _), top, row in zip(panels, tops, (0, 1)):
        for ax in (axes[row::2].flat if len(runs) > MAX_OVERLAID else [axes[0, row]]):
            if top is not None:
                bottom = min(float(np.nanmin(stack.values)) for stack in stacks.values())
                ax.set_ylim(bottom - 0.05 * (top - bottom), top)
            set_epoch_axis(ax, log_x=log_x, label=ax in axes[-1] or len(runs) <= MAX_OVERLAID)
        for ax in (axes[row::2, 0] if len(runs) > MAX_OVERLAID else [axes[0, row]]):
            ax.set_ylabel(ylabel)
    notes = [n for n in (_cut_note(stacks, top, unit) for (_, stacks, _, _, unit), top in zip(panels, tops)) if n]
    marked = " (▼: double-descent peak)" if peaks else ""
    if len(runs) <= MAX_OVERLAID:
        axes[0, 0].set_title(f"Test loss{marked}")
        axes[0, 1].set_title(f"Test error{marked}")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), frameon=False)
        title = "Test curves of the compared runs"
    else:
        title = f"Test loss (upper panel of each run) and test error (lower) of the compared runs; grey: the other runs{marked}"
    n_seeds = max(len(trees) for trees in runs.values())
    band = "" if n_seeds == 1 else "; lines: median over the seeds of a run, bands: min-max over them"
    width = int(10 * fig.get_figwidth())  # characters of a title line that fit the figure
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in [title + band, *notes]))
    return fig


@styled
def plot_compare_separation(results_by_run: Mapping[str, Any], *, log_x: bool = False) -> Figure:
    """Clean-noisy separation per run: rows = grouping of noisy probes (hidden layers, then output), columns = runs.

    Parameters
    ----------
    results_by_run : mapping of run name -> xr.DataTree or sequence of xr.DataTree
        Analysis results (node ``/separation``); a sequence holds the replicas of one ensemble.
    log_x : bool
        Symmetric-log epoch axis.

    Returns
    -------
    Figure
        Cosine of clean and noisy class means (mean over classes) minus the layer's noise floor over epochs,
        each layer styled by its name (:func:`layer_style`), 0 = the floor dashed (:func:`draw_separation`);
        the output layer in rows of its own; median lines and min-max bands for ensembles; y shared per row.
    """
    runs = {name: replicas(results) for name, results in results_by_run.items()}
    layers = list(dict.fromkeys(str(v) for trees in runs.values()
                                for v in replica_stack(trees, "separation", "cos_clean_halves_mean")["layer"].values))
    parts = split_output(layers)
    panel_rows = [(grouping, label, part) for grouping, label in GROUPINGS_SHOWN.items() for part in parts]
    fig, axes = new_figure(len(panel_rows), len(runs), width=3.6 * len(runs) + 2.0, height=1.0 + 1.9 * len(panel_rows),
                           sharex=True, sharey="row", height_ratios=[2.0 if part is parts[0] else 1.0 for *_, part in panel_rows])
    for j, (name, trees) in enumerate(runs.items()):
        for row, (grouping, label, part) in enumerate(panel_rows):
            ax = axes[row, j]
            draw_separation(ax, trees, grouping, layers=part, markersize=2)
            if part is parts[0]:
                ax.set_title(f"{_run_label(name, trees)}\nclean vs noisy by {label.split('by ')[1]}", fontsize=RC["axes.titlesize"] - 1)
            set_epoch_axis(ax, log_x=log_x, label=row == len(panel_rows) - 1)
    for row, (_, _, part) in enumerate(panel_rows):
        axes[row, 0].set_ylabel("cosine minus floor" + ("\n(output layer)" if part == ["output"] else "\n(< 0: separated)"))
    handles, labels = [], []
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend([*handles, floor_handle()], [*labels, floor_handle().get_label()], loc="outside right center",
               frameon=False, title="layer")
    n_seeds = max(len(trees) for trees in runs.values())
    fig.suptitle(seeds_title("Clean-noisy separation of the compared runs: cosine of the class means minus the noise floor", n_seeds))
    return fig


def merged_layers(orders: Sequence[Sequence[str]]) -> list[str]:
    """The layer names of several runs in one order that keeps each run's own: a name first met is put right after
    the layer that precedes it in its run (``[h1, h2, output]`` then ``[h1, h2, h3, output]`` give ``[h1, h2, h3,
    output]``)."""
    merged: list[str] = []
    for order in orders:
        for i, name in enumerate(order):
            if name not in merged:
                merged.insert(merged.index(order[i - 1]) + 1 if i else 0, name)
    return merged


MEMORISATION_PANELS = {"separation": "separation: cos early - cos late\n(> null: late-memorised separate more)",
                       "split": "path split: late - early\n(> null: larger with the late signal)"}
"""The tested differences of :mod:`actlab.analysis.memorisation` drawn by :func:`plot_compare_memorisation`."""


@styled
def plot_compare_memorisation(results_by_run: Mapping[str, Any], *, log_x: bool = False) -> Figure:
    """Noisy probes memorised early against late, per run: the tested difference per layer at the last recorded epoch,
    with the 2.5-97.5 % band of its null (early/late labels permuted).

    Parameters
    ----------
    results_by_run : mapping of run name -> xr.DataTree or sequence of xr.DataTree
        Results with node ``/memorisation`` (:func:`actlab.analysis.memorisation.with_memorisation`); a sequence holds
        the replicas of one ensemble.
    log_x : bool
        Unused (the x axis is the layers); accepted as by the other comparison figures.

    Returns
    -------
    Figure
        Two panels (separation difference, path-split difference), x = the layers of every run in one order
        (:func:`merged_layers`), one line per run (an ensemble: the median over its seeds) and its null band in the
        run's colour (an ensemble: from the lowest 2.5 % point to the highest 97.5 % point of its seeds).
    """
    runs = {name: replicas(results) for name, results in results_by_run.items()}
    found = {name: [results_node(tree, "memorisation").isel(epoch=-1) for tree in trees] for name, trees in runs.items()}
    layers = merged_layers([[str(v) for v in ds["layer"].values] for sets in found.values() for ds in sets])
    fig, axes = new_figure(1, 2, width=10.0, height=3.8, sharex=True)
    x = np.arange(len(layers))
    for k, (statistic, label) in enumerate(MEMORISATION_PANELS.items()):
        ax = axes[0, k]
        for i, (name, sets) in enumerate(found.items()):
            style = series_style(i)

            def stacked(variable: str) -> np.ndarray:
                return np.stack([[float(ds[variable].sel(layer=layer)) if layer in ds["layer"].values else np.nan
                                  for layer in layers] for ds in sets])

            difference = stacked(f"{statistic}_difference")
            low, high = stacked(f"{statistic}_null_low"), stacked(f"{statistic}_null_high")
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a layer no seed holds: NaN, not drawn
                line = np.nanmedian(difference, axis=0)
                band_low, band_high = np.nanmin(low, axis=0), np.nanmax(high, axis=0)
            ax.fill_between(x, band_low, band_high, color=style["color"], alpha=0.15, linewidth=0)
            ax.plot(x, line, marker="o", markersize=4, label=_run_label(name, runs[name]), **style)
        ax.axhline(0.0, color="black", linewidth=0.6, linestyle=":")
        ax.set_xticks(x, layers, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.set_xlabel("layer")
    axes[0, 0].legend(frameon=False)
    epochs = sorted({int(ds["epoch"]) for sets in found.values() for ds in sets})
    title = (f"Noisy probes memorised late against early, per run (last recorded epoch: {', '.join(map(str, epochs))})"
             "\nbands: 95 % of the difference with the early/late labels permuted")
    if max(len(trees) for trees in runs.values()) > 1:
        title += "\nan ensemble: median over its seeds, its band from their lowest to their highest point"
    fig.suptitle(title)
    return fig
