"""Signal separation against NumPy, the planted layer pattern, and classes without noisy probes."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fixtures_store import (
    RECORD_EPOCHS,
    cached_planted,
    cached_results,
    planted_run,
    post,
)

import actlab
from actlab.analysis import class_means, signal_separation, summary


def numpy_means(planted, epoch, layer):
    x = post(planted, epoch, layer)
    p = planted.probes
    masks = {
        "clean": (p.group == 0, p.label), "noisy_by_original": (p.group == 1, p.original_label),
        "noisy_by_assigned": (p.group == 1, p.label), "test": (p.group == 2, p.label),
    }
    out = {}
    for name, (mask, classes) in masks.items():
        out[name] = np.array([x[mask & (classes == c)].mean(axis=0) if np.any(mask & (classes == c)) else
                              np.full(x.shape[1], np.nan) for c in range(4)])
    return out


def numpy_cos(a, b):
    return np.array([u @ v / np.linalg.norm(u) / np.linalg.norm(v) for u, v in zip(a, b)])


def test_class_means_and_cosines_match_numpy(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    act = actlab.open_run(planted.run_dir).layer("hidden2")
    means = class_means(act).compute()
    sep = signal_separation(act).compute()
    for epoch in (0, 30):
        expected = numpy_means(planted, epoch, "hidden2")
        for grouping, values in expected.items():
            np.testing.assert_allclose(means.sel(epoch=epoch, grouping=grouping).values, values, rtol=1e-6)  # float32 sums
        row = sep.sel(epoch=epoch)
        np.testing.assert_allclose(row["cos_clean_noisy_by_original"], numpy_cos(expected["clean"], expected["noisy_by_original"]))
        np.testing.assert_allclose(row["cos_clean_noisy_by_assigned"], numpy_cos(expected["clean"], expected["noisy_by_assigned"]))
        np.testing.assert_allclose(row["cos_clean_test"], numpy_cos(expected["clean"], expected["test"]))
        np.testing.assert_allclose(row["cos_noisy_by_assigned_test"], numpy_cos(expected["noisy_by_assigned"], expected["test"]))
        np.testing.assert_allclose(row["cos_clean_noisy_by_original_mean"],
                                   numpy_cos(expected["clean"], expected["noisy_by_original"]).mean())
    np.testing.assert_array_equal(sep["count"].sel(grouping="clean"), [30, 30, 30, 30])
    xr.testing.assert_allclose(act.actlab.signal_separation().compute(), sep)


def test_planted_pattern_across_layers(tmp_path_factory):
    _, results = cached_results(tmp_path_factory)
    sep = results["separation"].to_dataset().sel(epoch=RECORD_EPOCHS[-1])
    # hidden1: noisy probes sit at the clean mean of their original class
    assert float(sep["cos_clean_noisy_by_original"].sel(layer="hidden1").min()) > 0.99
    # hidden3: noisy probes live on separate memorisation units -> orthogonal to the clean means
    assert float(np.abs(sep["cos_clean_noisy_by_original"].sel(layer="hidden3")).max()) < 0.05
    assert float(np.abs(sep["cos_clean_noisy_by_assigned"].sel(layer="hidden3")).max()) < 0.05
    assert float(sep["cos_clean_test"].sel(layer="hidden3").min()) > 0.8


def test_pipeline_equals_composable_function(tmp_path_factory):
    planted, results = cached_results(tmp_path_factory)
    run = actlab.open_run(planted.run_dir)
    for layer in ("hidden1", "output"):
        direct = signal_separation(run.layer(layer)).compute()
        fused = results["separation"].to_dataset().sel(layer=layer, drop=True)
        for name in direct.data_vars:
            np.testing.assert_allclose(fused[name].values, direct[name].values, rtol=1e-12, err_msg=name)


def test_separation_from_means_by_hand_lazy_and_eager():
    """The cosines and their class means against a loop over classes (a class without noisy probes NaN and left
    out of the mean), the floor test's null epochs in any order, and dask-backed means giving the same numbers."""
    import dask.array as da

    from actlab.analysis import blocks, separation

    rng = np.random.default_rng(3)
    n_epochs, n_classes, n_units = 3, 5, 7
    counts = np.full((len(blocks.GROUPINGS), n_classes), 4)
    counts[blocks.GROUPINGS.index("noisy_by_original"), 2] = 0
    data = rng.normal(size=(n_epochs, len(blocks.GROUPINGS), n_classes, n_units))
    data[:, blocks.GROUPINGS.index("noisy_by_original"), 2] = np.nan
    epochs = xr.DataArray([0, 4, 9])
    means = separation.means_dataarray(data, epochs, xr.DataArray(np.arange(n_units)), counts, "hidden1")
    half_counts = np.full((len(blocks.HALVES), n_classes), 2)
    halves = separation.half_means_dataarray(rng.normal(size=(n_epochs, 2, n_classes, n_units)), epochs,
                                             xr.DataArray(np.arange(n_units)), half_counts)
    eager = separation.separation_from_means(means, halves)
    for name, (a, b, _) in separation.PAIRS.items():
        x, y = data[:, blocks.GROUPINGS.index(a)], data[:, blocks.GROUPINGS.index(b)]
        expected = np.array([[u @ v / np.linalg.norm(u) / np.linalg.norm(v) for u, v in zip(xe, ye)] for xe, ye in zip(x, y)])
        np.testing.assert_allclose(eager[name].transpose("epoch", "class"), expected, rtol=1e-12, err_msg=name)
        with np.errstate(invalid="ignore"):
            expected_mean = np.array([np.mean(row[np.isfinite(row)]) for row in expected])
        np.testing.assert_allclose(eager[f"{name}_mean"], expected_mean, rtol=1e-12, err_msg=name)
        assert eager[name].attrs["layer"] == "hidden1" and eager[name].attrs["units"] == "1"
    assert np.isnan(eager["cos_clean_noisy_by_original"].sel({"class": 2})).all()
    np.testing.assert_array_equal(eager["count"].transpose("grouping", "class"), counts)
    np.testing.assert_array_equal(eager["half_count"], half_counts[0])

    lazy = separation.separation_from_means(means.copy(data=da.from_array(data, chunks=(1, -1, -1, -1))),
                                            halves.copy(data=da.from_array(halves.values, chunks=(2, -1, -1, -1))))
    assert isinstance(lazy["cos_clean_test"].data, da.Array)
    xr.testing.assert_identical(lazy.compute(), eager)

    null = rng.normal(size=(2, len(blocks.FLOOR_GROUPINGS), 9, n_classes))
    tested = separation.floor_test(eager, separation.floor_null_dataarray(null, np.array([9, 0]), n_classes))
    assert tested.attrs["null_epochs"] == [9, 0]
    for k, epoch in enumerate([9, 0]):
        for j, g in enumerate(blocks.FLOOR_GROUPINGS):
            observed = eager[f"cos_clean_{g}"].sel(epoch=epoch).values
            kept = np.isfinite(observed)
            values = null[k, j][:, kept].mean(axis=1)
            np.testing.assert_allclose(tested[f"cos_clean_{g}_null"].sel(epoch=epoch), values, rtol=1e-12)
            assert float(tested[f"cos_clean_{g}_p_value"].sel(epoch=epoch)) == pytest.approx(
                (1 + np.sum(values <= observed[kept].mean())) / 10)
            assert float(tested[f"cos_clean_{g}_floor_low"].sel(epoch=epoch)) == pytest.approx(np.percentile(values, 2.5))
    assert np.isnan(tested["cos_clean_noisy_by_original_p_value"].sel(epoch=4))


