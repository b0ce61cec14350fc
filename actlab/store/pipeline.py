"""The pipeline that decodes the arrays actlab reads: actlab's own shard decoder, zarrs (Rust) where installed,
zarr-python elsewhere.

zarr-python's own pipeline decodes on one event loop that holds the GIL, so a read cannot use a second core
and the statistics computed beside it share the GIL with it. The ``zarrs`` package (``pip install
actlab[fast]``) decodes in Rust threads. It verifies the CRC32C of every inner chunk and of the shard index
(``RuntimeError: the checksum is invalid``, caught by the readers and reported as damage naming the array
and epoch) and refuses an empty shard. Either way a read still passes through zarr-python's event loop.
The layer arrays of local stores (the bulk of every analysis's reads) skip it: :func:`read_slot` decodes their
shards itself (:mod:`actlab.store.shards`) where their codecs are those docs/store-format.md prescribes.

Pipelines (:data:`READ_PIPELINE_VARIABLE`):

- ``actlab`` (the default): layer shards through :mod:`actlab.store.shards`, every other read of a local
  store through zarrs where installed, zarr-python otherwise;
- ``zarrs``: every read of a local store through zarrs (fails when it is not installed);
- ``zarr-python``: every read through zarr-python's pipeline.

Only reads use them, and only of arrays in a local folder: :func:`for_reading` gives an array already opened
read-only a zarrs pipeline of its own, explicitly (no ambient ``zarr.config`` that a writer in the same
process could pick up). Writes, S3 and ``memory://`` stores stay on zarr-python's pipeline. Setting the
variable runs the corruption tests under each (``.ci/run``).
"""

from __future__ import annotations

import copy
import importlib.util
import os

import numpy as np
import zarr
from zarr.storage import LocalStore

from actlab.store import shards

READ_PIPELINE_VARIABLE = "ACTLAB_READ_PIPELINE"
"""Environment variable that picks the read pipeline: one of :data:`PIPELINES`; unset: ``actlab``."""

PIPELINES = ("actlab", "zarrs", "zarr-python")


def read_pipeline() -> str:
    """The pipeline reads of local stores use now: one of :data:`PIPELINES`.

    Raises
    ------
    ValueError
        :data:`READ_PIPELINE_VARIABLE` holds something else, or asks for zarrs where it is not installed.
    """
    chosen = os.environ.get(READ_PIPELINE_VARIABLE, "")
    if chosen == "":
        return "actlab"
    if chosen not in PIPELINES:
        raise ValueError(f"{READ_PIPELINE_VARIABLE} is {chosen!r}, not one of {PIPELINES}; set one of them or unset it")
    if chosen == "zarrs" and importlib.util.find_spec("zarrs") is None:
        raise ValueError(f"{READ_PIPELINE_VARIABLE} is 'zarrs' but the zarrs package is not installed; "
                         "pip install 'actlab[fast]' or unset it")
    return chosen


def for_reading(array: zarr.Array) -> zarr.Array:
    """``array`` (opened read-only) decoding through :func:`read_pipeline`.

    A local store read with zarrs (pipeline ``zarrs``, or ``actlab`` where zarrs is installed) gets a copy of the
    array with a zarrs pipeline that validates checksums; any other store, or zarr-python, gets ``array`` itself.
    """
    chosen = read_pipeline()
    uses_zarrs = chosen == "zarrs" or (chosen == "actlab" and importlib.util.find_spec("zarrs") is not None)
    if not isinstance(array.store, LocalStore) or not array.read_only or not uses_zarrs:
        return array
    from zarrs import ZarrsCodecPipeline

    with zarr.config.set({"codec_pipeline.validate_checksums": True, "codec_pipeline.strict": False}):
        pipeline = ZarrsCodecPipeline.from_array_metadata_and_store(array.metadata, array.store)
    opened = copy.copy(array.async_array)
    object.__setattr__(opened, "codec_pipeline", pipeline)  # how zarr itself sets it on the frozen AsyncArray
    return zarr.Array(opened)


def read_slot(array: zarr.Array, slot: int, rows: tuple[int, int] | None = None) -> np.ndarray:
    """Epoch slot ``slot`` of a per-epoch array (opened by :func:`for_reading`), or its samples
    ``rows[0]:rows[1]``: through :func:`actlab.store.shards.read_epoch` where the pipeline is ``actlab`` and the
    array is :func:`~actlab.store.shards.decodable`, through the array's own zarr pipeline otherwise.

    Raises
    ------
    ValueError, RuntimeError, or another exception of zarr or its codecs
        The shard is missing or damaged; the caller names the array and epoch.
    """
    if read_pipeline() == "actlab" and shards.decodable(array):
        return shards.read_epoch(array, slot, rows)
    return np.asarray(array[slot] if rows is None else array[slot, rows[0]:rows[1]])
