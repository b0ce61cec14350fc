"""The integrity checks of a run store: shard indexes and checksums, and the errors of a damaged store.

Every array ends its codec chain with a CRC32C checksum, so a flipped bit fails
on read; the readers (:mod:`actlab.store.reader`) turn that into a :class:`~actlab.errors.StoreError`
naming the array. The per-epoch layer arrays are sharded (one shard file per
epoch, index at the end with its own CRC32C); :func:`_shard_problems` reads only
the shard tails to find missing, empty or truncated shards and missing inner
chunks, which zarr would otherwise read as NaN (:func:`actlab.store.reader.damaged_chunks`
runs it on every committed epoch).

Each error is one line: :func:`damage_error` for a damaged store, :func:`breach_error` for one that breaks the
contract of ``docs/store-format.md``; :func:`layer_array_name`, :func:`parameter_array_name` and
:func:`dynamics_array_name` name an array at an epoch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import ShardingCodec

from actlab.errors import StoreError
from actlab.location import Files, Location
from actlab.store.schema import ARRAYS, SHARD_DIGESTS, STATUS_CREATING, STORE_DIRNAME

NO_CHUNK = 2**64 - 1
"""Offset and size of an absent inner chunk in a shard index."""


def creating_error(where: str | os.PathLike) -> StoreError:
    """The error for a store whose root status is still ``"creating"`` (allocation unfinished)."""
    return StoreError(f"{where}: root attr status is {STATUS_CREATING!r}: its recorder is still allocating it, or "
                      "stopped before it was done; wait, or delete the store and record the run again")


def exception_line(exc: BaseException) -> str:
    """``<type>: <message>`` of an exception on one line (zarr and numcodecs messages may span several)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def damage_error(where: str | os.PathLike, what: str) -> StoreError:
    """The one-line error of a damaged store: ``<where>: <what>; the store is damaged, record the run again``."""
    return StoreError(f"{where}: {what}; the store is damaged, record the run again")


def breach_error(where: str | os.PathLike, what: str) -> StoreError:
    """The one-line error of a store that breaks the contract: ``<where>: <what>; the store breaks the contract of
    docs/store-format.md, fix the program that wrote it``."""
    return StoreError(f"{where}: {what}; the store breaks the contract of docs/store-format.md, fix the program that wrote it")


def layer_array_name(layer: str, array: str, epoch: int) -> str:
    """How errors name one epoch of a per-epoch layer array: ``array layers/<layer>/<array> (layer <layer> epoch <epoch>)``."""
    return f"array layers/{layer}/{array} (layer {layer} epoch {epoch})"


def parameter_array_name(name: str, epoch: int) -> str:
    """How errors name one epoch of a parameter array: ``array parameters/<name> (epoch <epoch>)``."""
    return f"array parameters/{name} (epoch {epoch})"


def dynamics_array_name(name: str, epoch: int) -> str:
    """How errors name one epoch of a trajectory array: ``array dynamics/<name> (epoch <epoch>)``."""
    return f"array dynamics/{name} (epoch {epoch})"


SHARD_DIGEST_ARRAYS: dict[str, tuple[str, tuple[tuple[str, ...], tuple[str, ...]], str]] = {
    "chunk-crc32c": (SHARD_DIGESTS, ARRAYS[SHARD_DIGESTS], "digest"),
    "sha256": ("layers/shard_sha256", (("epoch", "shard", "sha256_byte"), ("uint8",)), "SHA-256"),
}
"""Each shard digest (:func:`actlab.store.versions.shard_digest_algorithm`): the array that keeps it with the commits
(R, K, 32), its dimension_names and dtype, and how errors name it. ``"chunk-crc32c"`` (schema 5 on):
:func:`shard_digest`; ``"sha256"`` (schema 4): the SHA-256 of the whole shard file."""


def digest_mismatch(key: str, algorithm: str) -> str:
    """The problem of a shard ``<store>/<key>`` whose digest (:data:`SHARD_DIGEST_ARRAYS`) is not the one committed
    with its epoch (after the array and epoch, as :func:`layer_array_name` names them)."""
    path, _, name = SHARD_DIGEST_ARRAYS[algorithm]
    return (f"has a shard {STORE_DIRNAME}/{key} whose {name} is not the one committed with this epoch ({path}): "
            "moved from another epoch, copied from another run, or damaged")