def test_class_without_noisy_probes_is_nan_with_warning(tmp_path):
    planted = planted_run(tmp_path / "run", commit_epochs=[0, 10], empty_noisy_class=2)
    act = actlab.open_run(planted.run_dir).layer("hidden1")
    with np.errstate(all="raise"):
        sep = signal_separation(act).compute()
    assert np.isnan(sep["cos_clean_noisy_by_original"].sel(**{"class": 2})).all()
    assert np.isnan(sep["cos_clean_noisy_by_assigned"].sel(**{"class": 2})).all()
    assert np.isfinite(sep["cos_clean_noisy_by_original"].sel(**{"class": 1})).all()
    assert np.isfinite(sep["cos_clean_noisy_by_original_mean"]).all()
    assert any("class 2 has no noisy by original" in w for w in sep.attrs["warnings"])
    assert any("class 2 has no noisy by assigned" in w for w in sep.attrs["warnings"])


def test_bad_input():
    with pytest.raises(ValueError, match="dims"):
        class_means(xr.DataArray(np.zeros((2, 3)), dims=("sample", "unit")))


def numpy_halves(planted, seed=0):
    """Two random halves of each class's clean probes, drawn as documented (blocks.half_codes)."""
    p, rng = planted.probes, np.random.default_rng(seed)
    halves = []
    for c in range(4):
        members = rng.permutation(np.flatnonzero((p.group == 0) & (p.label == c)))
        k = len(members) // 2
        halves.append((members[:k], members[k: 2 * k]))
    return halves


