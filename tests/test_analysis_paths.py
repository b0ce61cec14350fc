"""Prediction-path attribution against NumPy and on the planted clean/noisy test probes."""

from __future__ import annotations

import numpy as np
import pytest

import actlab
from actlab.analysis import path_attribution, predictions
from fixtures_store import RECORD_EPOCHS, cached_planted, cached_results, post


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
