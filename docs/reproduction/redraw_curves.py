"""Redraw the training-curve figures of docs/reproduction/ with the current code, from their committed metrics CSVs.

Usage (from the repository root)::

    python docs/reproduction/redraw_curves.py

The learning curves, double descent and phases come from :func:`actlab.analysis.curves.learning_curves` on
each stored ``*_metrics.csv`` (the ``/curves`` node ``actlab analyze`` writes), so the figure titles say what
the current double-descent rule says. Writes ``gpu/mlp7_curves.png`` (one run) and ``seeds/mlp7_curves.png``
(five seeds: median lines, min-max bands). The other figures need the analysis results, which are not
committed; docs/reproduction/FIGURES.md says which revision drew them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr

from actlab import plots
from actlab.analysis.curves import learning_curves

HERE = Path(__file__).resolve().parent


def curves_tree(csv: Path) -> xr.DataTree:
    """A results tree holding only the ``/curves`` node computed from a metrics CSV (columns of actlab.store.METRICS)."""
    metrics = pd.read_csv(csv).set_index("epoch").to_xarray()
    return xr.DataTree.from_dict({"/curves": learning_curves(metrics)})


def main() -> None:
    single = plots.plot_curves(curves_tree(HERE / "gpu" / "mlp7_metrics.csv"), log_x=True)
    single.savefig(HERE / "gpu" / "mlp7_curves.png", dpi=110)
    seeds = [curves_tree(HERE / "seeds" / f"mlp7_seed{seed}_metrics.csv") for seed in range(5)]
    plots.plot_curves(seeds, log_x=True).savefig(HERE / "seeds" / "mlp7_curves.png", dpi=110)
    for name in ("gpu/mlp7_curves.png", "seeds/mlp7_curves.png"):
        print(f"wrote docs/reproduction/{name}")


if __name__ == "__main__":
    main()
