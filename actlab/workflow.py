"""Orchestration: analyse a run or compare runs into an output folder (what ``actlab analyze``/``compare`` call).

Each call checks its output folder first (:func:`actlab.files.check_output`), then computes, then
writes everything into a staging folder that replaces the output in one atomic step
(:func:`actlab.files.staged_dir`). Runs and outputs may be URLs (:mod:`actlab.location`); an output URL
is built locally and then published, report last (:mod:`actlab.remote`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from actlab.files import write_atomic
from actlab.findings import COMPARE_HEADER, comparison_row, findings_from_summary, fmt, fmt_p, markdown_table, topic_tables
from actlab.location import Location, basename, is_remote, join, location
from actlab.remote import check_any_output, staged_output
from actlab.report import FIGURE_FORMATS, Report, ReportFigure, figure_png, save_figure, write_report
from actlab.scheduler import check_scheduler, scheduler_address


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """Validate figure formats (``"png,svg"`` or a sequence) against :data:`FIGURE_FORMATS`."""
    from actlab.errors import ConfigError

    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    unknown = [f for f in items if f not in FIGURE_FORMATS]
    if unknown or not items:
        raise ConfigError(f"figure formats must be a comma-separated subset of {','.join(FIGURE_FORMATS)}; got {formats!r}")
    return tuple(dict.fromkeys(items))


# -- figures of one run ---------------------------------------------------------------------------------

FIGURES: tuple[tuple[str, str, str, str, str], ...] = (
    ("curves", "curves", "Training curves",
     "plot_curves",
     "Left: the test loss on its own axis. Middle: the training loss of clean samples and of noisy samples against "
     "their assigned (noisy) and original labels. Right: the accuracies. Grey vertical lines, named in the legend with "
     "their epochs: the test-loss minimum, the epoch clean samples are learned, the double-descent peak and second "
     "minimum (when present) and the epoch the noisy labels are memorised; red: training instabilities (a training "
     "accuracy more than 0.1 below its best)."),
    ("separation_heatmap", "separation", "Signal separation: layer x epoch",
     "plot_separation_heatmap",
     "Cosine between the class means of clean probes and of noisy probes, averaged over classes, minus the layer's "
     "noise floor (the cosine between the class means of two random halves of the clean probes). White: on the floor; "
     "blue: below it, a separation. Left: noisy probes grouped by their original (true) label; right: by their "
     "assigned (noisy) label; each panel has its own colour bar."),
    ("separation_lines", "separation", "Signal separation over epochs",
     "plot_separation_lines",
     "The same distances as lines, one per layer (a layer keeps its colour in every figure), on the true epoch axis; "
     "the dashed line at 0 is the noise floor, and a layer below it is separated. The output layer has a row of its "
     "own, so that its wider range does not squash the hidden layers."),
    ("pca_trajectories", "pca", "Class-mean trajectories (PCA)",
     "plot_pca_trajectories",
     "Class means of clean (solid blue), noisy (grouped by assigned label; dashed red) and test (dotted black) probes "
     "projected on each layer's first two principal components (fitted on all epochs and probes), from the first "
     "recorded epoch (hollow dot) to the last (arrowhead and filled marker)."),
    ("large_activation", "large_activation", "Large activation over training",
     "plot_large_activation",
     "Mean |activation| of each layer's largest unit at the last epoch, followed over training, and its ratio to the "
     "layer's median unit (dashed: the dominance threshold), above the test loss. A diamond on a layer's line marks "
     "the epoch from which its unit stays dominant; grey lines are the phases, named in the legend."),
    ("explanation", "large_activation", "Input versus output explanation",
     "plot_explanation",
     "Cross-validated R^2 of ridge regressions predicting the large unit's per-sample |activation| from the input image "
     "(principal components) and from one-hot class targets; hatched bars have a permutation p >= 0.05 (the p-values "
     "are in the details of the findings). Bottom left: R^2 of the input minus R^2 of the best output target, with its "
     "95% paired-bootstrap interval, coloured by the verdict explained_by (blue input, black output, grey undecided). "
     "Bottom right: correlation ratios (eta^2)."),
    ("path_attribution", "paths", "Path attribution",
     "plot_path_attribution",
     "Percentage of test probes whose activation is closer (cosine) to the clean class mean than to the noisy class mean "
     "of the predicted class, for correct (top left) and wrong (top right) predictions. Bottom: the split, correct minus "
     "wrong in percentage points, per layer; bars: 2.5-97.5% of its permutation null (clean and noisy probes of a "
     "class pooled and re-split at random), dash at the null mean, at the epochs where the null was computed. A split "
     "inside its bar is what chance gives."),
    ("dynamics", "dynamics", "Sample dynamics",
     "plot_sample_dynamics",
     "Every training sample's trajectory over all epochs. Left: the training-dynamics map (dataset cartography), "
     "confidence = mean and variability = standard deviation over the training epochs of the probability the model "
     "gives the assigned label. Middle: the epoch from which a sample stays predicted as its assigned label (for a "
     "noisy sample, the epoch its wrong label is memorised). Right: the area under the margin (assigned-label logit "
     "minus the largest other logit, averaged over training epochs); a low value marks a likely mislabelled sample, "
     "and the ROC AUC scores that ranking against the known noisy labels, with a permutation p-value."),
)
"""Figures of a run report: (name, results node needed, title, plots function, caption)."""

EXTRA_FIGURES: tuple[tuple[str, str, str, str, str], ...] = (
    ("decodability", "probes", "Linear probes: which label each layer holds",
     "plot_decodability",
     "Accuracy of linear classifiers (standardised units, ridge) trained on the clean probes of one layer and epoch, "
     "scored on the noisy probes against their original (true) label (left) and their assigned (noisy) label (right). "
     "A star marks a label decodable above chance: label-permutation test, Benjamini-Hochberg at 5% within the "
     "layer x epoch family (an ensemble: in more than half the seeds). The columns are the epochs probed: by default "
     "at most 16 of each layer (the first, the phase epochs the findings are read at, the rest evenly spaced up to the "
     "last; the title says so when not every recorded epoch); analyze --probe-epochs all probes every one."),
    ("similarity", "similarity", "Representation similarity along training",
     "plot_similarity",
     "Left: debiased linear CKA of each layer with its own state at the last recorded epoch (1: the same up to "
     "rotation and scale); a layer has settled once it stays above the dashed line. Right: CKA between the layers at "
     "the last recorded epoch."),
)
"""Figures of the optional analyses (``analyze --extra``), drawn when their node is in the results."""


FIGURE_FINDINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "curves": ("Training", ("double descent (test loss)", "best test loss", "best test accuracy",
                            "clean training samples learned", "noisy labels memorised")),
    "separation_heatmap": ("Signal separation", ("strongest clean-noisy separation",)),
    "separation_lines": ("Signal separation", ("strongest clean-noisy separation", "separation at the last epoch")),
    "large_activation": ("Large activation", ("large activation", "large activation over training")),
    "explanation": ("Large activation", ("large activation explained by",)),
    "path_attribution": ("Path attribution", ("path attribution",)),
}
"""Figure -> (topic, the findings it shows: a name, or the stem of ``<stem>, <part>`` names): its takeaway is their
summary sentence."""


def figure_takeaways(findings: Sequence[Any]) -> dict[str, str]:
    """Figure name -> its takeaway, one sentence of the findings it shows (:func:`actlab.abstract.sentence`)."""
    from actlab.abstract import finding_rows, sentence

    rows = finding_rows(findings)
    takeaways = {}
    for name, (topic, names) in FIGURE_FINDINGS.items():
        shown = [row for row in rows if row.name in names or row.name.rsplit(", ", 1)[0] in names]
        if shown:
            takeaways[name] = sentence(topic, shown)
    return takeaways


def draw_figures(results: Any, *, log_x: bool = False) -> tuple[list[tuple[str, str, str, Figure]], dict[str, str]]:
    """Draw every report figure whose analysis is in ``results``.

    Parameters
    ----------
    results : xr.DataTree or sequence of xr.DataTree
        One run's results, or an ensemble's (one per seed: the figures draw bands over the seeds).
    log_x : bool
        Symmetric-log epoch axes.

    Returns
    -------
    figures : list of (name, title, caption, Figure)
    failures : dict of str -> str
        Figures that could not be drawn -> why (figures of failed analyses are skipped silently:
        the analysis failure is reported instead).
    """
    from actlab import plots

    figures, failures = [], {}
    every = list(results) if isinstance(results, (list, tuple)) else [results]
    for name, node, title, function, caption in FIGURES + EXTRA_FIGURES:
        if not all(node in one.children for one in every):
            continue
        kwargs = {} if function in ("plot_separation_heatmap", "plot_pca_trajectories", "plot_explanation",
                                    "plot_decodability") else {"log_x": log_x}
        try:
            fig = getattr(plots, function)(results, **kwargs)
        except Exception as exc:  # one figure must not cost the others
            failures[f"figure {name}"] = f"{type(exc).__name__}: {exc}"
            continue
        figures.append((name, title, caption, fig))
    return figures, failures


def _report_figures(figures: Sequence[tuple[str, str, str, Figure]], out_dir: Path, formats: Sequence[str],
                    takeaways: Mapping[str, str] | None = None) -> list[ReportFigure]:
    """Save each figure in ``formats`` under ``out_dir/figures`` and render it once as PNG for the report."""
    takeaways = takeaways or {}
    placed = []
    (out_dir / FIGURES_DIRNAME).mkdir(parents=True, exist_ok=True)
    for name, title, caption, fig in figures:
        png = figure_png(fig)
        if "png" in formats:
            (out_dir / FIGURES_DIRNAME / f"{name}.png").write_bytes(png)
        save_figure(fig, out_dir / FIGURES_DIRNAME, name, [f for f in formats if f != "png"])
        placed.append(ReportFigure(name=name, title=title, caption=caption, png=png, takeaway=takeaways.get(name, "")))
    return placed


def _use_log_x(epochs: Sequence[int]) -> bool:
    """Log epoch axis when the recorded epochs are much denser early than late (log-spaced schedules)."""
    epochs = sorted(int(e) for e in epochs)
    if len(epochs) < 4 or epochs[-1] < 20:
        return False
    gaps = [b - a for a, b in zip(epochs, epochs[1:])]
    return max(gaps) >= 4 * min(gaps)


# -- analyze one run into a directory -------------------------------------------------------------------

RESULTS_DIRNAME = "results.zarr"
SUMMARY_FILENAME = "summary.json"
TABLE_FILENAME = "table.md"
REPORT_FILENAME = "report.html"
SAMPLES_FILENAME = "samples.csv"
FIGURES_DIRNAME = "figures"


@dataclass(frozen=True)
class AnalysisOutput:
    """What :func:`analyze_to_dir` or :func:`compare_to_dir` wrote.

    Attributes
    ----------
    out_dir : Path or str
        The output folder, or output URL.
    report_path : Path or str
    summary : dict
        The summary written to ``summary.json``.
    report : Report
    results : xr.DataTree or dict of run name -> xr.DataTree
    """

    out_dir: Location
    report_path: Location
    summary: dict[str, Any]
    report: Report
    results: Any


def run_report(results: Any, summary: Mapping[str, Any], figures: Sequence[ReportFigure], *, run: Any, failures: Mapping[str, str]) -> Report:
    """The report of one analysed run."""
    epochs = list(results.attrs.get("epochs", []))
    provenance = {
        "run": str(run.path),
        "status": str(run.attrs.get("status")),
        "recorded epochs analysed": f"{len(epochs)} ({epochs[0]}-{epochs[-1]})" if epochs else "none",
        "layers": ", ".join(results.attrs.get("layers", [])),
        "activations": str(results.attrs.get("kind", "")),
    }
    errors = {**dict(results.attrs.get("errors", {})), **dict(summary.get("errors") or {})}
    all_failures = {f"analysis {k}": str(v) for k, v in errors.items()}
    all_failures.update(failures)
    return Report(
        title=f"actlab analysis of {basename(run.path)}",
        findings=findings_from_summary(summary),
        figures=list(figures),
        failures=all_failures,
        config={"config": run.config, "dataset": run.attrs.get("dataset", {}), "analysis parameters": dict(results.attrs.get("parameters", {}))},
        provenance=provenance,
        notes=analysis_warnings(results) + [f"{name} skipped: {why}" for name, why in
                                            {**dict(results.attrs.get("skipped", {})), **dict(summary.get("skipped") or {})}.items()],
        tables=sample_dynamics_tables(summary),
    )


def sample_dynamics_tables(summary: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's "Sample dynamics" tables from the summary's ``dynamics`` section (none without it)."""
    found = summary.get("dynamics")
    if not found:
        return []
    header = ["group", "samples", "learned", "learned epoch (q25 / median / q75)", "forgetting events (mean)",
              "forgotten at least once", "confidence", "variability", "area under the margin"]
    rows = []
    for group, row in found["groups"].items():
        rows.append([group, str(row["n"]), fmt(row["learned_fraction"]),
                     " / ".join(fmt(row[f"learned_epoch_{q}"]) for q in ("q25", "median", "q75")),
                     fmt(row["forgetting_events_mean"]), fmt(row["forgotten_fraction"]), fmt(row["confidence_mean"]),
                     fmt(row["variability_mean"]), fmt(row["aum_mean"])])
    ranking = found["mislabel_ranking"]
    title = f"Sample dynamics (epochs {found['first_epoch']}-{found['last_epoch']}, every training sample)"
    tables = [(title, header, rows)]
    if ranking["auc"] is not None:
        tables.append(("Likely mislabelled samples: ranking by the area under the margin",
                       ["ROC AUC vs known noisy labels", "null mean (95th pct)", "permutation p", "noise rate",
                        "precision at the noise rate"],
                       [[fmt(ranking["auc"]), f"{fmt(ranking['null_mean'])} ({fmt(ranking['null_high'])})",
                         fmt_p(ranking["p_value"], ranking["n_permutations"]), fmt(ranking["noise_rate"]),
                         fmt(ranking["precision"])]]))
    return tables


