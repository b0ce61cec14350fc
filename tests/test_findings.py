"""Words follow numbers: every rule of actlab.findings on planted numbers, and the findings of real summaries."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_store import cached_results
from scipy import stats

from actlab import findings
from actlab.analysis.seeds import aggregate_summaries, interval, share


def seeds(values):
    """An interval over seeds of ``values`` (what aggregate_summaries puts in place of a number)."""
    return interval(values)


# -- each rule, each branch ------------------------------------------------------------------------------


@pytest.mark.parametrize(("low", "high", "words"), [
    (-0.2, -0.01, "falling with depth"), (0.01, 0.3, "rising with depth"), (-0.1, 0.1, "no clear trend with depth"),
    (0.0, 0.2, "no clear trend with depth"), (None, None, "no trend measured"),
])
def test_trend_words_need_an_interval_that_excludes_zero(low, high, words):
    assert findings.trend_words(low, high) == words


def test_a_flat_or_tiny_change_with_depth_is_no_clear_trend():
    """The review's cases: 0.863 -> 0.863 was read as rising, 0.995 -> 0.994 as falling."""
    for first, last in ((0.863, 0.863), (0.995, 0.994)):
        summary = {"separation": {"layer": "hidden6", "epoch": 10, "cosine": last, "noise_floor": 0.99,
                                  "grouping": "noisy_by_original", "at_phases": {"last": {
                                      "epoch": 10,
                                      "by_layer": {"hidden1": {"noisy_by_original": first, "noisy_by_assigned": first},
                                                   "hidden6": {"noisy_by_original": last, "noisy_by_assigned": last}},
                                      "depth_trend": {g: {"slope": (last - first) / 5, "low": -0.01, "high": 0.01}
                                                      for g in ("noisy_by_original", "noisy_by_assigned")}}}}}
        rows = {f.name: f for f in findings.findings_from_summary(summary)}
        value = rows["separation at the last epoch, noisy by original"].value
        assert value.endswith("no clear trend with depth") and "rising" not in value and "falling" not in value


@pytest.mark.parametrize(("cosine", "floor", "words"), [
    (0.5, 0.9, "below its noise floor"), (0.95, 0.9, "not below its noise floor"), (0.9, 0.9, "not below its noise floor"),
    (seeds([0.7, 0.8, 0.85]), seeds([0.9, 0.92, 0.95]), "below its noise floor"),
    (seeds([0.7, 0.8, 0.93]), seeds([0.9, 0.92, 0.95]), "not below its noise floor"),
    (None, 0.9, "noise floor n/a"),
])
def test_floor_words(cosine, floor, words):
    assert findings.floor_words(cosine, floor) == words


@pytest.mark.parametrize(("excess", "low", "high", "words"), [
    (0.3, 0.1, 0.5, "beyond its null"), (-0.3, -0.5, -0.1, "below its null"), (0.1, -0.1, 0.3, "not beyond its null"),
    (seeds([0.1, 0.2, 0.3]), None, None, "beyond its null"), (seeds([-0.1, 0.2, 0.3]), None, None, "not beyond its null"),
    (seeds([0.1, 0.2, 0.3]), seeds([0.01, 0.02, 0.05]), seeds([0.4, 0.5, 0.6]), "beyond its null"),
    (seeds([0.1, 0.2, 0.3]), seeds([-0.05, -0.02, 0.05]), seeds([0.4, 0.5, 0.6]), "not beyond its null"),
    (seeds([-0.3, -0.2, -0.1]), seeds([-0.5, -0.4, -0.3]), seeds([-0.05, -0.02, 0.01]), "below its null"),
    (None, None, None, "null n/a"),
])
def test_excess_words(excess, low, high, words):
    assert findings.excess_words(excess, low, high) == words


@pytest.mark.parametrize(("gain", "null_low", "null_high", "words"), [
    (0.3, -0.2, 0.2, "grown since initialisation"), (0.1, -0.2, 0.2, "no larger than at initialisation"),
    (-0.3, -0.2, 0.2, "shrunk since initialisation"),
    (seeds([0.05, 0.1, 0.2]), None, None, "grown since initialisation"),
    (seeds([-0.05, 0.1, 0.2]), None, None, "no larger than at initialisation"),
    (seeds([-0.3, -0.2, -0.1]), None, None, "shrunk since initialisation"),
])
def test_gain_words(gain, null_low, null_high, words):
    assert findings.gain_words(gain, null_low, null_high) == words


def test_explanation_words_single_run_and_seeds():
    assert findings.explanation_words({"explained_by": "input"}) == "input"
    assert findings.explanation_words({"explained_by": None}) == "undecided"
    assert findings.explanation_words({"r2_difference": seeds([0.1, 0.2, 0.3])}) == "input"
    assert findings.explanation_words({"r2_difference": seeds([-0.1, 0.2, 0.3])}) == "undecided"
    assert findings.explanation_words({"r2_difference": seeds([-0.3, -0.2, -0.1])}) == "output"


