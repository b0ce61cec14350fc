"""Self-contained HTML reports of analysed runs, and the analysis directory writer.

A report is one HTML file with its figures embedded as base64 PNG and its
style inline: no external CSS, JavaScript, fonts or images, so it opens
offline in any browser and can be mailed as is.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from actlab import __version__
from actlab.files import check_output, staged_dir, write_atomic

FIGURE_FORMATS: tuple[str, ...] = ("png", "svg")
"""Formats :func:`save_figure` can write."""

PNG_DPI = 150


@dataclass(frozen=True)
class Finding:
    """One row of the headline-findings table.

    Parameters
    ----------
    name : str
        What was measured ("double descent", "strongest separation", ...).
    value : str
        The answer, short ("yes", "hidden2, epoch 40").
    detail : str
        How to read it or how it was obtained; may be empty.
    """

    name: str
    value: str
    detail: str = ""


@dataclass(frozen=True)
class ReportFigure:
    """A figure placed in a report.

    Parameters
    ----------
    name : str
        File stem of the saved figure (``metrics`` -> ``metrics.png``, ``metrics.svg``).
    title : str
        Heading shown above the figure.
    caption : str
        What the figure shows and how to read it.
    png : bytes
        The rendered PNG, embedded in the HTML.
    """

    name: str
    title: str
    caption: str
    png: bytes


@dataclass
class Report:
    """Everything a report shows; :meth:`to_html` renders it.

    Parameters
    ----------
    title : str
    findings : list of Finding
        Headline findings, shown first as a table.
    figures : list of ReportFigure
    failures : dict of str -> str
        Analyses that could not run -> why; shown as a warning box.
    config : dict
        Run configuration(s), shown in a collapsible block.
    provenance : dict of str -> str
        Where the numbers come from (run path, status, epochs, actlab version, time).
    tables : list of (title, header, rows)
        Further tables (e.g. a comparison of runs); cells are strings.
    notes : list of str
        Warnings of analyses that ran with caveats (e.g. classes without noisy probes).
    """

    title: str
    findings: list[Finding] = field(default_factory=list)
    figures: list[ReportFigure] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_html(self) -> str:
        """The report as one self-contained HTML document."""
        esc = html.escape
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(self.title)}</title>",
            f"<style>{_CSS}</style></head><body><main>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        if self.provenance:
            parts.append('<p class="meta">' + " &middot; ".join(f"<b>{esc(k)}</b> {esc(v)}" for k, v in self.provenance.items()) + "</p>")
        if self.failures:
            parts.append('<section class="failures"><h2>Analyses that could not run</h2><ul>')
            parts.extend(f"<li><b>{esc(name)}</b>: {esc(reason)}</li>" for name, reason in self.failures.items())
            parts.append("</ul><p>The other analyses ran; their findings and figures are below.</p></section>")
        if self.notes:
            parts.append('<section class="failures"><h2>Notes</h2><ul>')
            parts.extend(f"<li>{esc(note)}</li>" for note in self.notes)
            parts.append("</ul></section>")
        if self.findings:
            parts.append('<section><h2>Headline findings</h2><table class="findings"><thead><tr><th>finding</th><th>value</th><th>how to read it</th></tr></thead><tbody>')
            parts.extend(
                f"<tr><td>{esc(f.name)}</td><td class='value'>{esc(f.value)}</td><td class='detail'>{esc(f.detail)}</td></tr>"
                for f in self.findings
            )
            parts.append("</tbody></table></section>")
        for title, header, rows in self.tables:
            parts.append(f"<section><h2>{esc(title)}</h2><div class='scroll'><table class='grid'><thead><tr>")
            parts.extend(f"<th>{esc(h)}</th>" for h in header)
            parts.append("</tr></thead><tbody>")
            for row in rows:
                parts.append("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>")
            parts.append("</tbody></table></div></section>")
        if self.figures:
            parts.append('<section><h2>Figures</h2><nav class="toc">')
            parts.extend(f'<a href="#fig-{esc(fig.name)}">{esc(fig.title)}</a>' for fig in self.figures)
            parts.append("</nav>")
            for fig in self.figures:
                data = base64.b64encode(fig.png).decode("ascii")
                parts.append(
                    f'<figure id="fig-{esc(fig.name)}"><h3>{esc(fig.title)}</h3>'
                    f'<img alt="{esc(fig.title)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{esc(fig.caption)}</figcaption></figure>"
                )
            parts.append("</section>")
        if self.config:
            text = json.dumps(self.config, indent=2, sort_keys=True, default=str)
            parts.append(f"<section><h2>Configuration</h2><details><summary>show</summary><pre>{esc(text)}</pre></details></section>")
        parts.append(f'<footer>Written by actlab {esc(__version__)} on {esc(_now())}. Self-contained: no external files or scripts.</footer>')
        parts.append("</main></body></html>")
        return "\n".join(parts)


_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f6f6f4; color: #1d1d1d; font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 40px; background: #fff; box-shadow: 0 0 0 1px #e4e4e0; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #e4e4e0; padding-bottom: 0.2em; }
h3 { font-size: 1.0em; margin: 0 0 0.4em; }
.meta { color: #555; font-size: 0.88em; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { text-align: left; vertical-align: top; padding: 5px 9px; border-bottom: 1px solid #e8e8e4; }
th { background: #f1f1ee; font-weight: 600; }
td.value { font-weight: 600; white-space: nowrap; }
td.detail { color: #555; }
table.grid td { white-space: nowrap; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
.failures { background: #fff5e6; border-left: 4px solid #E69F00; padding: 2px 14px 8px; margin-top: 1em; }
.failures h2 { border: none; }
figure { margin: 1.4em 0 2em; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; margin-top: 0.4em; }
nav.toc a { display: inline-block; margin: 0 12px 4px 0; font-size: 0.9em; color: #0072B2; }
pre { background: #f6f6f4; padding: 10px; overflow-x: auto; font-size: 0.85em; }
footer { margin-top: 3em; color: #777; font-size: 0.8em; }
"""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def figure_png(fig: Figure) -> bytes:
    """The figure rendered as PNG bytes (:data:`PNG_DPI`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI)
    return buffer.getvalue()


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """Validate figure formats (``"png,svg"`` or a sequence) against :data:`FIGURE_FORMATS`."""
    from actlab.errors import ConfigError

    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    unknown = [f for f in items if f not in FIGURE_FORMATS]
    if unknown or not items:
        raise ConfigError(f"figure formats must be a comma-separated subset of {','.join(FIGURE_FORMATS)}; got {formats!r}")
    return tuple(dict.fromkeys(items))


def save_figure(fig: Figure, out_dir: str | os.PathLike, name: str, formats: Sequence[str] = FIGURE_FORMATS) -> dict[str, Path]:
    """Save ``fig`` as ``out_dir/name.<format>`` for each format; returns format -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(path, format=fmt, dpi=PNG_DPI)
        paths[fmt] = path
    return paths