COMPARE_RANKING_HEADER = ["run", "seeds", "ROC AUC vs known noisy labels", "null mean (95th pct)", "permutation p",
                          "precision at the noise rate"]
COMPARE_LEARNED_HEADER = ["run", "seeds", "clean learned epoch (q25 / median / q75)", "clean learned",
                          "noisy memorised epoch (q25 / median / q75)", "noisy memorised"]
"""Columns of the two tables of :func:`compare_dynamics_tables`."""


def compare_dynamics_tables(summaries: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The comparison report's "Sample dynamics" tables: per run (an ensemble: median over its seeds with the
    interval, n and coverage), the mislabel ranking's ROC AUC with its null and p-value; and the learned-epoch
    quartiles of clean and noisy samples. None when no run has a ``dynamics`` section."""
    ranking_rows, learned_rows = [], []
    for name, summary in summaries.items():
        found = summary.get("dynamics")
        if not found:
            continue
        ranking, groups = found["mislabel_ranking"], found["groups"]
        seeds = str(summary.get("n_seeds", 1))
        ranking_rows.append([name, seeds, fmt(ranking["auc"]), f"{fmt(ranking['null_mean'])} ({fmt(ranking['null_high'])})",
                             fmt_p(ranking["p_value"], ranking["n_permutations"]), fmt(ranking["precision"])])
        learned_rows.append([name, seeds, *(cell for group in ("clean", "noisy") for cell in (
            " / ".join(fmt(groups[group][f"learned_epoch_{q}"]) for q in ("q25", "median", "q75")),
            fmt(groups[group]["learned_fraction"])))])
    if not ranking_rows:
        return []
    return [("Sample dynamics: mislabel ranking by the area under the margin, per run", COMPARE_RANKING_HEADER, ranking_rows),
            ("Sample dynamics: learned (clean) and memorised (noisy) epochs, per run", COMPARE_LEARNED_HEADER, learned_rows)]


COMPARE_MEMORISATION_HEADER = ["run", "seeds", "layer", "memorised early / late", "difference (null mean)", "p / q",
                               "epochs rejected", "verdict"]
"""Columns of the two tables of :func:`compare_memorisation_tables`."""


def compare_memorisation_tables(summaries: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The comparison report's tables of the joined analysis (noisy probes memorised early against late): one for the
    separation and one for the path split, a row per run and layer.

    Parameters
    ----------
    summaries : mapping of run name -> summary
        Each with the key ``memorisation`` of :func:`memorisation_section` where the analysis ran (an ensemble: its
        seeds' sections condensed by :func:`seeds_summary`); runs without it give no row.

    Returns
    -------
    list of (title, header, rows)
        Rows of :data:`COMPARE_MEMORISATION_HEADER`, at each run's last recorded epoch: the numbers of early and late
        memorised noisy probes, the difference with its null's mean, the permutation p-value and the
        Benjamini-Hochberg q-value, the epochs where the test rejects of those tested, and the verdict in the words of
        the single-run finding (:func:`actlab.findings.memorised_words`, from the same decision). Empty when no run
        has the section.
    """
    from actlab.findings import memorised_words

    tables = []
    for statistic, topic in (("separation", "clean-noisy separation"), ("split", "path split")):
        rows = []
        for name, summary in summaries.items():
            found = summary.get("memorisation")
            if not found:
                continue
            for layer, at in (found.get("by_layer") or {}).items():
                rows.append([
                    name, str(summary.get("n_seeds", 1)), layer, f"{fmt(found.get('n_early'))} / {fmt(found.get('n_late'))}",
                    f"{fmt(at.get(f'{statistic}_difference'))} ({fmt(at.get(f'{statistic}_null_mean'))})",
                    f"{fmt_p(at.get(f'{statistic}_p_value'), found.get('n_permutations'))} / "
                    f"q = {fmt(at.get(f'{statistic}_q_value'), '.2g')}",
                    f"{fmt(at.get(f'{statistic}_epochs_rejected'))} of {fmt(at.get(f'{statistic}_epochs_tested'))}",
                    memorised_words(at.get(f"{statistic}_direction"), statistic)])
        if rows:
            tables.append((f"Noisy probes memorised early vs late: {topic}, per run and layer (last recorded epoch)",
                           COMPARE_MEMORISATION_HEADER, rows))
    return tables


