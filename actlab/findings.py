"""Headline findings: the words of the report and the terminal, chosen by stated rules from the numbers.

Input is a summary: :func:`actlab.analysis.summary` of one run, or
:func:`actlab.analysis.seeds.aggregate_summaries` of an ensemble's seeds, in which every number is an
interval over the seeds. Output is :class:`Finding` rows and plain-text or Markdown tables. Nothing
here reads a store or draws a figure.

Every sentence that interprets a number is chosen by one of the rule functions below (``*_words``);
each states its rule in its docstring, and docs/analysis.md ("How findings are worded") lists them.
A number is written with its interval where it has one: over seeds (``0.91 [0.88, 0.95]``, the
median and its distribution-free interval) or, for one run, the interval the analysis computed
(bootstrap, permutation null).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actlab.analysis.seeds import is_counts, is_interval, is_share


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
        How to read it, with the rule that chose the words; may be empty.
    """

    name: str
    value: str
    detail: str = ""


# -- numbers with or without intervals -------------------------------------------------------------------


def center(value: Any) -> Any:
    """The representative of a value: the median over seeds, the share of seeds, the commonest name, or the value."""
    if is_interval(value):
        return value["median"]
    if is_share(value):
        return value["share"]
    if is_counts(value):
        return value["value"]
    return value


def bounds(value: Any, low: Any = None, high: Any = None) -> tuple[float | None, float | None]:
    """The interval of a value: over seeds when ``value`` is an interval dict, else ``low`` and ``high`` (one run's own)."""
    if is_interval(value) or is_share(value):
        return value["low"], value["high"]
    return center(low), center(high)


def fmt(value: Any, spec: str = ".3g") -> str:
    """A number as text: ``0.912``; over seeds ``0.912 [0.88, 0.95]``; a share ``3/5 seeds``; a name ``hidden3 (4/5 seeds)``."""
    if is_interval(value):
        if value["median"] is None:
            return "n/a"
        if value["n"] == 1 or value["low"] == value["high"]:
            return fmt(value["median"], spec)
        return f"{fmt(value['median'], spec)} [{fmt(value['low'], spec)}, {fmt(value['high'], spec)}]"
    if is_share(value):
        return "n/a" if value["share"] is None else f"{value['count']}/{value['n']} seeds"
    if is_counts(value):
        if value["value"] is None:
            return "n/a"
        agree = value["counts"][value["value"]]
        return value["value"] if agree == value["n"] else f"{value['value']} ({agree}/{value['n']} seeds)"
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def fmt_interval(value: Any, low: Any, high: Any, spec: str = ".3g") -> str:
    """``value [low, high]`` for one run's own interval; over seeds the interval over seeds (:func:`fmt`)."""
    if is_interval(value) or low is None or high is None:
        return fmt(value, spec)
    return f"{fmt(value, spec)} [{fmt(low, spec)}, {fmt(high, spec)}]"


def fmt_epoch(value: Any) -> str:
    """An epoch (the median epoch over seeds, with its interval)."""
    if is_interval(value):
        return fmt(value, ".0f")
    return "n/a" if value is None else str(int(value))


def fmt_p(p_value: Any, n_permutations: Any) -> str:
    """A permutation p-value; at the floor of the test, ``p ≤ 1/(n+1) = <floor>`` (no smaller p can be observed)."""
    p, n = center(p_value), center(n_permutations)
    if p is None:
        return "p n/a"
    if n is not None and p <= 1.0 / (int(n) + 1) + 1e-12:
        return f"p ≤ 1/({int(n)}+1) = {1.0 / (int(n) + 1):.2g}"
    return f"p = {p:.2g}" if not is_interval(p_value) else f"p = {fmt(p_value, '.2g')}"


def _percent(value: Any) -> str:
    value = center(value)
    return "n/a" if value is None or value != value else f"{100 * float(value):.0f}%"


# -- the rules -------------------------------------------------------------------------------------------


