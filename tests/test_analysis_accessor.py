"""The .actlab accessor and the fused pipeline give the same answers at their defaults."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_store import cached_planted

import actlab
from actlab.analysis import analyze, curves

# more recorded epochs than the PCA is fitted on by default, and a training instability inside the double descent
RECORD = tuple(range(0, 60, 3))


@pytest.fixture(scope="module")
def planted_and_results(tmp_path_factory):
    planted = cached_planted(tmp_path_factory, record_epochs=RECORD, instability_epoch=30)
    return planted, analyze(planted.run_dir, progress=False)


def assert_same(direct, fused, names, rtol=1e-10):
    for name in names:
        np.testing.assert_allclose(np.asarray(direct[name].values, dtype=float), np.asarray(fused[name].values, dtype=float),
                                   rtol=rtol, atol=1e-12, err_msg=name)


def test_double_descent_checks_instabilities_as_the_pipeline(planted_and_results):
    planted, results = planted_and_results
    metrics = actlab.open_run(planted.run_dir).metrics
    node = results["curves"].to_dataset()
    for curve in curves.DD_CURVES:
        direct = metrics.actlab.double_descent(curve)
        fused = node.sel(curve=curve)
        assert_same(direct, fused.rename({f"dd_{n}": n for n in direct.data_vars if f"dd_{n}" in fused}),
                    ["present", "instability_epoch", "peak_epoch", "first_min_epoch", "second_min_epoch", "final"])
    # the planted curve has a double descent that criterion 5 refuses: the clean accuracy collapses at epoch 30
    assert float(node["dd_instability_epoch"].sel(curve="test_loss")) == 30
    assert not bool(node["dd_present"].sel(curve="test_loss"))


def test_pca_separation_and_large_activation_equal_the_pipeline(planted_and_results):
    planted, results = planted_and_results
    run = actlab.open_run(planted.run_dir)
    assert len(run.epochs) > 16 and len(results["pca"].attrs["fit_epochs"]) == 16
    act = run.layer("hidden1")
    trajectory = act.actlab.pca_trajectories()
    fused = results["pca"].to_dataset().sel(layer="hidden1")
    np.testing.assert_allclose(trajectory.transpose(*fused["trajectory"].dims).values, fused["trajectory"].values,
                               rtol=1e-6, atol=1e-6 * float(np.abs(fused["trajectory"]).max()))
    assert_same(act.actlab.signal_separation().compute(), results["separation"].to_dataset().sel(layer="hidden1"),
                ["cos_clean_noisy_by_original_mean", "cos_clean_halves", "cos_clean_halves_mean"])
    large = results["large_activation"].to_dataset().sel(layer="hidden1")
    assert_same(act.actlab.dominant_unit(), large, ["ratio_to_median", "dominant", "emergence_epoch", "n_active"])
    values = results["large_activation/hidden1"].to_dataset()["dominant_unit_activation"]
    predicted = run.layer("output").actlab.predictions().isel(epoch=-1).compute()
    explained = values.actlab.explain_unit(run.probes, predicted)
    assert_same(explained, large, ["input_r2", "input_p_value", "output_r2", "output_p_value", "r2_difference_low",
                                   "r2_difference_high"], rtol=1e-6)
    assert str(explained["explained_by"].values) == str(large["explained_by"].values)
    paths = act.actlab.path_attribution(run.layer("output").actlab.predictions().compute())
    assert_same(paths, results["paths"].to_dataset().sel(layer="hidden1"), ["clean_share_correct", "split"])
