"""open_run: committed epochs only, activations as written, and the store errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import zarr
from fixtures_store import (
    LAYERS,
    RECORD_EPOCHS,
    cached_planted,
    planted_probes,
    planted_run,
    post,
)

import actlab
from actlab.analysis import analyze
from actlab.errors import StoreError
from actlab.store import LayerSpec, RunWriter, Subsets, store_path


@pytest.fixture
def planted(tmp_path_factory):
    return cached_planted(tmp_path_factory)


def test_layer_values_and_coords_match_what_was_written(planted):
    run = actlab.open_run(planted.run_dir)
    assert run.layer_names == [layer.name for layer in LAYERS]
    np.testing.assert_array_equal(run.epochs, RECORD_EPOCHS)
    assert run.n_classes == 4 and run.config["model"] == "planted"
    for name in ("hidden1", "output"):
        act = run.layer(name)
        assert act.dims == ("epoch", "sample", "unit") and act.chunks[0] == (1,) * len(RECORD_EPOCHS)
        np.testing.assert_array_equal(act.sel(epoch=20).values, post(planted, 20, name))
    pre = run.layer("hidden3", kind="pre").sel(epoch=40).values
    np.testing.assert_array_equal(pre, planted.preacts[40]["hidden3"])
    assert (pre < 0).any() and (run.layer("hidden3").values >= 0).all()
    act = run.layer("hidden1")
    np.testing.assert_array_equal(act["label"].values, planted.probes.label)
    np.testing.assert_array_equal(act["original_label"].values, planted.probes.original_label)
    np.testing.assert_array_equal(act["is_noisy"].values, planted.probes.is_noisy)
    assert list(np.unique(act["group"].values)) == ["clean", "noisy", "test"]
    assert set(run.layers()) == set(run.layer_names)


def test_only_committed_epochs_are_shown(tmp_path):
    planted = planted_run(tmp_path / "run", commit_epochs=[0, 20])
    run = actlab.open_run(tmp_path / "run")
    np.testing.assert_array_equal(run.epochs, [0, 20])
    np.testing.assert_array_equal(run.layer("hidden2").sel(epoch=20).values, post(planted, 20, "hidden2"))
    results = analyze(run, progress=False, n_permutations=9)
    assert results.attrs["errors"] == {} and results.attrs["epochs"] == [0, 20]
    assert results["separation"].sizes["epoch"] == 2


def test_not_a_run(tmp_path, monkeypatch):
    with pytest.raises(StoreError, match="not an actlab run"):
        actlab.open_run(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        actlab.open_run(tmp_path / "nothing")
    monkeypatch.chdir(tmp_path)  # a relative path is shown absolute: a notebook's kernel runs in another folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match=f"^{tmp_path / 'nothing'} does not exist"):
        actlab.open_run("nothing")
    with pytest.raises(StoreError, match=f"^{tmp_path / 'empty'} is not an actlab run"):
        actlab.open_run("empty")


def test_other_schema_version(tmp_path, planted):
    shutil.copytree(planted.run_dir, tmp_path / "run")
    zarr.open_group(store_path(tmp_path / "run"), mode="r+").attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema version 99"):
        actlab.open_run(tmp_path / "run")


def test_no_recorded_epoch_yet(tmp_path):
    probes, _ = planted_probes(np.random.default_rng(0))
    RunWriter.create(tmp_path / "run", config={}, dataset={}, layers=[LayerSpec("output", 4, 192, "identity", "head")],
                     probes=probes, subsets=Subsets.of_probes(probes), record_epochs=[0, 1], n_epochs=1)
    with pytest.raises(StoreError, match="no committed recorded epoch"):
        actlab.open_run(tmp_path / "run")


def test_missing_chunk(tmp_path, planted):
    shutil.copytree(planted.run_dir, tmp_path / "run")
    (store_path(tmp_path / "run") / "layers" / "hidden2" / "preact" / "c" / "3" / "0" / "0").unlink()
    with pytest.raises(StoreError, match="lacks chunk store.zarr/layers/hidden2/preact"):
        actlab.open_run(tmp_path / "run")


def test_corrupted_chunk_names_layer_and_epoch(tmp_path, planted):
    shutil.copytree(planted.run_dir, tmp_path / "run")
    run = actlab.open_run(tmp_path / "run")  # opened intact; the shard is damaged afterwards, while it is read
    shard = store_path(tmp_path / "run") / "layers" / "hidden3" / "preact" / "c" / "4" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    # opened now, its shard index intact, the block fails the CRC32C of the damaged inner chunk when it is read
    with pytest.raises(StoreError, match=r"layer hidden3 epoch 40\) cannot be read \(.*checksum"):
        actlab.open_run(tmp_path / "run").read_block("hidden3", 4)
    run.layer("hidden3").sel(epoch=30).values  # other epochs still read
    with pytest.raises(StoreError, match="layer hidden3 epoch 40"):
        run.layer("hidden3").sel(epoch=40).values
    with pytest.raises(StoreError, match="layer hidden3 epoch 40"):
        analyze(run, progress=False)


def test_probe_images_are_read_where_used_and_must_be_those_read_at_open(tmp_path, planted):
    shutil.copytree(planted.run_dir, tmp_path / "run")
    run = actlab.open_run(tmp_path / "run")
    image = run.probes["image"]
    assert image.chunks is not None  # dask-backed: the run holds no pixels
    expected = actlab.store.open_store(tmp_path / "run").probes["image"].values
    assert image.dims == ("sample", "channel", "height", "width") and image.dtype == expected.dtype
    np.testing.assert_array_equal(image.values, expected)
    np.testing.assert_array_equal(image.values, planted.probes.images)
    np.testing.assert_array_equal(run.probe_images(), planted.probes.images)  # the same read without dask
    # a chunk removed after the open reads as fill values, which no codec checksum sees: refused by the CRC32 taken at open
    chunks = [path for path in (store_path(tmp_path / "run") / "probes" / "image" / "c").rglob("*") if path.is_file()]
    chunks[0].unlink()
    with pytest.raises(StoreError, match="array probes/image differs from the images read when the run was opened"):
        run.probes["image"].values
    with pytest.raises(StoreError, match="array probes/image differs from the images read when the run was opened"):
        run.probe_images()
    # a damaged chunk fails its CRC32C: one line naming the array
    shutil.copytree(planted.run_dir, tmp_path / "run2")
    run = actlab.open_run(tmp_path / "run2")
    chunk = next(path for path in (store_path(tmp_path / "run2") / "probes" / "image" / "c").rglob("*") if path.is_file())
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=r"array probes/image cannot be read \("):
        run.probes["image"].values
    with pytest.raises(StoreError, match=r"array probes/image cannot be read \("):
        run.probe_images()


def test_analyze_on_local_threads_does_not_import_dask_distributed(planted):
    # dask's first compute imports dask.distributed where it is installed (about 0.5 s of CPU at the start of every
    # analysis, holding the interpreter lock while the block plan is made); analyze on local threads computes nothing
    # through dask
    pytest.importorskip("distributed")
    code = ("import sys; from actlab.analysis import analyze, open_run; "
            f"analyze(open_run({str(planted.run_dir)!r}), progress=False); print('distributed' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
