"""Reading the older store schemas as the current one: what each lacks, and where it keeps what has moved since.

docs/store-format.md, section "Versions", is the same for people. :func:`actlab.store.open_store` opens every schema
of :data:`~actlab.store.schema.READABLE_SCHEMAS` and shows it as the current one:

- schema 1 has no CRC32C on the arrays outside ``probes/image`` and the layer groups, no ``training/`` and
  ``evaluation/`` groups (read as empty), and unsharded ``weight`` and ``bias`` arrays;
- schemas 1 and 2 have layer specs without ``kind``, ``reduce`` and ``shape`` (every layer is dense) and no
  ``parameters`` root attr: each layer group holds the ``weight`` (epoch, unit, in_unit) and ``bias`` (epoch, unit)
  of its module, read as the parameters ``<module>.weight`` and ``<module>.bias``;
- schemas 1 to 3 have no ``parameters/epoch``: the slots of the parameters are labelled by ``layers/epoch``;
- schemas 1 to 3 have no shard digests; schema 4 keeps the SHA-256 of every whole shard file in
  ``layers/shard_sha256`` where schema 5 keeps the SHA-256 of its index and inner-chunk CRC32Cs in
  ``layers/shard_digest`` (:func:`shard_digest_algorithm`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actlab.store.schema import ARRAYS, parameter_dims


def current_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Root attributes of a store of any readable schema as the current schema has them (``schema_version`` kept).

    Before schema 3, each layer spec gets ``kind="dense"``, ``reduce="none"`` and ``shape=[width]``, and
    ``parameters`` lists the ``<module>.weight`` (width, fan_in) and ``<module>.bias`` (width,) of every layer, float32.
    Specs that are not mappings are left for the contract check to report.
    """
    current = dict(attrs)
    layers = attrs.get("layers")
    if attrs.get("schema_version", 0) >= 3 or not isinstance(layers, list):
        return current
    if not all(isinstance(layer, Mapping) for layer in layers):
        return current
    current["layers"] = [{"kind": "dense", "reduce": "none", "shape": [layer.get("width")], **layer} for layer in layers]
    current["parameters"] = [
        {"name": f"{layer.get('module')}.{kind}", "shape": shape, "dtype": "float32"}
        for layer in layers
        for kind, shape in (("weight", [layer.get("width"), layer.get("fan_in")]), ("bias", [layer.get("width")]))
    ]
    return current


def parameter_arrays(attrs: Mapping[str, Any]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Where each parameter of :func:`current_attrs` is stored: name -> (array path, its dimension_names)."""
    if attrs["schema_version"] >= 3:
        return {spec["name"]: (f"parameters/{spec['name']}", parameter_dims(spec["name"], len(spec["shape"])))
                for spec in attrs["parameters"]}
    return {f"{layer['module']}.{kind}": (f"layers/{layer['name']}/{kind}", dims)
            for layer in attrs["layers"]
            for kind, dims in (("weight", ("epoch", "unit", "in_unit")), ("bias", ("epoch", "unit")))}


def is_checksummed(version: int, path: str) -> bool:
    """Whether the array at ``path`` ends its codecs with CRC32C in a store of this schema (every array from 2 on;
    in schema 1 ``probes/image`` and the arrays of the layer groups)."""
    return version >= 2 or path == "probes/image" or (path.startswith("layers/") and path not in ARRAYS)


def has_subsets(version: int) -> bool:
    """Whether a store of this schema has the ``training/`` and ``evaluation/`` groups (from schema 2 on)."""
    return version >= 2


def shards_parameters(version: int) -> bool:
    """Whether a store of this schema shards its parameter arrays one epoch per shard (from schema 2 on)."""
    return version >= 2


def labels_parameters(version: int) -> bool:
    """Whether a store of this schema has ``parameters/epoch`` (from schema 4 on)."""
    return version >= 4


def has_digests(version: int) -> bool:
    """Whether stores of ``version`` keep a digest of every shard with its commit (:func:`shard_digests`) and
    an ``actlab_digest`` in their root and group attributes."""
    return version >= 4


def shard_digest_algorithm(version: int) -> str | None:
    """Which digest a store of schema ``version`` commits for each shard (:data:`actlab.store.integrity.SHARD_DIGEST_ARRAYS`):
    ``"chunk-crc32c"`` from schema 5 on, ``"sha256"`` (of the whole shard file) in schema 4, None before (none)."""
    return None if version < 4 else "sha256" if version == 4 else "chunk-crc32c"
