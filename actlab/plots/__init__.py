"""Figures of a stored run and of its analysis results (matplotlib, no pyplot state).

Every function takes data or results objects and returns a new
:class:`matplotlib.figure.Figure`; nothing is shown or saved here (see
:func:`actlab.report.save_figure`). Figures share one style (:mod:`actlab.plots.style`): the Okabe-Ito
colour-blind-safe palette, line styles that also separate curves in grey
print, labelled axes with units and titles saying what is shown. One module per figure family, as
:mod:`actlab.analysis` has one per analysis: ``curves``, ``separation``, ``pca``, ``large_activation``,
``paths``, ``dynamics``, and ``probes``, ``similarity``, ``interventions`` for the analyses beyond the study; ``seeds`` draws several seeds as a median and band, ``compare`` several runs.
"""

from actlab.plots.compare import (
    MAX_OVERLAID,
    plot_compare_memorisation,
    plot_compare_separation,
    plot_compare_test_loss,
    robust_top,
)
from actlab.plots.curves import (
    phases_from_results,
    plot_curves,
    plot_metrics,
    unstable_in_any,
)
from actlab.plots.dynamics import (
    plot_compare_dynamics,
    plot_sample_dynamics,
)
from actlab.plots.large_activation import (
    EXPLAINED_COLORS,
    EXPLAINED_RULE,
    plot_explanation,
    plot_large_activation,
)
from actlab.plots.interventions import (
    plot_interventions,
)
from actlab.plots.paths import (
    plot_path_attribution,
)
from actlab.plots.pca import (
    plot_pca_trajectories,
)
from actlab.plots.probes import (
    plot_decodability,
)
from actlab.plots.seeds import (
    BAND_ALPHA,
    band_note,
    draw_band,
    replica_stack,
    replicas,
    results_node,
    seeds_title,
    stack_replicas,
)
from actlab.plots.separation import (
    FLOOR_STYLE,
    GROUPINGS_SHOWN,
    draw_separation,
    fits_annotation,
    floor_distance,
    floor_handle,
    plot_separation_heatmap,
    plot_separation_lines,
    split_output,
)
from actlab.plots.similarity import (
    plot_cka_between_runs,
    plot_similarity,
)
from actlab.plots.style import (
    CURVES,
    CYCLE,
    EPOCH_LABEL,
    GROUP_STYLE,
    INSTABILITY_COLOR,
    INSTABILITY_LABEL,
    LINESTYLES,
    OKABE_ITO,
    OUTPUT_STYLE,
    PHASES,
    PHASE_COLOR,
    RC,
    layer_style,
    mark_instabilities,
    mark_phases,
    new_figure,
    series_style,
    set_epoch_axis,
    styled,
)

__all__ = [
    "BAND_ALPHA", "CURVES", "CYCLE", "EPOCH_LABEL", "EXPLAINED_COLORS", "EXPLAINED_RULE",
    "FLOOR_STYLE", "GROUPINGS_SHOWN", "GROUP_STYLE", "INSTABILITY_COLOR", "INSTABILITY_LABEL",
    "LINESTYLES", "MAX_OVERLAID", "OKABE_ITO", "OUTPUT_STYLE", "PHASES", "PHASE_COLOR", "RC", "band_note",
    "draw_band", "draw_separation", "fits_annotation", "floor_distance", "floor_handle", "layer_style", "mark_instabilities",
    "mark_phases", "new_figure", "phases_from_results", "plot_cka_between_runs", "plot_compare_dynamics",
    "plot_compare_memorisation", "plot_compare_separation", "plot_compare_test_loss",
    "plot_curves", "plot_decodability", "plot_explanation", "plot_interventions", "plot_large_activation",
    "plot_metrics", "plot_path_attribution", "plot_pca_trajectories", "plot_sample_dynamics",
    "plot_separation_heatmap", "plot_separation_lines", "plot_similarity", "replica_stack", "replicas",
    "results_node", "robust_top", "seeds_title", "series_style", "set_epoch_axis", "split_output",
    "stack_replicas", "styled", "unstable_in_any",
]
