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

import os

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import ShardingCodec

from actlab.errors import StoreError
from actlab.location import Files, Location
from actlab.store.schema import STATUS_CREATING, STORE_DIRNAME

_NO_CHUNK = 2**64 - 1
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


def digest_mismatch(key: str) -> str:
    """The problem of a shard ``<store>/<key>`` whose SHA-256 is not the one committed with its epoch (after the array
    and epoch, as :func:`layer_array_name` names them)."""
    return (f"has a shard {STORE_DIRNAME}/{key} whose SHA-256 is not the one committed with this epoch "
            "(layers/shard_sha256): moved from another epoch, copied from another run, or damaged")


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
            if offset == _NO_CHUNK:
                problems.append(f"has a shard {name} that lacks inner chunk {local}")
            elif offset + nbytes > size - index_size:
                problems.append(f"has a truncated shard {name} (inner chunk {local} ends past the data)")
    return problems