def test_noise_floor_matches_numpy_and_pipeline(tmp_path_factory):
    planted, results = cached_results(tmp_path_factory)
    run = actlab.open_run(planted.run_dir)
    direct = signal_separation(run.layer("hidden2")).compute()
    fused = results["separation"].to_dataset()
    halves = numpy_halves(planted)
    for epoch in (0, 50):
        x = post(planted, epoch, "hidden2")
        expected = numpy_cos([x[a].mean(axis=0) for a, _ in halves], [x[b].mean(axis=0) for _, b in halves])
        np.testing.assert_allclose(direct["cos_clean_halves"].sel(epoch=epoch), expected, rtol=1e-6)
        np.testing.assert_allclose(fused["cos_clean_halves"].sel(layer="hidden2", epoch=epoch), expected, rtol=1e-6)
        assert float(fused["cos_clean_halves_mean"].sel(layer="hidden2", epoch=epoch)) == pytest.approx(expected.mean(), rel=1e-6)
    np.testing.assert_array_equal(fused["half_count"], [15, 15, 15, 15])
    assert fused.attrs["first_epoch"] == RECORD_EPOCHS[0] and fused["cos_clean_halves"].attrs["units"] == "1"


def test_planted_noise_floor_tells_separation_from_noise(tmp_path_factory):
    _, results = cached_results(tmp_path_factory)
    sep = results["separation"].to_dataset()
    found = summary(results)["separation"]
    # hidden2 holds no class signal (ReLU of noise): its clean-noisy cosine (~0.9) sits at the floor, not below it;
    # hidden3 separates by construction: floor ~1, clean-noisy cosine ~0
    hidden2, hidden3 = sep.sel(layer="hidden2"), sep.sel(layer="hidden3")
    assert float(hidden3["cos_clean_halves_mean"].min()) > 0.99
    assert float(hidden3["cos_clean_noisy_by_original_mean"].max()) < 0.05
    assert float(np.abs(hidden2["cos_clean_noisy_by_original_mean"] - hidden2["cos_clean_halves_mean"]).max()) < 0.1
    assert float(hidden2["cos_clean_halves_mean"].min()) < 0.95
    assert found["layer"] == "hidden3" and found["first_epoch"] == 0 and found["first_epoch_is_initialisation"]
    # ranked by the distance below its own permutation floor; hidden3 at every read epoch is far below it
    assert found["noise_floor"] == pytest.approx(float(hidden3["cos_clean_noisy_by_original_floor"].sel(epoch=found["epoch"])))
    assert found["floor_distance"] == pytest.approx(found["noise_floor"] - found["cosine"])
    assert found["below_floor"] and found["p_value"] == pytest.approx(1 / 1000)
    assert found["cosine_epoch0"] == pytest.approx(float(hidden3["cos_clean_noisy_by_original_mean"].sel(epoch=0)))
    for reading in found["at_phases"].values():
        for layer, values in reading["by_layer"].items():
            row = sep.sel(layer=layer)
            assert values["noise_floor_halves"] == pytest.approx(float(row["cos_clean_halves_mean"].sel(epoch=reading["epoch"])))
            assert values["noisy_by_assigned_epoch0"] == pytest.approx(float(row["cos_clean_noisy_by_assigned_mean"].sel(epoch=0)))
            # hidden1 (clean and noisy by original alike) and hidden2 (no class signal) are not below; hidden3 is
            assert values["noisy_by_original_below_floor"] == (layer == "hidden3")


def numpy_floor_p_value(x, planted, n_permutations, seed=0):
    """The noise-floor test by hand: the mean over classes of the clean-noisy (by original label) cosine, against the
    same with clean/noisy membership shuffled within each class as documented (blocks.null_memberships)."""
    p = planted.probes
    clean, noisy = np.where(p.group == 0, p.label, -1), np.where(p.group == 1, p.original_label, -1)
    pools = [(np.flatnonzero((clean == c) | (noisy == c)), int(np.sum(clean == c))) for c in range(4)]
    rng = np.random.default_rng(seed)
    null = np.zeros((n_permutations, 4))
    for k in range(n_permutations):
        for c, (pool, n_clean) in enumerate(pools):
            shuffled = rng.permutation(pool)
            null[k, c] = numpy_cos([x[shuffled[:n_clean]].mean(axis=0)], [x[shuffled[n_clean:]].mean(axis=0)])[0]
    observed = numpy_cos([x[clean == c].mean(axis=0) for c in range(4)], [x[noisy == c].mean(axis=0) for c in range(4)]).mean()
    return null.mean(axis=1), (1 + np.sum(null.mean(axis=1) <= observed)) / (1 + n_permutations)


