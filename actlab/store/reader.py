"""Reading a run store: its root attributes and identity, and :func:`open_store`, a lazy committed-only view checked
against the contract; :func:`damaged_chunks` checks the shards of committed epochs (:mod:`actlab.store.integrity`).

Root and group attributes are read only after their digest matches (:mod:`actlab.digest`); a complete store must
hold every scheduled epoch as committed."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import dask.array as da
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec

from actlab.digest import DIGEST_KEY, digest_problem
from actlab.errors import StoreError
from actlab.location import Files, Location, files, is_remote, location, zarr_store
from actlab.store.integrity import (
    SHARD_DIGEST_ARRAYS,
    _check_sharded,
    _shard_problems,
    breach_error,
    chunk_crc_problem,
    creating_error,
    damage_error,
    digest_mismatch,
    dynamics_array_name,
    exception_line,
    file_shard_digest,
    inner_chunks,
    layer_array_name,
    parameter_array_name,
    shard_digest,
)
from actlab.store.pipeline import for_reading
from actlab.store.schema import (
    ACTIVATION_DTYPES,
    ARRAYS,
    COMMIT_ARRAYS,
    DEFAULT_DYNAMICS_SOURCE,
    DYNAMICS,
    DYNAMICS_SOURCES,
    GROUPS,
    METRICS,
    STATUS_COMPLETE,
    STATUS_CREATING,
    STATUS_RECORDING,
    STORE_DIRNAME,
    UNCOMMITTED,
    check_schema,
    digested_arrays,
    layer_dims,
    layer_spec_problem,
    parameter_dims,
    parameter_spec_problem,
    store_location,
    store_path,
    user_metric_problem,
)
from actlab.store.versions import (
    current_attrs,
    has_digests,
    has_subsets,
    is_checksummed,
    labels_parameters,
    parameter_arrays,
    shard_digest_algorithm,
    shards_parameters,
)

def store_folder_id(run: Location) -> tuple[int, int] | None:
    """Device and inode of a local run's store folder; None for a URL, or when the store folder cannot be found."""
    if is_remote(run):
        return None
    try:
        stat = os.stat(store_path(run))
    except OSError:  # none there, or the run path is a file
        return None
    return stat.st_dev, stat.st_ino


