"""Offline interventions (:mod:`actlab.record.intervene` results): accuracy on the probes under each intervention."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from actlab.plots.style import PHASE_COLOR, new_figure, series_style, styled


@styled
def plot_interventions(results: xr.Dataset) -> Figure:
    """Accuracy on the stored probes with the epoch's weights, each rewind and each large-unit ablation.

    Parameters
    ----------
    results : xr.Dataset
        From :func:`actlab.record.intervene.intervene`: ``baseline_accuracy`` (measure), optional
        ``rewind_accuracy`` (rewind, measure), ``ablate_accuracy`` (layer, measure) and ``null_accuracy``
        (layer, draw, measure).

    Returns
    -------
    Figure
        One group of bars per measure (clean, noisy against assigned and original label, test), one bar per
        intervention; an ablation's bar has the range of its matched-random-unit null as a grey error bar.
    """
    measures = [str(m) for m in results["measure"].values]
    rows: list[tuple[str, np.ndarray, np.ndarray | None]] = [("none", results["baseline_accuracy"].values, None)]
    if "rewind_accuracy" in results:
        rows += [(f"rewind {r}", results["rewind_accuracy"].sel(rewind=r).values, None) for r in results["rewind"].values]
    if "ablate_accuracy" in results:
        for layer in results["layer"].values:
            null = results["null_accuracy"].sel(layer=layer)
            rows.append((f"ablate {layer} unit {int(results['ablated_unit'].sel(layer=layer))}",
                         results["ablate_accuracy"].sel(layer=layer).values,
                         np.stack([null.min("draw").values, null.max("draw").values])))
    fig, axes = new_figure(1, 1, width=max(7.0, 1.6 * len(measures) + 0.35 * len(rows)), height=4.2)
    ax = axes[0, 0]
    width = 0.8 / len(rows)
    x = np.arange(len(measures))
    for i, (label, values, null) in enumerate(rows):
        position = x - 0.4 + (i + 0.5) * width
        ax.bar(position, values, width, label=label, color=series_style(i)["color"], edgecolor="black", linewidth=0.3)
        if null is not None:
            ax.vlines(position, null[0], null[1], color=PHASE_COLOR, linewidth=2.0, alpha=0.7)
    ax.set_xticks(x, [m.replace("_", "\n") for m in measures])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy on the stored probes")
    ax.set_title(f"Interventions on the weights of epoch {results.attrs.get('epoch')}\n"
                 "grey bars: range of the accuracy with matched random units set to 0")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