def write_report(path: str | os.PathLike, report: Report) -> Path:
    """Write ``report`` as self-contained HTML to ``path`` (atomically: a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, report.to_html())
    return path


# -- headline findings ------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and value != value:  # NaN
        return "n/a"
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _epoch(value: Any) -> str:
    return "n/a" if value is None else str(int(value))


PHASE_WORDS = {
    "test_loss_min": "the test-loss minimum",
    "noisy_memorised": "noisy-label memorisation",
    "last": "the last epoch",
}
"""How findings name the phases of :func:`actlab.analysis.pipeline.phase_epochs`."""

GROUPING_WORDS = {
    "noisy_by_original": "noisy probes grouped by original label",
    "noisy_by_assigned": "noisy probes grouped by assigned label",
}


def _presence_cell(curve: Mapping[str, Any]) -> str:
    """``yes: first minimum -> peak -> second minimum`` epochs, or ``no`` (``n/a`` when not analysed)."""
    if not curve:
        return "n/a"
    if not curve.get("present"):
        return "no"
    return f"yes: {_epoch(curve.get('first_min_epoch'))} -> {_epoch(curve.get('peak_epoch'))} -> {_epoch(curve.get('second_min_epoch'))}"


def _grouping_name(grouping: Any) -> str:
    """``noisy_by_original`` -> ``noisy by original``."""
    return str(grouping).replace("noisy_", "noisy ").replace("_", " ")


def findings_from_summary(summary: Mapping[str, Any]) -> list[Finding]:
    """Headline findings of one run, from :func:`actlab.analysis.summary` output.

    Sections whose analysis failed are left out (their failure is reported separately).
    """
    findings: list[Finding] = []
    dd = summary.get("double_descent")
    if dd:
        for key, curve in (("test loss", dd), ("test error", dd.get("test_error") or {})):
            if not curve:
                continue
            value = _presence_cell(curve)
            if curve.get("present"):
                detail = (
                    f"first minimum {_fmt(curve.get('first_min'))} at epoch {_epoch(curve.get('first_min_epoch'))}, "
                    f"peak {_fmt(curve.get('peak'))} at epoch {_epoch(curve.get('peak_epoch'))}, "
                    f"second minimum {_fmt(curve.get('second_min'))} at epoch {_epoch(curve.get('second_min_epoch'))}, "
                    f"mean of the last epochs {_fmt(curve.get('final'))} (smoothed)"
                )
            else:
                detail = ("no rise and lasting fall beyond the noise of the smoothed curve that ends below its peak "
                          f"(criterion in docs/analysis.md); first minimum at epoch {_epoch(curve.get('first_min_epoch'))}, "
                          f"highest bump at epoch {_epoch(curve.get('peak_epoch'))}, mean of the last epochs {_fmt(curve.get('final'))}")
                if curve.get("instability_epoch") is not None:
                    detail += (f"; the fall after the peak comes with a training instability at epoch "
                               f"{_epoch(curve.get('instability_epoch'))} (training accuracy dropped), not counted")
            findings.append(Finding(f"double descent ({key})", value, detail))
    phases = summary.get("phases")
    if phases:
        findings.append(Finding("clean training samples learned", f"epoch {_epoch(phases.get('clean_learned_epoch'))}",
                                "first epoch within 2 points of the clean-train accuracy plateau"))
        findings.append(Finding("noisy labels memorised", f"epoch {_epoch(phases.get('noisy_fitted_epoch'))}",
                                "first epoch where train accuracy on noisy samples against their assigned labels reaches 99%"))
    sep = summary.get("separation")
    if sep:
        findings.append(Finding(
            "strongest clean-noisy separation",
            f"{sep.get('layer')}, epoch {_epoch(sep.get('epoch'))}: cos {_fmt(sep.get('cosine'))} ({_grouping_name(sep.get('grouping'))})",
            f"lowest class-mean cosine {_fmt(sep.get('cosine'))} between clean probes and "
            f"{GROUPING_WORDS.get(sep.get('grouping'), sep.get('grouping'))}",
        ))
        at_phases = sep.get("at_phases") or {"last": {"epoch": None, "by_layer": sep.get("last_epoch") or {}}}
        reading = {
            "noisy_by_original": "falling with depth: the outer layers move noisy samples away from their true class "
                                 "(the study's signal separation)",
            "noisy_by_assigned": "rising with depth: the outer layers represent noisy samples like clean samples of "
                                 "their assigned label (memorisation)",
        }
        for phase, at in at_phases.items():
            by_layer = at.get("by_layer") or {}
            if not by_layer:
                continue
            first_layer, last_layer = next(iter(by_layer)), list(by_layer)[-1]
            when = PHASE_WORDS.get(phase, phase) + ("" if at.get("epoch") is None else f" (epoch {_epoch(at.get('epoch'))})")
            for key, words in GROUPING_WORDS.items():
                findings.append(Finding(
                    f"separation at {PHASE_WORDS.get(phase, phase)}, {_grouping_name(key)}",
                    f"{first_layer} {_fmt(by_layer[first_layer].get(key))} -> {last_layer} {_fmt(by_layer[last_layer].get(key))}",
                    f"class-mean cosine at {when} between clean probes and {words}, shallowest to deepest hidden layer; "
                    f"{reading[key]}",
                ))
    large = summary.get("large_activation")
    if large:
        findings.append(Finding(
            "large activation",
            f"{large.get('layer')} unit {large.get('unit')}" + ("" if large.get("dominant") else " (not dominant)"),
            f"mean |activation| {_fmt(large.get('mean_abs'))}, {_fmt(large.get('ratio_to_median'))}x the layer's median unit, "
            f"{_fmt(large.get('ratio_to_second'))}x the second largest; dominant from epoch {_epoch(large.get('emergence_epoch'))}",
        ))
        trajectory = large.get("at_phases") or {}
        if trajectory:
            findings.append(Finding(
                "large activation over training",
                ", ".join(f"{_fmt(at.get('mean_abs'))} @{_epoch(at.get('epoch'))}" for at in trajectory.values()),
                f"mean |activation| of {large.get('layer')} unit {large.get('unit')} at "
                + ", ".join(f"{PHASE_WORDS.get(phase, phase)} (epoch {_epoch(at.get('epoch'))}, "
                            f"{_fmt(at.get('ratio_to_median'))}x the layer's median unit)" for phase, at in trajectory.items()),
            ))
        out_r2 = large.get("output_r2") or {}
        out_p = large.get("output_p_value") or {}
        findings.append(Finding(
            "large activation explained by",
            str(large.get("explained_by")),
            f"CV R^2 from input images {_fmt(large.get('input_r2'))} (p={_fmt(large.get('input_p_value'), '.2g')}); "
            + ", ".join(f"from {t.replace('_', ' ')} {_fmt(out_r2.get(t))} (p={_fmt(out_p.get(t), '.2g')})" for t in out_r2),
        ))
    paths = summary.get("paths")
    if paths:
        for layer, shares in (paths.get("by_layer") or {}).items():
            correct, wrong = shares.get("clean_share_correct"), shares.get("clean_share_wrong")
            findings.append(Finding(
                f"path attribution, {layer}",
                f"clean path: {_percent(correct)} of correct vs {_percent(wrong)} of wrong",
                f"test probes at epoch {_epoch(paths.get('epoch'))} whose activation is closer to the clean than to the noisy "
                "class mean of their predicted class",
            ))
    return findings


def _percent(value: Any) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{100 * float(value):.0f}%"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with aligned columns and a rule under the header."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table in Markdown (GitHub pipe table), ready to paste into a document."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)]) + "\n"


def findings_table(findings: Sequence[Finding]) -> str:
    """The headline findings as a two-column plain-text table (for the terminal)."""
    return text_table(["finding", "value"], [[f.name, f.value] for f in findings])


# -- figures of one run ---------------------------------------------------------------------------------

FIGURES: tuple[tuple[str, str, str, str, str], ...] = (
    ("curves", "curves", "Training curves",
     "plot_curves",
     "Cross-entropy and accuracy of clean training samples, noisy training samples against their assigned "
     "(noisy) and original labels, and test samples. Grey lines: double-descent first minimum, peak and "
     "second minimum of the test loss (when present) and the epoch the noisy labels are memorised."),
    ("separation_heatmap", "separation", "Signal separation: layer x epoch",
     "plot_separation_heatmap",
     "Cosine between the class means of clean probes and of noisy probes, averaged over classes. Left: noisy probes "
     "grouped by their original (true) label; right: by their assigned (noisy) label. Lower = stronger separation."),
    ("separation_lines", "separation", "Signal separation over epochs",
     "plot_separation_lines",
     "The same cosines as lines, one per layer, on the true epoch axis."),
    ("pca_trajectories", "pca", "Class-mean trajectories (PCA)",
     "plot_pca_trajectories",
     "Class means of clean, noisy (grouped by assigned label) and test probes projected on each layer's first two "
     "principal components (fitted on all epochs and probes), from the first (dot) to the last recorded epoch (marker)."),
    ("large_activation", "large_activation", "Large activation over training",
     "plot_large_activation",
     "Mean |activation| of each layer's largest unit at the last epoch, followed over training, and its ratio to the "
     "layer's median unit, beside the test loss."),
    ("explanation", "large_activation", "Input versus output explanation",
     "plot_explanation",
     "Cross-validated R^2 of ridge regressions predicting the large unit's per-sample |activation| from the input image "
     "(principal components) and from one-hot class targets, with permutation p-values; right: correlation ratios."),
    ("path_attribution", "paths", "Path attribution",
     "plot_path_attribution",
     "Percentage of test probes whose activation is closer (cosine) to the clean class mean than to the noisy class mean "
     "of the predicted class, for correct and wrong predictions."),
)
"""Figures of a run report: (name, results node needed, title, plots function, caption)."""


def draw_figures(results: Any, *, log_x: bool = False) -> tuple[list[tuple[str, str, str, Figure]], dict[str, str]]:
    """Draw every report figure whose analysis is in ``results``.

    Returns
    -------
    figures : list of (name, title, caption, Figure)
    failures : dict of str -> str
        Figures that could not be drawn -> why (figures of failed analyses are skipped silently:
        the analysis failure is reported instead).
    """
    from actlab import plots

    figures, failures = [], {}
    for name, node, title, function, caption in FIGURES:
        if node not in results.children:
            continue
        kwargs = {} if function in ("plot_separation_heatmap", "plot_pca_trajectories", "plot_explanation") else {"log_x": log_x}
        try:
            fig = getattr(plots, function)(results, **kwargs)
        except Exception as exc:  # one figure must not cost the others
            failures[f"figure {name}"] = f"{type(exc).__name__}: {exc}"
            continue
        figures.append((name, title, caption, fig))
    return figures, failures


def _report_figures(figures: Sequence[tuple[str, str, str, Figure]], out_dir: Path, formats: Sequence[str]) -> list[ReportFigure]:
    """Save each figure in ``formats`` under ``out_dir/figures`` and render it once as PNG for the report."""
    placed = []
    (out_dir / FIGURES_DIRNAME).mkdir(parents=True, exist_ok=True)
    for name, title, caption, fig in figures:
        png = figure_png(fig)
        if "png" in formats:
            (out_dir / FIGURES_DIRNAME / f"{name}.png").write_bytes(png)
        save_figure(fig, out_dir / FIGURES_DIRNAME, name, [f for f in formats if f != "png"])
        placed.append(ReportFigure(name=name, title=title, caption=caption, png=png))
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
FIGURES_DIRNAME = "figures"


@dataclass(frozen=True)
class AnalysisOutput:
    """What :func:`analyze_to_dir` or :func:`compare_to_dir` wrote.

    Attributes
    ----------
    out_dir : Path
    report_path : Path
    summary : dict
        The summary written to ``summary.json``.
    report : Report
    results : xr.DataTree or dict of run name -> xr.DataTree
    """

    out_dir: Path
    report_path: Path
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
        title=f"actlab analysis of {Path(run.path).name}",
        findings=findings_from_summary(summary),
        figures=list(figures),
        failures=all_failures,
        config={"config": run.config, "dataset": run.attrs.get("dataset", {}), "analysis parameters": dict(results.attrs.get("parameters", {}))},
        provenance=provenance,
        notes=analysis_warnings(results),
    )


def analysis_warnings(results: Any) -> list[str]:
    """The ``warnings`` attrs of every results node, prefixed with the node name."""
    notes = []
    for node in results.subtree:
        for warning in node.attrs.get("warnings", []) or []:
            notes.append(f"{node.name or 'results'}: {warning}")
    return list(dict.fromkeys(notes))


def analyze_to_dir(
    run_path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    formats: Sequence[str] = FIGURE_FORMATS,
    progress: bool = True,
    scheduler: str | None = None,
    log_x: bool | None = None,
    results: Any | None = None,
    **analyze_kwargs: Any,
) -> AnalysisOutput:
    """Analyse a run and write results, figures, ``summary.json`` and ``report.html`` to a directory.

    Parameters
    ----------
    run_path : path
        Run directory.
    out_dir : path, optional
        Output directory (default ``run_path/analysis``). It is built in a temporary sibling and
        swapped in when complete, so a failure leaves the previous contents untouched.
    formats : sequence of {"png", "svg"}
        Figure file formats.
    progress : bool
        tqdm progress bar of the analysis pass.
    scheduler : str, optional
        dask.distributed scheduler address; default local threads.
    log_x : bool, optional
        Symmetric-log epoch axes; default: when the recorded epochs are log-spaced.
    results : xr.DataTree, optional
        Results of :func:`actlab.analysis.analyze` for this run, already computed (e.g. in a notebook);
        default: compute them.
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
    from actlab.analysis.pipeline import write_results
    from actlab.store import ANALYSIS_DIRNAME

    formats = parse_formats(formats)
    run = open_run(run_path)
    default_target = Path(run_path) / ANALYSIS_DIRNAME
    target = Path(out_dir) if out_dir is not None else default_target
    guard = {"inputs": [run_path], "allowed_inside": [default_target]}
    check_output(target, "analysis", **guard)
    if results is None:
        results = analyze(run, progress=progress, scheduler=scheduler, **analyze_kwargs)
    summary = summarize(results)
    if log_x is None:
        log_x = _use_log_x(results.attrs.get("epochs", []))
    with staged_dir(target, "analysis", **guard) as built:
        write_results(results, built / RESULTS_DIRNAME)
        write_atomic(built / SUMMARY_FILENAME, json.dumps(summary, indent=2, sort_keys=False) + "\n")
        drawn, failures = draw_figures(results, log_x=log_x)
        figures = _report_figures(drawn, built, formats)
        report = run_report(results, summary, figures, run=run, failures=failures)
        write_report(built / REPORT_FILENAME, report)
    return AnalysisOutput(out_dir=target, report_path=target / REPORT_FILENAME, summary=summary, report=report, results=results)