def test_noise_floor_test_matches_a_numpy_permutation_test_and_the_pipeline(tmp_path_factory):
    from actlab.analysis.separation import floor_null, floor_test

    planted, results = cached_results(tmp_path_factory)
    fused = results["separation"].to_dataset().sel(layer="hidden2")
    act = actlab.open_run(planted.run_dir).layer("hidden2").sel(epoch=[0, 30])
    direct = floor_test(signal_separation(act).compute(), floor_null(act, n_permutations=999).compute())
    for epoch in (0, 30):
        null, p_value = numpy_floor_p_value(post(planted, epoch, "hidden2"), planted, 999)
        np.testing.assert_allclose(direct["cos_clean_noisy_by_original_null"].sel(epoch=epoch), null, rtol=1e-5)
        assert float(direct["cos_clean_noisy_by_original_p_value"].sel(epoch=epoch)) == pytest.approx(p_value)
        assert float(direct["cos_clean_noisy_by_original_floor"].sel(epoch=epoch)) == pytest.approx(null.mean(), rel=1e-5)
    for epoch in fused.attrs["null_epochs"]:  # the fused pass computes the same test at its null epochs
        null, p_value = numpy_floor_p_value(post(planted, epoch, "hidden2"), planted, 999)
        np.testing.assert_allclose(fused["cos_clean_noisy_by_original_null"].sel(epoch=epoch), null, rtol=1e-5)
        assert float(fused["cos_clean_noisy_by_original_p_value"].sel(epoch=epoch)) == pytest.approx(p_value)


def test_depth_trend_change_since_the_first_epoch_is_an_exact_sign_flip_test():
    import itertools

    from actlab.analysis.separation import depth_trend

    rng = np.random.default_rng(5)
    first = rng.normal(0.9, 0.02, (4, 8))
    later = first + np.linspace(0, -0.09, 4)[:, None] + rng.normal(0, 0.01, (4, 8))  # planted: separation grows with depth
    found = depth_trend(xr.DataArray(later, dims=("layer", "class")), xr.DataArray(first, dims=("layer", "class")))
    depth = np.arange(1, 5)
    changes = np.array([np.polyfit(depth, later[:, c], 1)[0] - np.polyfit(depth, first[:, c], 1)[0] for c in range(8)])
    assert found["change"] == pytest.approx(changes.mean()) and found["change"] < 0
    flips = [abs(np.mean(np.array(signs) * changes)) >= abs(changes.mean()) - 1e-15
             for signs in itertools.product((1, -1), repeat=8)]
    assert found["p_value"] == pytest.approx(np.mean(flips)) and found["p_value"] <= 2 / 256
    same = depth_trend(xr.DataArray(first, dims=("layer", "class")), xr.DataArray(first, dims=("layer", "class")))
    assert same["change"] == 0 and same["p_value"] == 1.0


def test_depth_trend_is_the_least_squares_slope_with_a_bootstrap_over_classes():
    from actlab.analysis.separation import depth_trend

    rng = np.random.default_rng(3)
    values = np.array([[0.9, 0.95, 0.92, 0.97], [0.7, 0.8, 0.75, 0.9], [0.5, 0.2, 0.6, 0.4]])  # (layer, class)
    per_class = xr.DataArray(values, dims=("layer", "class"))
    found = depth_trend(per_class, n_bootstrap=500, seed=7)
    depth = np.arange(1, 4)
    assert found["slope"] == pytest.approx(np.polyfit(depth, values.mean(axis=1), 1)[0])
    picks = np.random.default_rng(7).integers(0, 4, size=(500, 4))
    slopes = [np.polyfit(depth, values[:, pick].mean(axis=1), 1)[0] for pick in picks]
    assert found["low"] == pytest.approx(np.percentile(slopes, 2.5)) and found["high"] == pytest.approx(np.percentile(slopes, 97.5))
    assert found["high"] < 0 and found["n_layers"] == 3
    flat = depth_trend(xr.DataArray(rng.normal(0.9, 0.01, (6, 10)), dims=("layer", "class")))
    assert flat["low"] < 0 < flat["high"]  # no trend: the interval straddles zero
    assert depth_trend(per_class.isel(layer=[0]))["slope"] is None
