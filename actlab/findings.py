"""Headline findings: the words of the report and the terminal, chosen by stated rules from the numbers.

Input is a summary: :func:`actlab.analysis.summary` of one run, or
:func:`actlab.analysis.seeds.aggregate_summaries` of an ensemble's seeds, in which every number is an
interval over the seeds. Output is :class:`Finding` rows and plain-text or Markdown tables. Nothing
here reads a store or draws a figure.

Every sentence that interprets a number is chosen by one of the rule functions below (``*_words``);
each states its rule in its docstring, and docs/analysis.md ("How findings are worded") lists them.
Every verdict word comes from a test's decision after Benjamini-Hochberg within its family
(:mod:`actlab.analysis.inference`; :func:`actlab.analysis.pipeline.family_decisions` writes them into the
summary); over seeds the words count the seeds whose own test decided so. A number is written with its
interval where it has one: over seeds with the number of seeds and the interval's coverage
(``0.91 [0.88, 0.95] (n=5, 93.8%)``, :mod:`actlab.analysis.seeds`) or, for one run, the interval the analysis
computed (bootstrap, permutation null).
"""

from __future__ import annotations

import itertools
import re
import textwrap
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


def fmt(value: Any, spec: str = ".3g") -> str:
    """A number as text: ``0.912``; over seeds ``0.912 [0.88, 0.95] (n=5, 93.8%)`` (seeds and coverage); a share ``3/5 seeds``; a name ``hidden3 (4/5 seeds)``."""
    if is_interval(value):
        if value["median"] is None:
            return "n/a"
        if value["n"] == 1 or value["low"] == value["high"]:
            return f"{fmt(value['median'], spec)} (n={value['n']})"
        return (f"{fmt(value['median'], spec)} [{fmt(value['low'], spec)}, {fmt(value['high'], spec)}] "
                f"(n={value['n']}, {100 * value['coverage']:.3g}%)")
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


def fmt_percent(value: Any) -> str:
    """A share as a percentage with one decimal, ``18.3%``; over seeds with its interval, ``18.3% [17.9%, 19.0%]``."""
    if is_interval(value):
        if value["median"] is None:
            return "n/a"
        if value["n"] == 1 or value["low"] == value["high"]:
            return fmt_percent(value["median"])
        return f"{fmt_percent(value['median'])} [{fmt_percent(value['low'])}, {fmt_percent(value['high'])}]"
    if value is None or value != value:
        return "n/a"
    return f"{100 * float(value):.1f}%"


# -- the rules -------------------------------------------------------------------------------------------


def rule_of(words: Any) -> str:
    """The rule a ``*_words`` function states in its docstring (after ``Rule:``), on one line."""
    return " ".join((words.__doc__ or "").split("Rule: ", 1)[-1].split())


def _decided(decision: Any, yes: str, no: str) -> str:
    """``yes`` / ``no`` for one run's test decision; over seeds ``yes in k of n seeds`` (each seed's own test)."""
    if is_share(decision):
        return f"{no} (tested in no seed)" if not decision["n"] else f"{yes} in {decision['count']} of {decision['n']} seeds"
    if decision is None:
        return "n/a (not tested)"
    return yes if decision else no


def _directed(direction: Any, words: Mapping[str, str]) -> str:
    """The words of a tested change (``increase``/``decrease``/``none``); over seeds the commonest, with its count."""
    if is_counts(direction):
        if direction["value"] is None:
            return "n/a (not tested)"
        return f"{words[direction['value']]} ({direction['counts'][direction['value']]}/{direction['n']} seeds)"
    return words.get(direction, "n/a (not tested)") if direction is not None else "n/a (not tested)"


TREND_WORDS = {"decrease": "separation rising with depth, relative to initialisation",
               "increase": "separation falling with depth, relative to initialisation",
               "none": "depth trend as at initialisation"}


