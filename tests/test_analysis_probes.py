"""Linear probes: planted decodability, scikit-learn's ridge classifier, the permutation null and Benjamini-Hochberg."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fixtures_store import RECORD_EPOCHS, cached_planted, post
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import actlab
from actlab.analysis.probes import TARGETS, ProbePlan, fdr_adjust, linear_probes, probe_block


@pytest.fixture(scope="module")
def planted_probes(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    return planted, linear_probes(actlab.open_run(planted.run_dir), n_permutations=99, max_workers=2)


def test_planted_original_label_decodable_in_hidden1_not_hidden2(planted_probes):
    _, ds = planted_probes
    assert ds["accuracy"].dims == ("layer", "epoch", "target")
    original = ds.sel(target="noisy_original")
    # hidden1 holds every training probe at its ORIGINAL class centre; hidden2 is noise independent of every label
    assert original["decodable"].sel(layer="hidden1").all()
    assert (original["accuracy"].sel(layer="hidden1") > 0.95).all()
    assert not original["decodable"].sel(layer="hidden2").any()
    assert not ds["decodable"].sel(layer="hidden2", target="clean").any()
    # the output layer predicts the assigned label of the noisy probes, never the original one
    assert ds["decodable"].sel(layer="output", target="noisy_assigned").all()
    assert (ds["accuracy"].sel(layer="output", target="noisy_original") < 0.05).all()
    # hidden3 codes noisy probes on memorisation units the clean classifier never saw: neither label decodable
    assert not original["decodable"].sel(layer="hidden3").any()
    p_floor = 1 / 100
    assert ds.attrs["p_floor"] == p_floor
    np.testing.assert_allclose(original["p_value"].sel(layer="hidden1"), p_floor)
    low, high = ds["accuracy_low"], ds["accuracy_high"]
    assert ((low <= ds["accuracy"] + 1e-12) & (ds["accuracy"] <= high + 1e-12)).all()


def sklearn_predictions(x_train, y_train, x_eval, alpha):
    """The reference classifier: scikit-learn's own standardisation and ridge classifier."""
    return make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha)).fit(x_train, y_train).predict(x_eval)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_matches_sklearn_ridge_classifier(tmp_path_factory, dtype):
    """Fold by fold, the same predictions as scikit-learn's pipeline given the block in the same precision (a
    store's float32 blocks are probed in float32, as scikit-learn's ridge keeps float32 input)."""
    planted = cached_planted(tmp_path_factory)
    x = post(planted, 30, "hidden1") + 0.3 * np.random.default_rng(1).standard_normal((len(planted.probes), 16))
    x[:, 7] = 2.5  # a constant unit keeps scale 1, as in StandardScaler
    x = x.astype(dtype)
    pr = planted.probes
    group = np.array(["clean", "noisy", "test"])[pr.group]
    ds = probe_block(x, group, pr.label, pr.original_label, n_folds=4, alpha=3.0, n_permutations=19, seed=5)
    clean, noisy, test = (np.flatnonzero(pr.group == g) for g in range(3))
    folds = StratifiedKFold(4, shuffle=True, random_state=5).split(clean, pr.label[clean])
    expected = {name: [] for name in TARGETS}
    out_of_fold = np.empty(len(clean), int)
    every_fold = []
    for train, held in folds:
        predicted = sklearn_predictions(x[clean[train]], pr.label[clean[train]], x, 3.0)
        every_fold.append(predicted)
        out_of_fold[held] = predicted[clean[held]]
        expected["clean"].append(np.mean(predicted[clean[held]] == pr.label[clean[held]]))
        expected["noisy_original"].append(np.mean(predicted[noisy] == pr.original_label[noisy]))
        expected["noisy_assigned"].append(np.mean(predicted[noisy] == pr.label[noisy]))
        expected["test"].append(np.mean(predicted[test] == pr.label[test]))
    for name, values in expected.items():
        np.testing.assert_allclose(ds["accuracy_fold"].sel(target=name), values, err_msg=name)
    np.testing.assert_allclose(ds["accuracy"].sel(target="clean"), np.mean(out_of_fold == pr.label[clean]))
    np.testing.assert_allclose(ds["accuracy"].sel(target="test"), np.mean(expected["test"]))
    # the p-values, by brute force from scikit-learn's predictions, for this block and for one without signal
    # (whose p-values lie between the floor and 1, with ties of the null and the observed accuracy)
    noise = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    for block, predicted in ((x, np.array(every_fold)), (noise, None)):
        expected = brute_force_p_values(block, pr, predicted, n_folds=4, alpha=3.0, n_permutations=19, seed=5)
        found = probe_block(block, group, pr.label, pr.original_label, n_folds=4, alpha=3.0, n_permutations=19, seed=5)
        np.testing.assert_allclose(found["p_value"].values, expected)