def rule_of(words: Any) -> str:
    """The rule a ``*_words`` function states in its docstring (after ``Rule:``), on one line."""
    return " ".join((words.__doc__ or "").split("Rule: ", 1)[-1].split())


def trend_words(low: float | None, high: float | None) -> str:
    """Rule: a trend with depth is *falling* when its interval lies below 0, *rising* when above 0, else *no clear trend*."""
    if low is None or high is None:
        return "no trend measured"
    if high < 0:
        return "falling with depth"
    if low > 0:
        return "rising with depth"
    return "no clear trend with depth"


def floor_words(cosine: Any, floor: Any) -> str:
    """Rule: a clean-noisy cosine is *below its noise floor* (a separation) when its upper bound lies below the floor's
    lower bound (one run: the values themselves; seeds: their intervals), else *not below its noise floor*."""
    _, cos_high = bounds(cosine, cosine, cosine)
    floor_low, _ = bounds(floor, floor, floor)
    if cos_high is None or floor_low is None:
        return "noise floor n/a"
    return "below its noise floor" if cos_high < floor_low else "not below its noise floor"


def excess_words(excess: Any, low: Any, high: Any) -> str:
    """Rule: a path split is *beyond its null* when the interval of its excess over the permutation null lies above 0
    (one run: the bootstrap over test probes; seeds: the interval over seeds, and the median seed's own bootstrap
    interval too, since the seeds share their probes), *below its null* when it lies below 0 alike, else *not beyond
    its null*."""
    lo, hi = bounds(excess, low, high)
    if lo is None or hi is None:
        return "null n/a"
    if is_interval(excess):  # every seed reads the same probes: the typical seed's own interval must agree
        own_low, own_high = center(low), center(high)
        lo = lo if own_low is None else min(lo, own_low)
        hi = hi if own_high is None else max(hi, own_high)
    if lo > 0:
        return "beyond its null"
    if hi < 0:
        return "below its null"
    return "not beyond its null"


def gain_words(gain: Any, null_low: Any, null_high: Any) -> str:
    """Rule: a split has *grown since initialisation* when its gain over the first recorded epoch exceeds the spread
    of the permutation null (half its 95 % range; seeds: when the gain's interval over seeds lies above 0), *shrunk*
    symmetrically, else it is *no larger than at initialisation*."""
    if is_interval(gain):
        lo, hi = bounds(gain)
        if lo is None:
            return "change since initialisation n/a"
        return "grown since initialisation" if lo > 0 else "shrunk since initialisation" if hi < 0 else \
            "no larger than at initialisation"
    if gain is None or null_low is None or null_high is None:
        return "change since initialisation n/a"
    spread = (center(null_high) - center(null_low)) / 2
    if gain > spread:
        return "grown since initialisation"
    if gain < -spread:
        return "shrunk since initialisation"
    return "no larger than at initialisation"


def explanation_words(large: Mapping[str, Any]) -> str:
    """Rule: the large unit is *explained by the input* when the interval of R²(input) − R²(best output) lies above 0
    (one run: paired bootstrap, and the input's permutation p < 0.05; seeds: interval over seeds), *by the output*
    when it lies below 0, else *undecided*."""
    difference = large.get("r2_difference")
    if is_interval(difference):
        lo, hi = bounds(difference)
        if lo is None:
            return "undecided"
        return "input" if lo > 0 else "output" if hi < 0 else "undecided"
    return str(large.get("explained_by") or "undecided")


def descent_words(curve: Mapping[str, Any]) -> str:
    """Rule: one run says *yes* when the double-descent detector (docs/analysis.md) finds a first minimum, a rise and a
    lasting fall ending below the peak, else *no*; seeds say in how many of them it is present, with the
    Clopper-Pearson interval of that share."""
    present = curve.get("present")
    if is_share(present):
        return f"present in {present['count']} of {present['n']} seeds ({_percent(present['share'])}, " \
               f"95% interval {_percent(present['low'])}-{_percent(present['high'])})"
    return "yes" if present else "no"


