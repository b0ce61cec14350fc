"""Offline analysis of recorded runs (xarray, dask, NumPy, scikit-learn; never torch).

::

    import actlab
    run = actlab.open_run("runs/mlp7")
    results = actlab.analysis.analyze(run)
    actlab.analysis.summary(results)

Importing this package registers the ``.actlab`` accessor on xarray objects.
See ``docs/analysis.md`` for the API and the results schema.
"""

from __future__ import annotations

from actlab.analysis import accessor as _accessor  # noqa: F401  (registers the .actlab accessor)
from actlab.analysis import blocks, curves, dynamics, large_activation, paths, pca, probes, separation, similarity
from actlab.analysis.blocks import GROUPINGS
from actlab.analysis.curves import double_descent, learning_curves, learning_phases
from actlab.analysis.dynamics import sample_dynamics
from actlab.analysis.large_activation import dominant_unit, explain_unit, unit_magnitudes
from actlab.analysis.paths import path_attribution, predictions
from actlab.analysis.pca import PCA, pca_trajectories
from actlab.analysis.pipeline import ANALYSES, EXTRAS, analyze, load_results, save_results, summary
from actlab.analysis.probes import linear_probes
from actlab.analysis.run import Run, open_run
from actlab.analysis.separation import class_means, signal_separation
from actlab.analysis.similarity import linear_cka, similarity_along_training, similarity_between_runs

__all__ = [
    "ANALYSES", "EXTRAS", "GROUPINGS", "PCA", "Run", "analyze", "blocks", "class_means", "curves",
    "dominant_unit", "double_descent", "dynamics", "explain_unit", "large_activation", "learning_curves",
    "learning_phases", "linear_cka", "linear_probes", "load_results", "open_run", "path_attribution", "paths",
    "pca", "pca_trajectories", "predictions", "probes", "sample_dynamics", "save_results", "separation",
    "signal_separation", "similarity", "similarity_along_training", "similarity_between_runs", "summary",
    "unit_magnitudes",
]