def _child_name(name: str, taken: Mapping[str, Any]) -> str:
    """A run's name as a results child: ``/`` read as ``_``, and ``-2``, ``-3``, ... added where it would clash
    with a name in ``taken``."""
    key = base = name.replace("/", "_")
    count = 1
    while key in taken:
        count += 1
        key = f"{base}-{count}"
    return key


def memorisation_tree(results_by_run: Mapping[str, Any]) -> Any:
    """The ``results.zarr`` of a comparison: node ``/memorisation`` with one child per run that has the joined
    analysis (:func:`actlab.analysis.memorisation.with_memorisation`), an ensemble's child with one child per seed.

    Parameters
    ----------
    results_by_run : mapping of run name -> results tree, or list of (seed name, results tree) for an ensemble

    Returns
    -------
    xr.DataTree
        A child's name is the run's name with ``/`` read as ``_`` (and ``-2``, ``-3``, ... added where two would
        clash); its attrs ``run`` give the name itself. ``/memorisation`` attrs ``runs``: the child names in the
        order of the runs (a zarr group lists its children by name).
        No child when no run has the analysis.
    """
    import xarray as xr

    from actlab.analysis.memorisation import NODE

    children: dict[str, Any] = {}
    for name, found in results_by_run.items():
        seeds = found if isinstance(found, list) else [(None, found)]
        nodes = {seed: results[NODE].to_dataset(inherit=False) for seed, results in seeds if NODE in results.children}
        if not nodes:
            continue
        key = _child_name(name, children)
        if None in nodes:
            children[key] = xr.DataTree(nodes[None].assign_attrs(run=name))
        else:
            children[key] = xr.DataTree(xr.Dataset(attrs={"run": name, "seeds": list(nodes)}),
                                        children={seed: xr.DataTree(ds.assign_attrs(run=name, seed=seed))
                                                  for seed, ds in nodes.items()})
    return xr.DataTree(children={NODE: xr.DataTree(xr.Dataset(attrs={"runs": list(children)}), children=children)})


