"""The fused pass: headline summary, persistence, isolated failures, parameters."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import xarray as xr
from fixtures_store import EMERGENCE_EPOCH, LARGE_UNIT, cached_planted, cached_results, planted_run, post

import actlab
from actlab.analysis import (
    ANALYSES,
    analyze,
    curves,
    load_results,
    save_results,
    summary,
)
from actlab.errors import ConfigError, StoreError


def test_summary_headlines(tmp_path_factory):
    _, results = cached_results(tmp_path_factory)
    found = summary(results)
    json.dumps(found)
    assert found["errors"] == {}
    dd = found["double_descent"]
    assert dd["present"] and dd["first_min_epoch"] < dd["peak_epoch"] < dd["second_min_epoch"]
    assert found["phases"]["noisy_memorised_epoch"] == {"0.5": 30, "0.9": 38, "0.99": 40}
    sep = found["separation"]
    assert sep["layer"] == "hidden3" and sep["cosine"] < 0.05
    assert sep["last_epoch"]["hidden1"]["noisy_by_original"] > 0.99 and "output" not in sep["last_epoch"]
    large = found["large_activation"]
    assert (large["layer"], large["unit"], large["dominant"]) == ("hidden1", LARGE_UNIT, True)
    assert large["emergence_epoch"] == EMERGENCE_EPOCH and large["explained_by"] == "input"
    assert large["ratio_to_median"] > 10 and large["ratio_to_second"] > 3
    hidden3 = found["paths"]["by_layer"]["hidden3"]
    assert (hidden3["clean_share_correct"], hidden3["clean_share_wrong"], hidden3["split"]) == (1.0, 0.0, 1.0)
    # with 4 classes a perfect split arises by chance in about 1 / 2**4 of the permutations (see test_analysis_paths)
    assert hidden3["p_value"] < 0.15 and hidden3["p_floor"] == pytest.approx(1 / 200) and hidden3["n_permutations"] == 199
    assert hidden3["excess_low"] > 0.5 and hidden3["null_low"] <= hidden3["null_mean"] <= hidden3["null_high"]
    assert large["explained_by"] == "input" and large["r2_difference_low"] > 0 and large["input_p_floor"] == pytest.approx(0.01)


def test_save_and_load_round_trip(tmp_path_factory, tmp_path):
    _, results = cached_results(tmp_path_factory)
    path = save_results(results, tmp_path / "analysis" / "results.zarr")
    save_results(results, path)  # overwrite in place
    loaded = load_results(path)
    computed = set(ANALYSES) - {"dynamics"}  # the planted run stores no trajectories (tests/test_analysis_dynamics.py)
    assert set(loaded.children) == computed
    assert loaded.attrs["errors"] == {} and loaded.attrs["parameters"]["n_permutations"] == 99
    for name in computed:
        xr.testing.assert_allclose(loaded[name].to_dataset(), results[name].to_dataset())
    assert summary(loaded) == summary(results)
    # nothing left beside the results but their writer lock
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == [f".{path.name}.lock"]
    with pytest.raises(StoreError, match="no saved analysis results"):
        load_results(tmp_path)


def test_saved_results_carry_crc32c_and_a_flipped_bit_is_one_line(tmp_path_factory, tmp_path):
    """Issue 16: a flipped bit in saved results changed numbers silently; now every array ends with crc32c."""
    _, results = cached_results(tmp_path_factory)
    path = save_results(results, tmp_path / "results.zarr")
    metadata = [json.loads(p.read_text()) for p in path.rglob("zarr.json")]
    arrays = [m for m in metadata if m["node_type"] == "array"]
    assert len(arrays) > 20 and all(m["codecs"][-1]["name"] == "crc32c" for m in arrays)
    chunks = sorted(p for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")
    for chunk in chunks[:: max(1, len(chunks) // 4)]:
        raw = chunk.read_bytes()
        flipped = bytearray(raw)
        flipped[len(raw) // 2] ^= 0x04
        chunk.write_bytes(bytes(flipped))
        with pytest.raises(StoreError) as info:
            load_results(path)
        text = str(info.value)
        assert text.startswith(f"{path}: saved results cannot be read") and "checksum" in text and "\n" not in text
        chunk.write_bytes(raw)
    xr.testing.assert_allclose(load_results(path)["curves"].to_dataset(), results["curves"].to_dataset())


def test_failed_analysis_is_isolated(tmp_path_factory, monkeypatch):
    planted = cached_planted(tmp_path_factory)

    def broken(metrics):
        raise ValueError("planted failure")

    monkeypatch.setattr(curves, "learning_curves", broken)
    results = analyze(planted.run_dir, progress=False, n_permutations=9)
    assert results.attrs["errors"] == {"curves": "ValueError: planted failure"}
    assert "curves" not in results.children and {"separation", "pca", "large_activation", "paths"} <= set(results.children)
    found = summary(results)
    assert found["double_descent"] is None and found["large_activation"]["unit"] == LARGE_UNIT


def test_pre_activations_and_single_worker_agree_on_structure(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    pre = analyze(planted.run_dir, progress=False, kind="pre", n_permutations=9, max_workers=1)
    assert pre.attrs["kind"] == "pre" and pre.attrs["errors"] == {}
    run = actlab.open_run(planted.run_dir)
    x = run.layer("hidden3", kind="pre").sel(epoch=20).values
    np.testing.assert_allclose(pre["large_activation/hidden3"].to_dataset()["mean_abs"].sel(epoch=20),
                               np.abs(x).mean(axis=0), rtol=1e-6)


def test_post_activation_magnitudes_of_relu_and_identity_layers_equal_numpy(tmp_path_factory):
    """A ReLU layer's blocks skip the search for a negative value (``nonnegative``); the output layer, identity,
    has negative values and takes |x|."""
    planted, results = cached_results(tmp_path_factory)
    for layer in ("hidden1", "output"):
        x = post(planted, 40, layer)
        assert (x < 0).any() == (layer == "output")
        found = results[f"large_activation/{layer}"].to_dataset().sel(epoch=40)
        np.testing.assert_allclose(found["mean_abs"], np.abs(x).mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(found["max_abs"], np.abs(x).max(axis=0), rtol=1e-7)


def test_parameter_errors(tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    with pytest.raises(ConfigError, match="kind"):
        analyze(planted.run_dir, kind="both")
    with pytest.raises(ConfigError, match="n_top"):
        analyze(planted.run_dir, n_top=1)
    with pytest.raises(ConfigError, match="relevant"):
        analyze(planted.run_dir, relevant="x")


def test_scheduler_without_distributed(tmp_path_factory, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed: importing it raises ImportError
    planted = cached_planted(tmp_path_factory)
    with pytest.raises(ConfigError, match="pip install distributed"):
        analyze(planted.run_dir, scheduler="tcp://127.0.0.1:8786", progress=False)


def test_summary_reads_separation_and_large_activation_at_the_phases(tmp_path_factory):
    from actlab.analysis.pipeline import phase_epochs

    _, results = cached_results(tmp_path_factory)
    found = summary(results)
    node = results["curves"].to_dataset()
    recorded = [int(e) for e in results["separation"]["epoch"].values]
    first_min = int(node["dd_first_min_epoch"].sel(curve="test_loss"))
    fitted = int(node["noisy_fitted_epoch"])
    nearest = {target: min(recorded, key=lambda e: abs(e - target)) for target in (first_min, fitted)}
    assert phase_epochs(results, recorded) == {"test_loss_min": nearest[first_min], "noisy_memorised": nearest[fitted],
                                               "last": max(recorded)}
    assert phase_epochs(results, [0, 5, 10, 20])["last"] == 20
    separation = results["separation"].to_dataset()
    for phase, reading in found["separation"]["at_phases"].items():
        for layer, values in reading["by_layer"].items():
            expected = separation["cos_clean_noisy_by_original_mean"].sel(layer=layer, epoch=reading["epoch"])
            assert values["noisy_by_original"] == pytest.approx(float(expected))
    assert found["separation"]["at_phases"]["last"]["by_layer"] == found["separation"]["last_epoch"]
    large = found["large_activation"]
    row = results["large_activation"].to_dataset().sel(layer=large["layer"])
    for phase, reading in large["at_phases"].items():
        magnitude = float(row["unit_mean_abs"].sel(epoch=reading["epoch"]))
        assert reading["mean_abs"] == pytest.approx(magnitude)
        assert reading["ratio_to_median"] == pytest.approx(magnitude / float(row["median_mean_abs"].sel(epoch=reading["epoch"])))
    assert large["at_phases"]["last"]["mean_abs"] == pytest.approx(large["mean_abs"])


def test_strongest_separation_is_read_by_original_label_only(tmp_path_factory):
    _, results = cached_results(tmp_path_factory)
    tree = results.copy(deep=True)
    separation = tree["separation"].to_dataset()
    assigned = separation["cos_clean_noisy_by_assigned_mean"]
    separation["cos_clean_noisy_by_assigned_mean"] = assigned.where(assigned["epoch"] != assigned["epoch"][1], -1.0)
    tree["separation"] = xr.DataTree(separation)
    found = summary(tree)["separation"]
    # ranked by the distance below its own floor (by original label) over the hidden layers and read epochs
    read = sorted({at["epoch"] for at in found["at_phases"].values()})
    hidden = separation.sel(layer=["hidden1", "hidden2", "hidden3"], epoch=read)
    distance = hidden["cos_clean_noisy_by_original_floor"] - hidden["cos_clean_noisy_by_original_mean"]
    where = distance.where(distance == distance.max(), drop=True)
    assert found["grouping"] == "noisy_by_original"
    assert (found["layer"], found["epoch"]) == (str(where["layer"].values[0]), int(where["epoch"].values[0]))
    assert found["floor_distance"] == pytest.approx(float(distance.max()))
    assert found["cosine"] == pytest.approx(float(hidden["cos_clean_noisy_by_original_mean"].sel(
        layer=found["layer"], epoch=found["epoch"])))


def test_stacked_nodes_name_no_single_layer(tmp_path):
    # the per-layer parts name their layer in attrs; once stacked along ``layer`` an attr naming one layer (the
    # first) would be wrong for the rest, in the tree and in the saved results
    planted = planted_run(tmp_path / "run", empty_noisy_class=2)
    results = analyze(planted.run_dir, progress=False, n_permutations=19, n_bootstrap=50)
    named = [(node.path, name) for node in results.subtree for name, variable in node.dataset.variables.items()
             if "layer" in variable.dims and "layer" in variable.attrs]
    assert named == []
    assert "layer" in results["separation"].dims and "layer" in results["pca"].dims
    warnings = results["separation"].attrs["warnings"]
    assert warnings == [f"class 2 has no noisy by {label} probes; its cosines are NaN" for label in ("original", "assigned")]
    part = results["separation"].to_dataset().sel(layer="hidden2")
    assert np.isnan(part["cos_clean_noisy_by_original"].sel({"class": 2})).all()


def test_each_layer_is_released_once_its_analyses_have_their_parts(tmp_path_factory, monkeypatch):
    """The fused pass drops a layer's per-epoch arrays once every analysis has built its part of that layer (so a
    long run holds them for the layers being read, not all), once per layer, and the results equal those of a pass
    that keeps every array (a release before a part was built would fail it or change it)."""
    from actlab.analysis import assembly

    planted = cached_planted(tmp_path_factory)
    monkeypatch.setattr(assembly.Statistics, "release", lambda self, layer: None)
    kept = analyze(planted.run_dir, progress=False, n_permutations=9)
    monkeypatch.undo()
    released, release = [], assembly.Statistics.release

    def recorded(self, layer):
        assert layer in self.sums  # not released twice
        released.append(layer)
        release(self, layer)
        assert layer not in self.sums and layer not in self.path_cosines and not self.floor_null[layer]

    monkeypatch.setattr(assembly.Statistics, "release", recorded)
    results = analyze(planted.run_dir, progress=False, n_permutations=9)
    assert sorted(released) == sorted(actlab.open_run(planted.run_dir).layer_names)
    assert results.attrs["errors"] == kept.attrs["errors"] == {}
    for node in ("separation", "paths", "large_activation"):
        xr.testing.assert_identical(results[node].to_dataset(), kept[node].to_dataset())
    # the PCA's moments are merged in the order the blocks complete: equal to rounding from run to run
    xr.testing.assert_allclose(results["pca"].to_dataset(), kept["pca"].to_dataset(), rtol=1e-9)


def test_a_task_waits_for_what_an_earlier_result_brings(monkeypatch):
    """``ready`` holds a task back (None) until the consumer has what it needs from an earlier task's result; a
    task that would wait with nothing in flight is an error, not a hang."""
    import concurrent.futures as cf

    from actlab.analysis import pipeline

    monkeypatch.setattr(pipeline, "_read_and_reduce", lambda task, *args: (task, []))
    handed, asked = [], []

    def ready(task):
        asked.append((task, list(handed)))
        return None if task == "needs first" and "FIRST" not in handed else task.upper()

    with cf.ThreadPoolExecutor(2) as executor:
        for task, (result, _) in pipeline._completed(executor, ["first", "needs first", "last"], None, (), 3,
                                                     ready=ready):
            assert result == task.upper()
            handed.append(task)
        assert handed[0] == "FIRST" and sorted(handed[1:]) == ["LAST", "NEEDS FIRST"]
        # "needs first" was asked before the first result was handed over, and "last" submitted after it only
        assert asked == [("first", []), ("needs first", []), ("needs first", ["FIRST"]), ("last", ["FIRST"])]
        with pytest.raises(RuntimeError, match=r"block \(hidden1, epoch index 2\) waits for a result no block in flight gives"):
            list(pipeline._completed(executor, [pipeline._BlockTask("hidden1", 2, (), False, False, False, True)], None,
                                     (), 2, ready=lambda task: None))


def test_the_pass_holds_no_handed_over_block_statistics_while_it_awaits_the_next_block(monkeypatch):
    import concurrent.futures as cf
    import gc
    import threading
    import weakref

    from actlab.analysis import pipeline

    class Stats:  # stands in for a block's BlockStats (weakly referenceable)
        pass

    release = threading.Event()

    def reduce(task, *args):
        if task == "slow":
            assert release.wait(10)
        return Stats(), []

    monkeypatch.setattr(pipeline, "_read_and_reduce", reduce)
    alive = {}
    with cf.ThreadPoolExecutor(2) as executor:
        blocks = pipeline._completed(executor, ["fast", "slow"], None, (), in_flight=2)
        task, (stats, _) = next(blocks)
        assert task == "fast"
        handed = weakref.ref(stats)
        del stats

        def look():  # while the pass waits for the slow block
            gc.collect()
            alive["fast"] = handed() is not None
            release.set()

        threading.Timer(0.2, look).start()
        assert [task for task, _ in blocks] == ["slow"]
    assert alive == {"fast": False}
