"""actlab's own shard decoder (actlab.store.shards): the same values as zarr, only for the codecs it knows, and
every damage refused with a line that says which inner chunk."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, TransposeCodec, ZstdCodec
from zarr.storage import LocalStore, MemoryStore
from fixtures_store import flip_bit

from actlab.store import READ_PIPELINE_VARIABLE, default_compressors, read_slot, shards

SAMPLES, PER_CHUNK, UNITS = 1000, 128, 6  # eight inner chunks a shard, the last one partly past the edge


def _array(root, compressors=None, dtype="float32", shards_of=(1, 1024, UNITS), chunks=(1, PER_CHUNK, UNITS),
           shape=(3, SAMPLES, UNITS), store=None) -> tuple[zarr.Array, np.ndarray]:
    """A sharded (epoch, sample, unit) array written by zarr, and the values written."""
    values = np.random.default_rng(0).normal(size=shape).astype(dtype)
    values[1, 5:300] = np.nan  # NaN survives the round trip bit for bit
    array = zarr.create_array(store or LocalStore(root), shape=shape, chunks=chunks, shards=shards_of, dtype=dtype,
                              compressors=default_compressors() if compressors is None else compressors,
                              fill_value=np.nan, config={"write_empty_chunks": True})
    array[...] = values
    return zarr.open_array(array.store, mode="r"), values


def _shard(root, slot: int = 1):
    return root / "c" / str(slot) / "0" / "0"


def _index(path, n_chunks: int = 1024 // PER_CHUNK) -> np.ndarray:
    return np.frombuffer(path.read_bytes()[-(16 * n_chunks + 4):-4], "<u8").reshape(n_chunks, 2)


@pytest.mark.parametrize("compressors", [None, (Crc32cCodec(),)], ids=["blosc", "uncompressed"])
def test_reads_what_zarr_reads_whole_and_in_sample_ranges(tmp_path, compressors):
    array, values = _array(tmp_path, compressors)
    assert shards.decodable(array)
    for slot in range(3):
        np.testing.assert_array_equal(shards.read_epoch(array, slot), values[slot])
        for start, stop in [(0, 1), (127, 129), (128, 256), (300, 999), (896, 1000), (7, 7)]:
            got = shards.read_epoch(array, slot, (start, stop))
            assert got.flags.c_contiguous and got.dtype == np.float32
            np.testing.assert_array_equal(got, values[slot, start:stop])


def test_other_codecs_layouts_and_stores_are_left_to_zarr(tmp_path):
    cases = {
        "zstd": dict(compressors=(ZstdCodec(), Crc32cCodec())),
        "no crc32c": dict(compressors=(BloscCodec(cname="lz4"),)),
        "two shards an epoch": dict(shards_of=(1, 512, UNITS)),
        "inner chunks split the units": dict(chunks=(1, PER_CHUNK, 3)),
        "memory store": dict(store=MemoryStore()),
    }
    for name, kwargs in cases.items():
        array, values = _array(tmp_path / name.replace(" ", "_"), **kwargs)
        assert not shards.decodable(array), name
        np.testing.assert_array_equal(read_slot(array, 2), values[2])  # read_slot falls back to zarr
    transposed = zarr.create_array(LocalStore(tmp_path / "transposed"), shape=(2, 8, 4), chunks=(1, 4, 4),
                                   shards=(1, 8, 4), dtype="float32", serializer="auto",
                                   filters=(TransposeCodec(order=(0, 2, 1)),))
    assert not shards.decodable(transposed)


def test_the_pipeline_variable_decides_who_decodes(tmp_path, monkeypatch):
    array, values = _array(tmp_path)
    called = []
    monkeypatch.setattr(shards, "read_epoch", lambda *args: called.append(args) or values[args[1]])
    for pipeline, decoded_here in (("actlab", True), ("zarr-python", False)):
        monkeypatch.setenv(READ_PIPELINE_VARIABLE, pipeline)
        called.clear()
        np.testing.assert_array_equal(read_slot(array, 0), values[0])
        assert bool(called) == decoded_here, pipeline


def _rewrite_index(path, entries: np.ndarray) -> None:
    """Replace the shard index with ``entries`` and a valid CRC32C of them."""
    import google_crc32c

    raw = path.read_bytes()
    body = entries.astype("<u8").tobytes()
    path.write_bytes(raw[:len(raw) - len(body) - 4] + body + google_crc32c.value(body).to_bytes(4, "little"))


def test_each_damage_is_refused_naming_the_inner_chunk(tmp_path):
    array, values = _array(tmp_path)
    shard = _shard(tmp_path)
    pristine = shard.read_bytes()
    index = _index(shard)

    def refused(match: str, rows=None) -> None:
        with pytest.raises(ValueError, match=match):
            shards.read_epoch(array, 1, rows)
        np.testing.assert_array_equal(shards.read_epoch(array, 2), values[2])  # other epochs still read
        shard.write_bytes(pristine)

    flip_bit(shard, int(index[2, 0]) + 40)
    refused(r"^inner chunk 2 of shard c/1/0/0 does not match its CRC32C checksum$")
    flip_bit(shard, len(pristine) - 9)
    refused(r"^the index of shard c/1/0/0 does not match its CRC32C checksum$")
    shard.write_bytes(b"")
    refused(r"^the shard c/1/0/0 has 0 bytes, fewer than its index of 132$")
    shard.write_bytes(pristine[:1000] + pristine[-132:])
    refused(r"^the shard c/1/0/0 holds inner chunk \d outside its data$")
    absent = index.copy()
    absent[5] = 2**64 - 1
    _rewrite_index(shard, absent)
    refused(r"^the shard c/1/0/0 lacks inner chunk 5$")
    _rewrite_index(shard, absent)  # only the inner chunks that hold the rows asked for are read, as zarr reads them
    np.testing.assert_array_equal(shards.read_epoch(array, 1, (0, 640)), values[1, :640])
    shard.write_bytes(pristine)
    shard.unlink()
    with pytest.raises(FileNotFoundError):
        shards.read_epoch(array, 1)


def test_a_blosc_frame_of_another_size_is_refused_even_with_a_valid_crc32c(tmp_path):
    import google_crc32c
    import numcodecs.blosc

    array, _ = _array(tmp_path)
    shard = _shard(tmp_path)
    raw = shard.read_bytes()
    index = _index(shard)
    frame = numcodecs.blosc.compress(np.zeros((PER_CHUNK - 1) * UNITS, "<f4").tobytes(), b"lz4", 5,
                                     numcodecs.blosc.SHUFFLE)
    chunk = frame + google_crc32c.value(frame).to_bytes(4, "little")
    data_end = len(raw) - (16 * len(index) + 4)
    entries = index.copy()
    entries[0] = (data_end, len(chunk))
    shard.write_bytes(raw[:data_end] + chunk + raw[data_end:])
    _rewrite_index(shard, entries)
    with pytest.raises(ValueError, match=rf"^inner chunk 0 holds a Blosc frame of {len(frame)} bytes that decodes to "
                                         rf"{(PER_CHUNK - 1) * UNITS * 4}, not {len(frame)} bytes decoding to "
                                         rf"{PER_CHUNK * UNITS * 4}$"):
        shards.read_epoch(array, 1)