def test_descent_words_give_the_share_of_seeds_with_its_clopper_pearson_interval():
    assert findings.descent_words({"present": True}) == "yes" and findings.descent_words({"present": False}) == "no"
    ci = stats.binomtest(2, 5).proportion_ci(confidence_level=0.95, method="exact")
    words = findings.descent_words({"present": share([True, False, True, False, False])})
    assert words == f"present in 2 of 5 seeds (40%, 95% interval {100 * ci.low:.0f}%-{100 * ci.high:.0f}%)"


def test_p_values_at_the_permutation_floor_say_so():
    assert findings.fmt_p(0.005, 199) == "p ≤ 1/(199+1) = 0.005"
    assert findings.fmt_p(1 / 100, 99) == "p ≤ 1/(99+1) = 0.01"
    assert findings.fmt_p(0.02, 99) == "p = 0.02"
    assert findings.fmt_p(None, 99) == "p n/a"


def test_phase_epochs_and_recorded_epochs_are_named_apart():
    summary = {"phase_epochs": {"test_loss_min": {"phase_epoch": 158, "recorded_epoch": 166},
                                "last": {"phase_epoch": 600, "recorded_epoch": 600}}}
    assert findings.phase_when(summary, "test_loss_min", 166) == "the test-loss minimum (epoch 158; read at recorded epoch 166)"
    assert findings.phase_when(summary, "last", 600) == "the last epoch (epoch 600)"


def test_numbers_over_seeds_carry_their_intervals():
    assert findings.fmt(seeds([0.9, 0.8, 0.7, 0.95, 0.85])) == "0.85 [0.7, 0.95]"
    assert findings.fmt(share([True, True, False])) == "2/3 seeds"
    assert findings.fmt_interval(0.3, 0.1, 0.5) == "0.3 [0.1, 0.5]"
    assert findings.fmt(None) == "n/a" and findings.fmt(float("nan")) == "n/a"


# -- findings of real summaries --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def summaries(tmp_path_factory):
    from actlab.analysis import summary

    return {f"seed{seed}": summary(cached_results(tmp_path_factory, seed=seed)[1]) for seed in (0, 1, 2)}


def test_findings_of_one_run_follow_its_numbers(summaries):
    one = summaries["seed0"]
    rows = {f.name: f for f in findings.findings_from_summary(one)}
    dd = one["double_descent"]
    assert rows["double descent (test loss)"].value == (
        f"yes: {dd['first_min_epoch']} -> {dd['peak_epoch']} -> {dd['second_min_epoch']}")
    assert rows["noisy labels memorised"].value == "epoch 40"
    assert rows["large activation"].value == "hidden1 unit 3 (dominant)"
    assert rows["large activation explained by"].value == one["large_activation"]["explained_by"] == "input"
    assert "p ≤ 1/(" in rows["large activation explained by"].detail  # the planted unit's p sits at the floor
    # planted: clean and noisy (by original label) means coincide in hidden1 and are orthogonal in hidden3
    sep = one["separation"]
    trend = sep["at_phases"]["last"]["depth_trend"]["noisy_by_original"]
    assert trend["high"] < 0
    assert rows["separation at the last epoch, noisy by original"].value.endswith("falling with depth")
    assert rows["strongest clean-noisy separation"].value.endswith("below its noise floor")
    hidden3 = one["paths"]["by_layer"]["hidden3"]
    assert hidden3["excess_low"] > 0
    assert rows["path attribution, hidden3"].value == "clean path: 100% of correct vs 0% of wrong; beyond its null, " + \
        findings.gain_words(hidden3["split_gain"], hidden3["null_low"], hidden3["null_high"])
    when = one["phase_epochs"]["test_loss_min"]
    assert (when["phase_epoch"], when["recorded_epoch"]) == (13, 10)
    assert "(epoch 13; read at recorded epoch 10)" in rows["separation at the test-loss minimum, noisy by original"].detail


def test_findings_over_seeds_give_medians_intervals_and_shares(summaries):
    agg = aggregate_summaries(summaries)
    rows = {f.name: f for f in findings.findings_from_summary(agg)}
    assert rows["seeds"].value == "3"
    assert rows["double descent (test loss)"].value.startswith("present in 3 of 3 seeds")
    ratios = [s["large_activation"]["ratio_to_median"] for s in summaries.values()]
    assert agg["large_activation"]["ratio_to_median"] == {
        "median": float(np.median(ratios)), "low": min(ratios), "high": max(ratios), "n": 3, "coverage": 0.75}
    assert f"{findings.fmt(agg['large_activation']['ratio_to_median'])}x" in rows["large activation"].detail
    assert rows["large activation"].value == "hidden1 unit 3 (dominant in 3 of 3 seeds)"
    row = findings.comparison_row("ensemble", agg)
    assert row[:2] == ["ensemble", "3"] and row[2] == "present in 3 of 3 seeds"