def trend_words(direction: Any) -> str:
    """Rule: the change since the first recorded epoch of the depth slope of the clean-noisy cosine is tested (exact
    sign-flip test over classes, Benjamini-Hochberg in family depth_trend); when it rejects, a slope that fell
    (cosine falling faster with depth) is *separation rising with depth, relative to initialisation*, one that
    rose is *separation falling with depth, relative to initialisation*; else *depth trend as at initialisation*.
    Seeds: the commonest of the seeds' words, with its count."""
    return _directed(direction, TREND_WORDS)


def floor_words(below: Any) -> str:
    """Rule: a clean-noisy cosine is *below its noise floor* when the within-class permutation test (clean/noisy
    membership shuffled within each class, same group sizes) rejects after Benjamini-Hochberg in family noise_floor,
    else *not below its noise floor*; seeds: in how many seeds it is."""
    return _decided(below, "below its noise floor", "not below its noise floor")


def excess_words(beyond: Any) -> str:
    """Rule: a path split is *beyond its null* when its one-sided permutation p-value rejects after Benjamini-Hochberg
    in family path_split (the excess interval alone decides nothing), else *not beyond its null*; seeds: in how many
    seeds it is."""
    return _decided(beyond, "beyond its null", "not beyond its null")


GAIN_WORDS = {"increase": "grown since initialisation", "decrease": "shrunk since initialisation",
              "none": "no change since initialisation detected"}


def gain_words(direction: Any) -> str:
    """Rule: a split has *grown since initialisation* (*shrunk since initialisation*) when the change since the first
    recorded epoch, tested against the same permutations at both epochs (two-sided), rejects after Benjamini-Hochberg
    in family split_change and is positive (negative); else *no change since initialisation detected*. Seeds: the
    commonest of the seeds' words, with its count."""
    return _directed(direction, GAIN_WORDS)


MEMORISED_WORDS = {
    "separation": {"late": "late-memorised probes separate more", "early": "early-memorised probes separate more",
                   "none": "no early/late difference"},
    "split": {"late": "larger path split with the late-memorised signal",
              "early": "larger path split with the early-memorised signal", "none": "no early/late difference"},
}


def memorised_words(direction: Any, statistic: str) -> str:
    """Rule: the noisy probes memorised early and late (split at the median memorisation epoch) are compared by a
    two-sided permutation test of the early/late labels, Benjamini-Hochberg in family memorised_separation (the
    clean-noisy class-mean cosine, early minus late) or memorised_split (the path split, late minus early), about the
    null's mean; when it rejects, a difference above that mean reads *late-memorised probes separate more* (*larger
    path split with the late-memorised signal*), one below it *early-memorised probes separate more* (*larger path
    split with the early-memorised signal*); else *no early/late difference*. Seeds: the commonest of the seeds'
    words, with its count."""
    return _directed(direction, MEMORISED_WORDS[statistic])


def explanation_words(large: Mapping[str, Any]) -> str:
    """Rule: the large unit is *explained by the input* when its input permutation test rejects after
    Benjamini-Hochberg in family explained_by, its CV R² is positive and the paired bootstrap interval of R²(input) −
    R²(best output) lies above 0; *by the output* alike with the best output target and the interval below 0; else
    *undecided* (a negative R² is never an explanation). Seeds: the commonest verdict, with its count."""
    verdict = large.get("explained_by")
    if is_counts(verdict):
        return fmt(verdict)
    return str(verdict or "undecided")


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
    if not n:
        return ""
    return (f" Values are medians over {n} seeds that share their data and probes, each with its interval, the number "
            "of seeds n and the interval's coverage: distribution-free order statistics of the seeds' values (full range "
            "when few seeds: 5 seeds cover 93.8%, 3 seeds 75%); where a seed has its own interval (bootstrap over probes "
            "or classes, permutation range), a hierarchical bootstrap (seeds resampled, then each seed's own sampling) "
            "gives it. Words count each seed's own test.")


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
        if center(curve.get("peak_epoch")) is None:  # no rise followed by a fall: nothing to place a minimum before
            detail = "the smoothed curve has no interior peak (it never rises and falls again). " + rule_of(descent_words)
        else:
            detail = (f"first minimum {fmt(curve.get('first_min'))} at epoch {fmt_epoch(curve.get('first_min_epoch'))}, "
                      f"highest bump {fmt(curve.get('peak'))} at epoch {fmt_epoch(curve.get('peak_epoch'))}, mean of the "
                      f"last epochs {fmt(curve.get('final'))} (smoothed); the curve ends {fmt(curve.get('descent'))} of the "
                      "peak below it (the size of the second descent). " + rule_of(descent_words))
        if center(curve.get("instability_epoch")) is not None:
            detail += (f" A fall after the peak that comes with a training instability (epoch "
                       f"{fmt_epoch(curve.get('instability_epoch'))}) is not counted.")
        rows.append(Finding(f"double descent ({key})", value, detail))
    return rows


