"""Large activations: magnitudes vs NumPy, the planted input-driven unit, and the explanation statistics."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fixtures_store import (
    EMERGENCE_EPOCH,
    LARGE_UNIT,
    RECORD_EPOCHS,
    cached_planted,
    cached_results,
    post,
)
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict

import actlab
from actlab.analysis import blocks, dominant_unit, large_activation, unit_magnitudes
from actlab.analysis.large_activation import (
    correlation_ratio,
    cv_ridge_predict,
    explained_by,
    PERMUTATION_BATCH,
    PERMUTATION_BATCH_BYTES,
    image_features,
    leading_eigenpairs,
    paired_r2_difference,
    permutation_batch,
    permutation_batches,
    permutation_fit,
    permutation_fits,
)


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


def test_cv_r2_equals_sklearn():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 6))
    y = x @ rng.standard_normal(6) + 0.5 * rng.standard_normal(120)
    predicted = cross_val_predict(Ridge(alpha=1.0), x, y, cv=KFold(5, shuffle=True, random_state=3))
    found, r2, _ = permutation_fit(x, y, alpha=1.0, n_splits=5, n_permutations=3, seed=3)
    np.testing.assert_allclose(found, predicted, rtol=1e-12)
    assert r2 == pytest.approx(r2_score(y, predicted), rel=1e-10)


def test_permutation_p_value_and_eta2():
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 3, 150)
    onehot = np.eye(3)[classes]
    related = classes * 2.0 + rng.standard_normal(150) * 0.3
    unrelated = rng.standard_normal(150)
    _, r2, p = permutation_fit(onehot, related, n_permutations=49, seed=0)
    assert r2 > 0.8 and p == pytest.approx(1 / 50)
    _, _, p_null = permutation_fit(onehot, unrelated, n_permutations=49, seed=0)
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


def test_ratio_to_median_leaves_out_dead_units():
    # 5 of 8 units silent on every probe: the median over all units is 0, over the active ones finite
    mean_abs = np.array([[0, 0, 0, 0, 0, 1.0, 2.0, 40.0], [0, 0, 0, 0, 0, 0, 0, 0]])
    mags = xr.Dataset({"mean_abs": (("epoch", "unit"), mean_abs), "max_abs": (("epoch", "unit"), mean_abs)},
                      coords={"epoch": [0, 1], "unit": np.arange(8)})
    found = dominant_unit(mags, n_top=2)
    assert float(found["median_mean_abs"][0]) == 2.0 and float(found["ratio_to_median"][0, 0]) == 20.0
    np.testing.assert_array_equal(found["n_active"], [3, 0])
    assert bool(found["dominant"][0]) and np.isnan(found["median_mean_abs"][1]) and not bool(found["dominant"][1])


def test_paired_r2_difference_matches_a_hand_bootstrap():
    rng = np.random.default_rng(4)
    y = rng.standard_normal(60)
    a, b = y + 0.3 * rng.standard_normal(60), y + 0.8 * rng.standard_normal(60)
    difference, low, high = paired_r2_difference(y, a, b, n_bootstrap=200, seed=5)
    assert difference == pytest.approx(r2_score(y, a) - r2_score(y, b))
    draws = np.random.default_rng(5).integers(0, 60, (200, 60))
    by_hand = [r2_score(y[i], a[i]) - r2_score(y[i], b[i]) for i in draws]
    assert (low, high) == pytest.approx(tuple(np.percentile(by_hand, [2.5, 97.5])))
    assert 0 < low < difference < high
    # identical predictions: the difference and its interval are exactly 0
    assert paired_r2_difference(y, a, a, n_bootstrap=50) == (0.0, 0.0, 0.0)


def test_image_features_in_chunks_equal_a_float64_pca(monkeypatch):
    """Pixels too large for the budget: the covariance summed a chunk of images at a time gives scikit-learn's
    whitened components of the float64 pixels (signs included); the float32 path agrees to float32 rounding."""
    rng = np.random.default_rng(3)
    spread = np.array([60.0, 45, 35, 28, 22, 17, 13, 10, 8, 6, 1])  # distinct variances, then a noise floor
    latent = rng.standard_normal((700, 11)) * spread
    pixels = latent @ np.linalg.qr(rng.standard_normal((192, 11)))[0].T + 128 + rng.standard_normal((700, 192))
    images = np.clip(pixels, 0, 255).astype(np.uint8).reshape(700, 3, 8, 8)
    expected = PCA(n_components=8, whiten=True, svd_solver="full").fit_transform(images.reshape(700, -1) / 255.0)
    monkeypatch.setattr(large_activation, "IMAGE_CHUNK", 64)  # 11 chunks, the last one short
    chunked = image_features(images, n_components=8, max_bytes=1)
    np.testing.assert_allclose(chunked, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    whole = image_features(images, n_components=8, max_bytes=2**30)
    np.testing.assert_allclose(whole, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("spread", ["flat", "decaying"])
def test_leading_eigenpairs_equal_a_float64_eigendecomposition(spread):
    """Block Lanczos with float32 products: the leading eigenvalues of eigh to 1e-6 relative and the same
    eigenvectors (up to sign), on a nearly flat spectrum (the leading 20 within 1.5 %, relative gaps 7e-4) and
    on a decaying one."""
    rng = np.random.default_rng(5)
    size, k = 700, 20
    if spread == "flat":
        values = np.linspace(1.0, 0.5, size)
    else:
        values = 50.0 * np.arange(1, size + 1) ** -1.5
    basis = np.linalg.qr(rng.standard_normal((size, size)))[0]
    matrix = (basis * values) @ basis.T
    single = matrix.astype(np.float32)
    calls = []

    def apply(vectors):
        calls.append(vectors.shape[1])
        return (single @ vectors.astype(np.float32)).astype(np.float64)

    found, vectors = leading_eigenpairs(apply, size, k, seed=3)
    expected, expected_vectors = np.linalg.eigh(matrix)
    expected, expected_vectors = expected[::-1][:k], expected_vectors[:, ::-1][:, :k]
    np.testing.assert_allclose(found, expected, rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(vectors * expected_vectors, axis=0)), 1, atol=1e-6)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-12)
    assert set(calls) == {max(8, k // 2)}  # every product is one block
    with pytest.raises(ValueError, match="decompose it whole"):
        leading_eigenpairs(apply, 59, k)  # 2 k Ritz vectors and two blocks of 10 need 60


@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_image_features_in_chunks_by_block_lanczos_equal_a_float64_pca(kind, monkeypatch):
    """Over DENSE_EIGEN_SIZE pixels the chunked path's block Lanczos on the float32 covariance gives the
    whitened components of a float64 eigendecomposition (variances to 1e-6 relative, features to 1e-4 of the
    largest) and agrees with the pixels held whole (scikit-learn's ARPACK) as closely as ARPACK agrees with it."""
    rng = np.random.default_rng(8)
    n = 900
    if kind == "random":  # nearly flat spectrum: the hard case
        images = rng.integers(0, 256, (n, 3, 16, 16), dtype=np.uint8)
    else:  # smooth images: a decaying spectrum
        field = rng.standard_normal((n, 3, 4, 4))
        smooth = np.kron(field, np.ones((1, 1, 4, 4))) + 0.05 * rng.standard_normal((n, 3, 16, 16))
        images = np.clip(128 + 40 * smooth, 0, 255).astype(np.uint8)
    x = images.reshape(n, -1) / 255.0
    x = x - x.mean(axis=0)
    variance, components = np.linalg.eigh(x.T @ x / (n - 1))
    variance, components = variance[::-1][:30], components[:, ::-1][:, :30]
    components *= np.sign(components[np.argmax(np.abs(components), axis=0), np.arange(30)])
    expected = x @ components / np.sqrt(variance)
    monkeypatch.setattr(large_activation, "IMAGE_CHUNK", 128)  # 8 chunks, the last one short
    found = []

    def recorded(*args, **kwargs):
        found.append(leading_eigenpairs(*args, **kwargs))
        return found[-1]

    monkeypatch.setattr(large_activation, "leading_eigenpairs", recorded)
    chunked = image_features(images, n_components=30, max_bytes=1)
    assert len(found) == 1  # 768 pixels: the block Lanczos, not the dense eigendecomposition
    np.testing.assert_allclose(found[0][0], variance, rtol=1e-6)
    np.testing.assert_allclose(chunked, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    whole = image_features(images, n_components=30, max_bytes=2**30)
    arpack_error = np.abs(whole - expected).max()
    assert np.abs(chunked - whole).max() <= max(2 * arpack_error, 1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("n, n_bootstrap, batch", [(1, 3, 64), (37, 64, 64), (37, 65, 64), (1001, 200, 7), (50, 9, 1)])
def test_bootstrap_count_batches_are_the_counts_of_one_draw(n, n_bootstrap, batch):
    """Drawn a batch at a time from one generator: the same resamples as the one (n_bootstrap, n) call."""
    draws = np.random.default_rng(11).integers(0, n, (n_bootstrap, n))
    by_hand = np.stack([np.bincount(row, minlength=n) for row in draws])
    found = list(blocks.bootstrap_count_batches(n, n_bootstrap, 11, np.float32, batch=batch))
    assert [len(b) for b in found] == [min(batch, n_bootstrap - s) for s in range(0, n_bootstrap, batch)]
    assert all(b.dtype == np.float32 for b in found)
    np.testing.assert_array_equal(np.concatenate(found), by_hand)


def test_paired_r2_difference_equals_the_all_at_once_product():
    """Batched resamples give the interval of the product over all resamples at once (the computation before)."""
    rng = np.random.default_rng(6)
    y = rng.standard_normal(300)
    a, b = y + 0.4 * rng.standard_normal(300), y + 0.6 * rng.standard_normal(300)
    draws = np.random.default_rng(8).integers(0, 300, (333, 300))
    counts = np.stack([np.bincount(row, minlength=300) for row in draws]).astype(np.float64)
    centred = y - y.mean()
    sums = counts @ np.column_stack([centred, centred ** 2, (y - a) ** 2, (y - b) ** 2])
    all_at_once = (sums[:, 3] - sums[:, 2]) / (sums[:, 1] - sums[:, 0] ** 2 / 300)
    _, low, high = paired_r2_difference(y, a, b, n_bootstrap=333, seed=8)
    assert (low, high) == pytest.approx(tuple(np.percentile(all_at_once, [2.5, 97.5])), rel=1e-12)


def test_permutation_fits_equal_sklearn_on_all_permutations_at_once():
    """Batched permutations: the same p-values as every permuted column fitted at once by scikit-learn, and each
    feature set's fit equal to its own permutation_fit."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((90, 4))
    classes = rng.integers(0, 3, 90)
    onehot = np.eye(3)[classes]
    y = x[:, 0] * 0.3 + classes * 0.2 + rng.standard_normal(90)
    draws = np.random.default_rng(2)
    columns = np.column_stack([y] + [y[draws.permutation(90)] for _ in range(150)])
    found = permutation_fits([x, onehot], y, n_permutations=150, seed=2)
    assert sum(len(b) for b in permutation_batches(90, 150, 2)) == 150
    for features, (predicted, r2, p) in zip([x, onehot], found):
        by_hand = cross_val_predict(Ridge(alpha=1.0), features, columns, cv=KFold(5, shuffle=True, random_state=2))
        scores = r2_score(columns, by_hand, multioutput="raw_values")
        np.testing.assert_allclose(predicted, by_hand[:, 0], rtol=1e-10)
        assert r2 == pytest.approx(scores[0], rel=1e-10)
        assert p == (1 + np.sum(scores[1:] >= scores[0])) / 151
        single = permutation_fit(features, y, n_permutations=150, seed=2)
        np.testing.assert_array_equal(single[0], predicted)
        assert single[1:] == (r2, p)
    assert found[0][2] != found[1][2]  # the two feature sets do not share one answer
    for batch in (1, 7):  # the batch the probes' number sets (permutation_batch) changes nothing
        for (predicted, r2, p), (predicted_b, r2_b, p_b) in zip(found, permutation_fits([x, onehot], y, n_permutations=150,
                                                                                         seed=2, batch=batch)):
            np.testing.assert_allclose(predicted_b, predicted, rtol=1e-12)
            assert (r2_b, p_b) == (pytest.approx(r2, rel=1e-12), p)


def test_permutation_batch_bounds_the_fitted_arrays_by_the_probes():
    assert permutation_batch(3000) == PERMUTATION_BATCH
    assert permutation_batch(50000) == PERMUTATION_BATCH_BYTES // (8 * 50000) < PERMUTATION_BATCH
    assert 8 * 50000 * permutation_batch(50000) <= PERMUTATION_BATCH_BYTES
    assert permutation_batch(10**9) == 1


@pytest.mark.parametrize("low, high, p_in, p_out, verdict", [
    (0.01, 0.2, 0.01, 0.01, "input"), (-0.2, -0.01, 0.01, 0.01, "output"), (-0.01, 0.2, 0.001, 0.5, "undecided"),
    (0.01, 0.2, 0.2, 0.01, "undecided"), (-0.2, -0.01, 0.01, 0.06, "undecided"), (np.nan, np.nan, 0.01, 0.01, "undecided"),
])
def test_explained_by_rule(low, high, p_in, p_out, verdict):
    assert explained_by(low, high, p_in, p_out) == verdict


def test_a_negative_r2_is_never_explained():
    """Issue 17 item 8: MLP7 seed 0 was 'explained by input' with R^2 -0.044 (p <= 0.005)."""
    assert explained_by(0.01, 0.2, 0.005, 0.5, input_r2=-0.044, output_r2=-0.1) == "undecided"
    assert explained_by(-0.2, -0.01, 0.5, 0.005, input_r2=-0.3, output_r2=-0.02) == "undecided"
    assert explained_by(0.01, 0.2, 0.005, 0.5, input_r2=0.044, output_r2=-0.1) == "input"


def test_planted_verdicts_rest_on_the_paired_interval(tmp_path_factory):
    planted, results = cached_results(tmp_path_factory)
    node = results["large_activation"].to_dataset()
    hidden1, output = node.sel(layer="hidden1"), node.sel(layer="output")
    assert str(hidden1["explained_by"].values) == "input" and float(hidden1["r2_difference_low"]) > 0
    assert str(output["explained_by"].values) == "output" and float(output["r2_difference_high"]) < 0
    assert str(output["best_output_target"].values) == "predicted"
    # the difference is input R^2 - best output R^2, recomputed with scikit-learn from the stored activations
    values = results["large_activation/hidden1"].to_dataset()["dominant_unit_activation"].values
    labels = np.eye(4)[planted.probes.label]
    best = str(hidden1["best_output_target"].values)
    assert float(hidden1["r2_difference"]) == pytest.approx(
        float(hidden1["input_r2"]) - float(hidden1["output_r2"].sel(target=best)))
    cv = KFold(5, shuffle=True, random_state=0)
    expected = r2_score(values, cross_val_predict(Ridge(alpha=1.0), labels, values, cv=cv))
    assert float(hidden1["output_r2"].sel(target="label")) == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(cv_ridge_predict(labels, values), cross_val_predict(Ridge(alpha=1.0), labels, values, cv=cv))
    assert node.attrs["p_floor"] == pytest.approx(1 / 100) and hidden1["input_p_value"].attrs["p_floor"] == pytest.approx(1 / 100)