def decodability_words(decodable: Any) -> str:
    """Rule: a label is *decodable* from a layer at an epoch when the linear probe's accuracy is above chance by
    its label-permutation test at a false-discovery rate of 5 % (Benjamini-Hochberg within the layer x epoch
    family; seeds: say in how many seeds), else *not shown decodable* (the test did not reject; that is not a
    proof of absence)."""
    if is_share(decodable):
        return f"decodable in {decodable['count']} of {decodable['n']} seeds"
    if decodable is None:
        return "n/a"
    return "decodable" if center(decodable) else "not shown decodable"


def settled_words(settled_epoch: Any, threshold: Any) -> str:
    """Rule: a layer has *settled from epoch E* when from that recorded epoch on its debiased linear CKA with its own
    final state stays at or above the threshold (0.95); a description, not a test."""
    return f"settled from epoch {fmt_epoch(settled_epoch)} (CKA to final >= {fmt(threshold)})"


# -- findings --------------------------------------------------------------------------------------------

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


def _grouping_name(grouping: Any) -> str:
    """``noisy_by_original`` -> ``noisy by original``."""
    return str(center(grouping)).replace("noisy_", "noisy ").replace("_", " ")


def phase_when(summary: Mapping[str, Any], phase: str, recorded: Any) -> str:
    """``the test-loss minimum (epoch 13; read at recorded epoch 10)``: the phase epoch and the recorded epoch named apart."""
    words = PHASE_WORDS.get(phase, phase)
    target = ((summary.get("phase_epochs") or {}).get(phase) or {}).get("phase_epoch")
    if target is None or center(target) == center(recorded):
        return f"{words} (epoch {fmt_epoch(recorded)})"
    return f"{words} (epoch {fmt_epoch(target)}; read at recorded epoch {fmt_epoch(recorded)})"


def _seeds_note(summary: Mapping[str, Any]) -> str:
    n = summary.get("n_seeds")
    return f" Values are medians over {n} seeds with their 95% (distribution-free) intervals." if n else ""


def _double_descent_findings(summary: Mapping[str, Any]) -> list[Finding]:
    dd = summary.get("double_descent") or {}
    rows = []
    for key, curve in (("test loss", dd), ("test error", dd.get("test_error") or {})):
        if not curve:
            continue
        value = descent_words(curve)
        if center(curve.get("present")):
            value += (f": {fmt_epoch(curve.get('first_min_epoch'))} -> {fmt_epoch(curve.get('peak_epoch'))} -> "
                      f"{fmt_epoch(curve.get('second_min_epoch'))}")
        detail = (f"first minimum {fmt(curve.get('first_min'))} at epoch {fmt_epoch(curve.get('first_min_epoch'))}, "
                  f"highest bump {fmt(curve.get('peak'))} at epoch {fmt_epoch(curve.get('peak_epoch'))}, mean of the last "
                  f"epochs {fmt(curve.get('final'))} (smoothed); the curve ends {fmt(curve.get('descent'))} of the peak "
                  "below it (the size of the second descent). " + rule_of(descent_words))
        if center(curve.get("instability_epoch")) is not None:
            detail += (f" A fall after the peak that comes with a training instability (epoch "
                       f"{fmt_epoch(curve.get('instability_epoch'))}) is not counted.")
        rows.append(Finding(f"double descent ({key})", value, detail))
    return rows


def _phase_findings(summary: Mapping[str, Any]) -> list[Finding]:
    phases = summary.get("phases")
    if not phases:
        return []
    return [
        Finding("clean training samples learned", f"epoch {fmt_epoch(phases.get('clean_learned_epoch'))}",
                "first epoch within 2 points of the clean-train accuracy plateau"),
        Finding("noisy labels memorised", f"epoch {fmt_epoch(phases.get('noisy_fitted_epoch'))}",
                "first epoch where train accuracy on noisy samples against their assigned labels reaches 99%"),
    ]