def learned_words(phases: Mapping[str, Any]) -> str:
    """Rule: clean training samples are *learned* at the first epoch within 2 points of the plateau of the smoothed
    clean-train accuracy, only when that plateau is itself high (at least 90 %), else *not learned by the last epoch*;
    seeds say in how many of them it is learned."""
    learned = phases.get("clean_learned")
    if is_share(learned):
        if learned["count"] == 0:
            return f"not learned by the last epoch (0 of {learned['n']} seeds)"
        epoch = f"epoch {fmt_epoch(phases.get('clean_learned_epoch'))}"
        return epoch if learned["count"] == learned["n"] else \
            f"learned in {learned['count']} of {learned['n']} seeds, at {epoch}"
    if learned is None:  # a summary from before the criterion: the epoch alone
        return f"epoch {fmt_epoch(phases.get('clean_learned_epoch'))}"
    return f"epoch {fmt_epoch(phases.get('clean_learned_epoch'))}" if learned else "not learned by the last epoch"


def _phase_findings(summary: Mapping[str, Any]) -> list[Finding]:
    """The learning phases, then the best and final test values (:func:`_test_findings`)."""
    phases = summary.get("phases")
    if not phases:
        return _test_findings(summary)
    return [
        Finding("clean training samples learned", learned_words(phases),
                f"plateau of the smoothed clean-train accuracy {fmt_percent(phases.get('clean_plateau_acc'))} (learned from "
                f"{fmt_percent(phases.get('clean_learned_acc'))}), last epoch {fmt_percent(phases.get('clean_final_acc'))}. "
                + rule_of(learned_words)),
        Finding("noisy labels memorised", f"epoch {fmt_epoch(phases.get('noisy_fitted_epoch'))}",
                "first epoch where train accuracy on noisy samples against their assigned labels reaches 99%"),
        *_test_findings(summary),
    ]


def _test_findings(summary: Mapping[str, Any]) -> list[Finding]:
    test = summary.get("test")
    if not test:
        return []
    return [
        Finding("best test loss", f"{fmt(test.get('best_loss'))} at epoch {fmt_epoch(test.get('best_loss_epoch'))}; "
                f"final {fmt(test.get('final_loss'))} at epoch {fmt_epoch(test.get('final_epoch'))}",
                "lowest test loss over all evaluated epochs (unsmoothed: the early-stopping point) and the test loss "
                "at the last epoch"),
        Finding("best test accuracy", f"{fmt_percent(test.get('best_acc'))} at epoch "
                f"{fmt_epoch(test.get('best_acc_epoch'))}; final {fmt_percent(test.get('final_acc'))}",
                "highest test accuracy over all evaluated epochs (unsmoothed) and the test accuracy at the last epoch"),
    ]


