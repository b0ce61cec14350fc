"""Words follow numbers: every rule of actlab.findings on planted numbers, and the findings of real summaries."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_store import cached_results
from scipy import stats

from actlab import findings
from actlab.analysis.inference import benjamini_hochberg
from actlab.analysis.pipeline import family_decisions
from actlab.analysis.seeds import aggregate_summaries, counts, interval, share


def seeds(values):
    """An interval over seeds of ``values`` (what aggregate_summaries puts in place of a number)."""
    return interval(values)


# -- each rule, each branch ------------------------------------------------------------------------------


@pytest.mark.parametrize(("direction", "words"), [
    ("decrease", "separation rising with depth, relative to initialisation"),
    ("increase", "separation falling with depth, relative to initialisation"),
    ("none", "depth trend as at initialisation"), (None, "n/a (not tested)"),
])
def test_trend_words_speak_of_separation_and_come_from_the_tested_change(direction, words):
    assert findings.trend_words(direction) == words


def test_trend_words_over_seeds_count_the_seeds():
    assert findings.trend_words(counts(["none", "decrease", "none"])) == "depth trend as at initialisation (2/3 seeds)"


def test_a_flat_or_tiny_change_with_depth_is_no_trend():
    """The review's cases: 0.863 -> 0.863 was read as rising, 0.995 -> 0.994 as falling; the words now come from the
    tested change of slope since the first epoch, whatever the cosines at one epoch."""
    for first, last in ((0.863, 0.863), (0.995, 0.994)):
        summary = {"separation": {"layer": "hidden6", "epoch": 10, "cosine": last, "noise_floor": 0.99,
                                  "grouping": "noisy_by_original", "at_phases": {"last": {
                                      "epoch": 10,
                                      "by_layer": {"hidden1": {"noisy_by_original": first, "noisy_by_assigned": first},
                                                   "hidden6": {"noisy_by_original": last, "noisy_by_assigned": last}},
                                      "depth_trend": {g: {"slope": (last - first) / 5, "change": 0.0, "p_value": 1.0,
                                                          "q_value": 1.0, "direction": "none"}
                                                      for g in ("noisy_by_original", "noisy_by_assigned")}}}}}
        rows = {f.name: f for f in findings.findings_from_summary(summary)}
        value = rows["separation at the last epoch, noisy by original"].value
        assert value.endswith("depth trend as at initialisation") and "rising" not in value and "falling" not in value


@pytest.mark.parametrize(("rule", "yes", "no"), [
    (findings.floor_words, "below its noise floor", "not below its noise floor"),
    (findings.excess_words, "beyond its null", "not beyond its null"),
])
def test_decided_words_follow_the_test_decision_and_count_seeds(rule, yes, no):
    assert rule(True) == yes and rule(False) == no and rule(None) == "n/a (not tested)"
    assert rule(share([True, False, True])) == f"{yes} in 2 of 3 seeds"


def test_beyond_needs_the_permutation_test_not_the_excess_interval():
    """Issue 17 item 1: hidden3's excess interval lay above 0 with p = 0.07; the words now follow the test only."""
    row = {"p_value": 0.07, "excess": 0.09, "excess_low": 0.01, "excess_high": 0.2}
    found = {"paths": {"epoch": 5, "by_layer": {"hidden3": row}, "at_phases": {"last": {"epoch": 5, "by_layer": {"hidden3": row}}}}}
    family_decisions(found)
    assert row["q_value"] == pytest.approx(0.07) and row["beyond_null"] is False
    assert findings.excess_words(row["beyond_null"]) == "not beyond its null"


@pytest.mark.parametrize(("direction", "words"), [
    ("increase", "grown since initialisation"), ("decrease", "shrunk since initialisation"),
    ("none", "no change since initialisation detected"),
])
def test_gain_words(direction, words):
    assert findings.gain_words(direction) == words


def large(input_p, input_r2, low, high, best="label", best_p=0.5, best_r2=0.01):
    outputs = {"label": 0.9, "original_label": 0.9, "predicted": 0.9} | {best: best_p}
    return {"input_p_value": input_p, "input_r2": input_r2, "r2_difference_low": low, "r2_difference_high": high,
            "best_output_target": best, "output_p_value": outputs,
            "output_r2": {"label": -0.01, "original_label": -0.01, "predicted": -0.01} | {best: best_r2}}