# -- compare runs -----------------------------------------------------------------------------------------


def saved_results(run: Any) -> Any | None:
    """Results saved under ``run.path/analysis`` by :func:`analyze_to_dir` when they match the run store now, else None.

    They match when they cover the same recorded epochs, metric epochs and layers, with post-activations,
    and were computed by the current :data:`~actlab.analysis.pipeline.ANALYSIS_REVISION`.
    """
    from actlab.analysis import load_results
    from actlab.analysis.pipeline import ANALYSIS_REVISION
    from actlab.store import ANALYSIS_DIRNAME

    path = Path(run.path) / ANALYSIS_DIRNAME / RESULTS_DIRNAME
    if not path.is_dir():
        return None
    try:
        results = load_results(path)
    except Exception:  # unreadable or older results: recompute
        return None
    attrs = results.attrs
    if attrs.get("analysis_revision") != ANALYSIS_REVISION:
        return None
    if [int(e) for e in attrs.get("epochs", [])] != [int(e) for e in run.epochs]:
        return None
    if list(attrs.get("layers", [])) != list(run.layer_names) or attrs.get("kind") != "post":
        return None
    if "curves" in results.children and [int(e) for e in results["curves"]["epoch"].values] != [int(e) for e in run.metrics["epoch"].values]:
        return None
    return results