def _separation_findings(summary: Mapping[str, Any]) -> list[Finding]:
    sep = summary.get("separation")
    if not sep:
        return []
    rows = [Finding(
        "strongest clean-noisy separation",
        f"{fmt(sep.get('layer'))}, epoch {fmt_epoch(sep.get('epoch'))}: cos {fmt(sep.get('cosine'))} "
        f"({_grouping_name(sep.get('grouping'))}), {floor_words(sep.get('below_floor'))}",
        f"the read layer and epoch whose class-mean cosine between clean probes and "
        f"{GROUPING_WORDS.get(center(sep.get('grouping')), '')} lies furthest below its own noise floor "
        f"({fmt(sep.get('floor_distance'))} below); noise floor {fmt(sep.get('noise_floor'))} "
        f"[{fmt(sep.get('noise_floor_low'))}, {fmt(sep.get('noise_floor_high'))}] (mean and 95% range of the cosine "
        f"with clean and noisy membership permuted within each class), {fmt_p(sep.get('p_value'), None)}, "
        f"q = {fmt(sep.get('q_value'), '.2g')}; {fmt(sep.get('cosine_epoch0'))} at the first recorded epoch "
        f"{fmt_epoch(sep.get('first_epoch'))}. " + rule_of(floor_words),
    )]
    for phase, at in (sep.get("at_phases") or {}).items():
        by_layer = at.get("by_layer") or {}
        if not by_layer:
            continue
        first, last = next(iter(by_layer)), list(by_layer)[-1]
        when = phase_when(summary, phase, at.get("epoch"))
        for key, words in GROUPING_WORDS.items():
            trend = (at.get("depth_trend") or {}).get(key) or {}
            deepest = by_layer[last]
            rows.append(Finding(
                f"separation at {PHASE_WORDS.get(phase, phase)}, {_grouping_name(key)}",
                f"{first} {fmt(by_layer[first].get(key))} -> {last} {fmt(deepest.get(key))}: "
                f"{trend_words(trend.get('direction'))}",
                f"class-mean cosine at {when} between clean probes and {words}, shallowest to deepest hidden layer "
                f"(a lower cosine is more separation); slope per layer {fmt_interval(trend.get('slope'), trend.get('low'), trend.get('high'))}, "
                f"at the first recorded epoch {fmt(trend.get('slope_first'))}, change "
                f"{fmt_interval(trend.get('change'), trend.get('change_low'), trend.get('change_high'))} "
                f"(p = {fmt(trend.get('p_value'), '.2g')}, q = {fmt(trend.get('q_value'), '.2g')}); "
                f"{last} is {floor_words(deepest.get(f'{key}_below_floor'))} (floor {fmt(deepest.get(f'{key}_floor'))}, "
                f"q = {fmt(deepest.get(f'{key}_q_value'), '.2g')}). " + rule_of(trend_words),
            ))
    return rows


