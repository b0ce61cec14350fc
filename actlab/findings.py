"""Headline findings: the words of the report and the terminal, chosen from the numbers of a summary.

Input is :func:`actlab.analysis.summary` output (plain dicts); output is :class:`Finding` rows and
plain-text or Markdown tables. Nothing here reads a store or draws a figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


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



# -- comparison table ---------------------------------------------------------------------------------------

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


def comparison_row(name: str, summary: Mapping[str, Any]) -> list[str]:
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
