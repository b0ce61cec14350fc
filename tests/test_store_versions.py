"""Stores of every released schema (tests/fixtures/schemaN, written by the code of their time) open and analyse with
this release; the current schema labels the epochs of ``parameters/``; older schemas are read, never continued."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import xarray as xr
import zarr
from fixtures_store import planted_run

import actlab
from actlab.analysis import analyze, summary
from actlab.errors import StoreError
from actlab.store import READABLE_SCHEMAS, SCHEMA_VERSION, RunWriter, damaged_chunks, open_store
from conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures"
RELEASED = [version for version in READABLE_SCHEMAS if version != SCHEMA_VERSION]


def test_a_fixture_for_every_released_schema():
    assert RELEASED == [1, 2, 3, 4]
    for version in RELEASED:
        root = zarr.open_group(FIXTURES / f"schema{version}" / "store.zarr", mode="r")
        assert root.attrs["schema_version"] == version


@pytest.mark.parametrize("version", RELEASED)
def test_an_older_store_opens_and_analyses(version, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / f"schema{version}", run_dir)
    raw = zarr.open_group(run_dir / "store.zarr", mode="r")
    run = actlab.open_run(run_dir)
    assert run.attrs["schema_version"] == version and run.epochs.tolist() == [0, 2, 6]
    assert run.layer_names == ["hidden1", "hidden2", "output"]
    assert [run.layer_specs[name]["kind"] for name in run.layer_names] == ["dense"] * 3
    # the activations are the stored arrays, read through zarr alone
    for name in run.layer_names:
        np.testing.assert_array_equal(run.layer(name, "pre").values, raw[f"layers/{name}/preact"][...].astype(np.float32))
    # the weights sit where this schema keeps them: layers/<layer>/weight before schema 3, parameters/<name> after
    weight_path = "layers/hidden1/weight" if version < 3 else "parameters/linear1.weight"
    np.testing.assert_array_equal(run.parameters["linear1.weight"].values, raw[weight_path][...])
    assert run.parameters["linear1.weight"].dims == ("epoch", "linear1.out", "linear1.in")
    assert run.parameters["linear1.bias"].dims == ("epoch", "linear1.out")
    # independently: hidden1 is linear1 of the normalised probe images, with the weights of the same epoch
    norm = run.attrs["dataset"]["normalization"]
    images = run.probes["image"].values.astype(np.float64) / 255.0
    x = ((images - np.asarray(norm["mean"])[:, None, None]) / np.asarray(norm["std"])[:, None, None]).reshape(len(images), -1)
    for slot in range(len(run.epochs)):
        weight, bias = (run.parameters[f"linear1.{kind}"].values[slot] for kind in ("weight", "bias"))
        np.testing.assert_allclose(run.layer("hidden1", "pre").values[slot], x @ weight.T + bias, rtol=2e-3, atol=2e-3)
    assert len(run.training.data_vars) == (0 if version == 1 else 4)  # schema 1 stores no training/ group
    results = analyze(run, progress=False, n_permutations=9, n_bootstrap=20)
    assert results.attrs["errors"] == {}
    assert summary(results)["errors"] == {}


def _schema4_preact(run_dir):
    return run_dir / "store.zarr" / "layers" / "hidden2" / "preact" / "c"


SCHEMA4_MISPLACED = {
    "shard moved to another epoch": lambda run_dir: shutil.copyfile(_schema4_preact(run_dir) / "0" / "0" / "0",
                                                                   _schema4_preact(run_dir) / "1" / "0" / "0"),
    # a valid shard of other values (index and every CRC32C intact), as one copied from another run with the same shapes
    "shard of other values": lambda run_dir: zarr.open_array(run_dir / "store.zarr" / "layers" / "hidden2" / "preact",
                                                            mode="r+").__setitem__(1, np.ones((52, 8), np.float32)),
}


@pytest.mark.parametrize("kind", list(SCHEMA4_MISPLACED))
def test_a_schema4_store_keeps_its_sha256_check(tmp_path, kind):
    """Schema 4 committed the SHA-256 of each shard (layers/shard_sha256); a valid shard in the wrong place is refused
    at the read of its block, and by the full check, as in the current schema with its CRC32C."""
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "schema4", run_dir)
    run = actlab.open_run(run_dir)
    np.testing.assert_array_equal(run.read_block("hidden2", 1, "pre"),
                                  zarr.open_array(run_dir / "store.zarr" / "layers" / "hidden2" / "preact", mode="r")[1])
    SCHEMA4_MISPLACED[kind](run_dir)
    problem = ("array layers/hidden2/preact (layer hidden2 epoch 2) has a shard store.zarr/layers/hidden2/preact/c/1/0/0 "
               "whose SHA-256 is not the one committed with this epoch (layers/shard_sha256)")
    run = actlab.open_run(run_dir)
    with pytest.raises(StoreError, match=re.escape(problem)):
        run.read_block("hidden2", 1)
    assert np.isfinite(run.read_block("hidden2", 0)).all()
    assert [line.split(":")[0] for line in damaged_chunks(run_dir)] == [problem]


def test_a_damaged_older_store_is_reported(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "schema1", run_dir)
    (run_dir / "store.zarr" / "layers" / "hidden2" / "weight" / "c" / "1" / "0" / "0").unlink()  # unsharded in schema 1
    with pytest.raises(StoreError, match=r"parameters/linear2.weight \(epoch 2\) lacks chunk store.zarr/layers/hidden2/weight/c/1/0/0"):
        actlab.open_run(run_dir)


def test_an_older_store_is_read_but_not_continued(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "schema3", run_dir)
    with pytest.raises(StoreError, match="schema version 3, which this actlab reads but does not write"):
        RunWriter.open(run_dir)


def test_parameters_carry_their_epochs_in_the_store(tmp_path):
    planted = planted_run(tmp_path / "run", commit_epochs=[0, 10, 30])
    store = planted.run_dir / "store.zarr"
    raw = zarr.open_group(store, mode="r")
    assert raw.attrs["schema_version"] == SCHEMA_VERSION == 5
    assert raw["parameters/epoch"][...].tolist() == [0, 10, -1, 30, -1, -1]  # written slots; -1 not (yet) written
    tree = xr.open_datatree(store, engine="zarr", consolidated=False)  # plain xarray finds the coordinate
    assert tree["parameters"]["body.0.weight"].dims[0] == "epoch"
    assert tree["parameters"]["epoch"].values.tolist() == [0, 10, -1, 30, -1, -1]
    run = actlab.open_run(planted.run_dir)
    assert run.parameters["epoch"].values.tolist() == [0, 10, 30]
    np.testing.assert_array_equal(run.parameters["body.0.weight"].values, raw["parameters/body.0.weight"][...][[0, 1, 3]])
    # a parameters/epoch that misses an epoch layers/epoch commits is damage
    zarr.open_array(store, path="parameters/epoch", mode="r+")[1] = -1
    with pytest.raises(StoreError, match="parameters/epoch lacks an epoch that layers/epoch commits"):
        open_store(planted.run_dir)