COMPARE_HEADER = [
    "run", "double descent (test loss)", "test loss min / peak / end", "double descent (test error)",
    "test error min / peak / end", "noisy memorised", "strongest separation (by original label)",
    "large activation", "ratio to median", "explained by", "clean path correct / wrong",
]


def _curve_cell(curve: Mapping[str, Any]) -> str:
    """``first minimum@epoch / peak@epoch / final level`` of one double-descent reading, e.g. ``1.72@7 / 15.4@323 / 13.3``."""
    if not curve or curve.get("first_min_epoch") is None:
        return "n/a"
    return (f"{_fmt(curve.get('first_min'))}@{_epoch(curve.get('first_min_epoch'))} / "
            f"{_fmt(curve.get('peak'))}@{_epoch(curve.get('peak_epoch'))} / {_fmt(curve.get('final'))}")


def _comparison_row(name: str, summary: Mapping[str, Any]) -> list[str]:
    dd = summary.get("double_descent") or {}
    error = dd.get("test_error") or {}
    phases = summary.get("phases") or {}
    sep = summary.get("separation") or {}
    large = summary.get("large_activation") or {}
    paths = summary.get("paths") or {}
    shares = (paths.get("by_layer") or {})
    deepest_hidden = [layer for layer in shares if layer != "output"]
    layer = deepest_hidden[-1] if deepest_hidden else (next(iter(shares), None))
    share = shares.get(layer, {}) if layer else {}
    return [
        name,
        _presence_cell(dd),
        _curve_cell(dd),
        _presence_cell(error),
        _curve_cell(error),
        _epoch(phases.get("noisy_fitted_epoch")) if phases else "n/a",
        f"{sep.get('layer')} @ {_epoch(sep.get('epoch'))} (cos {_fmt(sep.get('cosine'))})" if sep else "n/a",
        f"{large.get('layer')} unit {large.get('unit')}" if large else "n/a",
        _fmt(large.get("ratio_to_median")) if large else "n/a",
        str(large.get("explained_by")) if large else "n/a",
        f"{layer}: {_percent(share.get('clean_share_correct'))} / {_percent(share.get('clean_share_wrong'))}" if layer else "n/a",
    ]