@pytest.mark.parametrize(("unit", "verdict"), [
    (large(0.001, 0.3, 0.1, 0.4), "input"),
    (large(0.001, -0.044, 0.01, 0.1), "undecided"),  # issue 17 item 8: a negative R^2 is never "explained"
    (large(0.04, 0.3, 0.1, 0.4, best_p=0.04), "undecided"),  # p < 0.05 alone, but q = 0.08 in the family of four
    (large(0.6, 0.01, -0.4, -0.1, best="predicted", best_p=0.001, best_r2=0.3), "output"),
    (large(0.6, 0.01, -0.4, -0.1, best="predicted", best_p=0.001, best_r2=-0.02), "undecided"),
])
def test_explained_verdict_needs_a_rejecting_test_a_positive_r2_and_the_interval(unit, verdict):
    family_decisions({"large_activation": unit})
    assert unit["explained_by"] == verdict == findings.explanation_words(unit)


def test_benjamini_hochberg_against_its_definition():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 20)])
    q = benjamini_hochberg([*p, None, float("nan")])
    assert q[-2:] == [None, None]
    m = len(p)
    expected = [min(1.0, min(np.sort(p)[j] * m / (j + 1) for j in range(i, m))) for i in range(m)]
    np.testing.assert_allclose(np.array(q[:m])[np.argsort(p)], expected)
    # the step-up: the k largest p with p_(k) <= k q / m are rejected, all together
    k = max(j + 1 for j in range(m) if np.sort(p)[j] <= (j + 1) * 0.05 / m)
    assert sum(value <= 0.05 for value in q[:m]) == k


def test_descent_words_give_the_share_of_seeds_with_its_clopper_pearson_interval():
    assert findings.descent_words({"present": True}) == "yes" and findings.descent_words({"present": False}) == "no"
    ci = stats.binomtest(2, 5).proportion_ci(confidence_level=0.95, method="exact")
    words = findings.descent_words({"present": share([True, False, True, False, False])})
    assert words == f"present in 2 of 5 seeds (40%, 95% interval {100 * ci.low:.0f}%-{100 * ci.high:.0f}%)"


@pytest.mark.parametrize(("phases", "words"), [
    ({"clean_learned": True, "clean_learned_epoch": 34}, "epoch 34"),
    ({"clean_learned": False, "clean_learned_epoch": None}, "not learned by the last epoch"),
    ({"clean_learned": share([True] * 5), "clean_learned_epoch": seeds([30, 34, 37, 33, 35])}, "epoch 34 [30, 37] (n=5, 93.8%)"),
    ({"clean_learned": share([False] * 3), "clean_learned_epoch": seeds([])}, "not learned by the last epoch (0 of 3 seeds)"),
    ({"clean_learned": share([True, False, True]), "clean_learned_epoch": seeds([8, 12])},
     "learned in 2 of 3 seeds, at epoch 10 [8, 12] (n=2, 50%)"),
    ({"clean_learned_epoch": 11}, "epoch 11"),  # a summary written before the criterion
])
def test_learned_words_need_a_high_plateau(phases, words):
    assert findings.learned_words(phases) == words


def test_a_cnn5_like_run_is_not_learned_and_its_best_and_final_test_values_are_stated():
    """The issue's cnn5 run (clean accuracy 18.3 %) and MLP5 run (test loss 1.876 at epoch 10, 3.95 at the end)."""
    summary = {"phases": {"clean_learned": False, "clean_learned_epoch": None, "clean_plateau_acc": 0.1834,
                          "clean_learned_acc": 0.9, "clean_final_acc": 0.183, "noisy_fitted_epoch": None},
               "test": {"best_loss": 1.876, "best_loss_epoch": 10, "best_acc": 0.3125, "best_acc_epoch": 12,
                        "final_loss": 3.95, "final_acc": 0.27, "final_epoch": 150},
               "double_descent": {"present": False, "first_min_epoch": None, "peak_epoch": None, "test_error": {}}}
    rows = {f.name: f for f in findings.findings_from_summary(summary)}
    assert rows["clean training samples learned"].value == "not learned by the last epoch"
    assert "plateau of the smoothed clean-train accuracy 18.3% (learned from 90.0%), last epoch 18.3%" in \
        rows["clean training samples learned"].detail
    assert rows["best test loss"].value == "1.88 at epoch 10; final 3.95 at epoch 150"
    assert rows["best test accuracy"].value == "31.2% at epoch 12; final 27.0%"
    assert "n/a" not in rows["double descent (test loss)"].detail
    assert "no interior peak" in rows["double descent (test loss)"].detail
    over_seeds = aggregate_summaries({"a": summary, "b": {**summary, "test": {**summary["test"], "best_acc": 0.3}}})
    rows = {f.name: f for f in findings.findings_from_summary(over_seeds)}
    assert rows["clean training samples learned"].value == "not learned by the last epoch (0 of 2 seeds)"
    assert rows["best test accuracy"].value == "30.6% [30.0%, 31.2%] at epoch 12 (n=2); final 27.0%"


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
    assert findings.fmt(seeds([0.9, 0.8, 0.7, 0.95, 0.85])) == "0.85 [0.7, 0.95] (n=5, 93.8%)"  # n and coverage
    assert findings.fmt(seeds([0.9, 0.8, 0.7])) == "0.8 [0.7, 0.9] (n=3, 75%)"
    assert findings.fmt(share([True, True, False])) == "2/3 seeds"
    assert findings.fmt_interval(0.3, 0.1, 0.5) == "0.3 [0.1, 0.5]"
    assert findings.fmt(None) == "n/a" and findings.fmt(float("nan")) == "n/a"


