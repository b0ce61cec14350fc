"""Findings across seeds: medians with distribution-free intervals, shares with Clopper-Pearson intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from actlab.analysis.seeds import aggregate_summaries, counts, hierarchical_interval, interval, share


def test_five_seeds_give_the_full_range_and_its_coverage():
    found = interval([3.0, 1.0, 5.0, 2.0, 4.0])
    # no pair of order statistics reaches 95 % with 5 values; min..max covers the median with 1 - 2 / 2**5
    assert found == {"median": 3.0, "low": 1.0, "high": 5.0, "n": 5, "coverage": 1 - 2 / 2**5}


def test_nine_seeds_drop_one_value_at_each_end():
    values = np.arange(9.0)[::-1]
    found = interval(values)
    # P(X_(2) <= m <= X_(8)) = 1 - 2 P(Binomial(9, 1/2) <= 1) = 1 - 2 * 10 / 512 >= 0.95; k = 3 gives 0.82
    assert (found["low"], found["high"], found["median"]) == (1.0, 7.0, 4.0)
    assert found["coverage"] == pytest.approx(1 - 2 * 10 / 512)


def test_missing_values_are_left_out_and_one_value_has_no_interval():
    assert interval([None, float("nan"), 2.0]) == {"median": 2.0, "low": 2.0, "high": 2.0, "n": 1, "coverage": None}
    assert interval([None])["median"] is None and interval([None])["n"] == 0


def test_share_has_the_clopper_pearson_interval():
    found = share([True, False, True, True, None])
    ci = stats.binomtest(3, 4).proportion_ci(confidence_level=0.95, method="exact")
    assert (found["share"], found["count"], found["n"]) == (0.75, 3, 4)
    assert found["low"] == pytest.approx(ci.low) and found["high"] == pytest.approx(ci.high)
    assert share([True, True])["high"] == 1.0 and share([False, False])["low"] == 0.0


def test_aggregate_keeps_the_summary_structure():
    summaries = {
        "seed0": {"run": "a", "errors": {}, "x": {"present": True, "epoch": 10, "layer": "hidden2", "none": None, "unit": 7}},
        "seed1": {"run": "b", "errors": {"pca": "boom"}, "x": {"present": False, "epoch": 14, "layer": "hidden2", "none": None,
                                                               "unit": 300}},
        "seed2": {"run": "c", "errors": {}, "x": {"present": True, "epoch": 12, "layer": "hidden3", "none": None, "unit": 7}},
    }
    agg = aggregate_summaries(summaries)
    assert agg["seeds"] == ["seed0", "seed1", "seed2"] and agg["n_seeds"] == 3
    assert agg["errors"] == {"seed1": {"pca": "boom"}} and "run" not in agg
    assert agg["x"]["present"]["count"] == 2 and agg["x"]["epoch"]["median"] == 12
    assert agg["x"]["layer"] == counts(["hidden2", "hidden2", "hidden3"]) == {
        "value": "hidden2", "counts": {"hidden2": 2, "hidden3": 1}, "n": 3}
    assert agg["x"]["none"] is None
    assert agg["x"]["unit"] == {"value": "7", "counts": {"7": 2, "300": 1}, "n": 3}  # a unit's index is a name, not a number
    with pytest.raises(ValueError, match="at least one seed"):
        aggregate_summaries({})


def test_hierarchical_interval_adds_each_seeds_shared_sampling_to_the_spread_between_seeds():
    """Issue 17 item 2: MLP5 was 'rising with depth' (slope 0.0043 [0.0028, 0.0053] over seeds) while every seed's own
    class-bootstrap interval contained 0. With the seeds' shared sampling the interval over seeds contains 0 too."""
    values, lows, highs = [0.0043, 0.0040, 0.0050, 0.0045, 0.0042], [-0.001, -0.002, -0.001, -0.001, -0.0015], \
        [0.009, 0.010, 0.011, 0.010, 0.0099]
    found = hierarchical_interval(values, lows, highs, n_bootstrap=2000, seed=3)
    assert interval(values)["low"] > 0 and found["low"] < 0 < found["high"]
    # by hand: resample seeds, then one shared normal draw scaled by each seed's own half-width / 1.96
    rng = np.random.default_rng(3)
    picks = rng.integers(0, 5, (2000, 5))
    spread = (np.array(highs) - np.array(lows)) / (2 * stats.norm.ppf(0.975))
    medians = np.median(np.array(values)[picks] + rng.standard_normal((2000, 1)) * spread[picks], axis=1)
    assert (found["low"], found["high"]) == pytest.approx(tuple(np.percentile(medians, [2.5, 97.5])))
    assert found["n"] == 5 and found["coverage"] == 0.95 and found["median"] == 0.0043


def test_aggregate_uses_the_hierarchical_interval_where_seeds_carry_their_own():
    rows = {f"seed{k}": {"paths": {"by_layer": {"hidden1": {"excess": 0.1 + k / 100, "excess_low": 0.0 + k / 100,
                                                              "excess_high": 0.2 + k / 100, "split": 0.5 + k / 10}}}}
            for k in range(3)}
    found = aggregate_summaries(rows)["paths"]["by_layer"]["hidden1"]
    assert found["excess"]["method"].startswith("hierarchical") and found["excess"]["low"] < 0.1
    assert "method" not in found["split"] and found["split"]["coverage"] == 0.75  # no own interval: order statistics