def compare_to_dir(
    run_paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    formats: Sequence[str] = FIGURE_FORMATS,
    progress: bool = True,
    scheduler: str | None = None,
    log_x: bool | None = None,
) -> AnalysisOutput:
    """Put several runs side by side: comparison table, overlaid test curves, separation per run.

    Saved results under each ``RUN/analysis`` are reused when up to date (:func:`saved_results`),
    otherwise the run is analysed (not saved into the run).

    Parameters
    ----------
    run_paths : sequence of path
        Run directories, in the order to show them; each run once (also not through a link or another spelling).
    out_dir : path
        Output directory (``report.html``, ``summary.json``, ``figures/``), replaced when complete.
    formats, progress, scheduler, log_x
        As for :func:`analyze_to_dir`.

    Returns
    -------
    AnalysisOutput
        ``summary`` maps run name -> per-run summary; ``results`` maps run name -> results.
    """
    from actlab import plots
    from actlab.analysis import analyze, open_run, summary as summarize
    from actlab.errors import ConfigError

    formats = parse_formats(formats)
    if not run_paths:
        raise ConfigError("compare needs at least one run; pass run directories")
    runs = [open_run(path) for path in run_paths]
    target = Path(out_dir)
    check_output(target, "comparison", inputs=run_paths)
    seen: dict[Path, str | os.PathLike] = {}
    for path in run_paths:
        resolved = Path(path).resolve()
        if resolved in seen:
            raise ConfigError(f"{seen[resolved]} and {path} are the same run; pass each run once")
        seen[resolved] = path
    names = [Path(run.path).name for run in runs]
    if len(set(names)) != len(names):
        names = [str(Path(run.path)) for run in runs]
    results_by_run: dict[str, Any] = {}
    reused: list[str] = []
    for name, run in zip(names, runs):
        results = saved_results(run)
        if results is None:
            results = analyze(run, progress=progress, scheduler=scheduler)
        else:
            reused.append(name)
        results_by_run[name] = results
    summaries = {name: summarize(results) for name, results in results_by_run.items()}
    if log_x is None:
        log_x = any(_use_log_x(r.attrs.get("epochs", [])) for r in results_by_run.values())
    failures = {
        f"{name}: analysis {analysis}": str(message)
        for name, results in results_by_run.items()
        for analysis, message in dict(results.attrs.get("errors", {})).items()
    }
    drawn = []
    for fig_name, title, caption, function, needed in (
        ("compare_test_loss", "Test curves", "Test loss and test error of every run; triangles mark double-descent peaks.", plots.plot_compare_test_loss, "curves"),
        ("compare_separation", "Signal separation per run",
         "Cosine of clean and noisy class means per layer over epochs (mean over classes). Top row: noisy probes grouped "
         "by original label; bottom row: by assigned label. Lower = stronger separation.", plots.plot_compare_separation, "separation"),
    ):
        usable = {name: results for name, results in results_by_run.items() if needed in results.children}
        if not usable:
            failures[f"figure {fig_name}"] = f"no run has a '{needed}' analysis"
            continue
        try:
            drawn.append((fig_name, title, caption, function(usable, log_x=log_x)))
        except Exception as exc:  # one figure must not cost the others
            failures[f"figure {fig_name}"] = f"{type(exc).__name__}: {exc}"
    with staged_dir(target, "comparison", inputs=run_paths) as built:
        figures = _report_figures(drawn, built, formats)
        rows = [_comparison_row(name, summaries[name]) for name in names]
        report = Report(
            title=f"actlab comparison of {len(names)} runs",
            findings=[],
            figures=figures,
            failures=failures,
            config={name: run.config for name, run in zip(names, runs)},
            provenance={
                "runs": ", ".join(str(run.path) for run in runs),
                "reused saved analyses": ", ".join(reused) or "none",
            },
            tables=[("Headline findings by run", COMPARE_HEADER, rows)],
            notes=[f"{name}: {note}" for name, results in results_by_run.items() for note in analysis_warnings(results)],
        )
        write_atomic(built / SUMMARY_FILENAME, json.dumps(summaries, indent=2) + "\n")
        write_atomic(built / TABLE_FILENAME, markdown_table(COMPARE_HEADER, rows))
        write_report(built / REPORT_FILENAME, report)
    return AnalysisOutput(out_dir=target, report_path=target / REPORT_FILENAME, summary=summaries, report=report, results=results_by_run)
