"""Prediction-path attribution against NumPy and on the planted clean/noisy test probes."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_store import RECORD_EPOCHS, cached_planted, cached_results, post

import actlab
from actlab.analysis import analyze, blocks, path_attribution, paths, predictions, summary


def numpy_paths(planted, epoch, layer, relevant="predicted"):
    x, logits, p = post(planted, epoch, layer), post(planted, epoch, "output"), planted.probes
    clean = np.array([x[(p.group == 0) & (p.label == c)].mean(axis=0) for c in range(4)])
    noisy = np.array([x[(p.group == 1) & (p.label == c)].mean(axis=0) for c in range(4)])
    test = p.group == 2
    pred = logits[test].argmax(axis=1)
    cls = pred if relevant == "predicted" else p.label[test]
    xt = x[test]
    def cos(m):
        return np.sum(xt * m[cls], axis=1) / np.linalg.norm(xt, axis=1) / np.linalg.norm(m[cls], axis=1)
    c, n = cos(clean), cos(noisy)
    path = (c >= n).astype(float)
    correct = pred == p.label[test]
    return c, n, path, path[correct].mean(), path[~correct].mean(), pred


@pytest.mark.parametrize("relevant", ["predicted", "label"])
def test_matches_numpy(tmp_path_factory, relevant):
    planted = cached_planted(tmp_path_factory)
    run = actlab.open_run(planted.run_dir)
    predicted = predictions(run.layer("output")).compute()
    found = path_attribution(run.layer("hidden1"), predicted, relevant=relevant)
    for epoch in (10, 50):
        c, n, path, share_correct, share_wrong, pred = numpy_paths(planted, epoch, "hidden1", relevant)
        row = found.sel(epoch=epoch)
        np.testing.assert_array_equal(row["predicted"], pred)
        np.testing.assert_allclose(row["cos_clean"], c, rtol=1e-5)
        np.testing.assert_allclose(row["cos_noisy"], n, rtol=1e-5)
        np.testing.assert_array_equal(row["clean_path"], path)
        assert float(row["clean_share_correct"]) == pytest.approx(share_correct)
        assert float(row["clean_share_wrong"]) == pytest.approx(share_wrong)


def test_planted_split_and_pipeline(tmp_path_factory):
    planted, results = cached_results(tmp_path_factory)
    node = results["paths"].to_dataset()
    last = node.sel(epoch=RECORD_EPOCHS[-1])
    # hidden3: right predictions sit on clean units, wrong ones on the noisy units of their predicted class
    assert float(last["clean_share_correct"].sel(layer="hidden3")) == 1.0
    assert float(last["clean_share_wrong"].sel(layer="hidden3")) == 0.0
    np.testing.assert_array_equal(~last["correct"].values, planted.wrong_test)
    for epoch in (0, 40):
        c, n, path, share_correct, share_wrong, _ = numpy_paths(planted, epoch, "hidden2")
        row = node.sel(epoch=epoch, layer="hidden2")
        np.testing.assert_allclose(row["cos_clean"], c, rtol=1e-5)
        np.testing.assert_allclose(row["cos_noisy"], n, rtol=1e-5)
        assert float(row["clean_share_wrong"]) == pytest.approx(share_wrong)


def test_relevant_must_be_known(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    run = actlab.open_run(planted.run_dir)
    with pytest.raises(ValueError, match="relevant"):
        path_attribution(run.layer("hidden1"), predictions(run.layer("output")), relevant="guess")


def hand_null_splits(planted, epoch, layer, members):
    """The split under each permuted membership, with NumPy loops (class means by masks, cosines, shares)."""
    x, logits, p = post(planted, epoch, layer), post(planted, epoch, "output"), planted.probes
    test = p.group == 2
    pred = logits[test].argmax(axis=1)
    correct = pred == p.label[test]
    xt = x[test]
    splits = []
    for clean_codes, noisy_codes in members:
        clean = np.array([x[clean_codes == c].mean(axis=0) for c in range(4)])[pred]
        noisy = np.array([x[noisy_codes == c].mean(axis=0) for c in range(4)])[pred]
        c = np.sum(xt * clean, axis=1) / np.linalg.norm(xt, axis=1) / np.linalg.norm(clean, axis=1)
        n = np.sum(xt * noisy, axis=1) / np.linalg.norm(xt, axis=1) / np.linalg.norm(noisy, axis=1)
        path = (c >= n).astype(float)
        splits.append(path[correct].mean() - path[~correct].mean())
    return np.array(splits)


def test_null_memberships_permute_within_classes(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    p = planted.probes
    codes = blocks.grouping_codes(np.array(["clean", "noisy", "test"])[p.group], p.label, p.original_label)
    members = blocks.null_memberships(codes, 4, 20, seed=1)
    assert members.shape == (20, 2, len(p.label))
    for c in range(4):
        pool = ((p.group == 0) | (p.group == 1)) & (p.label == c)
        for clean, noisy in members:
            assert np.sum(clean == c) == np.sum((p.group == 0) & (p.label == c))
            np.testing.assert_array_equal((clean == c) | (noisy == c), pool)
            assert not np.any((clean == c) & (noisy == c))
    assert not np.array_equal(members[0], members[1])
    np.testing.assert_array_equal(members, blocks.null_memberships(codes, 4, 20, seed=1))


@pytest.mark.parametrize("layer, epoch", [("hidden2", 0), ("hidden3", 50)])
def test_pipeline_null_matches_numpy(tmp_path_factory, layer, epoch):
    planted, results = cached_results(tmp_path_factory)
    node = results["paths"].to_dataset().sel(layer=layer, epoch=epoch)
    p = planted.probes
    codes = blocks.grouping_codes(np.array(["clean", "noisy", "test"])[p.group], p.label, p.original_label)
    members = blocks.null_memberships(codes, 4, results["paths"].attrs["n_permutations"], seed=0)
    null = hand_null_splits(planted, epoch, layer, members)
    np.testing.assert_allclose(node["split_null"], null, rtol=1e-12)
    split = float(node["split"])
    assert split == pytest.approx(float(node["clean_share_correct"] - node["clean_share_wrong"]))
    assert float(node["split_p_value"]) == pytest.approx((1 + np.sum(null >= split)) / (1 + len(null)))
    assert float(node["split_null_mean"]) == pytest.approx(null.mean())
    assert (float(node["split_null_low"]), float(node["split_null_high"])) == pytest.approx(tuple(np.percentile(null, [2.5, 97.5])))
    assert float(node["split_excess"]) == pytest.approx(split - null.mean())


@pytest.mark.parametrize("n_bootstrap", [60, 150])  # one batch of resamples, and three (64, 64, 22)
def test_bootstrap_interval_of_the_excess_by_hand(n_bootstrap):
    rng = np.random.default_rng(2)
    observed = rng.integers(0, 2, 40).astype(float)
    observed[3] = np.nan
    null = rng.integers(0, 2, (15, 40)).astype(float)
    correct = rng.uniform(size=40) < 0.6
    found = paths.split_null(observed, null, correct, n_bootstrap=n_bootstrap, seed=4)

    ok = np.isfinite(observed)
    assert found["split"] == pytest.approx(np.mean(observed[ok & correct]) - np.mean(observed[ok & ~correct]))
    excess = []
    def resampled_split(path, right):
        ok = np.isfinite(path)
        return np.mean(path[ok & right]) - np.mean(path[ok & ~right])

    for draw in np.random.default_rng(4).integers(0, 40, (n_bootstrap, 40)):
        excess.append(resampled_split(observed[draw], correct[draw])
                      - np.mean([resampled_split(n[draw], correct[draw]) for n in null]))
    assert (found["excess_low"], found["excess_high"]) == pytest.approx(tuple(np.percentile(excess, [2.5, 97.5])))


def _share_by_hand(path, right):
    ok = np.isfinite(path)
    return (np.mean(path[ok & right]) if np.any(ok & right) else np.nan) - (
        np.mean(path[ok & ~right]) if np.any(ok & ~right) else np.nan)


@pytest.mark.parametrize("correct_rate", [0.0, 0.1, 0.6, 1.0])  # no correct, few, many, no wrong prediction
def test_split_null_with_undefined_null_paths_by_hand(correct_rate):
    """Null paths undefined in several patterns (the split groups the permutations by their defined probes) and
    one side empty: the null and the bootstrap excess against plain means over each resample."""
    rng = np.random.default_rng(5)
    n, n_permutations = 30, 12
    observed = rng.integers(0, 2, n).astype(float)
    observed[[2, 9]] = np.nan
    null = rng.integers(0, 2, (n_permutations, n)).astype(np.float32)
    null[:4, 5] = np.nan  # permutations 0-3 share one pattern, 6 and 7 others, the rest every probe defined
    null[6, [1, 7]] = np.nan
    null[7, :] = np.nan  # no defined probe: NaN, left out of the null mean
    correct = rng.uniform(size=n) < correct_rate
    found = paths.split_null(observed, null, correct, n_bootstrap=70, seed=8)

    expected_null = np.array([_share_by_hand(row.astype(float), correct) for row in null])
    np.testing.assert_array_equal(np.isnan(found["null"]), np.isnan(expected_null))
    np.testing.assert_allclose(found["null"], expected_null, rtol=1e-12)
    if not 0 < correct_rate < 1:
        assert np.isnan(found["split"]) and np.isnan(found["excess_low"]) and np.isnan(found["p_value"])
        return
    excess = []
    for draw in np.random.default_rng(8).integers(0, n, (70, n)):
        nulls = np.array([_share_by_hand(row[draw].astype(float), correct[draw]) for row in null])
        # a resample without a correct prediction has every null NaN: its excess is NaN, left out
        null_mean = np.nanmean(nulls) if np.isfinite(nulls).any() else np.nan
        excess.append(_share_by_hand(observed[draw], correct[draw]) - null_mean)
    assert (found["excess_low"], found["excess_high"]) == pytest.approx(tuple(np.nanpercentile(excess, [2.5, 97.5])))


def test_shared_bootstrap_counts_are_the_drawn_ones():
    """bootstrap_counts are the resamples split_null draws itself: passing them changes nothing; a wrong shape is
    refused."""
    rng = np.random.default_rng(6)
    observed, null = rng.integers(0, 2, 50).astype(float), rng.integers(0, 2, (9, 50)).astype(np.float32)
    correct = rng.uniform(size=50) < 0.5
    counts = paths.bootstrap_counts(50, 130, 3)
    assert counts.dtype == np.uint8 and counts.shape == (130, 50)
    np.testing.assert_array_equal(counts, np.concatenate(list(blocks.bootstrap_count_batches(50, 130, 3, np.int64))))
    np.testing.assert_array_equal(counts, [np.bincount(d, minlength=50)
                                           for d in np.random.default_rng(3).integers(0, 50, (130, 50))])
    drawn = paths.split_null(observed, null, correct, n_bootstrap=130, seed=3)
    shared = paths.split_null(observed, null, correct, n_bootstrap=130, seed=3, counts=counts)
    for key in drawn:
        np.testing.assert_array_equal(drawn[key], shared[key], err_msg=key)
    with pytest.raises(ValueError, match="counts must have shape"):
        paths.split_null(observed, null, correct, n_bootstrap=131, seed=3, counts=counts)


def test_noise_layer_split_is_within_its_null(tmp_path_factory):
    """hidden2 is noise (no clean or noisy signal): at every epoch with a null the split is not significant."""
    _, results = cached_results(tmp_path_factory)
    node = results["paths"].to_dataset().sel(layer="hidden2")
    null_epochs = results["paths"].attrs["null_epochs"]
    assert null_epochs == [0, 10, 40, 50]  # first, test-loss minimum (~12), noisy labels fitted (40), last
    assert np.isnan(node["split_p_value"].sel(epoch=[20, 30])).all()
    for epoch in null_epochs:
        row = node.sel(epoch=epoch)
        assert float(row["split_p_value"]) > 0.05 and float(row["split_excess_low"]) < 0 < float(row["split_excess_high"])


def test_planted_clean_path_beats_its_null(tmp_path_factory):
    """hidden3: correct probes sit on clean units, wrong ones on noisy units (split 1); with the clean/noisy
    membership permuted each class's two means are alike mixtures, so each class flips a coin: all four agree by
    chance in about 1 / 2**4 of the permutations."""
    _, results = cached_results(tmp_path_factory)
    node = results["paths"].to_dataset().sel(layer="hidden3", epoch=RECORD_EPOCHS[-1])
    null = node["split_null"].values
    assert float(node["split"]) == 1.0 and 0.01 < np.mean(null == 1.0) < 0.15
    assert float(node["split_excess_low"]) > 0.9 and abs(float(node["split_null_mean"])) < 0.1


@pytest.mark.parametrize("relevant", paths.RELEVANT)
def test_composable_null_equals_pipeline(tmp_path_factory, relevant):
    """The composable null computes every class; the fused pass only each test probe's relevant one (the output
    layer's prediction, known before the hidden layers' null blocks are submitted, or its label)."""
    planted, results = cached_results(tmp_path_factory)
    run = actlab.open_run(planted.run_dir)
    if relevant != "predicted":
        results = analyze(run, relevant=relevant, progress=False)
    act = run.layer("hidden2")
    attributed = path_attribution(act, predictions(run.layer("output")).compute(), relevant=relevant)
    null = paths.null_clean_paths(act.sel(epoch=[0, 50]), n_permutations=paths.PATH_PERMUTATIONS).compute()
    found = paths.path_split_null(attributed, null)
    fused = results["paths"].to_dataset().sel(layer="hidden2", epoch=[0, 50])
    assert fused.attrs["relevant"] == relevant
    for name in ["split", *paths.NULL_VARIABLES, "split_null"]:
        source = attributed if name == "split" else found
        np.testing.assert_allclose(source[name].sel(epoch=[0, 50]), fused[name], rtol=1e-12, err_msg=name)


def test_summary_reads_the_null_at_the_last_and_phase_epochs(tmp_path_factory):
    _, results = cached_results(tmp_path_factory)
    found = summary(results)["paths"]
    node = results["paths"].to_dataset()
    assert found["first_epoch"] == 0 and found["first_epoch_is_initialisation"]
    assert set(found["at_phases"]) == {"test_loss_min", "noisy_memorised", "last"}
    assert found["at_phases"]["last"]["by_layer"] == found["by_layer"]
    names = {"split": "split", "null_mean": "split_null_mean", "null_low": "split_null_low", "null_high": "split_null_high",
             "excess": "split_excess", "excess_low": "split_excess_low", "excess_high": "split_excess_high",
             "p_value": "split_p_value"}
    for reading in found["at_phases"].values():
        for layer, values in reading["by_layer"].items():
            row = node.sel(layer=layer, epoch=reading["epoch"])
            for key, var in names.items():
                assert values[key] == pytest.approx(float(row[var])), (layer, key)
            assert values["split_epoch0"] == pytest.approx(float(node["split"].sel(layer=layer, epoch=0)))
            assert values["n_permutations"] == 199 and values["p_floor"] == pytest.approx(1 / 200)


def test_split_change_is_tested_against_the_paired_nulls():
    rng = np.random.default_rng(4)
    null_first, null = rng.normal(0, 0.1, 199), rng.normal(0.02, 0.1, 199)
    change = null - null_first
    for split, first in ((0.6, 0.1), (0.12, 0.1), (-0.5, 0.1)):
        extreme = np.abs(change - change.mean()) >= abs(split - first - change.mean())
        assert paths.split_change_p_value(split, first, null, null_first) == pytest.approx((1 + extreme.sum()) / 200)
    assert paths.split_change_p_value(0.6, 0.1, null, null_first) == pytest.approx(1 / 200)  # beyond every permutation
    assert paths.split_change_p_value(float("nan"), 0.1, null, null_first) is None
