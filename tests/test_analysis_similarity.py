"""Debiased linear CKA: planted invariances, independent noise, Song et al.'s estimator written out, runs."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_store import (
    LAYERS,
    N_EPOCHS,
    PARAMETERS,
    RECORD_EPOCHS,
    cached_planted,
    planted_metrics,
    planted_probes,
    planted_run,
    planted_subsets,
    post,
)
from scipy.stats import special_ortho_group

import actlab
from actlab.store import RunWriter
from actlab.workflow import CKA_BETWEEN_HEADER, cka_between_runs, cka_between_rows
from actlab.analysis.similarity import (
    gram_vector,
    linear_cka,
    sample_subset,
    settled_epoch,
    similarity_along_training,
    similarity_between_runs,
    u_centred_gram,
)


def hsic_song(k: np.ndarray, l: np.ndarray) -> float:
    """Unbiased HSIC of Song et al. (2012), eq. 5, written out from the paper."""
    n = len(k)
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return float((np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                  - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3)))


def cka_song(x: np.ndarray, y: np.ndarray) -> float:
    k, l = x @ x.T, y @ y.T
    return hsic_song(k, l) / np.sqrt(hsic_song(k, k) * hsic_song(l, l))


def test_rotation_scaling_translation_give_one_and_noise_about_zero():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12))
    rotated = 3.7 * x @ special_ortho_group.rvs(12, random_state=1) + rng.standard_normal(12)
    assert linear_cka(x, rotated) == pytest.approx(1.0, abs=1e-10)
    assert float(gram_vector(x) @ gram_vector(rotated)) == pytest.approx(1.0, abs=1e-5)
    # independent representations: the debiased estimate is about 0 (the biased one would be ~ p / n > 0)
    values = [linear_cka(rng.standard_normal((300, 12)), rng.standard_normal((300, 20))) for _ in range(20)]
    assert abs(np.mean(values)) < 0.005 and np.max(np.abs(values)) < 0.03
    # a non-isotropic rescaling changes the representation: CKA falls below 1
    assert linear_cka(x, x * np.linspace(0.1, 3, 12)) < 0.99


def test_agrees_with_song_estimator():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, 7))
    y = np.tanh(x @ rng.standard_normal((7, 5))) + 0.5 * rng.standard_normal((60, 5))
    expected = cka_song(x, y)
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-10)
    assert float(gram_vector(x) @ gram_vector(y)) == pytest.approx(expected, abs=1e-5)
    assert np.isnan(linear_cka(x, np.ones((60, 3))))
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(x, y[:10])


@pytest.mark.parametrize("offset", [0.0, 40.0])
def test_gram_vector_is_the_normalised_upper_triangle_of_the_u_centred_gram(offset):
    """gram_vector (rank-k update, row sums from the samples, centring on the triangle alone) against
    u_centred_gram's upper triangle, on float32 ReLU-like activations far from the origin; a constant block gives NaN."""
    rng = np.random.default_rng(4)
    x = (offset + np.maximum(rng.standard_normal((130, 24)), 0) * np.linspace(0.1, 5, 24)).astype(np.float32)
    upper = u_centred_gram(x)[np.triu_indices(130, k=1)]
    expected = upper / np.linalg.norm(upper)
    found = gram_vector(x)
    assert found.dtype == np.float32 and found.shape == expected.shape
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-7 * np.abs(expected).max())
    assert np.isnan(gram_vector(np.full((9, 3), offset + 1.5, dtype=np.float32))).all()
    almost = np.full((9, 3), offset + 1.5)
    almost[[4, 6], 1] += 1e-3  # (one sample apart from the others would be centred away)
    assert np.isfinite(gram_vector(almost)).all()


