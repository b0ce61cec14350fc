"""The run store: the one place where actlab's on-disk schema is defined.

Recording (torch) writes through :class:`RunWriter`; analysis (xarray/dask) reads through :func:`open_store` and
checks the chunks of committed epochs with :func:`damaged_chunks`, each shard against the digest committed with its
epoch; root and group attributes are checked against their digest (:mod:`actlab.digest`) before they are used. The package imports neither half, only NumPy,
zarr and xarray; ``docs/store-format.md`` is the contract for people. Its modules, each importing only those
above it:

- :mod:`actlab.store.schema`: the contract (every name, dim, dtype and spec, the schema check);
- :mod:`actlab.store.versions`: reading the older schemas as the current one;
- :mod:`actlab.store.integrity`: shard-index and checksum checks, and the errors of a damaged store;
- :mod:`actlab.store.pipeline`: the codec pipeline reads decode through (zarrs where installed);
- :mod:`actlab.store.reader`: root attributes, identity, :func:`open_store` and :func:`damaged_chunks`;
- :mod:`actlab.store.writer`: :class:`RunWriter` and the allocation of a new store.
"""

from actlab.store.integrity import (
    breach_error,
    creating_error,
    damage_error,
    digest_mismatch,
    exception_line,
    file_shard_digest,
    inner_chunks,
    layer_array_name,
    parameter_array_name,
)
from actlab.store.pipeline import READ_PIPELINE_VARIABLE, for_reading, read_pipeline, read_slot
from actlab.store.reader import (
    MUTABLE_ROOT_ATTRS,
    StoreView,
    committed_state_digest,
    damaged_chunks,
    layer_shard_digests,
    missing_epochs,
    open_store,
    read_attrs,
    replaced_error,
    recorded_ensemble_id,
    recorded_run_id,
    store_folder_id,
    store_identity,
)
from actlab.store.schema import (
    ACTIVATION_DTYPES,
    ACTIVATIONS,
    ANALYSIS_DIRNAME,
    ARRAYS,
    CHECKPOINT_DIGEST_FILENAME,
    CHECKPOINT_FILENAME,
    CHUNK_VALUES,
    COMMIT_ARRAYS,
    DEFAULT_DYNAMICS_SOURCE,
    DYNAMICS,
    DYNAMICS_SOURCES,
    GROUPS,
    LAYER_KINDS,
    METRICS,
    PARAMETER_DTYPES,
    READABLE_SCHEMAS,
    REDUCTIONS,
    SAMPLE_CHUNK,
    SCHEMA_VERSION,
    SHARD_DIGESTS,
    STATUS_COMPLETE,
    STATUS_CREATING,
    STATUS_RECORDING,
    STORE_DIRNAME,
    UNCOMMITTED,
    WRITE_CONFIG,
    LayerSpec,
    ParameterSpec,
    ProbeSet,
    Subsets,
    check_schema,
    default_compressors,
    digested_arrays,
    layer_dims,
    layer_spec_problem,
    parameter_dims,
    parameter_spec_problem,
    store_location,
    store_path,
    user_metric_problem,
)
from actlab.store.writer import RunWriter

__all__ = [
    "ACTIVATIONS", "ACTIVATION_DTYPES", "ANALYSIS_DIRNAME", "ARRAYS", "CHECKPOINT_DIGEST_FILENAME",
    "CHECKPOINT_FILENAME", "CHUNK_VALUES", "COMMIT_ARRAYS", "DEFAULT_DYNAMICS_SOURCE", "DYNAMICS", "DYNAMICS_SOURCES",
    "GROUPS", "LAYER_KINDS", "METRICS",
    "MUTABLE_ROOT_ATTRS", "PARAMETER_DTYPES", "READABLE_SCHEMAS", "READ_PIPELINE_VARIABLE", "REDUCTIONS", "SAMPLE_CHUNK", "SCHEMA_VERSION",
    "SHARD_DIGESTS", "STATUS_COMPLETE", "STATUS_CREATING", "STATUS_RECORDING", "STORE_DIRNAME", "UNCOMMITTED",
    "WRITE_CONFIG", "LayerSpec", "ParameterSpec", "ProbeSet", "RunWriter", "StoreView", "Subsets",
    "breach_error", "check_schema", "committed_state_digest", "creating_error", "damage_error", "damaged_chunks",
    "default_compressors", "digested_arrays", "exception_line", "for_reading", "layer_array_name", "layer_dims",
    "layer_spec_problem", "missing_epochs", "open_store", "parameter_array_name", "parameter_dims",
    "parameter_spec_problem", "read_attrs", "read_pipeline", "read_slot", "recorded_ensemble_id", "recorded_run_id",
    "replaced_error", "store_folder_id", "store_identity", "store_location", "store_path", "user_metric_problem",
    "digest_mismatch", "file_shard_digest", "inner_chunks", "layer_shard_digests",
]