def analysis_warnings(results: Any) -> list[str]:
    """The ``warnings`` attrs of every results node, prefixed with the node name."""
    notes = []
    for node in results.subtree:
        for warning in node.attrs.get("warnings", []) or []:
            notes.append(f"{node.name or 'results'}: {warning}")
    return list(dict.fromkeys(notes))


def with_memorisation(summary: Mapping[str, Any], run: Any, results: Any) -> dict[str, Any]:
    """``summary`` with the joined analysis of the run: key ``memorisation``
    (:func:`actlab.analysis.memorisation.memorisation_summary` of the learned epochs in ``results``), or the reason
    it is missing under ``skipped`` (no ``dynamics`` node) or ``errors`` (it failed)."""
    from actlab.analysis.memorisation import with_memorisation as joined

    return memorisation_section(summary, joined(results, run))


def memorisation_section(summary: Mapping[str, Any], results: Any) -> dict[str, Any]:
    """``summary`` with key ``memorisation`` read from the ``memorisation`` node of ``results``
    (:func:`actlab.analysis.memorisation.with_memorisation`), or with the reason it is missing copied from the root
    attrs ``skipped`` / ``errors`` of ``results``; ``summary`` itself is not changed."""
    from actlab.analysis.memorisation import NODE, memorisation_summary

    if NODE in results.children:
        return {**summary, NODE: memorisation_summary(results[NODE].to_dataset(inherit=False))}
    out = dict(summary)
    for key in ("skipped", "errors"):
        why = dict(results.attrs.get(key, {})).get(NODE)
        if why is not None:
            out[key] = {**dict(summary.get(key) or {}), NODE: why}
    return out


def analyze_to_dir(
    run_path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    formats: Sequence[str] = FIGURE_FORMATS,
    progress: bool = True,
    scheduler: str | None = None,
    log_x: bool | None = None,
    results: Any | None = None,
    memorisation: bool = False,
    **analyze_kwargs: Any,
) -> AnalysisOutput:
    """Analyse a run and write results, figures, ``summary.json`` and ``report.html`` to a directory.

    An ensemble folder (``actlab record --seeds``) is analysed replica by replica (each into its own
    ``analysis/``), and its own folder gets the findings over seeds: medians with their intervals
    (:func:`actlab.analysis.seeds.aggregate_summaries`), figures with bands over the seeds, and a table
    of every seed's headline findings.

    Parameters
    ----------
    run_path : path or URL
        Run directory, ensemble directory or run URL.
    out_dir : path or URL, optional
        Output directory (default ``run_path/analysis``). It is built in a temporary sibling and
        swapped in when complete, so a failure leaves the previous contents untouched; an output URL
        is built in a local temporary folder and then uploaded, ``report.html`` last
        (:func:`actlab.remote.publish`).
    formats : sequence of {"png", "svg"}
        Figure file formats.
    progress : bool
        tqdm progress bar of the analysis pass.
    scheduler : str, optional
        dask.distributed scheduler address, or ``local:N`` for a local cluster of N worker processes
        that lives as long as the call (:mod:`actlab.scheduler`); default local threads.
    log_x : bool, optional
        Symmetric-log epoch axes; default: when the recorded epochs are log-spaced.
    results : xr.DataTree, optional
        Results of :func:`actlab.analysis.analyze` for this run, already computed (e.g. in a notebook);
        default: compute them.
    memorisation : bool
        Also the joined analysis of the noisy probes memorised early against late (:func:`with_memorisation`,
        summary key ``memorisation``, its findings in the report); it reads every block once more.
    **analyze_kwargs
        Passed to :func:`actlab.analysis.analyze` when ``results`` is None.

    Returns
    -------
    AnalysisOutput

    Raises
    ------
    StoreError
        The path is not a readable run of this schema version, or it has no recorded epoch yet.
    """
    from actlab.analysis import analyze, open_run, summary as summarize
    from actlab.analysis.dynamics import samples_csv
    from actlab.analysis.pipeline import write_results
    from actlab.errors import ConfigError
    from actlab.store import ANALYSIS_DIRNAME

    formats = parse_formats(formats)
    check_scheduler(scheduler)
    where = location(run_path)  # resolved once here, then passed down
    replicas = ensemble_replicas(where)
    if replicas:
        return _analyze_ensemble_to_dir(where, replicas, out_dir, formats=formats, progress=progress,
                                        scheduler=scheduler, log_x=log_x, memorisation=memorisation, **analyze_kwargs)
    run = open_run(where)
    default_target = join(run.path, ANALYSIS_DIRNAME)
    target = location(out_dir) if out_dir is not None else default_target
    guard = {"inputs": [run.path], "allowed_inside": [default_target]}
    check_any_output(target, "analysis", **guard)
    if results is None:
        with scheduler_address(scheduler) as address:
            results = analyze(run, progress=progress, scheduler=address, **analyze_kwargs)
    elif not describes(results.attrs, run):
        raise ConfigError(f"the results given were not computed from {run.path} as it is now (another run, or the run "
                          "before it changed); analyse it again, or pass no results")
    summary = summarize(results)
    if memorisation:
        summary = with_memorisation(summary, run, results)
    if log_x is None:
        log_x = _use_log_x(results.attrs.get("epochs", []))
    with staged_output(target, "analysis", **guard) as built:
        run.check_unchanged()  # under the output's lock (a record replacing the run takes the lock of its analysis/ first)
        write_results(results, built / RESULTS_DIRNAME)
        write_atomic(built / SUMMARY_FILENAME, json.dumps(summary, indent=2, sort_keys=False) + "\n")
        if "dynamics" in results.children:
            write_atomic(built / SAMPLES_FILENAME, samples_csv(results["dynamics"].to_dataset()))
        drawn, failures = draw_figures(results, log_x=log_x)
        figures = _report_figures(drawn, built, formats, figure_takeaways(findings_from_summary(summary)))
        report = run_report(results, summary, figures, run=run, failures=failures)
        write_report(built / REPORT_FILENAME, report)
    return AnalysisOutput(out_dir=target, report_path=join(target, REPORT_FILENAME), summary=summary, report=report, results=results)