def _separation_findings(summary: Mapping[str, Any]) -> list[Finding]:
    sep = summary.get("separation")
    if not sep:
        return []
    rows = [Finding(
        "strongest clean-noisy separation",
        f"{fmt(sep.get('layer'))}, epoch {fmt_epoch(sep.get('epoch'))}: cos {fmt(sep.get('cosine'))} "
        f"({_grouping_name(sep.get('grouping'))}), {floor_words(sep.get('cosine'), sep.get('noise_floor'))}",
        f"lowest class-mean cosine between clean probes and {GROUPING_WORDS.get(center(sep.get('grouping')), '')}; "
        f"noise floor {fmt(sep.get('noise_floor'))} (two random halves of the clean probes of a class), "
        f"{fmt(sep.get('cosine_epoch0'))} at the first recorded epoch {fmt_epoch(sep.get('first_epoch'))}. "
        + rule_of(floor_words),
    )]
    for phase, at in (sep.get("at_phases") or {}).items():
        by_layer = at.get("by_layer") or {}
        if not by_layer:
            continue
        first, last = next(iter(by_layer)), list(by_layer)[-1]
        when = phase_when(summary, phase, at.get("epoch"))
        for key, words in GROUPING_WORDS.items():
            trend = (at.get("depth_trend") or {}).get(key) or {}
            low, high = bounds(trend.get("slope"), trend.get("low"), trend.get("high"))
            reading = trend_words(low, high)
            rows.append(Finding(
                f"separation at {PHASE_WORDS.get(phase, phase)}, {_grouping_name(key)}",
                f"{first} {fmt(by_layer[first].get(key))} -> {last} {fmt(by_layer[last].get(key))}: {reading}",
                f"class-mean cosine at {when} between clean probes and {words}, shallowest to deepest hidden layer; "
                f"slope per layer {fmt_interval(trend.get('slope'), trend.get('low'), trend.get('high'))}; "
                f"{last} is {floor_words(by_layer[last].get(key), by_layer[last].get('noise_floor'))} "
                f"({fmt(by_layer[last].get('noise_floor'))}). " + rule_of(trend_words),
            ))
    return rows


def _large_activation_findings(summary: Mapping[str, Any]) -> list[Finding]:
    large = summary.get("large_activation")
    if not large:
        return []
    dominant = large.get("dominant")
    dominance = ("dominant" if center(dominant) else "not dominant") if not is_share(dominant) else \
        f"dominant in {dominant['count']} of {dominant['n']} seeds"
    rows = [Finding(
        "large activation",
        f"{fmt(large.get('layer'))} unit {fmt(large.get('unit'))} ({dominance})",
        f"mean |activation| {fmt(large.get('mean_abs'))}, {fmt(large.get('ratio_to_median'))}x the median of the layer's "
        f"{fmt(large.get('n_active'))} active units, {fmt(large.get('ratio_to_second'))}x the second largest; dominant "
        f"from epoch {fmt_epoch(large.get('emergence_epoch'))}",
    )]
    trajectory = large.get("at_phases") or {}
    if trajectory:
        rows.append(Finding(
            "large activation over training",
            ", ".join(f"{fmt(at.get('mean_abs'))} @{fmt_epoch(at.get('epoch'))}" for at in trajectory.values()),
            "mean |activation| of the unit at " + ", ".join(
                f"{phase_when(summary, phase, at.get('epoch'))}: {fmt(at.get('ratio_to_median'))}x the median active unit"
                for phase, at in trajectory.items()),
        ))
    n = large.get("n_permutations")
    out_r2, out_p = large.get("output_r2") or {}, large.get("output_p_value") or {}
    rows.append(Finding(
        "large activation explained by",
        explanation_words(large),
        f"R²(input) − R²(best output, {fmt(large.get('best_output_target'))}) = "
        f"{fmt_interval(large.get('r2_difference'), large.get('r2_difference_low'), large.get('r2_difference_high'))}; "
        f"CV R² from input images {fmt(large.get('input_r2'))} ({fmt_p(large.get('input_p_value'), n)}); "
        + ", ".join(f"from {t.replace('_', ' ')} {fmt(out_r2.get(t))} ({fmt_p(out_p.get(t), n)})" for t in out_r2)
        + ". " + rule_of(explanation_words),
    ))
    return rows