def brute_force_p_values(x, pr, predicted, *, n_folds, alpha, n_permutations, seed):
    """Label-permutation p-values of each target from scikit-learn's fold predictions (fold, sample) (computed here
    when None): each target's truth permuted by numpy's generator seeded with ``seed``, targets in order, the same
    permutation for every fold; the clean target scores the out-of-fold predictions."""
    clean, noisy, test = (np.flatnonzero(pr.group == g) for g in range(3))
    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(clean, pr.label[clean]))
    if predicted is None:
        predicted = np.array([sklearn_predictions(x[clean[train]], pr.label[clean[train]], x, alpha)
                              for train, _ in folds])
    out_of_fold = np.empty(len(clean), int)
    for f, (_, held) in enumerate(folds):
        out_of_fold[held] = predicted[f, clean[held]]
    rng = np.random.default_rng(seed)
    p_values = []
    for scored, truth in ((out_of_fold[None, :], pr.label[clean]), (predicted[:, noisy], pr.original_label[noisy]),
                          (predicted[:, noisy], pr.label[noisy]), (predicted[:, test], pr.label[test])):
        observed = np.mean(scored == truth)
        null = np.array([np.mean(scored == shuffled)
                         for shuffled in rng.permuted(np.tile(truth, (n_permutations, 1)), axis=1)])
        p_values.append((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
    return p_values


def lstsq_ridge(x_train, y_train, classes, alpha):
    """Standardise, then ridge regression on +-1 targets with an intercept, by least squares on the system
    augmented with ``sqrt(alpha) I`` rows (NumPy only): weights of the unstandardised units (unit, class) and
    intercepts (class,)."""
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0)
    scale[scale <= 1e-10 * np.maximum(1.0, np.abs(mean))] = 1.0
    z = (x_train - mean) / scale
    targets = np.where(y_train[:, None] == classes[None, :], 1.0, -1.0)
    augmented = np.vstack([z, np.sqrt(alpha) * np.eye(z.shape[1])])
    padded = np.vstack([targets - targets.mean(axis=0), np.zeros((z.shape[1], len(classes)))])
    standardised = np.linalg.lstsq(augmented, padded, rcond=None)[0]
    weights = standardised / scale[:, None]
    return weights, targets.mean(axis=0) - mean @ weights


@pytest.mark.parametrize("offset", [0.0, 50.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fold_weights_match_least_squares_on_a_correlated_block(offset, dtype):
    """The downdated, Cholesky-solved classifiers of each fold equal an independent least-squares ridge fit of the
    fold's training probes (in float64, of the same values), on a block of strongly correlated units far from the
    origin, with a constant unit; the clean probes are predicted by the fold that held them out, the others by every
    fold. A float32 block is solved in float32: the same weights to float32's precision."""
    rng = np.random.default_rng(11)
    n_clean, n_noisy, n_test, units, n_classes = 300, 90, 110, 48, 4
    n = n_clean + n_noisy + n_test
    group = np.repeat(["test", "clean", "noisy", "clean"], [n_test, n_clean // 2, n_noisy, n_clean - n_clean // 2])
    original = rng.integers(0, n_classes, n)
    label = np.where(group == "noisy", (original + 1) % n_classes, original)
    latent = rng.standard_normal((n, 6)) + 0.8 * np.eye(n_classes, 6)[original]
    x = offset + latent @ rng.standard_normal((6, units)) + 0.05 * rng.standard_normal((n, units))
    x[:, 3] = offset + 1.5  # constant
    x = x.astype(dtype).astype(np.float64)  # the values the block holds, exactly
    plan = ProbePlan(group, label, original, n_folds=4, alpha=2.0, n_permutations=9, seed=3)
    weights, intercepts, _, _ = plan.fold_weights(x.astype(dtype))
    assert weights.dtype == dtype and intercepts.dtype == dtype
    rtol = 1e-7 if dtype == np.float64 else 1e-3
    clean = np.flatnonzero(group == "clean")
    predicted, out_of_fold = plan.fold_predictions(x.astype(dtype))
    for f, held in enumerate(plan.held_out):
        train = np.setdiff1d(clean, clean[held])
        expected_w, expected_b = lstsq_ridge(x[train], label[train], plan.classes, 2.0)
        np.testing.assert_allclose(weights[f], expected_w, rtol=rtol, atol=rtol / 100 * np.abs(expected_w).max())
        np.testing.assert_allclose(intercepts[f], expected_b, rtol=rtol, atol=rtol * np.abs(expected_b).max())
        scores = x @ expected_w + expected_b
        np.testing.assert_array_equal(out_of_fold[held], plan.classes[np.argmax(scores[clean[held]], axis=1)])
        np.testing.assert_array_equal(predicted[f], plan.classes[np.argmax(scores[group != "clean"], axis=1)])
    assert predicted.shape == (4, n_noisy + n_test)


def test_chance_is_the_null_mean_and_false_positives_at_level():
    """Under labels independent of the activations the p-values are uniform: at level 0.1 about 10 % of blocks
    are flagged; chance equals the mean accuracy over many label permutations."""
    rng = np.random.default_rng(0)
    n_clean, n_noisy = 60, 40
    group = np.repeat(["clean", "noisy"], [n_clean, n_noisy])
    label = np.concatenate([np.tile(np.arange(3), n_clean // 3), rng.integers(0, 3, n_noisy)])
    p_values, chance_gap = [], []
    for _ in range(150):
        x = rng.standard_normal((n_clean + n_noisy, 5))
        original = rng.integers(0, 3, n_clean + n_noisy)
        original[:n_clean] = label[:n_clean]
        ds = probe_block(x, group, label, original, n_folds=3, n_permutations=49, seed=int(rng.integers(1 << 30)))
        p_values.append(float(ds["p_value"].sel(target="noisy_original")))
        chance_gap.append(float(ds["chance"].sel(target="noisy_original")) - 1 / 3)
    p_values = np.array(p_values)
    assert p_values.min() >= 1 / 50
    flagged = np.mean(p_values <= 0.1)
    assert 0.03 <= flagged <= 0.19, flagged  # binomial(150, 0.1): 0.1 +- 3 standard errors
    assert abs(np.mean(chance_gap)) < 0.02
    # chance is the exact mean of the permutation null, checked by brute force on one block
    x = rng.standard_normal((n_clean + n_noisy, 5))
    ds = probe_block(x, group, label, label, n_folds=3, n_permutations=9)
    clean = np.flatnonzero(group == "clean")
    predicted = []
    for train, _ in StratifiedKFold(3, shuffle=True, random_state=0).split(clean, label[clean]):
        predicted.append(sklearn_predictions(x[clean[train]], label[clean[train]], x[n_clean:], 1.0))
    predicted, truth = np.array(predicted), label[n_clean:]
    null = [np.mean(predicted == rng.permutation(truth)) for _ in range(20000)]
    assert abs(float(ds["chance"].sel(target="noisy_assigned")) - np.mean(null)) < 0.002


def test_fdr_adjust_matches_bh_by_hand():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=(2, 3, 4)) ** 2
    p[1, 0, 0] = np.nan
    da = xr.DataArray(p, dims=("target", "layer", "epoch"))
    q = fdr_adjust(da)
    assert q.dims == da.dims
    for t in range(2):
        values = p[t].ravel()
        finite = np.flatnonzero(np.isfinite(values))
        order = finite[np.argsort(values[finite])]
        m = len(order)
        ranked = values[order] * m / np.arange(1, m + 1)
        expected = np.full(values.shape, np.nan)
        expected[order] = np.minimum(1, np.minimum.accumulate(ranked[::-1])[::-1])
        np.testing.assert_allclose(q.values[t].ravel(), expected)


def test_validation(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    pr = planted.probes
    group = np.array(["clean", "noisy", "test"])[pr.group]
    with pytest.raises(ValueError, match="at least 40 clean probes of each"):
        probe_block(post(planted, RECORD_EPOCHS[0], "hidden1"), group, pr.label, pr.original_label, n_folds=40)
    with pytest.raises(ValueError, match="n_permutations"):
        linear_probes(actlab.open_run(planted.run_dir), n_permutations=0)