def store_identity(run: Location, attrs: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """What tells the store of one recording from that of another at the same place (a run replaced by
    ``actlab record --overwrite``, or deleted and recorded again): :func:`store_folder_id`, and the root attrs
    ``created`` and ``config.resolved.run_id`` where present.

    ``attrs`` are the root attributes just read from ``run`` (:func:`read_attrs`), when the caller has them; by
    default they are read here."""
    folder = store_folder_id(run)
    attrs = _root_attrs(run) if attrs is None else attrs
    return folder, attrs.get("created"), recorded_run_id(attrs)


MUTABLE_ROOT_ATTRS: tuple[str, ...] = ("status", "completed", "actlab_digest")
"""Root attributes a recording changes after its store is created (the digest follows the status); every other root
attribute is fixed at creation."""


def committed_state_digest(view: StoreView) -> str:
    """SHA-256 (hex) of what an analysis of ``view`` reads as the run's committed state: the root attributes but
    :data:`MUTABLE_ROOT_ATTRS` (canonical JSON: sorted keys, no spaces) and the committed metric and recorded epochs.

    An analysis records it with the run id (:func:`recorded_run_id`); saved results describe a run only while both match.
    """
    fixed = {key: value for key, value in view.attrs.items() if key not in MUTABLE_ROOT_ATTRS}
    state = {"attrs": fixed, "metric_epochs": [int(e) for e in view.metrics["epoch"].values],
             "recorded_epochs": [int(e) for e in view.epochs]}
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def recorded_run_id(attrs: Mapping[str, Any]) -> str | None:
    """The run id (``config.resolved.run_id``) in a store's root attributes; None where it has none."""
    config = attrs.get("config")
    resolved = config.get("resolved") if isinstance(config, Mapping) else None
    found = resolved.get("run_id") if isinstance(resolved, Mapping) else None
    return found if isinstance(found, str) else None


def recorded_ensemble_id(attrs: Mapping[str, Any]) -> str | None:
    """The id of the ensemble recording a replica's store belongs to (``config.resolved.ensemble.id``, the
    ``ensemble_id`` of the ensemble's marker when it wrote the store); None for a single run or a store without it."""
    config = attrs.get("config")
    resolved = config.get("resolved") if isinstance(config, Mapping) else None
    ensemble = resolved.get("ensemble") if isinstance(resolved, Mapping) else None
    found = ensemble.get("id") if isinstance(ensemble, Mapping) else None
    return found if isinstance(found, str) else None


def replaced_error(run_dir: str | os.PathLike) -> StoreError:
    """The error of a read from a run whose store was replaced since the run was opened."""
    return StoreError(f"{run_dir} was replaced by another recording while it was read; analyse it again")


def read_attrs(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Root attributes of a run store (local path or URL) as stored, after checking that this release reads its
    schema version (:data:`~actlab.store.schema.READABLE_SCHEMAS`)."""
    return _root_attrs(location(run_dir))


def _root_attrs(run_dir: Location) -> dict[str, Any]:
    """:func:`read_attrs` of a location already resolved (:func:`actlab.location.location`)."""
    path = store_location(run_dir)
    try:
        found = files(path).size("zarr.json") is not None
    except Exception as exc:  # no such bucket, no credentials, unreachable endpoint
        raise StoreError(f"{run_dir} cannot be reached ({exception_line(exc)}); check the URL and the storage "
                         "settings in the environment") from exc
    if not found:
        shown = run_dir if is_remote(run_dir) else os.path.abspath(run_dir)
        raise StoreError(f"{shown} is not an actlab run (no {STORE_DIRNAME} inside); check the path")
    try:
        attrs = dict(zarr.open_group(zarr_store(path, read_only=True), mode="r", zarr_format=3).attrs)
    except Exception as exc:  # unreadable metadata
        raise StoreError(f"{path} cannot be opened ({exception_line(exc)}); the store is damaged") from exc
    check_schema(attrs, run_dir)
    problem = digest_problem(attrs) if has_digests(attrs["schema_version"]) else None
    if problem:
        raise damage_error(run_dir, f"root attributes ({STORE_DIRNAME}/zarr.json) {problem}")
    return attrs


def _group_attrs(src: _Source, group: str, where: Location) -> dict[str, Any]:
    """Attributes of the group ``group`` after checking their digest (without the digest itself)."""
    try:
        attrs = dict(zarr.open_group(src.store, path=group, mode="r", zarr_format=3).attrs)
    except Exception as exc:
        raise damage_error(where, f"group {group} cannot be opened ({exception_line(exc)})") from exc
    problem = digest_problem(attrs) if has_digests(src.version) else None
    if problem:
        raise damage_error(where, f"attributes of group {group} ({STORE_DIRNAME}/{group}/zarr.json) {problem}")
    attrs.pop(DIGEST_KEY, None)
    return attrs


def _check_root_attrs(attrs: Mapping[str, Any], where: Location) -> None:
    """The binding root attributes: ``layers``, ``record_epochs``, ``n_epochs``, ``groups``, ``status``."""
    if attrs.get("status") == STATUS_CREATING:
        raise creating_error(where)
    if attrs.get("status") not in (STATUS_RECORDING, STATUS_COMPLETE):
        raise breach_error(where, f"root attr status is {attrs.get('status')!r}, not {STATUS_RECORDING!r} or {STATUS_COMPLETE!r}")
    n_epochs, record_epochs = attrs.get("n_epochs"), attrs.get("record_epochs")
    if not isinstance(n_epochs, int) or n_epochs < 0:
        raise breach_error(where, f"root attr n_epochs is {n_epochs!r}, not an integer >= 0")
    if (not isinstance(record_epochs, list) or not record_epochs or not all(isinstance(e, int) for e in record_epochs)
            or sorted(set(record_epochs)) != record_epochs or record_epochs[0] < 0 or record_epochs[-1] > n_epochs):
        raise breach_error(where, f"root attr record_epochs is {record_epochs!r}, not increasing integers within [0, n_epochs]")
    user_metrics = attrs.get("user_metrics", [])
    if not isinstance(user_metrics, list) or len(set(map(str, user_metrics))) != len(user_metrics):
        raise breach_error(where, f"root attr user_metrics is {user_metrics!r}, not a list of distinct names")
    for name in user_metrics:
        problem = user_metric_problem(name)
        if problem:
            raise breach_error(where, problem)
    if not isinstance(attrs.get("dynamics", False), bool):
        raise breach_error(where, f"root attr dynamics is {attrs['dynamics']!r}, not true or false")
    groups = attrs.get("groups")
    if not isinstance(groups, list) or sorted(map(str, groups)) != sorted(GROUPS) or len(groups) != len(GROUPS):
        raise breach_error(where, f"root attr groups is {groups!r}, not the names {list(GROUPS)} in some order")
    for key, expected, fewest, spec_problem in (("layers", "a non-empty list of layer specs", 1, layer_spec_problem),
                                                 ("parameters", "a list of parameter specs", 0, parameter_spec_problem)):
        specs = attrs.get(key)
        if not isinstance(specs, list) or len(specs) < fewest:
            raise breach_error(where, f"root attr {key} is {specs!r}, not {expected}")
        for spec in specs:
            problem = spec_problem(spec)
            if problem:
                raise breach_error(where, problem)
        names = [spec["name"] for spec in specs]
        if len(set(names)) != len(names):
            raise breach_error(where, f"root attr {key} repeats a name: {names}")


@dataclass(frozen=True)
class _Source:
    """A store opened for reading: what zarr opens (``store``), byte access to its files or objects (``files``), and
    its schema version."""

    store: Any
    files: Files
    version: int

    @classmethod
    def of(cls, run: Location, version: int) -> _Source:
        path = store_location(run)
        return cls(store=zarr_store(path, read_only=True), files=files(path), version=version)


def _open_array(src: _Source, path: str, dims: tuple[str, ...], dtypes: tuple[str, ...], sizes: dict[str, int],
                where: Location) -> zarr.Array:
    """Open one array and check it against the contract: dimension_names, dtype, dim lengths, CRC32C last.

    ``sizes`` holds the known length of each dim name and learns those not known yet.
    """
    try:
        array = zarr.open_array(src.store, path=path, mode="r", zarr_format=3)
    except Exception as exc:
        raise damage_error(where, f"array {path} is missing or its metadata cannot be read ({exception_line(exc)})") from exc
    found = tuple(array.metadata.dimension_names or ())
    if found != dims:
        raise breach_error(where, f"array {path} has dimension_names {found}, expected {dims}")
    if str(array.dtype) not in dtypes:
        raise breach_error(where, f"array {path} has dtype {array.dtype}, expected {' or '.join(dtypes)}")
    for dim, size in zip(dims, array.shape):
        if sizes.setdefault(dim, size) != size:
            raise breach_error(where, f"array {path} has {size} along {dim}, expected {sizes[dim]}")
    if is_checksummed(src.version, path) and (not array.compressors or not isinstance(array.compressors[-1], Crc32cCodec)):
        raise breach_error(where, f"array {path} does not end its codecs with crc32c")
    if path in COMMIT_ARRAYS and array.metadata.fill_value != UNCOMMITTED:
        raise breach_error(where, f"commit array {path} has fill_value {array.metadata.fill_value}, expected {UNCOMMITTED}")
    return array


def _missing_chunks(array: zarr.Array, files: Files, path: str, slot: int | None = None) -> list[str]:
    """The chunks of an unsharded array (of one epoch ``slot`` of it) that are missing or empty, one line each."""
    chunk_shape = array.metadata.chunk_grid.chunk_shape
    grid = [-(-s // c) for s, c in zip(array.shape, chunk_shape)]
    if slot is not None:
        grid[0] = 1
    missing = []
    for coords in np.ndindex(*grid):
        key = array.metadata.encode_chunk_key(coords if slot is None else (slot, *coords[1:]))
        if not files.size(f"{path}/{key}"):
            missing.append(f"lacks chunk {STORE_DIRNAME}/{path}/{key} (missing or empty)")
    return missing


def _read(src: _Source, path: str, sizes: dict[str, int], where: Location,
          spec: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Values and attrs of one (unsharded) array of :data:`ARRAYS` (or of dims and dtypes ``spec``), every chunk
    present and checksummed."""
    array = _open_array(src, path, *(spec or ARRAYS[path]), sizes, where)
    if array.shards is not None:
        raise breach_error(where, f"array {path} is sharded; only the arrays of layers/<layer> and parameters/ are")
    missing = _missing_chunks(array, src.files, path)
    if missing:
        raise damage_error(where, f"array {path} {missing[0]}")
    try:
        return np.asarray(for_reading(array)[...]), dict(array.attrs)
    except Exception as exc:
        raise damage_error(where, f"array {path} cannot be read ({exception_line(exc)})") from exc


def _committed_slots(values: np.ndarray, expected: Sequence[int], path: str, where: Location) -> np.ndarray:
    """Indices of the committed slots of a commit array; each slot holds -1 or its expected epoch."""
    bad = np.flatnonzero((values != UNCOMMITTED) & (values != np.asarray(expected)))
    if len(bad):
        raise damage_error(where, f"array {path} holds {int(values[bad[0]])} in slot {int(bad[0])}, "
                            f"expected {int(expected[bad[0]])} or {UNCOMMITTED}")
    return np.flatnonzero(values != UNCOMMITTED)


def _commits(src: _Source, attrs: Mapping[str, Any], where: Location) -> tuple[tuple[np.ndarray, dict[str, Any], np.ndarray], ...]:
    """The two commit arrays: for ``metrics/epoch`` and ``layers/epoch``, (values, attrs, indices of committed slots)."""
    found = []
    for path, expected in (("metrics/epoch", range(attrs["n_epochs"] + 1)), ("layers/epoch", attrs["record_epochs"])):
        values, array_attrs = _read(src, path, {"epoch": len(expected)}, where)
        found.append((values, array_attrs, _committed_slots(values, expected, path, where)))
    return tuple(found)


@dataclass(frozen=True)
class StoreView:
    """Lazy, committed-only view of a run store.

    Attributes
    ----------
    path : Path or str
        The run directory, or the run URL.
    attrs : dict
        Root attributes (config, dataset, layers, record_epochs, status, ...).
    metrics : xr.Dataset
        Dims (epoch,): every committed epoch's metrics, in memory, and the user metrics of root attr
        ``user_metrics`` (reported by the training loop of an :class:`actlab.Recorder`).
    probes : xr.Dataset
        Dims (sample, channel, height, width), in memory: ``image`` with probe coords ``group`` (str, decoded
        with root attr ``groups``), ``label``, ``original_label``, ``is_noisy``, ``dataset_index``.
    training : xr.Dataset
        Dims (train_sample,): ``dataset_index``, ``label``, ``original_label``, ``is_noisy`` of every training
        sample used, in training order.
    evaluation : xr.Dataset
        Dims (test_sample,): ``dataset_index`` and ``label`` of every evaluated test sample.
    layers : dict of str -> xr.Dataset
        Per layer, in forward order: ``preact`` (epoch, sample, unit), or (epoch, sample, channel, y, x) for an
        unreduced conv layer, dask-backed with one chunk per recorded epoch; coords ``epoch`` and the probe coords.
    parameters : xr.Dataset
        Every state_dict entry by name, dims (epoch, ``<name>[0]``, ...), dask-backed with one chunk per recorded
        epoch; coord ``epoch``.
    dynamics : xr.Dataset or None
        Every training sample's trajectory (:data:`~actlab.store.schema.DYNAMICS`), dims (epoch, train_sample),
        every committed epoch, dask-backed with one chunk per epoch; coords ``epoch`` and those of ``training``.
        None for a store without ``dynamics/`` (schema 3, or recorded without per-sample evaluation).
    """

    path: Location
    attrs: dict[str, Any]
    metrics: xr.Dataset
    probes: xr.Dataset
    training: xr.Dataset
    evaluation: xr.Dataset
    layers: dict[str, xr.Dataset]
    parameters: xr.Dataset
    dynamics: xr.Dataset | None = None

    @property
    def layer_names(self) -> list[str]:
        """Layer names in forward order."""
        return list(self.layers)

    @property
    def epochs(self) -> np.ndarray:
        """Committed recorded epochs."""
        first = next(iter(self.layers.values()))
        return first["epoch"].values


def _dataset(src: _Source, group: str, names: Sequence[str], sizes: dict[str, int], where: Location,
             keep: np.ndarray | None = None) -> xr.Dataset:
    variables = {}
    for name in names:
        values, attrs = _read(src, f"{group}/{name}", sizes, where)
        dims = ARRAYS[f"{group}/{name}"][0]
        variables[name] = (dims, values if keep is None else values[keep], attrs)
    return xr.Dataset(variables)


def _check_labels(ds: xr.Dataset, group: str, n_classes: int | None, where: Location) -> None:
    """Labels within the classes; ``is_noisy`` is true exactly where the label differs from the original label."""
    for name in ("label", "original_label"):
        if name in ds and len(ds[name]) and (ds[name].min() < 0 or (n_classes is not None and ds[name].max() >= n_classes)):
            raise damage_error(where, f"array {group}/{name} holds labels outside 0..{(n_classes or 1) - 1}")
    if "is_noisy" in ds and np.any((ds["label"].values != ds["original_label"].values) != ds["is_noisy"].values):
        raise damage_error(where, f"array {group}/is_noisy disagrees with {group}/label != {group}/original_label")


def _check_probes(probes: xr.Dataset, training: xr.Dataset, evaluation: xr.Dataset, where: Location) -> None:
    """Probe groups agree with is_noisy; training probes agree with ``training/``, test probes with ``evaluation/``."""
    group = probes["group"].values
    for name, expected in (("clean", False), ("noisy", True), ("test", False)):
        if np.any(probes["is_noisy"].values[group == name] != expected):
            raise damage_error(where, f"array probes/is_noisy is {not expected} for a {name} probe")
    for subset_name, subset, names, mask in (("training", training, ("label", "original_label", "is_noisy"), group != "test"),
                                             ("evaluation", evaluation, ("label",), group == "test")):
        index = subset["dataset_index"].values
        wanted = probes["dataset_index"].values[mask]
        if not len(wanted):
            continue
        order = np.argsort(index, kind="stable")
        pos = order[np.minimum(np.searchsorted(index, wanted, sorter=order), len(index) - 1)] if len(index) else None
        if pos is None or np.any(index[pos] != wanted):
            raise damage_error(where, f"array probes/dataset_index names a sample missing from {subset_name}/dataset_index")
        for name in names:
            if np.any(probes[name].values[mask] != subset[name].values[pos]):
                raise damage_error(where, f"array probes/{name} disagrees with {subset_name}/{name}")


def open_store(run_dir: str | os.PathLike, *, attrs: Mapping[str, Any] | None = None) -> StoreView:
    """Open a run store, showing committed epochs only, after checking it against the contract.

    A store of an older schema (:data:`~actlab.store.schema.READABLE_SCHEMAS`) is shown as the current one
    (:mod:`actlab.store.versions`); ``attrs["schema_version"]`` keeps its version.

    Every array outside the layer groups is read (and its CRC32C checked) here; the layer arrays stay lazy.
    Check their chunks with :func:`damaged_chunks`.

    Parameters
    ----------
    run_dir : path or URL
        A run directory (``runs/<name>``) or run URL (``s3://bucket/runs/<name>``, see :mod:`actlab.location`),
        recorded or still recording.
    attrs : dict, optional
        The root attributes just read from ``run_dir`` by :func:`read_attrs`, when the caller has them (it then
        passes the same object to :func:`store_identity` and :func:`damaged_chunks`); default: read them here.

    Returns
    -------
    StoreView

    Raises
    ------
    StoreError
        Not a run, a newer schema version, an array missing, damaged or not as ``docs/store-format.md`` says;
        the message names the array.
    """
    run_dir = location(run_dir)
    attrs = current_attrs(_root_attrs(run_dir) if attrs is None else attrs)
    _check_root_attrs(attrs, run_dir)
    path = _Source.of(run_dir, attrs["schema_version"])
    n_epochs, record_epochs = attrs["n_epochs"], attrs["record_epochs"]

    (metric_epochs, epoch_attrs, keep), (layer_epochs, layer_epoch_attrs, committed) = _commits(path, attrs, run_dir)
    metrics = _dataset(path, "metrics", list(METRICS), {"epoch": n_epochs + 1}, run_dir, keep)
    for name in attrs.get("user_metrics", []):
        values, metric_attrs = _read(path, f"metrics/{name}", {"epoch": n_epochs + 1}, run_dir, (("epoch",), ("float64",)))
        metrics[name] = ("epoch", values[keep], metric_attrs)
    metrics = metrics.assign_coords(epoch=("epoch", metric_epochs[keep], epoch_attrs))

    sizes: dict[str, int] = {}
    probes = _dataset(path, "probes", ["sample", "dataset_index", "group", "label", "original_label", "is_noisy", "image"],
                      sizes, run_dir)
    groups = np.asarray(attrs["groups"], dtype=object)
    codes = probes["group"].values
    if len(codes) and (codes.min() < 0 or codes.max() >= len(groups)):
        raise damage_error(run_dir, f"array probes/group holds codes outside 0..{len(groups) - 1} (root attr groups)")
    probes = probes.assign_coords(group=("sample", groups[codes], probes["group"].attrs))
    probes = probes.set_coords(["sample", "dataset_index", "label", "original_label", "is_noisy"])
    if has_subsets(path.version):
        training = _dataset(path, "training", ["dataset_index", "label", "original_label", "is_noisy"], sizes, run_dir)
        evaluation = _dataset(path, "evaluation", ["dataset_index", "label"], sizes, run_dir)
    else:
        missing = {"description": f"not stored in schema {path.version}"}
        training, evaluation = xr.Dataset(attrs=missing), xr.Dataset(attrs=missing)
    class_names = attrs.get("dataset", {}).get("class_names")
    for name, ds in (("probes", probes), ("training", training), ("evaluation", evaluation)):
        _check_labels(ds, name, len(class_names) if class_names else None, run_dir)
    if has_subsets(path.version):
        _check_probes(probes, training, evaluation, run_dir)

    if attrs["status"] == STATUS_COMPLETE and (len(keep) < n_epochs + 1 or len(committed) < len(record_epochs)):
        raise damage_error(run_dir, f"root attr status is {STATUS_COMPLETE!r} but the commit arrays hold "
                           f"{len(keep)} of {n_epochs + 1} metric epochs and {len(committed)} of {len(record_epochs)} "
                           "recorded epochs")
    if has_digests(path.version):
        for group in ("metrics", "probes", "training", "evaluation", "layers", "parameters",
                      *(f"layers/{spec['name']}" for spec in attrs["layers"])):
            _group_attrs(path, group, run_dir)
    probe_coords = {name: probes[name] for name in ("group", "dataset_index", "label", "original_label", "is_noisy")}
    layers: dict[str, xr.Dataset] = {}
    for spec in attrs["layers"]:
        name = spec["name"]
        dims = layer_dims(spec["kind"], spec["reduce"])
        layer_sizes = {"epoch": len(record_epochs), "sample": probes.sizes["sample"],
                       **dict(zip(dims[2:], spec["shape"]))}
        _check_sharded(_open_array(path, f"layers/{name}/preact", dims, ACTIVATION_DTYPES, layer_sizes, run_dir), run_dir)
        try:
            node = xr.open_zarr(path.store, group=f"layers/{name}", consolidated=False, zarr_format=3,
                                chunks={dim: 1 if dim == "epoch" else -1 for dim in dims})
        except Exception as exc:  # the group's zarr.json missing, truncated or not a group's
            raise damage_error(run_dir, f"group layers/{name} cannot be opened ({exception_line(exc)})") from exc
        node = node.assign_coords(epoch=("epoch", layer_epochs, layer_epoch_attrs)).isel(epoch=committed)
        node = node.assign_coords(sample=probes["sample"].values, **probe_coords)
        node.attrs.pop(DIGEST_KEY, None)
        node.attrs.update(spec)
        layers[name] = node
    variables = {}
    stored = parameter_arrays(attrs)
    for spec in attrs["parameters"]:
        array_path, stored_dims = stored[spec["name"]]
        sizes = {"epoch": len(record_epochs), **dict(zip(stored_dims[1:], spec["shape"]))}
        array = _open_array(path, array_path, stored_dims, (spec["dtype"],), sizes, run_dir)
        if shards_parameters(path.version):
            _check_sharded(array, run_dir)
        dims = parameter_dims(spec["name"], len(spec["shape"]))
        variables[spec["name"]] = (dims, da.from_zarr(array, chunks=(1, *array.shape[1:])), dict(array.attrs))
    if labels_parameters(path.version):
        parameter_epochs, _ = _read(path, "parameters/epoch", {"epoch": len(record_epochs)}, run_dir)
        written = _committed_slots(parameter_epochs, record_epochs, "parameters/epoch", run_dir)
        if not set(committed) <= set(written):
            raise damage_error(run_dir, "array parameters/epoch lacks an epoch that layers/epoch commits")
    parameters = xr.Dataset(variables, coords={"epoch": ("epoch", layer_epochs, layer_epoch_attrs)}).isel(epoch=committed)
    return StoreView(path=run_dir, attrs=attrs, metrics=metrics, probes=probes, training=training,
                     evaluation=evaluation, layers=layers, parameters=parameters,
                     dynamics=_dynamics(path, attrs, training, run_dir))


def _dynamics_arrays(src: _Source, attrs: Mapping[str, Any], n_train: int,
                     where: Location) -> tuple[np.ndarray, dict[str, Any], dict[str, zarr.Array]]:
    """Commit array values and attrs, and every array of ``dynamics/`` checked against the contract, of a store whose
    root attr ``dynamics`` is true (the callers check it first)."""
    n_epochs = attrs["n_epochs"]
    values, epoch_attrs = _read(src, "dynamics/epoch", {"epoch": n_epochs + 1}, where)
    arrays = {}
    for name, (_, _, dtype) in DYNAMICS.items():
        array = _open_array(src, f"dynamics/{name}", ("epoch", "train_sample"), (dtype,),
                            {"epoch": n_epochs + 1, "train_sample": n_train}, where)
        _check_sharded(array, where)
        arrays[name] = array
    return values, epoch_attrs, arrays


def _dynamics(src: _Source, attrs: Mapping[str, Any], training: xr.Dataset, where: Location) -> xr.Dataset | None:
    """The committed epochs of ``dynamics/`` as a lazy Dataset (:attr:`StoreView.dynamics`); None without it."""
    if attrs.get("dynamics") is not True:
        return None
    values, epoch_attrs, arrays = _dynamics_arrays(src, attrs, training.sizes["train_sample"], where)
    committed = _committed_slots(values, range(attrs["n_epochs"] + 1), "dynamics/epoch", where)
    variables = {name: (("epoch", "train_sample"), da.from_zarr(array, chunks=(1, array.shape[1])), dict(array.attrs))
                 for name, array in arrays.items()}
    coords = {"epoch": ("epoch", values, epoch_attrs),
              **{name: ("train_sample", training[name].values, training[name].attrs) for name in training.data_vars}}
    group_attrs = _group_attrs(src, "dynamics", where)
    source = group_attrs.get("source", DEFAULT_DYNAMICS_SOURCE)
    if source not in DYNAMICS_SOURCES:
        raise breach_error(where, f"attribute source of group dynamics is {source!r}, not one of {list(DYNAMICS_SOURCES)}")
    return xr.Dataset(variables, coords=coords, attrs={**group_attrs, "source": source}).isel(epoch=committed)


def missing_epochs(run_dir: str | os.PathLike) -> tuple[list[int], list[int]]:
    """The scheduled epochs that a run store does not hold as committed, read from its commit arrays now.

    Returns
    -------
    (list of int, list of int)
        Epochs of 0..n_epochs whose metrics are not committed, and record epochs whose activations are not.
    """
    run_dir = location(run_dir)
    attrs = _root_attrs(run_dir)
    _check_root_attrs(attrs, run_dir)
    (_, _, metric_slots), (_, _, record_slots) = _commits(_Source.of(run_dir, attrs["schema_version"]), attrs, run_dir)
    record_epochs = attrs["record_epochs"]
    return (sorted(set(range(attrs["n_epochs"] + 1)) - {int(e) for e in metric_slots}),
            sorted(set(record_epochs) - {int(record_epochs[i]) for i in record_slots}))


def layer_shard_digests(run_dir: str | os.PathLike, *,
                        attrs: Mapping[str, Any] | None = None) -> tuple[str, dict[str, np.ndarray]] | None:
    """The digest committed with each epoch slot of each layer's ``preact`` shard (``layers/shard_digest``, or
    ``layers/shard_sha256`` in a schema-4 store).

    Parameters
    ----------
    run_dir : path or URL
    attrs : dict, optional
        As for :func:`open_store`.

    Returns
    -------
    (str, dict of str -> ndarray of uint8, shape (epoch slot, 32)), or None
        The digest (:data:`~actlab.store.integrity.SHARD_DIGEST_ARRAYS`), and by layer name the digest of each slot;
        rows of uncommitted slots are zeros. None for a schema without shard digests.
    """
    run_dir = location(run_dir)
    attrs = current_attrs(_root_attrs(run_dir) if attrs is None else attrs)
    path = _Source.of(run_dir, attrs["schema_version"])
    algorithm = shard_digest_algorithm(path.version)
    if algorithm is None:
        return None
    layer_names = [spec["name"] for spec in attrs["layers"]]
    digested = digested_arrays(layer_names, [spec["name"] for spec in attrs["parameters"]])
    digests = _shard_digests(path, algorithm, len(attrs["record_epochs"]), len(digested), run_dir)
    return algorithm, {name: digests[:, digested.index(f"layers/{name}/preact")] for name in layer_names}


def _shard_digests(src: _Source, algorithm: str, slots: int, shards: int, where: Location) -> np.ndarray:
    """The array of shard digests (R, K, 32) of a store that keeps them."""
    array_path, spec, _ = SHARD_DIGEST_ARRAYS[algorithm]
    digests, _ = _read(src, array_path, dict(zip(spec[0], (slots, shards, 32))), where, spec)
    return digests


def damaged_chunks(run_dir: str | os.PathLike, *, attrs: Mapping[str, Any] | None = None,
                   layer_digests: bool = True) -> list[str]:
    """Every problem with the shards of the committed epochs, one line each, naming the array and epoch.

    Zarr reads a missing or empty shard, or a missing inner chunk, as its fill value (NaN); this check
    turns silent NaNs into an error the caller can report. It reads the shard indexes at the file
    tails and checks their CRC32C, that every inner chunk is present and lies within the file; then it compares
    every intact shard's digest with the one committed with its epoch (``layers/shard_digest``, so that a valid
    shard moved from another epoch or copied from another run is found too) and reads it whole to check the CRC32C of
    each inner chunk (in a schema-4 store: the SHA-256 of the whole file in ``layers/shard_sha256``, which covers both).

    Parameters
    ----------
    run_dir : path or URL
    attrs : dict, optional
        As for :func:`open_store`.
    layer_digests : bool
        Check the layers' ``preact`` shards that way too (every byte of the activations read); False leaves
        that to a reader that checks each shard as it reads it (:func:`layer_shard_digests`,
        :func:`actlab.analysis.run.read_block`), so the bytes are read once. Parameter shards are always compared.

    Returns
    -------
    list of str
        E.g. ``"array layers/hidden2/preact (layer hidden2 epoch 30) lacks chunk store.zarr/layers/hidden2/preact/c/3/0/0"``;
        empty when the store is intact.
    """
    run_dir = location(run_dir)
    attrs = current_attrs(_root_attrs(run_dir) if attrs is None else attrs)
    _check_root_attrs(attrs, run_dir)
    path = _Source.of(run_dir, attrs["schema_version"])
    record_epochs = attrs["record_epochs"]
    slots, _ = _read(path, "layers/epoch", {"epoch": len(record_epochs)}, run_dir)
    committed = _committed_slots(slots, record_epochs, "layers/epoch", run_dir)
    layer_names = [spec["name"] for spec in attrs["layers"]]
    parameter_names = [spec["name"] for spec in attrs["parameters"]]
    problems = []
    arrays = [(f"layers/{spec['name']}/preact", lambda epoch, layer=spec["name"]: layer_array_name(layer, "preact", epoch))
              for spec in attrs["layers"]]
    arrays += [(array_path, lambda epoch, name=name: parameter_array_name(name, epoch))
               for name, (array_path, _) in parameter_arrays(attrs).items()]
    digest_row: dict[str, int] = {}
    algorithm = shard_digest_algorithm(path.version)
    if algorithm is not None:
        digested = digested_arrays(layer_names, parameter_names)
        digests = _shard_digests(path, algorithm, len(record_epochs), len(digested), run_dir)
        digest_row = {array_path: shard for shard, array_path in enumerate(digested)}
    for array_path, describe in arrays:
        array = zarr.open_array(path.store, path=array_path, mode="r", zarr_format=3)
        if not (array_path.startswith("layers/") and array_path.endswith("/preact") or shards_parameters(path.version)):
            problems += [f"{describe(record_epochs[slot])} {problem}"
                         for slot in committed for problem in _missing_chunks(array, path.files, array_path, int(slot))]
            continue
        _check_sharded(array, run_dir)
        shard = digest_row.get(array_path)
        if shard is not None and any(inner < side for inner, side in
                                     zip(array.metadata.chunk_grid.chunk_shape[1:], array.shape[1:])):
            raise breach_error(run_dir, f"array {array_path} has more than one shard per epoch")
        if not layer_digests and array_path.startswith("layers/"):
            shard = None
        n_chunks = inner_chunks(array)
        for slot in (int(slot) for slot in committed):
            found = _shard_problems(array, path.files, array_path, slot)
            if not found and shard is not None:
                key = f"{array_path}/{array.metadata.encode_chunk_key((slot,) + (0,) * (array.ndim - 1))}"
                committed_digest = digests[slot, shard].tobytes()
                if algorithm == "chunk-crc32c":  # the shard read once: its digest, then each inner chunk's CRC32C
                    data = path.files.read(key)
                    if shard_digest(lambda start, stop: data[start:stop], len(data), n_chunks) != committed_digest:
                        found = [digest_mismatch(key, algorithm)]
                    elif (problem := chunk_crc_problem(data, n_chunks, key)) is not None:
                        found = [problem]
                elif file_shard_digest(path.files, key, algorithm, n_chunks) != committed_digest:
                    found = [digest_mismatch(key, algorithm)]
            problems += [f"{describe(record_epochs[slot])} {problem}" for problem in found]
    if attrs.get("dynamics") is not True:
        return problems
    n_train = zarr.open_array(path.store, path="training/dataset_index", mode="r", zarr_format=3).shape[0]
    values, _, dynamics = _dynamics_arrays(path, attrs, n_train, run_dir)
    epochs = _committed_slots(values, range(attrs["n_epochs"] + 1), "dynamics/epoch", run_dir)
    problems += [f"{dynamics_array_name(name, int(epoch))} {problem}" for name, array in dynamics.items()
                 for epoch in epochs for problem in _shard_problems(array, path.files, f"dynamics/{name}", int(epoch))]
    return problems