def _path_findings(summary: Mapping[str, Any]) -> list[Finding]:
    paths = summary.get("paths")
    if not paths:
        return []
    rows = []
    when = phase_when(summary, "last", paths.get("epoch"))
    for layer, at in (paths.get("by_layer") or {}).items():
        excess = excess_words(at.get("excess"), at.get("excess_low"), at.get("excess_high"))
        gain = gain_words(at.get("split_gain"), at.get("null_low"), at.get("null_high"))
        rows.append(Finding(
            f"path attribution, {layer}",
            f"clean path: {_percent(at.get('clean_share_correct'))} of correct vs {_percent(at.get('clean_share_wrong'))} "
            f"of wrong; {excess}, {gain}",
            f"test probes at {when} closer to the clean than to the noisy class mean of their predicted class; split "
            f"{fmt(at.get('split'))} against the permutation null {fmt(at.get('null_mean'))} "
            f"[{fmt(at.get('null_low'))}, {fmt(at.get('null_high'))}] ({fmt_p(at.get('p_value'), at.get('n_permutations'))}), "
            f"excess {fmt_interval(at.get('excess'), at.get('excess_low'), at.get('excess_high'))}; "
            f"{fmt(at.get('split_epoch0'))} at the first recorded epoch {fmt_epoch(paths.get('first_epoch'))}. "
            + rule_of(excess_words) + " " + rule_of(gain_words),
        ))
    return rows


def _probe_findings(summary: Mapping[str, Any]) -> list[Finding]:
    probes = summary.get("probes")
    if not probes:
        return []
    rows = []
    for phase, at in (probes.get("at_phases") or {}).items():
        if phase not in ("noisy_memorised", "last"):
            continue
        by_layer = at.get("by_layer") or {}
        words = {layer: decodability_words((cells.get("noisy_original") or {}).get("decodable"))
                 for layer, cells in by_layer.items()}
        rows.append(Finding(
            f"original label of noisy probes, {PHASE_WORDS.get(phase, phase)}",
            "; ".join(f"{layer}: {word}" for layer, word in words.items()),
            f"linear probe trained on clean probes, scored on the noisy probes' ORIGINAL label at "
            f"{phase_when(summary, phase, at.get('epoch'))}: " + ", ".join(
                f"{layer} {fmt_interval(c.get('accuracy'), c.get('low'), c.get('high'))} vs chance {fmt(c.get('chance'))} "
                f"({fmt_p(c.get('p_value'), probes.get('n_permutations'))}, q = {fmt(c.get('q_value'), '.2g')})"
                for layer, c in ((layer, cells.get("noisy_original") or {}) for layer, cells in by_layer.items()))
            + " (intervals: range over the folds). " + rule_of(decodability_words),
        ))
    return rows


def _similarity_findings(summary: Mapping[str, Any]) -> list[Finding]:
    similarity = summary.get("similarity")
    if not similarity:
        return []
    settled = similarity.get("settled_epoch") or {}
    return [Finding(
        "layers settle",
        ", ".join(f"{layer} @{fmt_epoch(epoch)}" for layer, epoch in settled.items()),
        "; ".join(f"{layer} {settled_words(epoch, similarity.get('settled_cka'))}" for layer, epoch in settled.items())
        + f"; debiased linear CKA on {fmt(similarity.get('n_samples'))} probes. " + rule_of(settled_words),
    )]