def test_along_training_matches_direct_cka(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    run = actlab.open_run(planted.run_dir)
    ds = similarity_along_training(run, pair_epochs=3, max_samples=200, max_workers=2)
    subset = sample_subset(run.n_samples, 200)
    assert len(subset) == 200 and ds.attrs["n_samples"] == 200
    last = RECORD_EPOCHS[-1]
    for layer in ("hidden1", "hidden2", "output"):
        for epoch in RECORD_EPOCHS:
            expected = cka_song(post(planted, epoch, layer)[subset], post(planted, last, layer)[subset])
            assert float(ds["cka_to_final"].sel(layer=layer, epoch=epoch)) == pytest.approx(expected, abs=1e-5)
    pairs = ds["cka"]
    assert list(pairs["epoch_pair"].values) == [0, 20, 50]
    x, y = post(planted, 20, "hidden3")[subset], post(planted, 50, "output")[subset]
    assert float(pairs.sel(layer="hidden3", epoch_pair=20, layer_other="output", epoch_other=50)) == pytest.approx(
        cka_song(x, y), abs=1e-5)
    np.testing.assert_allclose(pairs.values, pairs.transpose("layer_other", "epoch_other", "layer", "epoch_pair").values,
                               atol=1e-6)
    # planted: hidden2 is fresh noise at every epoch, so it is unlike its final state until the end
    assert (np.abs(ds["cka_to_final"].sel(layer="hidden2").values[:-1]) < 0.05).all()
    assert float(ds["settled_epoch"].sel(layer="hidden2")) == last
    # hidden1's large unit grows 10-fold between epochs 10 and 30 (SCALES): the layer settles at epoch 20
    assert float(ds["settled_epoch"].sel(layer="hidden1")) == 20


def test_settled_epoch_rule():
    import xarray as xr

    curve = xr.DataArray([[0.5, 0.97, 0.9, 0.96, 1.0], [0.99, 0.99, 0.99, 0.99, 1.0]], dims=("layer", "epoch"),
                         coords={"layer": ["a", "b"], "epoch": [0, 1, 2, 5, 9]})
    np.testing.assert_array_equal(settled_epoch(curve).values, [5, 0])


def test_between_runs(tmp_path):
    a = planted_run(tmp_path / "a", seed=0)
    b = planted_run(tmp_path / "b", seed=0)
    run_a, run_b = actlab.open_run(a.run_dir), actlab.open_run(b.run_dir)
    ds = similarity_between_runs(run_a, run_b, epochs=[10, 50], max_samples=1000)
    # same seed: the same recording, so each layer matches itself exactly; hidden2 (noise) matches no other layer
    np.testing.assert_allclose(ds["cka_same"].values, 1.0, atol=1e-5)
    x, y = post(a, 50, "hidden3"), post(b, 50, "output")
    assert float(ds["cka"].sel(epoch=50, layer="hidden3", layer_other="output")) == pytest.approx(cka_song(x, y), abs=1e-5)
    assert abs(float(ds["cka"].sel(epoch=10, layer="hidden2", layer_other="hidden1"))) < 0.05
    with pytest.raises(ValueError, match="not recorded by both"):
        similarity_between_runs(run_a, run_b, epochs=[11])
    other = planted_run(tmp_path / "c", seed=1)  # other probe labels
    with pytest.raises(ValueError, match="same probes"):
        similarity_between_runs(run_a, actlab.open_run(other.run_dir))


def written_run(run_dir, probes, preacts: dict[int, dict[str, np.ndarray]]):
    """A complete run holding exactly ``preacts`` (epoch -> layer -> (probe, unit)) on ``probes``; opened."""
    writer = RunWriter.create(run_dir, config={"model": "written"}, dataset={"name": "planted",
                              "class_names": [f"c{i}" for i in range(4)]}, layers=LAYERS, parameters=PARAMETERS,
                              probes=probes, subsets=planted_subsets(probes), record_epochs=list(preacts),
                              n_epochs=N_EPOCHS)
    writer.write_metrics(planted_metrics())
    for epoch, by_layer in preacts.items():
        writer.write_epoch(epoch, {k: v.astype(np.float32) for k, v in by_layer.items()},
                           {spec.name: np.zeros(spec.shape, np.float32) for spec in PARAMETERS})
    writer.mark_complete()
    return actlab.open_run(run_dir)


def compared_runs(tmp_path):
    """Runs on the planted probes: ``a`` (random correlated activations at epochs 0, 20, 50), ``rotated`` (``a``'s
    rotated and scaled: CKA 1), ``independent`` (fresh noise at 20 and 50: CKA about 0), and ``other probes`` (``a``'s
    activations on other probe labels); with the activations written to ``a`` and ``independent``."""
    rng = np.random.default_rng(3)
    probes, _ = planted_probes(np.random.default_rng(0))
    n, epochs = len(probes.group), [0, 20, 50]
    first = {e: {spec.name: rng.standard_normal((n, spec.width)) @ rng.standard_normal((spec.width, spec.width))
                 for spec in LAYERS} for e in epochs}

    def rotated(x: np.ndarray, layer: str) -> np.ndarray:
        # ReLU layers: a permutation of the units times a positive scale (a rotation that commutes with the ReLU);
        # the linear output layer: any rotation, scale and shift
        if layer == "output":
            return 2.5 * x @ special_ortho_group.rvs(x.shape[1], random_state=4) + 1.0
        return 0.3 * x[:, rng.permutation(x.shape[1])]

    independent = {e: {spec.name: rng.standard_normal((n, spec.width)) for spec in LAYERS} for e in epochs[1:]}
    runs = {
        "a": written_run(tmp_path / "a", probes, first),
        "rotated": written_run(tmp_path / "rotated", probes,
                               {e: {k: rotated(v, k) for k, v in by.items()} for e, by in first.items()}),
        "independent": written_run(tmp_path / "independent", probes, independent),
        "other probes": written_run(tmp_path / "other", planted_probes(np.random.default_rng(1))[0], first),
    }
    return runs, first, independent


def expected_cka(first, independent, epoch: int, layer: str) -> float:
    """Song et al.'s estimator written out on the post-activations of ``a`` and ``independent``."""
    post_a, post_b = (np.asarray(v[epoch][layer], np.float32).astype(np.float64) for v in (first, independent))
    if layer != "output":
        post_a, post_b = np.maximum(post_a, 0), np.maximum(post_b, 0)
    return cka_song(post_a, post_b)


def test_cka_between_compared_runs(tmp_path):
    runs, first, independent = compared_runs(tmp_path)
    cka, skipped = cka_between_runs(runs)
    assert list(cka) == ["rotated", "independent"]
    assert skipped == [f"other probes: no CKA with a: CKA between runs needs the same probes; {runs['a'].path} and "
                       f"{runs['other probes'].path} differ in 'label'; record both with the same data, noise "
                       "and probe settings"]
    np.testing.assert_allclose(cka["rotated"]["cka_same"].values, 1.0, atol=1e-5)
    assert list(cka["independent"]["epoch"].values) == [20, 50]  # the epochs both recorded
    assert np.abs(cka["independent"]["cka_same"].values).max() < 0.05
    for epoch in (20, 50):  # against Song et al.'s estimator written out, on the post-activations
        for spec in LAYERS:
            assert float(cka["independent"]["cka_same"].sel(epoch=epoch, layer=spec.name)) == pytest.approx(
                expected_cka(first, independent, epoch, spec.name), abs=1e-5)
    rows = cka_between_rows(cka, "a")
    assert [r[:4] for r in rows[:2]] == [["rotated", "a", "hidden1", "0-50 (3)"], ["rotated", "a", "hidden2", "0-50 (3)"]]
    assert len(rows) == 2 * len(LAYERS) and all(len(r) == len(CKA_BETWEEN_HEADER) for r in rows)
    assert cka_between_runs({"a": runs["a"]}) == ({}, [])


def test_compare_extra_cka_saves_results_and_refuses_other_probes(tmp_path):
    """``actlab compare A B --extra cka``: the table, the figure and node ``cka_between`` of results.zarr (about 0
    for independent activations, equal to Song et al.'s estimator and to the API; the rotated copy's CKA 1 is
    checked through the API above); a run on other probes is refused in one line, exit 2, before any output."""
    import json

    from cli_runner import run_cli

    from actlab.analysis import load_results

    runs, first, independent = compared_runs(tmp_path)
    out = tmp_path / "out"
    code, _, err = run_cli("compare", runs["a"].path, runs["independent"].path, "--out", out, "--no-progress",
                           "--format", "png", "--extra", "cka")
    assert code == 0, err
    saved = load_results(out / "results.zarr")["cka_between"]
    assert saved.attrs["reference"] == "a" and list(saved.attrs["runs"]) == ["independent"]
    unrelated = saved["independent"].to_dataset(inherit=False)
    assert list(unrelated["epoch"].values) == [20, 50]  # the epochs both recorded
    assert np.abs(unrelated["cka_same"].values).max() < 0.05
    for spec in LAYERS:  # the final epoch both recorded, against the direct implementation
        assert float(unrelated["cka_same"].sel(epoch=50, layer=spec.name)) == pytest.approx(
            expected_cka(first, independent, 50, spec.name), abs=1e-5)
    direct = similarity_between_runs(runs["a"], runs["independent"], epochs=[20, 50])
    np.testing.assert_allclose(unrelated["cka"].values, direct["cka"].values, atol=1e-6)
    assert (out / "figures" / "cka_between_runs.png").exists()
    report = (out / "report.html").read_text()
    assert "Representation similarity between runs (debiased linear CKA)" in report
    assert json.loads((out / "summary.json").read_text()).keys() == {"a", "independent"}

    refused = tmp_path / "refused"
    code, stdout, err = run_cli("compare", runs["a"].path, runs["other probes"].path, "--out", refused,
                                "--no-progress", "--extra", "cka")
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert "--extra cka: other cannot be compared with a" in err and "differ in 'label'" in err
    assert not refused.exists()
    code, _, err = run_cli("compare", runs["a"].path, runs["rotated"].path, "--out", refused, "--no-progress",
                           "--no-cka", "--extra", "cka")
    assert code == 2 and "--no-cka" in err and not refused.exists()