def _large_activation_findings(summary: Mapping[str, Any]) -> list[Finding]:
    large = summary.get("large_activation")
    if not large:
        return []
    dominant = large.get("dominant")
    dominance = ("dominant" if center(dominant) else "not dominant") if not is_share(dominant) else \
        f"dominant in {dominant['count']} of {dominant['n']} seeds"
    units = large.get("units_by_seed")  # over seeds a unit's index names nothing shared: each seed's own
    rows = [Finding(
        "large activation",
        f"{fmt(large.get('layer'))} ({dominance})" if units else f"{fmt(large.get('layer'))} unit {fmt(large.get('unit'))} ({dominance})",
        (f"units per seed: {', '.join(f'{seed} {unit}' for seed, unit in units.items())}; " if units else "")
        + f"mean |activation| {fmt(large.get('mean_abs'))}, {fmt(large.get('ratio_to_median'))}x the median of the layer's "
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
        rows.append(Finding(
            f"path attribution, {layer}",
            f"clean path: {_percent(at.get('clean_share_correct'))} of correct vs {_percent(at.get('clean_share_wrong'))} "
            f"of wrong; {excess_words(at.get('beyond_null'))}, {gain_words(at.get('gain_direction'))}",
            f"test probes at {when} closer to the clean than to the noisy class mean of their predicted class; split "
            f"{fmt(at.get('split'))} against the permutation null {fmt(at.get('null_mean'))} "
            f"[{fmt(at.get('null_low'))}, {fmt(at.get('null_high'))}] ({fmt_p(at.get('p_value'), at.get('n_permutations'))}, "
            f"q = {fmt(at.get('q_value'), '.2g')}), excess {fmt_interval(at.get('excess'), at.get('excess_low'), at.get('excess_high'))}; "
            f"{fmt(at.get('split_epoch0'))} at the first recorded epoch {fmt_epoch(paths.get('first_epoch'))} (change "
            f"{fmt(at.get('split_gain'))}, p = {fmt(at.get('gain_p_value'), '.2g')}, q = {fmt(at.get('gain_q_value'), '.2g')}). "
            + rule_of(excess_words) + " " + rule_of(gain_words),
        ))
    return rows


def _memorisation_findings(summary: Mapping[str, Any]) -> list[Finding]:
    found = summary.get("memorisation")
    if not found:
        return []
    rows = []
    for layer, at in (found.get("by_layer") or {}).items():
        rows.append(Finding(
            f"noisy probes memorised early vs late, {layer}",
            f"separation: {memorised_words(at.get('separation_direction'), 'separation')}; path split: "
            f"{memorised_words(at.get('split_direction'), 'split')}",
            f"at the last recorded epoch {fmt_epoch(found.get('last_epoch'))}, {fmt(found.get('n_early'))} noisy probes "
            f"memorised early and {fmt(found.get('n_late'))} late (median memorisation epoch "
            f"{fmt(found.get('median_epoch'))}): clean-noisy cosine {fmt(at.get('cos_early'))} early vs "
            f"{fmt(at.get('cos_late'))} late, difference {fmt(at.get('separation_difference'))} against the null "
            f"{fmt(at.get('separation_null_mean'))} "
            f"[{fmt(at.get('separation_null_low'))}, {fmt(at.get('separation_null_high'))}] "
            f"({fmt_p(at.get('separation_p_value'), found.get('n_permutations'))}, q = "
            f"{fmt(at.get('separation_q_value'), '.2g')}); path split {fmt(at.get('split_early'))} early vs "
            f"{fmt(at.get('split_late'))} late, difference {fmt(at.get('split_difference'))} against the null "
            f"{fmt(at.get('split_null_mean'))} "
            f"[{fmt(at.get('split_null_low'))}, {fmt(at.get('split_null_high'))}] "
            f"({fmt_p(at.get('split_p_value'), found.get('n_permutations'))}, q = {fmt(at.get('split_q_value'), '.2g')}); "
            f"rejected at {fmt(at.get('separation_epochs_rejected'))} and {fmt(at.get('split_epochs_rejected'))} of "
            f"{fmt(at.get('separation_epochs_tested'))} recorded epochs. " + rule_of(memorised_words),
        ))
    return rows


def _tests_finding(summary: Mapping[str, Any]) -> list[Finding]:
    """One row naming every family of tests, its size and the method (stated once)."""
    tests = summary.get("tests") or {}
    if not tests:
        return []
    first = next(iter(tests.values()))
    sizes = ", ".join(f"{name} ({fmt(family.get('size'), '.0f')} tests)" for name, family in tests.items())
    return [Finding("tests behind the words", f"{center(first.get('method'))} at FDR {fmt(first.get('level'))}",
                    f"families: {sizes}. " + " ".join(f"{name}: {center(family.get('description'))}."
                                                      for name, family in tests.items()))]


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
            *_large_activation_findings(summary), *_path_findings(summary), *_memorisation_findings(summary),
            *_probe_findings(summary),
            *_similarity_findings(summary), *_tests_finding(summary)]
    note = _seeds_note(summary)
    if note and rows:
        rows.insert(0, Finding("seeds", str(summary.get("n_seeds")), note.strip()))
    return rows


# -- rules said once -------------------------------------------------------------------------------------


def rules() -> dict[str, str]:
    """Every rule of this module, once: the name of each ``*_words`` function whose docstring states a rule -> the rule."""
    return {name: rule_of(words) for name, words in list(globals().items())
            if name.endswith("_words") and callable(words) and "Rule: " in (words.__doc__ or "")}


def said_rules(detail: str) -> tuple[str, list[str]]:
    """``detail`` without the rule texts it repeats (:func:`rules`), and the names of those rules in order."""
    said = [(detail.find(text), name, text) for name, text in rules().items() if text and text in detail]
    for _, _, text in said:
        detail = detail.replace(text, "")
    return " ".join(detail.split()), [name for _, name, _ in sorted(said)]


def verdict_words(rule: str) -> list[str]:
    """The verdicts a rule can give: its phrases in ``*stars*``, longest first."""
    return sorted(set(re.findall(r"\*([^*]+)\*", rule)), key=len, reverse=True)


def split_verdict(value: str, rule_names: Sequence[str]) -> tuple[str, str]:
    """``value`` without the verdicts of the rules ``rule_names``, and those verdicts (``"; "``-joined, in order).

    A verdict runs from a rule's phrase to the next ``,``/``;``/``:`` (``shrunk`` -> ``shrunk since initialisation``).
    """
    spans: list[tuple[int, int]] = []
    texts = rules()
    for phrase in (p for name in rule_names for p in verdict_words(texts.get(name, ""))):
        for match in re.finditer(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", value):
            end = match.end() + len(re.match(r"[^,;:]*", value[match.end():]).group(0).rstrip())
            if not any(start < end and match.start() < stop for start, stop in spans):
                spans.append((match.start(), end))
    if not spans:
        return value, ""
    spans.sort()
    verdict = "; ".join(value[start:stop] for start, stop in spans)
    cuts = [0, *(i for span in spans for i in span), len(value)]
    rest = (value[start:stop].strip(" ,;:") for start, stop in zip(cuts[::2], cuts[1::2]))
    return "; ".join(part for part in rest if part), verdict


# -- tables ----------------------------------------------------------------------------------------------


TERMINAL_WIDTH = 100
"""Columns a terminal table may take (:func:`text_table`)."""


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], width: int = TERMINAL_WIDTH) -> str:
    """A plain-text table with aligned columns and a rule under the header, at most ``width`` characters wide.

    The widest column is narrowed first (down to 12 characters); its cells wrap onto more lines at spaces.
    """
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    while sum(widths) + 2 * (len(widths) - 1) > width and max(widths) > 12:
        widths[widths.index(max(widths))] -= 1
    lines = []
    for row in [header, *rows]:
        cells = [textwrap.wrap(str(cell), w, break_on_hyphens=False) or [""] for cell, w in zip(row, widths)]
        for parts in itertools.zip_longest(*cells, fillvalue=""):
            lines.append("  ".join(part.ljust(w) for part, w in zip(parts, widths)).rstrip())
        if row is header:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