def ensemble_replicas(where: Location) -> list[Path]:
    """The replica run folders of the ensemble folder at ``where`` (:func:`actlab.location.location`); empty for a
    single run or a URL.

    Raises
    ------
    StoreError
        The marker is damaged, or the replicas are not all of the recording the marker names
        (:func:`check_one_ensemble`).
    """
    from actlab.files import replica_dirs

    if is_remote(where):
        return []
    replicas = replica_dirs(where)
    if replicas:
        check_one_ensemble(where, replicas)
    return replicas


def check_one_ensemble(where: Path, replicas: Sequence[Path]) -> None:
    """Refuse an ensemble folder whose replicas are not all of the recording its marker names.

    ``actlab record --seeds ... --overwrite`` replaces the replicas of an ensemble one after the other, under a
    new ``ensemble_id`` written into the ensemble's marker first; each replica's store records the id of the
    recording that wrote it (``config.resolved.ensemble.id``). A replacement killed part-way leaves replicas of
    both recordings (or the old ones under the new marker), which an analysis would silently mix. Every replica
    with a store must carry the marker's ``ensemble_id``; a replica without a store is refused as well. A marker
    without ``ensemble_id`` (written before ensembles had one) is read as before: nothing to compare.

    Parameters
    ----------
    where : Path
        The ensemble folder.
    replicas : sequence of Path
        Its replica folders (:func:`actlab.files.replica_dirs`).

    Raises
    ------
    StoreError
        One line naming the replicas that are not of the marker's recording, and the way to finish the ensemble.
    """
    from actlab.errors import StoreError, clipped_repr
    from actlab.files import MARKER_FILENAME, read_marker
    from actlab.store import read_attrs, recorded_ensemble_id, store_path

    marker = read_marker(where)
    if "ensemble_id" not in marker:
        return
    ensemble_id = marker["ensemble_id"]
    if not isinstance(ensemble_id, str) or not ensemble_id:
        raise StoreError(f"{where / MARKER_FILENAME} names the ensemble_id {clipped_repr(ensemble_id)}, not an id; the "
                         f"ensemble marker is damaged: record the ensemble again with --out {where} --overwrite")
    absent = [replica.name for replica in replicas if not store_path(replica).is_dir()]
    others = [replica.name for replica in replicas
              if replica.name not in absent and recorded_ensemble_id(read_attrs(replica)) != ensemble_id]
    finish = f"finish with 'actlab record --resume {where}' or record it again with --overwrite"
    if others:
        ours = [replica.name for replica in replicas if replica.name not in absent and replica.name not in others]
        detail = f"{', '.join(others)} of another than its marker names" + (f", {', '.join(ours)} of it" if ours else "")
        raise StoreError(f"{where} mixes replicas of two recordings ({detail}; a replacement was stopped part-way); "
                         f"{finish}")
    if absent:
        raise StoreError(f"{where} lacks the stores of the replicas {', '.join(absent)} (a recording was stopped before "
                         f"they were made); {finish}")


