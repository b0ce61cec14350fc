"""Sample dynamics: learned epochs, forgetting, cartography and the area-under-the-margin ranking, on a planted store
and against independent implementations written here (loops, NumPy, scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr
from fixtures_store import N_EPOCHS, planted_run
from sklearn.metrics import roc_auc_score

import actlab
from actlab.analysis import dynamics
from actlab.analysis.pipeline import NO_DYNAMICS, load_results, save_results, summary
from actlab.workflow import sample_dynamics_tables
from actlab.store import RunWriter, damaged_chunks, open_store, store_path


FAST = dict(n_permutations=9, path_permutations=9, n_bootstrap=20, pca_epochs=2)
"""Small settings of the other analyses, which these tests do not check."""


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_run(tmp_path_factory.mktemp("dyn") / "run", dynamics=True)


def _by_loop_learned(correct: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    out = np.full(correct.shape[1], np.nan)
    for i in range(correct.shape[1]):
        for k in range(len(epochs)):
            if correct[k:, i].all():
                out[i] = epochs[k]
                break
    return out


def _by_loop_forgetting(correct: np.ndarray) -> np.ndarray:
    return np.array([sum(1 for k in range(len(column) - 1) if column[k] and not column[k + 1]) for column in correct.T])


def test_store_holds_planted_trajectories(planted):
    view = open_store(planted.run_dir)
    ds = view.dynamics
    assert list(ds["epoch"].values) == list(range(N_EPOCHS + 1))
    assert ds["loss"].dtype == np.float16 and ds["margin"].dtype == np.float16 and ds["correct"].dtype == bool
    np.testing.assert_array_equal(ds["correct"].values, planted.dynamics.correct)
    np.testing.assert_array_equal(ds["margin"].values, planted.dynamics.margin.astype(np.float16))
    np.testing.assert_array_equal(ds["is_noisy"].values, view.training["is_noisy"].values)
    assert damaged_chunks(planted.run_dir) == []
    # the plain-xarray view of the same group
    tree = xr.open_datatree(store_path(planted.run_dir), engine="zarr", consolidated=False)
    assert tree["dynamics/loss"].dims == ("epoch", "train_sample")


def test_learned_epochs_and_forgetting_match_the_planted_ones_and_a_loop(planted):
    ds = open_store(planted.run_dir).dynamics
    learned = dynamics.learned_epoch(ds["correct"]).values
    # NaN where never learned; a sample forgotten once (wrong at learned + 2) stays correct only from learned + 3
    np.testing.assert_array_equal(learned, planted.dynamics.learned + 3 * planted.dynamics.forgets)
    np.testing.assert_array_equal(dynamics.forgetting_events(ds["correct"]).values, planted.dynamics.forgets.astype(int))
    rng = np.random.default_rng(3)
    correct = rng.uniform(size=(9, 300)) < 0.6
    epochs = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128])
    array = xr.DataArray(correct, dims=("epoch", "train_sample"), coords={"epoch": epochs})
    np.testing.assert_array_equal(dynamics.learned_epoch(array).values, _by_loop_learned(correct, epochs))
    np.testing.assert_array_equal(dynamics.forgetting_events(array).values, _by_loop_forgetting(correct))


def test_cartography_margin_ranking_against_independent_computations(planted):
    ds = open_store(planted.run_dir).dynamics
    found = dynamics.sample_dynamics(ds, n_permutations=199, n_top=20)
    loss = planted.dynamics.loss.astype(np.float16).astype(np.float64)[1:]  # training epochs: after epoch 0
    p = np.exp(-loss)
    np.testing.assert_allclose(found["confidence"].values, p.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(found["variability"].values, np.sqrt(((p - p.mean(axis=0)) ** 2).mean(axis=0)), rtol=1e-9)
    aum = planted.dynamics.margin.astype(np.float16).astype(np.float64)[1:].mean(axis=0)
    np.testing.assert_allclose(found["aum"].values, aum, rtol=1e-12)
    noisy = ds["is_noisy"].values
    assert float(found["aum_auc"]) == pytest.approx(roc_auc_score(noisy, -aum), abs=1e-12)
    k = int(noisy.sum())
    assert float(found["aum_precision"]) == pytest.approx(noisy[np.argsort(aum)[:k]].mean())
    # planted: noisy samples have the lowest margins, so the ranking finds them and the p-value sits at its floor
    assert float(found["aum_auc"]) > 0.95 and float(found["aum_p_value"]) == pytest.approx(1 / 200)
    assert found["top_is_noisy"].values.all() and list(found["top_train_sample"].values) == list(np.argsort(aum)[:20])
    np.testing.assert_array_equal(found["top_dataset_index"].values, ds["dataset_index"].values[np.argsort(aum)[:20]])
    assert found.attrs["skipped"] == ""


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    score = rng.integers(0, 5, 200).astype(float)  # many ties
    positive = rng.uniform(size=200) < 0.3
    assert dynamics.roc_auc(score, positive) == pytest.approx(roc_auc_score(positive, score), abs=1e-12)
    assert np.isnan(dynamics.roc_auc(score, np.zeros(200, bool)))


def test_permutation_null_false_positive_rate_in_simulation():
    """Scores unrelated to the noise flags: p <= 0.05 in about 5 % of 300 simulated runs (binomial 99.9 % band)."""
    rng = np.random.default_rng(11)
    p_values = []
    for _ in range(300):
        aum = xr.DataArray(rng.standard_normal(60), dims="train_sample")
        p_values.append(float(dynamics.mislabel_ranking(aum, rng.uniform(size=60) < 0.25, n_permutations=99,
                                                        seed=int(rng.integers(1 << 30)))["p_value"]))
    rate = np.mean(np.array(p_values) <= 0.05)
    assert 0.01 <= rate <= 0.10, rate


def test_without_noise_information_the_clean_noisy_parts_are_skipped_with_one_line(planted):
    ds = open_store(planted.run_dir).dynamics
    clean_only = ds.assign_coords(is_noisy=("train_sample", np.zeros(ds.sizes["train_sample"], bool)))
    found = dynamics.sample_dynamics(clean_only, n_permutations=9)
    assert found.attrs["skipped"] == dynamics.NO_NOISE and "\n" not in dynamics.NO_NOISE
    assert np.isnan(float(found["aum_auc"])) and np.isnan(float(found["aum_p_value"]))
    assert np.isfinite(found["learned_epoch"].values).any()


def test_only_committed_epochs_are_read(tmp_path):
    planted = planted_run(tmp_path / "run", dynamics=True)
    writer = RunWriter.open(planted.run_dir)
    writer._dynamics_epoch[30:] = -1  # as if killed after epoch 29: the commit array is what readers trust
    zarr.open_array(store_path(planted.run_dir), path="dynamics/epoch", mode="r+")[...] = writer._dynamics_epoch
    ds = open_store(planted.run_dir).dynamics
    assert list(ds["epoch"].values) == list(range(30))


def test_summary_csv_and_report_tables_carry_the_dynamics(planted, tmp_path):
    results = xr.DataTree.from_dict({"/": xr.Dataset(attrs={"errors": {}, "skipped": {}}),
                                     "/dynamics": dynamics.sample_dynamics(open_store(planted.run_dir).dynamics,
                                                                           n_permutations=99)})
    path = save_results(results, tmp_path / "results.zarr")
    xr.testing.assert_allclose(load_results(path)["dynamics"].to_dataset(), results["dynamics"].to_dataset())
    found = summary(results)["dynamics"]
    is_noisy = open_store(planted.run_dir).training["is_noisy"].values
    noisy = planted.dynamics.learned[is_noisy]  # never forgotten
    assert found["groups"]["noisy"]["learned_epoch_median"] == pytest.approx(np.median(noisy))
    assert found["groups"]["noisy"]["n"] == len(noisy) and found["mislabel_ranking"]["auc"] > 0.95
    assert found["mislabel_ranking"]["p_floor"] == pytest.approx(0.01)
    assert all(row["is_noisy"] for row in found["top_ranked"][:10])
    rows = dynamics.samples_csv(results["dynamics"].to_dataset()).splitlines()
    assert rows[0] == ",".join(dynamics.SAMPLE_COLUMNS) and len(rows) == 1 + len(planted.dynamics.learned)
    assert rows[1].split(",")[0] == str(found["top_ranked"][0]["train_sample"])
    tables = sample_dynamics_tables(summary(results))
    assert [title.split(" (")[0] for title, _, _ in tables] == [
        "Sample dynamics", "Likely mislabelled samples: ranking by the area under the margin"]
    assert tables[1][2][0][2] == "p ≤ 1/(99+1) = 0.01"  # at the permutation floor


def test_a_store_without_trajectories_skips_them_in_one_line(tmp_path):
    planted = planted_run(tmp_path / "run")
    root = zarr.open_group(store_path(planted.run_dir), mode="r+")
    root.attrs.update({"schema_version": 3})  # a schema-3 store: no dynamics/ and no root attr dynamics
    del root.attrs["dynamics"]
    assert open_store(planted.run_dir).dynamics is None
    results = actlab.analysis.analyze(planted.run_dir, progress=False, **FAST)
    assert "dynamics" not in results.children and results.attrs["skipped"] == {"dynamics": NO_DYNAMICS}
    found = summary(results)
    assert found["dynamics"] is None and found["skipped"] == {"dynamics": NO_DYNAMICS}


def test_seed_aggregate_gives_intervals_and_leaves_the_per_seed_lists_out():
    from actlab.analysis.seeds import aggregate_summaries

    def one(auc):
        return {"dynamics": {"mislabel_ranking": {"auc": auc}, "top_ranked": [{"train_sample": 3, "aum": -2.0}]}}

    found = aggregate_summaries({"seed0": one(0.8), "seed1": one(0.9), "seed2": one(0.85)})["dynamics"]
    assert found["top_ranked"] is None
    assert found["mislabel_ranking"]["auc"]["median"] == pytest.approx(0.85) and found["mislabel_ranking"]["auc"]["n"] == 3


def test_the_accessor_reaches_every_dynamics_analysis_with_the_training_coords(planted):
    run = actlab.open_run(planted.run_dir)
    trajectories = run.dynamics
    learned = trajectories["correct"].actlab.learned_epoch()
    np.testing.assert_array_equal(learned.values, planted.dynamics.learned + 3 * planted.dynamics.forgets)
    np.testing.assert_array_equal(learned["dataset_index"].values, run.training["dataset_index"].values)
    np.testing.assert_array_equal(trajectories["correct"].actlab.forgetting_events().values,
                                  planted.dynamics.forgets.astype(int))
    trained = trajectories.actlab.training_epochs()
    margin = planted.dynamics.margin.astype(np.float16).astype(np.float64)[1:]
    np.testing.assert_allclose(trained["margin"].actlab.area_under_margin().values, margin.mean(axis=0), rtol=1e-12)
    p = np.exp(-planted.dynamics.loss.astype(np.float16).astype(np.float64)[1:])
    np.testing.assert_allclose(trained["loss"].actlab.cartography()["confidence"].values, p.mean(axis=0), rtol=1e-12)
    found = trajectories.actlab.sample_dynamics(n_permutations=99, n_top=5)
    assert found["aum_auc"] > 0.95 and found.sizes["rank"] == 5
    # joined to the probes: each noisy probe gets the learned epoch of the training sample of its dataset_index
    memorised = run.layer("hidden1").actlab.memorised_epochs(found["learned_epoch"]).values
    by_index = dict(zip(run.training["dataset_index"].values, learned.values))
    for i, (group, index) in enumerate(zip(run.probes["group"].values, run.probes["dataset_index"].values)):
        np.testing.assert_equal(memorised[i], by_index[index] if group == "noisy" else np.nan)


def test_learned_fraction_by_epoch_counts_the_never_learned_in_the_denominator():
    from actlab.plots.dynamics import learned_by_epoch

    learned = np.array([3.0, np.nan, 0.0, 7.0, 3.0])
    epochs = np.arange(9)
    expected = [sum(1 for v in learned if np.isfinite(v) and v <= e) / 5 for e in epochs]
    np.testing.assert_allclose(learned_by_epoch(learned, epochs), expected)


def test_epochs_a_sample_was_not_observed_are_neither_forgetting_nor_averaged():
    """A trajectory from training steps that missed a sample (NaN loss and margin, correct False) carries the
    sample's last observed state: no forgetting event, no later learned epoch, no term in the means."""
    correct = np.array([[0, 0, 1], [1, 1, 1], [0, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=bool)  # (epoch, sample)
    loss = np.array([[2.0, 2.0, 0.5], [0.1, 0.2, 0.3], [np.nan, 0.4, 0.2], [0.3, 0.3, 1.5], [0.2, 0.1, 0.1]])
    margin = np.where(np.isnan(loss), np.nan, 1.0 - loss)
    epochs = np.arange(5)
    ds = xr.Dataset({"correct": (("epoch", "train_sample"), correct), "loss": (("epoch", "train_sample"), loss),
                     "margin": (("epoch", "train_sample"), margin)},
                    coords={"epoch": epochs, "dataset_index": ("train_sample", [10, 11, 12]),
                            "label": ("train_sample", [0, 1, 2]), "original_label": ("train_sample", [0, 1, 1]),
                            "is_noisy": ("train_sample", [False, False, True])})
    found = dynamics.sample_dynamics(ds, n_permutations=9)
    # sample 0: missed at epoch 2 (stored False); by hand its state is correct from epoch 1 on
    assert found["forgetting_events"].values.tolist() == [0, 0, 1]
    assert found["learned_epoch"].values.tolist() == [1.0, 1.0, 4.0]
    trained = slice(1, None)  # the maps average the epochs after the initialisation
    kept = [e for e in range(1, 5) if e != 2]
    p0 = np.exp(-loss[kept, 0])
    np.testing.assert_allclose(found["confidence"].values[0], p0.mean(), rtol=1e-12)
    np.testing.assert_allclose(found["variability"].values[0], p0.std(), rtol=1e-12)
    np.testing.assert_allclose(found["aum"].values[0], margin[kept, 0].mean(), rtol=1e-12)
    np.testing.assert_allclose(found["aum"].values[1:], margin[trained, 1:].mean(axis=0), rtol=1e-12)