def findings_from_summary(summary: Mapping[str, Any]) -> list[Finding]:
    """Headline findings of one run or of an ensemble's seeds, each sentence chosen by a rule over the numbers.

    Parameters
    ----------
    summary : mapping
        :func:`actlab.analysis.summary` of one run, or :func:`actlab.analysis.seeds.aggregate_summaries`.
        Sections whose analysis failed are left out (their failure is reported separately).

    Returns
    -------
    list of Finding
    """
    rows = [*_double_descent_findings(summary), *_phase_findings(summary), *_separation_findings(summary),
            *_large_activation_findings(summary), *_path_findings(summary), *_probe_findings(summary),
            *_similarity_findings(summary)]
    note = _seeds_note(summary)
    if note and rows:
        rows.insert(0, Finding("seeds", str(summary.get("n_seeds")), note.strip()))
    return rows


# -- tables ----------------------------------------------------------------------------------------------


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


# -- comparison table ------------------------------------------------------------------------------------

COMPARE_HEADER = [
    "run", "seeds", "double descent (test loss)", "test loss min / peak / end", "double descent (test error)",
    "test error min / peak / end", "noisy memorised", "strongest separation (by original label)", "noise floor",
    "large activation", "ratio to median", "explained by", "clean path correct / wrong", "path split excess",
]
"""Columns of :func:`comparison_row`; cells over seeds carry their intervals."""


def _curve_cell(curve: Mapping[str, Any]) -> str:
    """``first minimum@epoch / peak@epoch / final level`` of one double-descent reading, e.g. ``1.72@7 / 15.4@323 / 13.3``."""
    if not curve or center(curve.get("first_min_epoch")) is None:
        return "n/a"
    return (f"{fmt(curve.get('first_min'))}@{fmt_epoch(curve.get('first_min_epoch'))} / "
            f"{fmt(curve.get('peak'))}@{fmt_epoch(curve.get('peak_epoch'))} / {fmt(curve.get('final'))}")


def _presence_cell(curve: Mapping[str, Any]) -> str:
    if not curve:
        return "n/a"
    words = descent_words(curve)
    if is_share(curve.get("present")) or not center(curve.get("present")):
        return words.split(" (")[0]
    return (f"yes: {fmt_epoch(curve.get('first_min_epoch'))} -> {fmt_epoch(curve.get('peak_epoch'))} -> "
            f"{fmt_epoch(curve.get('second_min_epoch'))}")


def comparison_row(name: str, summary: Mapping[str, Any]) -> list[str]:
    """One row of the comparison table (:data:`COMPARE_HEADER`) from a run's summary (or its seeds' aggregate)."""
    dd = summary.get("double_descent") or {}
    error = dd.get("test_error") or {}
    phases = summary.get("phases") or {}
    sep = summary.get("separation") or {}
    large = summary.get("large_activation") or {}
    shares = (summary.get("paths") or {}).get("by_layer") or {}
    deepest_hidden = [layer for layer in shares if layer != "output"]
    layer = deepest_hidden[-1] if deepest_hidden else next(iter(shares), None)
    at = shares.get(layer, {}) if layer else {}
    return [
        name,
        str(summary.get("n_seeds") or 1),
        _presence_cell(dd),
        _curve_cell(dd),
        _presence_cell(error),
        _curve_cell(error),
        fmt_epoch(phases.get("noisy_fitted_epoch")) if phases else "n/a",
        f"{fmt(sep.get('layer'))} @ {fmt_epoch(sep.get('epoch'))} (cos {fmt(sep.get('cosine'))})" if sep else "n/a",
        fmt(sep.get("noise_floor")) if sep else "n/a",
        f"{fmt(large.get('layer'))} unit {fmt(large.get('unit'))}" if large else "n/a",
        fmt(large.get("ratio_to_median")) if large else "n/a",
        explanation_words(large) if large else "n/a",
        f"{layer}: {_percent(at.get('clean_share_correct'))} / {_percent(at.get('clean_share_wrong'))}" if layer else "n/a",
        (f"{fmt_interval(at.get('excess'), at.get('excess_low'), at.get('excess_high'))} "
         f"({excess_words(at.get('excess'), at.get('excess_low'), at.get('excess_high'))})") if layer else "n/a",
    ]
