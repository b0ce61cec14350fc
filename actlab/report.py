"""Self-contained HTML reports: :class:`Report`, rendered from a Jinja2 template with autoescaping.

A report is one HTML file with its figures embedded as base64 PNG and its
style inline: no external CSS, JavaScript, fonts or images, so it opens
offline in any browser and can be mailed as is. What the report says comes
from :mod:`actlab.findings`; what it is written for, from :mod:`actlab.workflow`.

It reads like the results section of a paper: a summary paragraph (:mod:`actlab.abstract`), a compact
findings table (finding, value, verdict, a link to the rule that chose the verdict), the figures with a
one-sentence takeaway each, then "How to read this report" (each rule and reading note said once) and
the details of every finding. Rule texts are Markdown, rendered by markdown-it-py (raw HTML escaped).
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from markdown_it import MarkdownIt
from matplotlib.figure import Figure

from actlab import __version__
from actlab.abstract import finding_rows, is_reading_note, summary_sentences
from actlab.files import write_atomic
from actlab.findings import Finding, rules

FIGURE_FORMATS: tuple[str, ...] = ("png", "svg")
"""Formats :func:`save_figure` can write."""

PNG_DPI = 150


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
    takeaway : str
        What the figure shows in this run, one sentence chosen by rule; shown before the caption.
    """

    name: str
    title: str
    caption: str
    png: bytes
    takeaway: str = ""


RULE_TITLES: dict[str, str] = {
    "descent_words": "double descent",
    "learned_words": "clean samples learned",
    "floor_words": "noise floor",
    "trend_words": "separation with depth",
    "excess_words": "path split against its null",
    "gain_words": "path split since initialisation",
    "explanation_words": "input or output explanation",
}
"""Short names of the rules of :mod:`actlab.findings` (a rule not named here is called by its function name)."""


def rule_title(name: str) -> str:
    """The short name of the rule ``name`` (a ``*_words`` function of :mod:`actlab.findings`)."""
    return RULE_TITLES.get(name, name.removesuffix("_words").replace("_", " "))


@dataclass
class Report:
    """Everything a report shows; :meth:`to_html` renders it.

    Parameters
    ----------
    title : str
    findings : list of Finding
        Headline findings: said first as a summary paragraph and a compact table (:mod:`actlab.abstract`), their
        rules once under "How to read this report", their details last.
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
        """The report as one self-contained HTML document (Jinja2 template, every value escaped)."""
        figures = [(fig, base64.b64encode(fig.png).decode("ascii")) for fig in self.figures]
        config = json.dumps(self.config, indent=2, sort_keys=True, default=str) if self.config else ""
        return _template().render(
            report=self, figures=figures, config=config, css=_CSS, version=__version__, now=_now(),
            summary=summary_sentences(self.findings), rows=finding_rows(self.findings),
            reading_notes=[f for f in self.findings if is_reading_note(f)],
            rules=[(name, rule_title(name), text) for name, text in rules().items()],
        )


def markdown(text: str) -> markupsafe.Markup:
    """Inline Markdown (``*verdict*``, backticks) as HTML; raw HTML in ``text`` is escaped, never passed through."""
    return markupsafe.Markup(_markdown().renderInline(str(text)))


@functools.lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False})


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    environment = jinja2.Environment(loader=jinja2.PackageLoader("actlab", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["markdown"] = markdown
    environment.filters["rule_title"] = rule_title
    return environment.get_template("report.html.j2")


_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f6f6f4; color: #1d1d1d; font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 40px; background: #fff; box-shadow: 0 0 0 1px #e4e4e0; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #e4e4e0; padding-bottom: 0.2em; }
h3 { font-size: 1.0em; margin: 0 0 0.4em; }
.meta { color: #555; font-size: 0.88em; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
table.findings td { padding: 3px 8px; }
th, td { text-align: left; vertical-align: top; padding: 5px 9px; border-bottom: 1px solid #e8e8e4; }
th { background: #f1f1ee; font-weight: 600; }
td.value { font-variant-numeric: tabular-nums; }
td.verdict { font-weight: 600; }
td.rule { font-size: 0.9em; white-space: nowrap; }
td a, dd a { color: #0072B2; text-decoration: none; }
p.abstract { font-size: 1.02em; line-height: 1.6; margin: 0.3em 0; }
p.takeaway { margin: 0.2em 0 0.6em; padding-left: 9px; border-left: 3px solid #0072B2; }
dl.rules dt, dl.details dt { font-weight: 600; margin-top: 0.6em; }
dl.rules dd, dl.details dd { margin: 0.1em 0 0 1.4em; color: #333; }
:target { background: #fff8d6; }
table.grid td { font-variant-numeric: tabular-nums; }
table.grid td:first-child { white-space: nowrap; }
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


