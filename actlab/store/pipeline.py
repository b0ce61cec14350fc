"""The codec pipeline that decodes the arrays actlab reads: zarrs (Rust) where installed, zarr-python elsewhere.

zarr-python's own pipeline decodes on one event loop that holds the GIL, so a read cannot use a second core
and the statistics computed beside it share the GIL with it. The ``zarrs`` package (``pip install
actlab[fast]``) decodes in Rust threads. It verifies the CRC32C of every inner chunk and of the shard index
(``RuntimeError: the checksum is invalid``, caught by the readers and reported as damage naming the array
and epoch) and refuses an empty shard.

Only reads use it, and only of arrays in a local folder: :func:`for_reading` gives an array already opened
read-only a zarrs pipeline of its own, explicitly (no ambient ``zarr.config`` that a writer in the same
process could pick up). Writes, S3 and ``memory://`` stores stay on zarr-python's pipeline.
``ACTLAB_READ_PIPELINE=zarr-python`` (or ``zarrs``, which fails when it is not installed) overrides the
choice, e.g. to run the corruption tests under both.
"""

from __future__ import annotations

import copy
import importlib.util
import os

import zarr
from zarr.storage import LocalStore

READ_PIPELINE_VARIABLE = "ACTLAB_READ_PIPELINE"
"""Environment variable that picks the read pipeline: ``zarrs`` or ``zarr-python``; unset: zarrs if installed."""

PIPELINES = ("zarrs", "zarr-python")


def read_pipeline() -> str:
    """The pipeline reads of local stores use now: ``"zarrs"`` or ``"zarr-python"``.

    Raises
    ------
    ValueError
        :data:`READ_PIPELINE_VARIABLE` holds something else, or asks for zarrs where it is not installed.
    """
    chosen = os.environ.get(READ_PIPELINE_VARIABLE, "")
    installed = importlib.util.find_spec("zarrs") is not None
    if chosen == "":
        return "zarrs" if installed else "zarr-python"
    if chosen not in PIPELINES:
        raise ValueError(f"{READ_PIPELINE_VARIABLE} is {chosen!r}, not one of {PIPELINES}; set one of them or unset it")
    if chosen == "zarrs" and not installed:
        raise ValueError(f"{READ_PIPELINE_VARIABLE} is 'zarrs' but the zarrs package is not installed; "
                         "pip install 'actlab[fast]' or unset it")
    return chosen


def for_reading(array: zarr.Array) -> zarr.Array:
    """``array`` (opened read-only) decoding through :func:`read_pipeline`.

    A local store read with zarrs gets a copy of the array with a zarrs pipeline that validates checksums;
    any other store, or zarr-python, gets ``array`` itself.
    """
    if not isinstance(array.store, LocalStore) or not array.read_only or read_pipeline() != "zarrs":
        return array
    from zarrs import ZarrsCodecPipeline

    with zarr.config.set({"codec_pipeline.validate_checksums": True, "codec_pipeline.strict": False}):
        pipeline = ZarrsCodecPipeline.from_array_metadata_and_store(array.metadata, array.store)
    opened = copy.copy(array.async_array)
    object.__setattr__(opened, "codec_pipeline", pipeline)  # how zarr itself sets it on the frozen AsyncArray
    return zarr.Array(opened)