# -- findings of real summaries --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def summaries(tmp_path_factory):
    from actlab.analysis import summary

    return {f"seed{seed}": summary(cached_results(tmp_path_factory, seed=seed)[1]) for seed in (0, 1, 2)}


def test_findings_of_one_run_follow_its_numbers(summaries, tmp_path_factory):
    one = summaries["seed0"]
    rows = {f.name: f for f in findings.findings_from_summary(one)}
    dd = one["double_descent"]
    assert rows["double descent (test loss)"].value == (
        f"yes: {dd['first_min_epoch']} -> {dd['peak_epoch']} -> {dd['second_min_epoch']}")
    assert rows["noisy labels memorised"].value == "epoch 40"
    # planted clean accuracy 0.95 * min(1, e / 10): a high plateau, learned at epoch 11 (tests/test_analysis_curves.py)
    assert one["phases"]["clean_learned"] and rows["clean training samples learned"].value == "epoch 11"
    metrics = cached_results(tmp_path_factory, seed=0)[0].metrics
    loss = np.array([metrics[e]["test_loss"] for e in sorted(metrics)])
    acc = np.array([metrics[e]["test_acc"] for e in sorted(metrics)])
    assert one["test"] == {"best_loss": pytest.approx(loss.min()), "best_loss_epoch": int(np.argmin(loss)),
                           "best_acc": pytest.approx(acc.max()), "best_acc_epoch": int(np.argmax(acc)),
                           "final_loss": pytest.approx(loss[-1]), "final_acc": pytest.approx(acc[-1]),
                           "final_epoch": len(loss) - 1}
    assert rows["large activation"].value == "hidden1 unit 3 (dominant)"
    assert rows["large activation explained by"].value == one["large_activation"]["explained_by"] == "input"
    assert "p ≤ 1/(" in rows["large activation explained by"].detail  # the planted unit's p sits at the floor
    # planted: clean and noisy (by original label) means coincide in hidden1 and are orthogonal in hidden3
    sep = one["separation"]
    # the pattern is planted from the first epoch on: the cosine falls with depth, but no more than at initialisation
    trend = sep["at_phases"]["last"]["depth_trend"]["noisy_by_original"]
    assert trend["high"] < 0 and trend["slope_first"] < 0 and trend["direction"] == "none"
    assert rows["separation at the last epoch, noisy by original"].value.endswith("depth trend as at initialisation")
    assert rows["strongest clean-noisy separation"].value.endswith("below its noise floor")
    # hidden3 splits 100% / 0%, but with 4 classes a perfect split arises by chance with probability 1/16: the
    # permutation test cannot reject (p > 0.05), so it is not "beyond its null" although its excess interval is > 0
    hidden3 = one["paths"]["by_layer"]["hidden3"]
    assert hidden3["excess_low"] > 0 and hidden3["p_value"] > 0.05 and hidden3["beyond_null"] is False
    assert rows["path attribution, hidden3"].value == ("clean path: 100% of correct vs 0% of wrong; not beyond its null, "
                                                       + findings.gain_words(hidden3["gain_direction"]))
    assert set(one["tests"]) == {"noise_floor", "depth_trend", "path_split", "split_change", "explained_by"}
    assert one["tests"]["path_split"]["size"] == 4 * len(one["paths"]["at_phases"])  # 4 layers x read epochs
    assert rows["tests behind the words"].value == "Benjamini-Hochberg at FDR 0.05"
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
    assert f"(n=3, 75%)" in rows["large activation"].detail
    assert f"{findings.fmt(agg['large_activation']['ratio_to_median'])}x" in rows["large activation"].detail
    assert rows["large activation"].value == "hidden1 (dominant in 3 of 3 seeds)"  # unit indices per seed only
    assert "units per seed: seed0 hidden1 unit 3, seed1 hidden1 unit 3, seed2 hidden1 unit 3" in rows["large activation"].detail
    assert "share their data and probes" in rows["seeds"].detail
    assert rows["strongest clean-noisy separation"].value.endswith("below its noise floor in 3 of 3 seeds")
    row = findings.comparison_row("ensemble", agg)
    assert row[:2] == ["ensemble", "3"] and row[2] == "present in 3 of 3 seeds"
