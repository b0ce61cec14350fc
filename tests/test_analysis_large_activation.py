"""Large activations: magnitudes vs NumPy, the planted input-driven unit, and the explanation statistics."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.metrics import r2_score

import actlab
from actlab.analysis import dominant_unit, unit_magnitudes
from actlab.analysis.large_activation import correlation_ratio, cv_ridge_r2, permutation_r2
from fixtures_store import EMERGENCE_EPOCH, LARGE_UNIT, RECORD_EPOCHS, cached_planted, cached_results, post


def test_magnitudes_match_numpy(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    mags = unit_magnitudes(actlab.open_run(planted.run_dir).layer("output")).compute()
    for epoch in (0, 40):
        x = post(planted, epoch, "output")
        np.testing.assert_allclose(mags["mean_abs"].sel(epoch=epoch), np.abs(x).mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(mags["max_abs"].sel(epoch=epoch), np.abs(x).max(axis=0), rtol=1e-7)


def test_planted_dominant_unit_found_with_emergence(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    act = actlab.open_run(planted.run_dir).layer("hidden1")
    found = act.actlab.dominant_unit()
    assert int(found["dominant_unit"]) == LARGE_UNIT and bool(found["is_dominant"])
    assert float(found["emergence_epoch"]) == EMERGENCE_EPOCH
    mean_abs = np.stack([np.abs(post(planted, e, "hidden1")).mean(axis=0) for e in RECORD_EPOCHS])
    ratio = mean_abs[:, LARGE_UNIT] / np.median(mean_abs, axis=1)
    np.testing.assert_allclose(found["unit_ratio_to_median"], ratio, rtol=1e-6)
    second = np.sort(mean_abs, axis=1)[:, -2]
    expected = (mean_abs.argmax(axis=1) == LARGE_UNIT) & (ratio >= 10) & (mean_abs[:, LARGE_UNIT] >= 3 * second)
    np.testing.assert_array_equal(found["dominant"], expected)
    assert list(expected) == [e >= EMERGENCE_EPOCH for e in RECORD_EPOCHS]
    # no dominant unit in the random layer
    assert not bool(actlab.open_run(planted.run_dir).layer("hidden2").actlab.dominant_unit()["dominant"].any())


def test_planted_unit_explained_by_input_not_output(tmp_path_factory):
    planted, results = cached_results(tmp_path_factory)
    node = results["large_activation"].to_dataset().sel(layer="hidden1")
    assert int(node["dominant_unit"]) == LARGE_UNIT
    assert float(node["input_r2"]) > 0.9 and float(node["input_p_value"]) <= 0.02
    assert (node["output_r2"].values < 0.1).all() and (node["output_eta2"].values < 0.1).all()
    values = results["large_activation/hidden1"].to_dataset()["dominant_unit_activation"].values
    np.testing.assert_allclose(values, post(planted, RECORD_EPOCHS[-1], "hidden1")[:, LARGE_UNIT], rtol=1e-6)
    # the output layer's largest logit unit is explained by the labels
    out = results["large_activation"].to_dataset().sel(layer="output")
    assert float(out["output_r2"].sel(target="predicted")) > float(out["input_r2"])


def test_cv_ridge_r2_equals_sklearn():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 6))
    y = x @ rng.standard_normal(6) + 0.5 * rng.standard_normal(120)
    expected = r2_score(y, cross_val_predict(Ridge(alpha=1.0), x, y, cv=KFold(5, shuffle=True, random_state=3)))
    assert cv_ridge_r2(x, y[:, None], alpha=1.0, n_splits=5, seed=3)[0] == pytest.approx(expected, rel=1e-10)


def test_permutation_p_value_and_eta2():
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 3, 150)
    onehot = np.eye(3)[classes]
    related = classes * 2.0 + rng.standard_normal(150) * 0.3
    unrelated = rng.standard_normal(150)
    r2, p = permutation_r2(onehot, related, n_permutations=49, seed=0)
    assert r2 > 0.8 and p == pytest.approx(1 / 50)
    _, p_null = permutation_r2(onehot, unrelated, n_permutations=49, seed=0)
    assert p_null > 0.05
    means = np.array([related[classes == c].mean() for c in classes])
    expected = np.sum((means - related.mean()) ** 2) / np.sum((related - related.mean()) ** 2)
    assert correlation_ratio(related, classes) == pytest.approx(expected)


def test_dominant_unit_from_magnitudes_dataset():
    mags = xr.Dataset({"mean_abs": (("epoch", "unit"), [[1.0, 1.0, 1.2, 0.9], [1.0, 50.0, 1.1, 0.9]]),
                       "max_abs": (("epoch", "unit"), np.ones((2, 4)))}, coords={"epoch": [0, 5], "unit": np.arange(4)})
    found = dominant_unit(mags, n_top=2)
    assert int(found["dominant_unit"]) == 1 and float(found["emergence_epoch"]) == 5
    np.testing.assert_array_equal(found["top_unit"].values, [[2, 0], [1, 2]])
