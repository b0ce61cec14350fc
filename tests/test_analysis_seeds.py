"""Findings across seeds: medians with distribution-free intervals, shares with Clopper-Pearson intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from actlab.analysis.seeds import aggregate_summaries, counts, interval, share


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