TABLE_TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Test curves", ("double descent", "test loss", "test error", "best test")),
    ("Phases and separation", ("learned", "memorised", "separation", "noise floor")),
    ("Large activation", ("large activation", "ratio to", "explained")),
    ("Path attribution", ("path",)),
)
"""Topic of a part of a wide table -> words of the column names it takes (:func:`topic_tables`)."""


def topic_tables(header: Sequence[str], rows: Sequence[Sequence[str]], keep: int = 2) -> list[tuple[str, list[str], list[list[str]]]]:
    """A wide table split by topic (:data:`TABLE_TOPICS`): each part repeats the first ``keep`` columns (run, seeds).

    Returns
    -------
    list of (title, header, rows)
        Parts with at least one column; columns of no topic end up in a last part, ``Other``.
    """
    parts: dict[str, list[int]] = {}
    for index, name in enumerate(header[keep:], start=keep):
        topic = next((t for t, words in TABLE_TOPICS if any(w in name for w in words)), "Other")
        parts.setdefault(topic, []).append(index)
    order = [t for t, _ in TABLE_TOPICS] + ["Other"]
    return [(topic, [header[i] for i in [*range(keep), *parts[topic]]],
             [[row[i] for i in [*range(keep), *parts[topic]]] for row in rows]) for topic in order if topic in parts]


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
        (fmt(large.get("layer")) if large.get("units_by_seed") else f"{fmt(large.get('layer'))} unit {fmt(large.get('unit'))}")
        if large else "n/a",
        fmt(large.get("ratio_to_median")) if large else "n/a",
        explanation_words(large) if large else "n/a",
        f"{layer}: {_percent(at.get('clean_share_correct'))} / {_percent(at.get('clean_share_wrong'))}" if layer else "n/a",
        (f"{fmt_interval(at.get('excess'), at.get('excess_low'), at.get('excess_high'))} "
         f"({excess_words(at.get('beyond_null'))})") if layer else "n/a",
    ]
