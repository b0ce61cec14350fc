"""Damaged stores fail loudly: one StoreError line that names the array (and the epoch of a per-epoch array)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import warnings
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import zarr
from fixtures_store import cached_planted, planted_run

import actlab
from actlab.analysis import analyze
from actlab.analysis.run import read_block
from actlab.cli import main
from actlab.errors import StoreError
from actlab.store import STORE_DIRNAME, damaged_chunks, store_path

SLOT = {0: 0, 10: 1, 20: 2, 30: 3, 40: 4, 50: 5}
"""Store slot of each planted record epoch."""


@pytest.fixture
def run_dir(tmp_path_factory, tmp_path) -> Path:
    """A private copy of the planted run, free to damage."""
    shutil.copytree(cached_planted(tmp_path_factory).run_dir, tmp_path / "run")
    return tmp_path / "run"


def _file(run_dir: Path, array: str, key: str) -> Path:
    return store_path(run_dir) / array / "c" / key


def _flip(path: Path, position: int | None = None) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 if position is None else position] ^= 0x10
    path.write_bytes(bytes(raw))


def _rewrite_index(path: Path, offset: int, nbytes: int) -> None:
    """Replace the (single-entry) shard index with a valid one that says (offset, nbytes)."""
    raw = path.read_bytes()
    index = np.array([offset, nbytes], dtype="<u8").tobytes()
    path.write_bytes(raw[:-20] + index + google_crc32c.value(index).to_bytes(4, "little"))


SHARD = "layers/hidden2/preact"
SHARD_KEY = "3/0/0"
SHARD_NAME = "array layers/hidden2/preact (layer hidden2 epoch 30)"

OPEN_DAMAGE = {
    "preact shard deleted": (SHARD, SHARD_KEY, lambda p: p.unlink(),
                             f"{SHARD_NAME} lacks chunk {STORE_DIRNAME}/{SHARD}/c/{SHARD_KEY}"),
    "preact shard 0 bytes": (SHARD, SHARD_KEY, lambda p: p.write_bytes(b""),
                             f"{SHARD_NAME} has an empty or truncated shard {STORE_DIRNAME}/{SHARD}/c/{SHARD_KEY} (0 bytes)"),
    "preact shard truncated": (SHARD, SHARD_KEY, lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                               f"{SHARD_NAME} has a truncated or damaged shard {STORE_DIRNAME}/{SHARD}/c/{SHARD_KEY}"),
    "preact shard index flipped": (SHARD, SHARD_KEY, lambda p: _flip(p, p.stat().st_size - 9),
                                   f"{SHARD_NAME} has a truncated or damaged shard"),
    "preact inner chunk marked absent": (SHARD, SHARD_KEY, lambda p: _rewrite_index(p, 2**64 - 1, 2**64 - 1),
                                         f"{SHARD_NAME} has a shard {STORE_DIRNAME}/{SHARD}/c/{SHARD_KEY} that lacks inner chunk"),
    "preact inner chunk past the end": (SHARD, SHARD_KEY, lambda p: _rewrite_index(p, 0, p.stat().st_size),
                                        "ends past the data"),
    "weight shard 0 bytes": ("parameters/body.0.weight", "2/0/0", lambda p: p.write_bytes(b""),
                             "array parameters/body.0.weight (epoch 20) has an empty or truncated shard"),
    "weight shard truncated": ("parameters/body.0.weight", "2/0/0", lambda p: p.write_bytes(p.read_bytes()[:-7]),
                               "array parameters/body.0.weight (epoch 20) has a truncated or damaged shard"),
    "bias shard deleted": ("parameters/head.bias", "5/0", lambda p: p.unlink(),
                           "array parameters/head.bias (epoch 50) lacks chunk"),
    "metrics/test_loss flipped": ("metrics/test_loss", "0", _flip, "array metrics/test_loss cannot be read"),
    "metrics/test_loss deleted": ("metrics/test_loss", "0", lambda p: p.unlink(),
                                  f"array metrics/test_loss lacks chunk {STORE_DIRNAME}/metrics/test_loss/c/0"),
    "metrics/epoch flipped": ("metrics/epoch", "0", _flip, "array metrics/epoch cannot be read"),
    "layers/epoch flipped": ("layers/epoch", "0", _flip, "array layers/epoch cannot be read"),
    "probes/label flipped": ("probes/label", "0", _flip, "array probes/label cannot be read"),
    "probes/image 0 bytes": ("probes/image", "0/0/0/0", lambda p: p.write_bytes(b""), "array probes/image lacks chunk"),
    "training/label flipped": ("training/label", "0", _flip, "array training/label cannot be read"),
    "evaluation/dataset_index deleted": ("evaluation/dataset_index", "0", lambda p: p.unlink(),
                                         "array evaluation/dataset_index lacks chunk"),
}


@pytest.mark.parametrize("kind", list(OPEN_DAMAGE))
def test_damage_is_refused_when_the_run_is_opened(run_dir, kind):
    array, key, damage, message = OPEN_DAMAGE[kind]
    damage(_file(run_dir, array, key))
    assert_refused_as_damaged(run_dir, message)


def assert_refused_as_damaged(run_dir: Path, message: str) -> None:
    """Opening the run fails with one line that holds ``message`` and says the store is damaged."""
    with pytest.raises(StoreError) as info:
        actlab.open_run(run_dir)
    text = str(info.value)
    assert message in text and text.startswith(f"{run_dir}: ") and "\n" not in text
    assert text.endswith("; the store is damaged, record the run again")


def assert_refused_on_read(run_dir: Path, layer: str, epoch: int, message: str) -> None:
    """The run opens, and every read of the block of ``layer`` at ``epoch`` (eager, lazy, the fused analysis) fails
    with one line that holds ``message`` and says the store is damaged; the other blocks read."""
    run = actlab.open_run(run_dir)
    index = int(np.flatnonzero(run.epochs == epoch)[0])
    assert np.isfinite(run.read_block(layer, (index + 1) % len(run.epochs))).all()
    for read in (lambda: run.read_block(layer, index), lambda: run.layer(layer).sel(epoch=epoch).values,
                 lambda: run.layer(layer, "pre").values, lambda: analyze(run, progress=False, n_permutations=9)):
        with pytest.raises(StoreError) as info:
            read()
        text = str(info.value)
        assert message in text and text.startswith(f"{run_dir}: ") and "\n" not in text
        assert text.endswith("; the store is damaged, record the run again")


def test_zero_byte_shard_reads_as_nan_in_zarr_itself(run_dir):
    """Why the shard check exists: zarr returns fill values for an empty shard, without an error."""
    _file(run_dir, SHARD, SHARD_KEY).write_bytes(b"")
    values = zarr.open_array(store_path(run_dir) / SHARD, mode="r")[SLOT[30]]
    assert np.isnan(values).all()


def test_flipped_bit_in_a_compressed_chunk_names_array_and_epoch(run_dir):
    """A flipped bit in a chunk keeps the shard index intact, so the run opens; the chunk's CRC32C refuses the block
    at every read (each read pipeline says it its own way: zarr-python "ValueError: Stored and computed checksum
    ...", zarrs "RuntimeError: the checksum is invalid", actlab's decoder "ValueError: inner chunk 0 of shard ...
    does not match its CRC32C checksum", actlab.store.pipeline). A flipped bit in that CRC32C itself
    fails the shard's digest committed with epoch 40, before the block is decoded."""
    shard = _file(run_dir, "layers/hidden3/preact", "4/0/0")
    pristine = shard.read_bytes()
    _flip(shard, 200)
    assert_refused_on_read(run_dir, "hidden3", 40, "array layers/hidden3/preact (layer hidden3 epoch 40) cannot be read (")
    with pytest.raises(StoreError, match="checksum"):
        actlab.open_run(run_dir).read_block("hidden3", 4)
    shard.write_bytes(pristine)
    array = zarr.open_array(store_path(run_dir) / "layers/hidden3/preact", mode="r")
    index = np.frombuffer(pristine[-(16 * (array.shards[1] // array.chunks[1]) + 4):-4], "<u8")
    _flip(shard, int(index[0] + index[1]) - 2)  # in the first inner chunk's CRC32C
    assert_refused_on_read(run_dir, "hidden3", 40, f"array layers/hidden3/preact (layer hidden3 epoch 40) has a shard "
                           f"{STORE_DIRNAME}/layers/hidden3/preact/c/4/0/0 whose digest is not the one committed with "
                           "this epoch (layers/shard_digest)")


def test_every_damage_is_listed_with_a_count(run_dir):
    for key in ("2/0/0", "3/0/0"):
        _file(run_dir, SHARD, key).unlink()
    with pytest.raises(StoreError, match=r"layer hidden2 epoch 20\) lacks chunk .* \(and 1 more problems\)"):
        actlab.open_run(run_dir)


def test_uncommitted_slots_are_not_checked(tmp_path):
    planted = planted_run(tmp_path / "run", commit_epochs=[0, 10])
    assert not _file(planted.run_dir, SHARD, SHARD_KEY).exists()  # epoch 30 not recorded yet
    assert list(actlab.open_run(planted.run_dir).epochs) == [0, 10]


def test_cli_reports_a_damaged_store_in_one_line_and_exits_2(run_dir):
    _file(run_dir, "layers/output/preact", "1/0/0").write_bytes(b"")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["analyze", str(run_dir), "--no-progress"])
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1, err.getvalue()
    assert lines[0].startswith("actlab: error: ")
    assert "array layers/output/preact (layer output epoch 10) has an empty or truncated shard" in lines[0]
    assert not (run_dir / "analysis").exists()


# -- contract breaches: a store that another program wrote wrongly --------------------------------------------


def _root(run_dir: Path) -> zarr.Group:
    return zarr.open_group(store_path(run_dir), mode="r+", zarr_format=3)


def _set_root_attrs(run_dir: Path, **changes) -> None:
    """Change root attributes as another program that writes the contract would: with a matching digest."""
    root = _root(run_dir)
    attrs = {**root.attrs, **changes}
    attrs["actlab_digest"] = "sha256:" + hashlib.sha256(
        json.dumps({k: v for k, v in attrs.items() if k != "actlab_digest"}, sort_keys=True,
                   separators=(",", ":")).encode()).hexdigest()
    root.attrs.put(attrs)


def test_unknown_activation_is_refused_naming_layer_and_value(run_dir):
    layers = _root(run_dir).attrs["layers"]
    layers[1]["activation"] = "gelu"
    _set_root_attrs(run_dir, layers=layers)
    with pytest.raises(StoreError, match=r"layer hidden2 has activation 'gelu', not one of \('relu', 'identity'\)"):
        actlab.open_run(run_dir)


def test_group_order_comes_from_the_store(run_dir, tmp_path_factory):
    planted = cached_planted(tmp_path_factory)
    order = ["test", "clean", "noisy"]
    root = _root(run_dir)
    _set_root_attrs(run_dir, groups=order)
    root["probes/group"][...] = np.asarray([order.index(("clean", "noisy", "test")[c]) for c in planted.probes.group], "int8")
    run = actlab.open_run(run_dir)
    expected = np.asarray(["clean", "noisy", "test"])[planted.probes.group]
    np.testing.assert_array_equal(run.probes["group"].values, expected)
    np.testing.assert_array_equal(run.layer("output")["group"].values, expected)


@pytest.mark.parametrize("groups", [["clean", "noisy"], ["clean", "noisy", "test", "test"], ["clean", "noisy", "valid"], "clean"])
def test_invalid_groups_are_refused(run_dir, groups):
    _set_root_attrs(run_dir, groups=groups)
    with pytest.raises(StoreError, match="root attr groups is .*not the names"):
        actlab.open_run(run_dir)


def test_commit_slot_with_a_wrong_epoch_is_refused(run_dir):
    epochs = _root(run_dir)["layers/epoch"]
    values = epochs[...]
    values[2] = 21
    epochs[...] = values
    with pytest.raises(StoreError, match="array layers/epoch holds 21 in slot 2, expected 20 or -1"):
        actlab.open_run(run_dir)


def test_probe_labels_must_agree_with_the_training_set(run_dir):
    labels = _root(run_dir)["training/label"]
    values = labels[...]
    values[0] = (values[0] + 1) % 4
    labels[...] = values
    with pytest.raises(StoreError, match="array training/is_noisy disagrees with training/label != training/original_label|"
                                         "array probes/label disagrees with training/label"):
        actlab.open_run(run_dir)


def test_newer_schema_is_refused(run_dir):
    _set_root_attrs(run_dir, schema_version=6)
    with pytest.raises(StoreError, match="schema version 6, this actlab reads versions 1, 2, 3, 4, 5; use a newer actlab"):
        actlab.open_run(run_dir)


# -- what the digests catch (issue 16): a valid shard in the wrong place, edited or damaged attributes ----------


def _flip_digit(path: Path, after: bytes) -> None:
    """Flip the lowest bit of the first digit after ``after`` in a JSON file: it stays valid JSON, one value changes."""
    raw = bytearray(path.read_bytes())
    at = raw.index(after) + len(after)
    while not chr(raw[at]).isdigit():
        at += 1
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


DIGEST_DAMAGE = {
    "shard moved to another epoch": (
        lambda run, other: shutil.copyfile(_file(run, SHARD, "2/0/0"), _file(run, SHARD, SHARD_KEY)),
        f"{SHARD_NAME} has a shard {STORE_DIRNAME}/{SHARD}/c/{SHARD_KEY} whose digest is not the one committed with "
        "this epoch (layers/shard_digest)"),
    "shard from another run with the same shapes": (
        lambda run, other: shutil.copyfile(_file(other, SHARD, SHARD_KEY), _file(run, SHARD, SHARD_KEY)),
        f"{SHARD_NAME} has a shard {STORE_DIRNAME}/{SHARD}/c/{SHARD_KEY} whose digest is not the one committed with "
        "this epoch (layers/shard_digest)"),
    "flipped bit in a parameter chunk": (
        lambda run, other: _flip(_file(run, "parameters/body.0.weight", "2/0/0"), 100),
        "array parameters/body.0.weight (epoch 20) has a shard store.zarr/parameters/body.0.weight/c/2/0/0 whose inner "
        "chunk 0 fails its CRC32C check"),
    "flipped bit in the root attributes": (
        lambda run, other: _flip_digit(store_path(run) / "zarr.json", b'"n_epochs"'),
        "root attributes (store.zarr/zarr.json) fails its actlab_digest check"),
    "flipped bit in a group's attributes": (
        lambda run, other: _flip_digit(store_path(run) / "layers" / "hidden2" / "zarr.json", b'"width"'),
        "attributes of group layers/hidden2 (store.zarr/layers/hidden2/zarr.json) fails its actlab_digest check"),
    "root attributes without a digest": (
        lambda run, other: _root(run).attrs.pop("actlab_digest"),
        "root attributes (store.zarr/zarr.json) has no actlab_digest"),
}


LAYER_SHARD_DAMAGE = ("shard moved to another epoch", "shard from another run with the same shapes")
"""The cases of :data:`DIGEST_DAMAGE` in a layer's ``preact`` shard."""


@pytest.mark.parametrize("kind", list(DIGEST_DAMAGE))
def test_digests_catch_valid_data_in_the_wrong_place_and_changed_attributes(run_dir, tmp_path, kind):
    """Each case passes every check but the digests (shard index and CRC32C intact, valid JSON), and is one line:
    when the run is opened, or for a layer shard (whose bytes are hashed as its block is read, so they are read
    once) at every read of its block."""
    other = planted_run(tmp_path / "other", seed=1).run_dir if "another run" in kind else None
    damage, message = DIGEST_DAMAGE[kind]
    damage(run_dir, other)
    if kind in LAYER_SHARD_DAMAGE:
        assert_refused_on_read(run_dir, "hidden2", 30, message)
    else:
        assert_refused_as_damaged(run_dir, message)


def test_damaged_chunks_hashes_the_layer_shards_unless_told_not_to(run_dir):
    """A full check (``damaged_chunks``, as ``actlab`` tools outside the analysis call it) still compares every layer
    shard's digest; the open of a run leaves that to the reads."""
    DIGEST_DAMAGE["shard moved to another epoch"][0](run_dir, None)
    assert damaged_chunks(run_dir) == [f"{DIGEST_DAMAGE['shard moved to another epoch'][1]}: moved from another epoch, "
                                       "copied from another run, or damaged"]
    assert damaged_chunks(run_dir, layer_digests=False) == []


def test_a_complete_store_must_hold_every_scheduled_epoch(run_dir):
    """"complete" with a commit slot rolled back (the commit array CRC32C intact) is damage, not a shorter run."""
    epochs = _root(run_dir)["layers/epoch"]
    values = epochs[...]
    values[3] = -1
    epochs[...] = values
    _set_root_attrs(run_dir, status="complete")
    with pytest.raises(StoreError, match="root attr status is 'complete' but the commit arrays hold 61 of 61 metric "
                                         "epochs and 5 of 6 recorded epochs"):
        actlab.open_run(run_dir)
