"""Streamed exact PCA against scikit-learn, and class-mean trajectories against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fixtures_store import RECORD_EPOCHS, cached_planted, cached_results, post
from sklearn.decomposition import PCA as SklearnPCA

import actlab
from actlab.analysis import PCA, analyze, class_means, pca_trajectories
from actlab.analysis.blocks import Moments


def pooled(planted, layer):
    return np.concatenate([post(planted, e, layer) for e in RECORD_EPOCHS])


def aligned(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Flip our components to sklearn's signs (both are conventions; compare up to sign)."""
    return ours * np.sign(np.sum(ours * theirs, axis=1))[:, None]


@pytest.mark.parametrize("layer", ["hidden1", "hidden2", "hidden3"])
def test_matches_sklearn_on_pooled_activations(tmp_path_factory, layer):
    planted = cached_planted(tmp_path_factory)
    act = actlab.open_run(planted.run_dir).layer(layer)
    ours = PCA(n_components=5).fit(act)
    x = pooled(planted, layer)
    ref = SklearnPCA(n_components=5, svd_solver="full").fit(x)
    assert ours.n_samples_seen_ == len(x)
    np.testing.assert_allclose(ours.mean_.values, ref.mean_, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.explained_variance_.values, ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(ours.explained_variance_ratio_.values, ref.explained_variance_ratio_, rtol=1e-4)
    np.testing.assert_allclose(aligned(ours.components_.values, ref.components_), ref.components_, atol=1e-3)
    projected = ours.transform(act.sel(epoch=RECORD_EPOCHS[-1]))
    assert projected.dims == ("sample", "component")
    expected = ref.transform(post(planted, RECORD_EPOCHS[-1], layer)) * np.sign(np.sum(ours.components_.values * ref.components_, axis=1))
    np.testing.assert_allclose(projected.values, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_partial_fit_equals_fit(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    act = actlab.open_run(planted.run_dir).layer("hidden2")
    whole = PCA(3).fit(act)
    streamed = PCA(3)
    for epoch in RECORD_EPOCHS:
        streamed.partial_fit(act.sel(epoch=epoch))
    np.testing.assert_allclose(streamed.components_.values, whole.components_.values, atol=1e-10)
    np.testing.assert_allclose(streamed.explained_variance_.values, whole.explained_variance_.values, rtol=1e-10)


def test_sign_convention_largest_loading_positive(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    comps = PCA(4).fit(actlab.open_run(planted.run_dir).layer("hidden3")).components_.values
    assert (comps[np.arange(4), np.abs(comps).argmax(axis=1)] > 0).all()


def test_trajectories_and_pipeline_node(tmp_path_factory):
    planted, results = cached_results(tmp_path_factory)
    act = actlab.open_run(planted.run_dir).layer("hidden1")
    fitted = PCA(10).fit(act)
    traj = pca_trajectories(fitted, class_means(act).compute())
    assert traj.dims == ("grouping", "epoch", "class", "component")
    x = post(planted, 20, "hidden1")
    clean2 = x[(planted.probes.group == 0) & (planted.probes.label == 2)].mean(axis=0)
    expected = (clean2 - fitted.mean_.values) @ fitted.components_.values.T
    np.testing.assert_allclose(traj.sel(grouping="clean", epoch=20, **{"class": 2}).values, expected, rtol=1e-5, atol=1e-6)  # float32 sums
    node = results["pca"].to_dataset()
    np.testing.assert_allclose(node["trajectory"].sel(layer="hidden1").values, traj.values, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(node["explained_variance_ratio"].sel(layer="hidden1").values,
                               fitted.explained_variance_ratio_.values, rtol=1e-8)
    # hidden1 is dominated by the planted large unit: the first component is that unit
    comps = results["pca/hidden1"].to_dataset()["components"]
    assert int(np.abs(comps.isel(component=0).values).argmax()) == 3
    # layer narrower than n_components: padded with NaN
    assert np.isnan(node["explained_variance_ratio"].sel(layer="output").values[4:]).all()


@pytest.mark.parametrize("k", [4, 12])  # leading eigenpairs only, and every unit
def test_fit_moments_equals_a_full_eigendecomposition(k):
    """The subset eigensolver on the symmetrised covariance gives the leading pairs of numpy's full eigh (the
    computation before), with the largest loading of each component positive."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 12)) * np.linspace(4.0, 0.5, 12) @ np.linalg.qr(rng.standard_normal((12, 12)))[0]
    moments = Moments.from_block(x)
    values, vectors = np.linalg.eigh(moments.scatter / 299)
    values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k].T
    vectors *= np.sign(vectors[np.arange(k), np.abs(vectors).argmax(axis=1)])[:, None]
    fitted = PCA(k).fit_moments(moments)
    np.testing.assert_allclose(fitted.explained_variance_.values, values, rtol=1e-12)
    np.testing.assert_allclose(fitted.components_.values, vectors, atol=1e-10)
    assert fitted.explained_variance_ratio_.values.sum() == pytest.approx(values.sum() / np.trace(moments.scatter / 299))
    assert fitted.moments_.scatter is moments.scatter and np.array_equal(moments.scatter, Moments.from_block(x).scatter)


def test_validation():
    with pytest.raises(ValueError, match="not fitted"):
        PCA(2).transform(xr.DataArray(np.zeros((2, 3)), dims=("sample", "unit")))
    with pytest.raises(ValueError, match="n_components"):
        PCA(0).partial_fit(np.zeros((4, 3)))


def test_pipeline_pca_on_epoch_subset_matches_sklearn(tmp_path_factory):
    """pca_epochs=3 fits on recorded epochs 0, 20/30 and 50 only: exactly sklearn's PCA of those pooled blocks."""
    planted = cached_planted(tmp_path_factory)
    results = analyze(planted.run_dir, progress=False, pca_epochs=3)
    node = results["pca"]
    fit_epochs = node.attrs["fit_epochs"]
    expected_epochs = [RECORD_EPOCHS[i] for i in np.unique(np.round(np.linspace(0, len(RECORD_EPOCHS) - 1, 3)).astype(int))]
    assert fit_epochs == expected_epochs and len(fit_epochs) == 3
    x = np.concatenate([post(planted, e, "hidden2") for e in fit_epochs])
    ref = SklearnPCA(n_components=4, svd_solver="full").fit(x)
    ours = node.sel(layer="hidden2")["explained_variance_ratio"].values[:4]
    np.testing.assert_allclose(ours, ref.explained_variance_ratio_, rtol=1e-4)
    components = results["pca/hidden2"]["components"].values[:4]
    np.testing.assert_allclose(aligned(components, ref.components_), ref.components_, atol=1e-3)
    everything = analyze(planted.run_dir, progress=False, pca_epochs=None)["pca"].attrs["fit_epochs"]
    assert everything == RECORD_EPOCHS