def inner_chunks(array: zarr.Array) -> int:
    """How many inner chunks one shard of a sharded array holds (the entries of its index)."""
    codec = array.metadata.codecs[0]
    return int(np.prod([s // c for s, c in zip(array.metadata.chunk_grid.chunk_shape, codec.chunk_shape)]))


def file_shard_digest(files: Files, key: str, algorithm: str, n_chunks: int) -> bytes:
    """The digest (``algorithm`` of :data:`SHARD_DIGEST_ARRAYS`) of the shard file ``key``: for ``"chunk-crc32c"``
    about ``20 * n_chunks`` bytes read (:func:`shard_digest`), for ``"sha256"`` every byte (streamed).

    Raises
    ------
    ValueError
        A missing shard, or one :func:`shard_digest` refuses.
    """
    if algorithm == "sha256":
        return files.sha256(key)
    size = files.size(key)
    if size is None:
        raise ValueError(f"the shard {key} is missing")
    with files.fs.open(files.path(key), "rb", block_size=2**16) as stream:  # an object store fetches small blocks

        def read(start: int, stop: int) -> bytes:
            stream.seek(start)
            return stream.read(stop - start)

        return shard_digest(read, size, n_chunks)


def shard_digest(read: Callable[[int, int], bytes], size: int, n_chunks: int) -> bytes:
    """The digest a schema-5 store commits for one shard file (docs/store-format.md, "Digests"): the SHA-256 of the
    shard's index (its last ``16 * n_chunks + 4`` bytes: ``(offset, nbytes)`` of each inner chunk as little-endian
    uint64, then their CRC32C) followed by the last 4 bytes of each inner chunk present (its CRC32C, as stored), in
    index order.

    It reads about ``20 * n_chunks`` bytes, not the shard: every inner chunk's CRC32C binds the digest to the chunk's
    bytes, and every read checks that CRC32C as it decodes the chunk. (The CRC32C of the whole file would not do:
    a shard ends in the CRC32C of its index, which makes that CRC the same constant for every shard.)

    Parameters
    ----------
    read : callable
        ``read(start, stop)``: bytes ``start:stop`` of the shard file.
    size : int
        Its size in bytes.
    n_chunks : int
        Inner chunks per shard (:func:`inner_chunks`).

    Raises
    ------
    ValueError
        The file is shorter than its index, or the index points outside the data (a damaged or truncated shard).
    """
    index_size = 16 * n_chunks + 4
    if size < index_size:
        raise ValueError(f"the shard has {size} bytes, fewer than its index of {index_size}")
    index = read(size - index_size, size)
    digest = hashlib.sha256(index)
    for offset, nbytes in np.frombuffer(index[:-4], dtype="<u8").reshape(n_chunks, 2).tolist():
        if offset == NO_CHUNK:
            continue
        if nbytes < 4 or offset + nbytes > size - index_size:
            raise ValueError(f"the shard index holds an inner chunk of {nbytes} bytes at {offset}, outside its data")
        digest.update(read(offset + nbytes - 4, offset + nbytes))
    return digest.digest()


def chunk_crc_problem(data: bytes, n_chunks: int, key: str) -> str | None:
    """The first inner chunk of the shard file ``data`` (``<store>/<key>``) whose CRC32C (its last 4 bytes,
    little-endian) is not that of the bytes before it, as a problem after the array and epoch; None when every one
    matches. Call it on a shard whose index is intact (:func:`_shard_problems`)."""
    entries = np.frombuffer(data[len(data) - 16 * n_chunks - 4:-4], dtype="<u8").reshape(n_chunks, 2).tolist()
    for position, (offset, nbytes) in enumerate(entries):
        if offset != NO_CHUNK and (google_crc32c.value(data[offset:offset + nbytes - 4])
                                    != int.from_bytes(data[offset + nbytes - 4:offset + nbytes], "little")):
            return f"has a shard {STORE_DIRNAME}/{key} whose inner chunk {position} fails its CRC32C check"
    return None


def _check_sharded(array: zarr.Array, where: Location) -> None:
    """A per-epoch layer array must be sharded one epoch per shard, its index at the end with a CRC32C."""
    codec = array.metadata.codecs[0] if array.metadata.codecs else None
    index_codecs = [c.to_dict()["name"] for c in codec.index_codecs] if isinstance(codec, ShardingCodec) else []
    if (not isinstance(codec, ShardingCodec) or codec.index_location.value != "end" or index_codecs != ["bytes", "crc32c"]
            or array.metadata.chunk_grid.chunk_shape[0] != 1):
        raise breach_error(where, f"array {array.path} is not sharded one epoch per shard with index_location end and "
                             "index_codecs bytes, crc32c")


def _shard_problems(array: zarr.Array, files: Files, path: str, slot: int) -> list[str]:
    """What is wrong with the shards of one epoch slot, from their tails only (the shard index: one ranged read)."""
    codec = array.metadata.codecs[0]
    shard_shape = array.metadata.chunk_grid.chunk_shape
    per_shard = tuple(s // c for s, c in zip(shard_shape, codec.chunk_shape))
    index_size = 16 * int(np.prod(per_shard)) + 4
    problems = []
    for coords in np.ndindex(*(-(-s // c) for s, c in zip(array.shape[1:], shard_shape[1:]))):
        key = array.metadata.encode_chunk_key((slot, *coords))
        name = f"{STORE_DIRNAME}/{path}/{key}"
        size = files.size(f"{path}/{key}")
        if size is None:
            problems.append(f"lacks chunk {name}")
            continue
        if size < index_size:
            problems.append(f"has an empty or truncated shard {name} ({size} bytes)")
            continue
        tail = files.read_range(f"{path}/{key}", size - index_size, size)
        if google_crc32c.value(tail[:-4]) != int.from_bytes(tail[-4:], "little"):
            problems.append(f"has a truncated or damaged shard {name} (its index fails the CRC32C check)")
            continue
        entries = np.frombuffer(tail[:-4], dtype="<u8").reshape(*per_shard, 2)
        origin = np.multiply((slot, *coords), shard_shape)
        for local in np.ndindex(*per_shard):
            if np.any(origin + np.multiply(local, codec.chunk_shape) >= array.shape):
                continue  # beyond the edge of the array: never written
            offset, nbytes = (int(v) for v in entries[local])
            if offset == NO_CHUNK:
                problems.append(f"has a shard {name} that lacks inner chunk {local}")
            elif offset + nbytes > size - index_size:
                problems.append(f"has a truncated shard {name} (inner chunk {local} ends past the data)")
    return problems