def seeds_summary(summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The summary of an ensemble: its seeds' summaries condensed into intervals (:mod:`actlab.analysis.seeds`)."""
    from actlab.analysis.seeds import aggregate_summaries

    return aggregate_summaries(summaries)


def _analyze_ensemble_to_dir(path: Path, replicas: Sequence[Path], out_dir: str | os.PathLike | None, *,
                             formats: Sequence[str], progress: bool, scheduler: str | None, log_x: bool | None,
                             memorisation: bool = False, **analyze_kwargs: Any) -> AnalysisOutput:
    from actlab.analysis import open_run
    from actlab.store import ANALYSIS_DIRNAME

    default_target = path / ANALYSIS_DIRNAME
    target = location(out_dir) if out_dir is not None else default_target
    guard = {"inputs": [path], "allowed_inside": [default_target]}
    check_any_output(target, "analysis", **guard)
    outputs = [analyze_to_dir(replica, formats=formats, progress=progress, scheduler=scheduler, log_x=log_x,
                              memorisation=memorisation, **analyze_kwargs) for replica in replicas]
    names = [replica.name for replica in replicas]
    summary = seeds_summary({name: output.summary for name, output in zip(names, outputs)})
    results = [output.results for output in outputs]
    if log_x is None:
        log_x = _use_log_x(results[0].attrs.get("epochs", []))
    between, skipped = ({}, [])
    if "cka" in analyze_kwargs.get("extras", ()):  # the seeds with the first, as compare does with runs
        between, skipped = cka_between_runs({name: open_run(replica) for name, replica in zip(names, replicas)},
                                            progress=progress)
    with staged_output(target, "analysis", **guard) as built:
        write_atomic(built / SUMMARY_FILENAME, json.dumps(summary, indent=2) + "\n")
        drawn, failures = draw_figures(results, log_x=log_x)
        if between:
            try:
                drawn.append(cka_between_figure(between, names[0], "seed"))
            except Exception as exc:  # one figure must not cost the others
                failures["figure cka_between_seeds"] = f"{type(exc).__name__}: {exc}"
        figures = _report_figures(drawn, built, formats, figure_takeaways(findings_from_summary(summary)))
        errors = {f"{name}: analysis {key}": str(value) for name, output in zip(names, outputs)
                  for key, value in {**dict(output.results.attrs.get("errors", {})),
                                     **dict(output.summary.get("errors") or {})}.items()}
        report = Report(
            title=f"actlab analysis of {path.name} ({len(names)} seeds)",
            findings=findings_from_summary(summary),
            figures=figures,
            failures={**errors, **failures},
            config={"ensemble": outputs[0].report.config, "seeds": names},
            provenance={"ensemble": str(path), "seeds": ", ".join(names),
                        "reports of each seed": ", ".join(str(output.report_path) for output in outputs)},
            tables=[(f"Each seed: {topic.lower()}", header, rows) for topic, header, rows in topic_tables(
                COMPARE_HEADER, [comparison_row(name, output.summary) for name, output in zip(names, outputs)])]
            + ([(CKA_BETWEEN_TITLE.replace("runs", "seeds"), CKA_BETWEEN_HEADER, cka_between_rows(between, names[0]))]
               if between else []),
            notes=[f"{name}: {note}" for name, output in zip(names, outputs) for note in output.report.notes] + skipped,
        )
        write_report(built / REPORT_FILENAME, report)
    return AnalysisOutput(out_dir=target, report_path=join(target, REPORT_FILENAME), summary=summary, report=report,
                          results=results)


# -- compare runs -----------------------------------------------------------------------------------------


def describes(attrs: Mapping[str, Any], run: Any) -> bool:
    """Whether results with the root ``attrs`` were computed from ``run`` as it is now: the run id and the digest of
    the committed state they record (:func:`actlab.store.committed_state_digest`) are the run's."""
    return attrs.get("run_id") == (run.run_id or "") and attrs.get("store_digest") == run.state_digest


def saved_results(run: Any) -> Any | None:
    """Results saved under ``run.path/analysis`` by :func:`analyze_to_dir` when they match the run store now, else None.

    They match when they describe this run as it is now (the run id and committed-state digest they record are
    ``run.run_id`` and ``run.state_digest``: not another run's results copied or written there, nor those of the
    run this one replaced), cover the same recorded epochs, metric epochs and layers, with post-activations,
    and were computed by the current :data:`~actlab.analysis.pipeline.ANALYSIS_REVISION`.
    """
    from actlab.analysis import load_results
    from actlab.analysis.pipeline import ANALYSIS_REVISION
    from actlab.store import ANALYSIS_DIRNAME

    try:
        results = load_results(join(run.path, ANALYSIS_DIRNAME, RESULTS_DIRNAME))
    except Exception:  # unreadable or older results: recompute
        return None
    attrs = results.attrs
    if not describes(attrs, run) or attrs.get("analysis_revision") != ANALYSIS_REVISION:
        return None
    if [int(e) for e in attrs.get("epochs", [])] != [int(e) for e in run.epochs]:
        return None
    if list(attrs.get("layers", [])) != list(run.layer_names) or attrs.get("kind") != "post":
        return None
    if "curves" in results.children and [int(e) for e in results["curves"]["epoch"].values] != [int(e) for e in run.metrics["epoch"].values]:
        return None
    return results


# -- representation similarity between compared runs -------------------------------------------------------

CKA_BETWEEN_TITLE = "Representation similarity between runs (debiased linear CKA)"
CKA_BETWEEN_HEADER = ["run", "compared with", "layer", "shared epochs", "CKA at the first", "CKA at the last",
                      "lowest CKA (epoch)", "probes"]


CKA_BETWEEN_NODE = "cka_between"
"""The node of a comparison's ``results.zarr`` that holds the CKA between runs (:func:`cka_between_tree`)."""


def check_same_probes(runs: Mapping[str, Any]) -> None:
    """Raise ConfigError, one line, unless every run holds the probes of the first (dataset index, group and both
    labels: :func:`actlab.analysis.similarity.same_probes`), the check of ``compare --extra cka``.

    Parameters
    ----------
    runs : mapping of run name -> Run
        The first is the reference.
    """
    from actlab.analysis.similarity import same_probes
    from actlab.errors import ConfigError

    names = list(runs)
    for name in names[1:]:
        try:
            same_probes(runs[names[0]], runs[name])
        except ValueError as exc:
            raise ConfigError(f"--extra cka: {name} cannot be compared with {names[0]}: {exc}") from None


def cka_between_runs(runs: Mapping[str, Any], *, progress: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Debiased linear CKA of every run with the first, layer by layer at every recorded epoch both hold.

    Parameters
    ----------
    runs : mapping of run name -> Run
        In the order shown; the first is the reference. For an ensemble, pass its first seed.
    progress : bool

    Returns
    -------
    cka : dict of run name -> xr.Dataset
        For each run after the first that shares the reference's probes (same dataset indices, groups and labels)
        and at least one layer name and recorded epoch: :func:`actlab.analysis.similarity.similarity_between_runs`
        over all the shared epochs, ``cka_same`` (epoch, layer).
    skipped : list of str
        One line per run not compared, saying why and what to do.
    """
    from actlab.analysis.similarity import similarity_between_runs

    names = list(runs)
    cka: dict[str, Any] = {}
    skipped: list[str] = []
    if len(names) < 2:
        return cka, skipped
    reference = runs[names[0]]
    for name in names[1:]:
        run = runs[name]
        shared = sorted(set(int(e) for e in reference.epochs) & set(int(e) for e in run.epochs))
        try:
            cka[name] = similarity_between_runs(reference, run, epochs=shared or None, progress=progress)
        except ValueError as exc:  # other probes, or no shared layer or epoch
            skipped.append(f"{name}: no CKA with {names[0]}: {exc}")
    return cka, skipped


def cka_between_tree(cka: Mapping[str, Any], reference: str) -> Any:
    """The CKA between runs (:func:`cka_between_runs`) as the ``results.zarr`` node of a comparison.

    Returns
    -------
    xr.DataTree
        Node ``/cka_between`` (attrs ``reference``: the first run's name; ``runs``: the child names in the order of
        the runs), one child per compared run: its dataset of
        :func:`actlab.analysis.similarity.similarity_between_runs` (``cka`` (epoch, layer, layer_other),
        ``cka_same`` (epoch, layer)), attrs ``run`` its name; child names as in :func:`memorisation_tree`.
    """
    import xarray as xr

    children: dict[str, Any] = {}
    for name, ds in cka.items():
        children[_child_name(name, children)] = xr.DataTree(ds.assign_attrs(run=name, reference=reference))
    return xr.DataTree(children={CKA_BETWEEN_NODE: xr.DataTree(
        xr.Dataset(attrs={"reference": reference, "runs": list(children)}), children=children)})


def cka_between_rows(cka: Mapping[str, Any], reference: str) -> list[list[str]]:
    """Rows of :data:`CKA_BETWEEN_HEADER`: one per compared run and shared layer, from :func:`cka_between_runs`."""
    rows = []
    for name, ds in cka.items():
        epochs = [int(e) for e in ds["epoch"].values]
        for layer in ds["layer"].values:
            values = ds["cka_same"].sel(layer=layer).values
            lowest = int(np.nanargmin(values)) if np.isfinite(values).any() else 0
            rows.append([name, reference, str(layer), f"{epochs[0]}-{epochs[-1]} ({len(epochs)})", fmt(values[0]),
                         fmt(values[-1]), f"{fmt(values[lowest])} ({epochs[lowest]})", str(ds.attrs["n_samples"])])
    return rows


def cka_between_figure(cka: Mapping[str, Any], reference: str, kind: str) -> tuple[str, str, str, Figure]:
    """The (name, title, caption, figure) of :func:`cka_between_runs`' maps; ``kind`` names what is compared
    ("run" or "seed")."""
    from actlab import plots

    return (f"cka_between_{kind}s", f"Representation similarity between {kind}s",
            f"Debiased linear CKA of each layer of a {kind} with the same layer of {reference} at every recorded epoch "
            "both hold, on the same probes (1: the same representation up to rotation and scale; about 0: unrelated)."
            + (" An ensemble is represented by its first seed." if kind == "run" else ""),
            plots.plot_cka_between_runs(cka, reference=reference))


# -- compare runs (the report) -------------------------------------------------------------------------------


def compare_to_dir(
    run_paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    formats: Sequence[str] = FIGURE_FORMATS,
    progress: bool = True,
    scheduler: str | None = None,
    log_x: bool | None = None,
    cka: bool = True,
    memorisation: bool = False,
    strict_cka: bool = False,
) -> AnalysisOutput:
    """Put several runs side by side: comparison table, overlaid test curves, separation per run, and the
    debiased linear CKA of each run with the first (:func:`cka_between_runs`).

    Saved results under each ``RUN/analysis`` are reused when up to date (:func:`saved_results`),
    otherwise the run is analysed (not saved into the run). An ensemble folder counts as one run whose
    numbers are medians over its seeds with their intervals, and whose curves are drawn with bands; its first
    seed stands for it in the CKA between runs.

    Parameters
    ----------
    run_paths : sequence of path or URL
        Run directories or run URLs, in the order to show them; each run once (also not through a link or
        another spelling).
    out_dir : path or URL
        Output directory (``report.html``, ``summary.json``, ``figures/``), replaced when complete.
    formats, progress, scheduler, log_x
        As for :func:`analyze_to_dir`.
    cka : bool
        Compute the CKA between runs (reads every activation block of each run once more): a table (the first and
        last shared epoch, the lowest), a figure (each layer's curve over the shared epochs) and node
        ``/cka_between`` of ``results.zarr`` (:func:`cka_between_tree`). A run on other probes than the first is
        left out with a note.
    strict_cka : bool
        ``compare --extra cka``: the CKA between runs is what was asked for, so a run on other probes than the
        first is refused (ConfigError, one line, before any analysis) instead of left out; needs ``cka``.
    memorisation : bool
        Also the joined analysis of the noisy probes memorised early against late in every run (every seed of an
        ensemble), :func:`actlab.analysis.memorisation.with_memorisation`: its tables in the report
        (:func:`compare_memorisation_tables`), each run's ``memorisation`` key in ``summary.json`` (as
        :func:`analyze_to_dir` gives it), and the results in ``results.zarr`` (:func:`memorisation_tree`); a run
        without per-sample trajectories gets one note saying so. It reads every activation block once more.

    Returns
    -------
    AnalysisOutput
        ``summary`` maps run name -> per-run summary; ``results`` maps run name -> results (an ensemble: a list,
        one per seed), with node ``memorisation`` when asked for.
    """
    from actlab import plots
    from actlab.analysis import analyze, open_run, summary as summarize
    from actlab.analysis.memorisation import with_memorisation as joined
    import xarray as xr

    from actlab.analysis.pipeline import write_results
    from actlab.errors import ConfigError

    formats = parse_formats(formats)
    check_scheduler(scheduler)
    if not run_paths:
        raise ConfigError("compare needs at least one run; pass run directories")
    paths = [location(path) for path in run_paths]  # resolved once here, then passed down
    groups = {index: ensemble_replicas(path) for index, path in enumerate(paths)}
    runs_of = [[open_run(replica) for replica in groups[i]] or [open_run(path)] for i, path in enumerate(paths)]
    target = location(out_dir)
    check_any_output(target, "comparison", inputs=paths)
    seen: dict[Any, Any] = {}
    for given, path in zip(run_paths, paths):
        key = path.resolve() if isinstance(path, Path) else str(path).rstrip("/")
        if key in seen:
            raise ConfigError(f"{seen[key]} and {given} are the same run; pass each run once")
        seen[key] = given
    names = [basename(path) for path in paths]
    if len(set(names)) != len(names):
        names = [str(path) for path in paths]
    if strict_cka:
        if not cka:
            raise ConfigError("--extra cka asks for the CKA between runs that --no-cka turns off; pass one of them")
        if len(names) < 2:
            raise ConfigError("--extra cka compares runs with the first; pass at least two runs")
        check_same_probes(dict(zip(names, (runs[0] for runs in runs_of))))
    results_by_run: dict[str, Any] = {}
    summaries: dict[str, Any] = {}
    reused: list[str] = []
    with scheduler_address(scheduler) as address:
        for i, (name, runs) in enumerate(zip(names, runs_of)):
            replica_results = []
            for run in runs:
                results = saved_results(run)
                if results is None:
                    results = analyze(run, progress=progress, scheduler=address)
                else:
                    reused.append(basename(run.path) if groups[i] else name)
                if memorisation:
                    results = joined(results, run)
                replica_results.append(results)
            replica_summaries = [memorisation_section(summarize(r), r) for r in replica_results]
            if groups[i]:
                results_by_run[name] = replica_results
                summaries[name] = seeds_summary({basename(run.path): found for run, found in zip(runs, replica_summaries)})
            else:
                results_by_run[name] = replica_results[0]
                summaries[name] = replica_summaries[0]
    every_results = {name: [r] if not isinstance(r, list) else r for name, r in results_by_run.items()}
    if log_x is None:
        log_x = any(_use_log_x(r.attrs.get("epochs", [])) for rs in every_results.values() for r in rs)
    failures = {
        f"{name}: analysis {analysis}": str(message)
        for name, rs in every_results.items() for results in rs
        for analysis, message in dict(results.attrs.get("errors", {})).items()
    }
    drawn = []
    for fig_name, title, caption, function, needed in (
        ("compare_test_loss", "Test curves",
         f"Test loss and test error of every run, overlaid for up to {plots.MAX_OVERLAID} runs, else one small panel "
         "per run (shared axes, the other runs in grey); downward triangles mark double-descent peaks where found. A rare "
         "extreme value (a loss spike) cuts the y axis; the title says where and which run, upward triangles at the top "
         "edge mark it.",
         plots.plot_compare_test_loss, "curves"),
        ("compare_separation", "Signal separation per run",
         "Cosine of clean and noisy class means per layer over epochs (mean over classes) minus the layer's noise floor "
         "(two random halves of the clean probes; the dashed line at 0). Upper rows: noisy probes grouped by original "
         "label; lower rows: by assigned label; the output layer in rows of its own. Below 0 = separated. A layer has "
         "the same colour in every run.", plots.plot_compare_separation,
         "separation"),
        ("compare_dynamics", "Sample dynamics per run",
         "Left: fraction of the clean training samples learned (solid: predicted as their label from that epoch on) and "
         "of the noisy ones memorised (dashed: predicted as their wrong assigned label from that epoch on) by each epoch; "
         "an ensemble's samples are pooled over its seeds, and samples never learned keep a curve below 1. Right: ROC "
         "AUC of the area-under-the-margin ranking against the known noisy labels, one dot per seed and the median as a "
         "bar, with each seed's 95th percentile of the permutation null (grey crosses); 0.5 (dotted) is chance.",
         plots.plot_compare_dynamics, "dynamics"),
        *([("compare_memorisation", "Noisy probes memorised early vs late per run",
            "Left: the clean-noisy class-mean cosine of the noisy probes memorised early minus that of those memorised "
            "late; right: the path split with the late-memorised noisy signal minus that with the early one; per layer "
            "at each run's last recorded epoch, one line per run (an ensemble: the median over its seeds). The band in "
            "the run's colour holds 95 % of the difference with the early/late labels permuted: a line outside its band "
            "is a difference the memorisation epoch explains (the tables give p, q and the verdict).",
            plots.plot_compare_memorisation, "memorisation")] if memorisation else []),
    ):
        usable = {name: results_by_run[name] for name, rs in every_results.items() if all(needed in r.children for r in rs)}
        if not usable:
            failures[f"figure {fig_name}"] = f"no run has a '{needed}' analysis"
            continue
        try:
            drawn.append((fig_name, title, caption, function(usable, log_x=log_x)))
        except Exception as exc:  # one figure must not cost the others
            failures[f"figure {fig_name}"] = f"{type(exc).__name__}: {exc}"
    between, skipped = cka_between_runs(dict(zip(names, (runs[0] for runs in runs_of))), progress=progress) \
        if cka else ({}, [])
    if between:
        try:
            drawn.append(cka_between_figure(between, names[0], "run"))
        except Exception as exc:  # one figure must not cost the others
            failures["figure cka_between_runs"] = f"{type(exc).__name__}: {exc}"
    memorisation_notes = [f"{name}{': ' + basename(run.path) if groups[i] else ''}: memorisation skipped: {why}"
                          for i, (name, runs) in enumerate(zip(names, runs_of)) for run, results in
                          zip(runs, every_results[name]) if (why := dict(results.attrs.get("skipped", {})).get("memorisation"))]
    with staged_output(target, "comparison", inputs=paths) as built:
        figures = _report_figures(drawn, built, formats)
        rows = [comparison_row(name, summaries[name]) for name in names]
        between_rows = cka_between_rows(between, names[0])
        report = Report(
            title=f"actlab comparison of {len(names)} runs",
            findings=[],
            figures=figures,
            failures=failures,
            config={name: runs[0].config for name, runs in zip(names, runs_of)},
            provenance={
                "runs": ", ".join(str(path) for path in paths),
                "reused saved analyses": ", ".join(reused) or "none",
            },
            tables=topic_tables(COMPARE_HEADER, rows) + compare_dynamics_tables(summaries)
            + compare_memorisation_tables(summaries)
            + ([(CKA_BETWEEN_TITLE, CKA_BETWEEN_HEADER, between_rows)] if between_rows else []),
            notes=[f"{name}: {note}" for name, rs in every_results.items() for results in rs
                   for note in analysis_warnings(results)] + skipped + memorisation_notes,
        )
        saved = {}
        if memorisation:
            saved.update(memorisation_tree({name: list(zip([basename(run.path) for run in runs], results_by_run[name]))
                                            if groups[i] else results_by_run[name]
                                            for i, (name, runs) in enumerate(zip(names, runs_of))}).children)
        if between:
            saved.update(cka_between_tree(between, names[0]).children)
        if saved:
            write_results(xr.DataTree(children=saved), built / RESULTS_DIRNAME)
        write_atomic(built / SUMMARY_FILENAME, json.dumps(summaries, indent=2) + "\n")
        write_atomic(built / TABLE_FILENAME, markdown_table(COMPARE_HEADER, rows))
        write_report(built / REPORT_FILENAME, report)
    return AnalysisOutput(out_dir=target, report_path=join(target, REPORT_FILENAME), summary=summaries, report=report,
                          results=results_by_run)
