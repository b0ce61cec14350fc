"""actlab's own decoder of a per-epoch layer shard: the read pipeline ``"actlab"`` (:mod:`actlab.store.pipeline`).

A read through zarr, with either codec pipeline, passes through zarr-python's event loop, which holds the GIL
for about as long as zarrs takes to decode the shard, so the statistics computed beside the reads wait for it.
The layer arrays of a local store whose codecs are those docs/store-format.md prescribes (one shard per epoch,
the index at the end with its CRC32C; inner chunks split along the sample axis only, each ``bytes``
(little-endian), optionally ``blosc``, then ``crc32c``) are read here instead: plain file reads, numcodecs'
Blosc (the library zarr's own ``blosc`` codec calls) and google-crc32c. The reads and the decompression release
the GIL. Every check a zarr read makes is made too (the first below), and two more:

- the CRC32C of the shard index and of every inner chunk read (zarr's ``crc32c`` codec);
- an inner chunk absent from the index is refused, not read as fill values (a committed epoch has every
  inner chunk: docs/store-format.md);
- a Blosc frame must decode to exactly one inner chunk's bytes.

Only the inner chunks that hold the samples asked for are read, as zarr reads them. Anything else (another
codec, a shard that does not cover the epoch, a store that is not a local folder) is left to zarr:
:func:`decodable` says which.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import google_crc32c
import numcodecs.blosc
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.storage import LocalStore

from actlab.store.integrity import NO_CHUNK, inner_chunks

CRC32C_RESIDUE = 0x48674BC7
"""The CRC32C of any bytes followed by their own CRC32C (little-endian): one pass checks a chunk and its
checksum together, without slicing the checksum off first."""


BLOSC_HEADER = 16
"""Bytes of a Blosc frame's header: version, format version, flags, type size (one byte each), then the
decoded size, block size and frame size (little-endian uint32 each)."""


def _little_endian_bytes(codec: object) -> bool:
    return isinstance(codec, BytesCodec) and codec.endian is not None and codec.endian.value == "little"


def decodable(array: zarr.Array) -> bool:
    """Whether :func:`read_epoch` reads ``array``: a local, sharded (epoch, sample, ...) array of one shard per
    epoch, inner chunks split along the sample axis only, codecs as docs/store-format.md prescribes (see the
    module docstring)."""
    codecs = array.metadata.codecs
    if not isinstance(array.store, LocalStore) or len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return False
    sharding = codecs[0]
    shard, inner = tuple(array.metadata.chunk_grid.chunk_shape), tuple(sharding.chunk_shape)
    index = list(sharding.index_codecs)
    chain = list(sharding.codecs)
    compression = chain[1:-1]
    return (array.ndim >= 2 and shard[0] == 1 and shard[1] >= array.shape[1] and shard[2:] == tuple(array.shape[2:])
            and inner[0] == 1 and inner[2:] == shard[2:] and shard[1] % inner[1] == 0
            and sharding.index_location.value == "end"
            and len(index) == 2 and _little_endian_bytes(index[0]) and isinstance(index[1], Crc32cCodec)
            and len(chain) >= 2 and _little_endian_bytes(chain[0]) and isinstance(chain[-1], Crc32cCodec)
            and all(isinstance(codec, BloscCodec) for codec in compression) and len(compression) <= 1)


def _decode(source: memoryview, target: np.ndarray, compressed: bool, position: int) -> None:
    """Inner chunk ``position`` (its bytes without the CRC32C) into ``target``, refusing a frame of another size."""
    if compressed:
        header = bytes(source[:BLOSC_HEADER])
        nbytes, cbytes = (int.from_bytes(header[4:8], "little"), int.from_bytes(header[12:16], "little"))
        if len(header) < BLOSC_HEADER or nbytes != target.nbytes or cbytes != len(source):
            raise ValueError(f"inner chunk {position} holds a Blosc frame of {cbytes} bytes that decodes to {nbytes}, "
                             f"not {len(source)} bytes decoding to {target.nbytes}")
        numcodecs.blosc.decompress(source, target)
    else:
        if len(source) != target.nbytes:
            raise ValueError(f"inner chunk {position} holds {len(source)} bytes, not {target.nbytes}")
        target.reshape(-1).view(np.uint8)[:] = np.frombuffer(source, dtype=np.uint8)


def read_epoch(array: zarr.Array, slot: int, rows: tuple[int, int] | None = None) -> np.ndarray:
    """Epoch slot ``slot`` of ``array`` (shape (sample, ...)), or its samples ``rows[0]:rows[1]``, decoded from its
    shard file. ``array`` must be :func:`decodable`.

    Returns
    -------
    ndarray, the array's dtype, C-contiguous

    Raises
    ------
    ValueError
        The shard is shorter than its index, its index or an inner chunk read fails its CRC32C check, an inner
        chunk is absent or lies outside the data, or a Blosc frame does not decode to one inner chunk.
    OSError
        The shard file is missing or cannot be read.
    """
    start, stop = rows if rows is not None else (0, array.shape[1])
    sharding = array.metadata.codecs[0]
    per_chunk = sharding.chunk_shape[1]
    n_chunks = inner_chunks(array)
    compressed = len(sharding.codecs) == 3
    key = array.metadata.encode_chunk_key((slot,) + (0,) * (array.ndim - 1))
    first, last = start // per_chunk, max(start // per_chunk, math.ceil(stop / per_chunk))
    out = np.empty(((last - first) * per_chunk, *array.shape[2:]), dtype=array.dtype.newbyteorder("<"))
    index_size = 16 * n_chunks + 4
    with open(Path(array.store.root) / array.path / key, "rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        if size < index_size:
            raise ValueError(f"the shard {key} has {size} bytes, fewer than its index of {index_size}")
        stream.seek(size - index_size)
        index = stream.read(index_size)
        if google_crc32c.value(index) != CRC32C_RESIDUE:
            raise ValueError(f"the index of shard {key} does not match its CRC32C checksum")
        entries = np.frombuffer(index[:-4], dtype="<u8").reshape(n_chunks, 2).tolist()
        for position in range(first, last):
            offset, nbytes = entries[position]
            if offset == NO_CHUNK:
                raise ValueError(f"the shard {key} lacks inner chunk {position}")
            if nbytes < 4 or offset + nbytes > size - index_size:
                raise ValueError(f"the shard {key} holds inner chunk {position} outside its data")
            stream.seek(offset)
            chunk = stream.read(nbytes)
            if google_crc32c.value(chunk) != CRC32C_RESIDUE:
                raise ValueError(f"inner chunk {position} of shard {key} does not match its CRC32C checksum")
            local = position - first
            _decode(memoryview(chunk)[:-4], out[local * per_chunk:(local + 1) * per_chunk], compressed, position)
    return out[start - first * per_chunk:stop - first * per_chunk]
