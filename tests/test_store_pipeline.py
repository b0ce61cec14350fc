"""The read pipeline: actlab's shard decoder for the layer shards, zarrs for other local reads where installed,
zarr-python elsewhere; each verifies every CRC32C.

The corruption and crash-safety modules run under each pipeline (``ACTLAB_READ_PIPELINE`` unset, ``zarrs`` and
``zarr-python``: ``.ci/run``); here the pipeline choice itself and zarrs' own checks (actlab's decoder:
tests/test_store_shards.py).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr
from fixtures_store import cached_planted, flip_bit

from actlab.store import READ_PIPELINE_VARIABLE, for_reading, read_pipeline, store_path

SHARD = "layers/hidden2/preact"
SLOT = 3


@pytest.fixture
def preact(tmp_path_factory, tmp_path):
    """A private copy of the planted run's sharded hidden2 array: (path of the array, path of slot 3's shard)."""
    shutil.copytree(cached_planted(tmp_path_factory).run_dir, tmp_path / "run")
    array = store_path(tmp_path / "run") / SHARD
    return array, array / "c" / str(SLOT) / "0" / "0"


def test_the_variable_picks_the_pipeline(monkeypatch):
    monkeypatch.setenv(READ_PIPELINE_VARIABLE, "zarr-python")
    assert read_pipeline() == "zarr-python"
    monkeypatch.setenv(READ_PIPELINE_VARIABLE, "rust")
    with pytest.raises(ValueError, match="ACTLAB_READ_PIPELINE is 'rust', not one of"):
        read_pipeline()
    monkeypatch.delenv(READ_PIPELINE_VARIABLE)
    assert read_pipeline() == "actlab"


def test_zarrs_reads_what_zarr_python_reads_and_other_stores_stay_on_zarr_python(preact, monkeypatch):
    zarrs = pytest.importorskip("zarrs")
    monkeypatch.setenv(READ_PIPELINE_VARIABLE, "zarrs")
    path, _ = preact
    plain = zarr.open_array(path, mode="r")
    fast = for_reading(plain)
    assert isinstance(fast.async_array.codec_pipeline, zarrs.ZarrsCodecPipeline)
    assert not isinstance(plain.async_array.codec_pipeline, zarrs.ZarrsCodecPipeline)  # the array given is untouched
    for slot in range(plain.shape[0]):
        np.testing.assert_array_equal(fast[slot], plain[slot])
    memory = zarr.create_array(zarr.storage.MemoryStore(), shape=(4,), dtype="f4")
    assert for_reading(memory) is memory
    monkeypatch.setenv(READ_PIPELINE_VARIABLE, "actlab")  # the arrays actlab's decoder leaves to zarr: zarrs
    assert isinstance(for_reading(plain).async_array.codec_pipeline, zarrs.ZarrsCodecPipeline)
    monkeypatch.setenv(READ_PIPELINE_VARIABLE, "zarr-python")
    assert for_reading(plain) is plain


@pytest.mark.parametrize("damage", ["inner chunk bit", "shard index bit", "empty shard"])
def test_zarrs_verifies_the_crc32c_of_chunks_and_shard_index(preact, monkeypatch, damage):
    """zarrs fails on each damage on its own (actlab's shard-tail and digest checks aside); a read of another
    epoch still succeeds."""
    pytest.importorskip("zarrs")
    monkeypatch.setenv(READ_PIPELINE_VARIABLE, "zarrs")
    path, shard = preact
    {"inner chunk bit": lambda: flip_bit(shard, 200), "shard index bit": lambda: flip_bit(shard, shard.stat().st_size - 9),
     "empty shard": lambda: shard.write_bytes(b"")}[damage]()
    array = for_reading(zarr.open_array(path, mode="r"))
    with pytest.raises(RuntimeError):
        array[SLOT]
    assert np.isfinite(array[SLOT - 1]).all()
