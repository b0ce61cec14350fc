"""Writing a run store: :class:`RunWriter`, the one writer of a store, and the allocation of a new one.

Commit protocol
---------------
Arrays are allocated at full size when the run is created. Each write of a
chunk or metadata document is atomic (zarr's ``LocalStore`` writes to a
temporary file and renames it). A recorded epoch is written as whole shards,
one per layer and array (a single writer, no read-modify-write), and becomes
visible only when its slot in ``layers/epoch`` is set, which is written last.
Metrics are committed the same way through ``metrics/epoch``. Readers keep the
slots whose epoch is not -1, so a store killed at any moment still opens and
shows every committed epoch. Root attribute ``status`` reads ``"recording"``
until the run finishes and ``"complete"`` after (the partial marker), which is
set only once every scheduled epoch is read back as committed.

Before a commit, the digest of every shard of the epoch (taken from the bytes
as they are written: :func:`actlab.store.integrity.shard_digest`) goes to
``layers/shard_digest``, and every file written
for the commit, digests included, is flushed to disk (``fsync``, once per
commit); the commit array is written, and flushed, after them. Root and group
attributes carry the digest of their content (:mod:`actlab.digest`).

A run may also live at a URL (:mod:`actlab.location`). Object stores have no rename, so such a store is
allocated in place: its root metadata is written first with status ``"creating"`` (refused by readers)
and set to ``"recording"`` once every array exists; each chunk is one atomic PUT. Every integrity check
reads object sizes and byte ranges through fsspec, for local folders and URLs alike.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.core.buffer import Buffer
from zarr.storage import LocalStore, WrapperStore

from actlab.digest import with_digest
from actlab.errors import OutputError, StoreError
from actlab.files import PARTIAL_SUFFIX, follow_umask, fsync_paths, marker_kind, read_marker, swap_in, write_marker
from actlab.location import files, is_remote, location, zarr_store
from actlab.store.integrity import creating_error, inner_chunks, shard_digest
from actlab.store.reader import missing_epochs, read_attrs
from actlab.store.schema import (
    ARRAYS,
    CHUNK_VALUES,
    COMMIT_ARRAYS,
    DEFAULT_DYNAMICS_SOURCE,
    DYNAMICS,
    DYNAMICS_SOURCES,
    GROUPS,
    METRICS,
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
    user_metric_problem,
    store_location,
    store_path,
)

class _TrackedStore(WrapperStore):
    """A store that remembers every chunk written through it since :meth:`drain`, with the digest of each shard of
    the arrays of :attr:`digested` (:func:`~actlab.store.integrity.shard_digest`), and (in a local folder) the folders
    those writes created, with the folder that gained each.

    The writer takes the digests of the shards it has just written from here (no second read), and flushes
    exactly those files and folders before the commit that makes them visible.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.written: dict[str, bytes | None] = {}
        self.folders: set[Path] = set()
        self.digested: dict[str, int] = {}
        """Path of each array whose shards are digested -> its inner chunks per shard."""
        self.keys: set[str] = set()
        """Every key written through this store, metadata included (what a failed new run at a URL deletes)."""

    async def set(self, key: str, value: Buffer) -> None:
        self.keys.add(key)
        if isinstance(self._store, LocalStore):
            folder = self._store.root / key
            while not (folder := folder.parent).is_dir():  # created by this write: its entry is in the folder above
                self.folders.add(folder)
            self.folders.add(folder)
        await self._store.set(key, value)
        if not key.endswith("zarr.json"):
            n_chunks = self.digested.get(key.rsplit("/c/", 1)[0])
            if n_chunks is None:
                self.written[key] = None
            else:
                data = memoryview(value.as_buffer_like()).cast("B")
                self.written[key] = shard_digest(lambda start, stop: bytes(data[start:stop]), len(data), n_chunks)

    def drain(self) -> tuple[dict[str, bytes | None], set[Path]]:
        """What was written since the last call: (store key -> digest of a digested shard, None for any other chunk;
        folders made or changed), and forget it."""
        written, folders, self.written, self.folders = self.written, self.folders, {}, set()
        return written, folders


def _tracked(location_: Any) -> _TrackedStore:
    """A :class:`_TrackedStore` over the local folder or URL of a store."""
    store = LocalStore(location_) if isinstance(location_, Path) else location_
    return _TrackedStore(store)


def _writable(array: zarr.Array) -> zarr.Array:
    """``array`` with :data:`WRITE_CONFIG`: the array configuration is not stored, so a reopened array needs it again
    (without it zarr skips, or deletes, a chunk that equals the fill value: an all-NaN metric, a zero counter)."""
    return array.with_config(WRITE_CONFIG)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so that attrs hold only plain types."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


class RunWriter:
    """Writes one run store; the only writer of a store at any time.

    Create a new store with :meth:`create`, reopen one for ``--resume`` with
    :meth:`open`. Writes are synchronous; the record side may call them from
    a background thread.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = location(run_dir)
        self._store = _tracked(zarr_store(store_location(self.run_dir), read_only=False))
        self._root = zarr.open_group(self._store, mode="r+", zarr_format=3)
        self.attrs = dict(self._root.attrs)
        check_schema(self.attrs, self.run_dir, writing=True)
        self.record_epochs: list[int] = list(self.attrs["record_epochs"])
        self.layer_names: list[str] = [layer["name"] for layer in self.attrs["layers"]]
        self.parameter_names: list[str] = [parameter["name"] for parameter in self.attrs["parameters"]]
        self._slot = {epoch: i for i, epoch in enumerate(self.record_epochs)}
        self._metrics = self._root["metrics"]
        self._layers = self._root["layers"]
        self._parameters = self._root["parameters"]
        self._metric_epoch = self._metrics["epoch"][...]
        self.user_metrics: list[str] = list(self.attrs.get("user_metrics", []))
        self._metric_values = {name: self._metrics[name][...] for name in (*METRICS, *self.user_metrics)}
        self._record_epoch = self._layers["epoch"][...]
        self._digests = self._root[SHARD_DIGESTS]
        self._digested = digested_arrays(self.layer_names, self.parameter_names)
        self._store.digested = {path: inner_chunks(self._root[path]) for path in self._digested}
        self._parameter_epoch = self._parameters["epoch"][...]
        self.dynamics = self.attrs.get("dynamics") is True
        if self.dynamics:
            self._dynamics = self._root["dynamics"]
            self._dynamics_epoch = self._dynamics["epoch"][...]

    # -- creation -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        run_dir: str | os.PathLike,
        *,
        config: Mapping[str, Any],
        dataset: Mapping[str, Any],
        layers: Sequence[LayerSpec],
        probes: ProbeSet,
        subsets: Subsets,
        record_epochs: Sequence[int],
        n_epochs: int,
        parameters: Sequence[ParameterSpec] = (),
        activation_dtype: str = "float32",
        dynamics: bool = False,
        dynamics_source: str = DEFAULT_DYNAMICS_SOURCE,
        replace: bool = False,
    ) -> RunWriter:
        """Allocate an empty, full-size store inside the run folder ``run_dir``.

        The folder is created when missing and marked as a run (:func:`actlab.files.write_marker`) of the run id
        ``config["resolved"]["run_id"]`` (while a store is replaced, ``{"run_id": NEW, "replaces": OLD}``, since
        either may be in place);
        ``actlab.record`` has claimed it and holds its writer lock (:func:`actlab.files.writer_lock`).
        The store is built in a hidden sibling, ``.store.zarr.XXXX.partial``, and renamed into place
        only when complete, so a failure leaves no half-written store; with ``replace``, an existing
        store is swapped out in one atomic exchange and then deleted.

        A URL (object stores have no rename) is allocated in place instead: its root metadata is
        written first with status ``"creating"``, which readers refuse, and set to ``"recording"``
        only once every array is allocated, so a failure leaves a store that says it is unfinished.
        An existing store at the URL is refused, and so is ``replace``.

        Parameters
        ----------
        run_dir : path or URL
            Run folder (``runs/<name>``), or a run URL (``s3://bucket/runs/<name>``).
        config : mapping
            The resolved run configuration (JSON-serialisable).
        dataset : mapping
            Dataset description: name, class_names, sizes, checksums.
        layers : sequence of LayerSpec
            Captured layers in forward order; ``activation`` one of :data:`ACTIVATIONS`.
        probes : ProbeSet
            The probe samples.
        subsets : Subsets
            The training samples used (with their labels) and the test samples evaluated.
        record_epochs : sequence of int
            Epochs whose activations are recorded, ascending, within [0, n_epochs].
        n_epochs : int
            Number of training epochs; metrics are kept for epochs 0..n_epochs.
        parameters : sequence of ParameterSpec
            The model's state_dict entries, stored at every recorded epoch.
        activation_dtype : {"float32", "float16"}
        dynamics : bool
            Allocate ``dynamics/``: every training sample's trajectory at every epoch (:meth:`write_dynamics`).
        dynamics_source : {"evaluation", "training"}
            Where the trajectories come from (:data:`DYNAMICS_SOURCES`), the attribute ``source`` of ``dynamics/``.
        replace : bool
            Replace the store already in ``run_dir`` (``--overwrite``); otherwise one there is an error.
        """
        run_dir = location(run_dir)
        record_epochs = [int(e) for e in record_epochs]
        if activation_dtype not in ("float32", "float16"):
            raise ValueError(f"activation_dtype must be 'float32' or 'float16'; got {activation_dtype!r}")
        if dynamics_source not in DYNAMICS_SOURCES:
            raise ValueError(f"dynamics_source must be one of {list(DYNAMICS_SOURCES)}; got {dynamics_source!r}")
        if sorted(set(record_epochs)) != record_epochs or not record_epochs:
            raise ValueError(f"record_epochs must be strictly increasing and non-empty; got {record_epochs}")
        if record_epochs[0] < 0 or record_epochs[-1] > n_epochs:
            raise ValueError(f"record_epochs must lie within [0, {n_epochs}]; got {record_epochs}")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be distinct; got {names}")
        parameter_names = [parameter.name for parameter in parameters]
        if len(set(parameter_names)) != len(parameter_names):
            raise ValueError(f"parameter names must be distinct; got {parameter_names}")
        allocation = dict(config=config, dataset=dataset, layers=layers, parameters=parameters, probes=probes,
                          subsets=subsets, record_epochs=record_epochs, n_epochs=n_epochs, activation_dtype=activation_dtype,
                          dynamics=dynamics, dynamics_source=dynamics_source)
        if is_remote(run_dir):
            return cls._create_remote(run_dir, replace=replace, **allocation)
        target = store_path(run_dir)
        if target.exists() and not replace:
            raise StoreError(f"{run_dir} already holds a run store; continue it with 'actlab record --resume {run_dir}'")
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = config.get("resolved")
        run_id = resolved.get("run_id") if isinstance(resolved, Mapping) else None
        mark = {"run_id": run_id} if run_id else {}
        previous = read_marker(run_dir).get("run_id")
        if not target.exists() and marker_kind(run_dir) is None:
            write_marker(run_dir, "run", **mark)
        built = Path(tempfile.mkdtemp(prefix=f".{STORE_DIRNAME}.", suffix=PARTIAL_SUFFIX, dir=run_dir))
        try:
            follow_umask(built)
            _allocate(built, **allocation)
            if previous and previous != run_id:  # either store may be in place until the swap is marked
                write_marker(run_dir, "run", **mark, replaces=previous)
            swap_in(built, target)
        except BaseException:
            shutil.rmtree(built, ignore_errors=True)
            raise
        write_marker(run_dir, "run", **mark)  # names the store's run, which --overwrite checks
        return cls(run_dir)

    @classmethod
    def _create_remote(cls, run: str, *, replace: bool, **allocation: Any) -> RunWriter:
        """Allocate the store at the URL ``run`` in place (see :meth:`create`)."""
        if replace:
            raise OutputError(f"--overwrite is not available for a URL ({run}): object stores cannot swap a store "
                              "atomically; delete the old run first or choose a new URL")
        target = store_location(run)
        if files(target).size("zarr.json") is not None:
            raise StoreError(f"{run} already holds a run store; continue it with 'actlab record --resume {run}'")
        store = _tracked(zarr_store(target, read_only=False))
        try:
            _allocate(store, **allocation)
            writer = cls(run)
        except BaseException:
            _delete_keys(target, store.keys)
            raise
        writer.written_keys.update(store.keys)
        return writer

    @property
    def written_keys(self) -> set[str]:
        """Every store key this writer (and, for a new run at a URL, its allocation) wrote."""
        return self._store.keys

    def delete_written(self) -> None:
        """Delete the objects of a new run at a URL that failed before its first commit: only those this writer
        wrote, never another object under the prefix (another recorder may have passed the same check)."""
        _delete_keys(store_location(self.run_dir), self.written_keys)

    @classmethod
    def open(cls, run_dir: str | os.PathLike) -> RunWriter:
        """Reopen an existing run store for writing (``--resume``); a store still ``"creating"`` is refused."""
        attrs = read_attrs(run_dir)
        if attrs.get("status") == STATUS_CREATING:
            raise creating_error(run_dir)
        return cls(run_dir)

    # -- writing ------------------------------------------------------------------
    @property
    def committed_record_epochs(self) -> list[int]:
        """Recorded epochs whose activations are committed."""
        return [int(e) for e in self._record_epoch if e != UNCOMMITTED]

    @property
    def committed_metric_epochs(self) -> list[int]:
        """Epochs whose metrics are committed."""
        return [int(e) for e in self._metric_epoch if e != UNCOMMITTED]

    def add_user_metrics(self, names: Sequence[str]) -> None:
        """Allocate ``metrics/<name>`` (all NaN) for each new name, then list it in root attr ``user_metrics``."""
        new = [name for name in dict.fromkeys(names) if name not in self.user_metrics]
        for name in new:
            problem = user_metric_problem(name)
            if problem:
                raise ValueError(problem)
        for name in new:
            _create(self._root, f"metrics/{name}", self._metric_epoch.shape, dtype="float64", dims=("epoch",),
                    attributes={"long_name": f"{name} (reported by the training loop)", "units": "1"})
            self._metric_values[name] = np.full(self._metric_epoch.shape, np.nan)
        if new:
            self.user_metrics += new
            self._set_attrs({"user_metrics": self.user_metrics})

    def write_metrics(self, rows: Mapping[int, Mapping[str, float]]) -> None:
        """Write and commit the metrics of one or more epochs.

        Parameters
        ----------
        rows : mapping of epoch -> mapping of metric name -> value
            Every name in :data:`METRICS` for each epoch, and any of root attr ``user_metrics``
            (:meth:`add_user_metrics`; NaN where absent). Each metric array is
            rewritten whole once per call, so batching epochs (the recorder
            flushes every few seconds) keeps the cost per epoch small.
        """
        for epoch, values in rows.items():
            missing = set(METRICS) - set(values)
            if missing:
                raise ValueError(f"metrics for epoch {epoch} lack {sorted(missing)}")
            unknown = set(values) - set(METRICS) - set(self.user_metrics)
            if unknown:
                raise ValueError(f"metrics for epoch {epoch} name {sorted(unknown)}, not allocated; add_user_metrics first")
            if not 0 <= epoch < len(self._metric_epoch):
                raise ValueError(f"epoch {epoch} is outside 0..{len(self._metric_epoch) - 1}")
        for name in (*METRICS, *self.user_metrics):
            values = self._metric_values[name]
            for epoch, row in rows.items():
                values[epoch] = float(row.get(name, np.nan))
            _writable(self._metrics[name])[...] = values
        for epoch in rows:
            self._metric_epoch[epoch] = epoch
        self._flush()
        _writable(self._metrics["epoch"])[...] = self._metric_epoch  # commit
        self._flush()

    def write_dynamics(self, rows: Mapping[int, Mapping[str, np.ndarray]]) -> None:
        """Write and commit the per-sample trajectories of one or more epochs (a store without ``dynamics/``: nothing).

        Parameters
        ----------
        rows : mapping of epoch -> mapping of name -> ndarray (train_sample,)
            Every name in :data:`DYNAMICS` for each epoch, cast to its dtype. Each epoch is one shard per array;
            ``dynamics/epoch`` is written last, once per call.
        """
        if not self.dynamics:
            return
        for epoch, values in rows.items():
            missing = set(DYNAMICS) - set(values)
            if missing:
                raise ValueError(f"trajectories for epoch {epoch} lack {sorted(missing)}")
            if not 0 <= epoch < len(self._dynamics_epoch):
                raise ValueError(f"epoch {epoch} is outside 0..{len(self._dynamics_epoch) - 1}")
            for name, (_, _, dtype) in DYNAMICS.items():
                _writable(self._dynamics[name])[epoch] = np.asarray(values[name]).astype(dtype, copy=False)
        for epoch in rows:
            self._dynamics_epoch[epoch] = epoch
        self._flush()  # the trajectories on disk before the commit that makes them visible
        _writable(self._dynamics["epoch"])[...] = self._dynamics_epoch  # commit
        self._flush()

    def write_epoch(
        self,
        epoch: int,
        preacts: Mapping[str, np.ndarray],
        params: Mapping[str, np.ndarray],
    ) -> None:
        """Write and commit one recorded epoch.

        Parameters
        ----------
        epoch : int
            A scheduled record epoch.
        preacts : mapping of layer name -> ndarray (sample, *layer shape)
            The captured value of every layer for all probe samples: (sample, unit), or (sample, channel, y, x)
            for an unreduced conv layer.
        params : mapping of state_dict name -> ndarray
            Every parameter of root attr ``parameters``, in its shape.
        """
        if epoch not in self._slot:
            raise ValueError(f"epoch {epoch} is not a scheduled record epoch")
        missing = sorted(set(self.parameter_names) - set(params))
        if missing:
            raise ValueError(f"parameters for epoch {epoch} lack {missing}")
        slot = self._slot[epoch]
        self._flush()
        for name in self.layer_names:
            _writable(self._layers[name]["preact"])[slot] = preacts[name]
        for name in self.parameter_names:
            _writable(self._parameters[name])[slot] = params[name]
        self._parameter_epoch[slot] = epoch
        _writable(self._parameters["epoch"])[...] = self._parameter_epoch
        written = self._store.written
        digests = []
        for path in self._digested:
            key = f"{path}/{self._root[path].metadata.encode_chunk_key((slot,) + (0,) * (self._root[path].ndim - 1))}"
            if written.get(key) is None:
                raise StoreError(f"{self.run_dir}: writing epoch {epoch} did not write the shard {key} whole; "
                                 "report this as an actlab bug")
            digests.append(np.frombuffer(written[key], dtype=np.uint8))
        _writable(self._digests)[slot] = np.stack(digests)
        self._flush()
        self._record_epoch[slot] = epoch
        _writable(self._layers["epoch"])[...] = self._record_epoch  # commit
        self._flush()

    def _flush(self) -> None:
        """Flush every file written since the last flush, and the folders that changed, to disk (a local store; an
        object's PUT is durable)."""
        written, folders = self._store.drain()
        if written and not is_remote(self.run_dir):
            fsync_paths((store_path(self.run_dir) / key for key in written), folders)


    def mark_complete(self) -> None:
        """Set the root status to complete, after reading back that every scheduled epoch is committed.

        Raises
        ------
        StoreError
            When a scheduled epoch is not committed (the store then stays ``"recording"``).
        """
        metric_epochs, record_epochs = missing_epochs(self.run_dir)
        if metric_epochs or record_epochs:
            raise StoreError(f"{self.run_dir} lacks committed epochs after training (metrics {metric_epochs[:5]}, "
                             f"recorded {record_epochs[:5]}), so it is not marked complete; continue it with "
                             f"'actlab record --resume {self.run_dir}'")
        self._set_attrs({"status": STATUS_COMPLETE, "completed": _now()})

    def mark_recording(self) -> None:
        """Set the root status back to recording (when a run is resumed)."""
        self._set_attrs({"status": STATUS_RECORDING})

    def _set_attrs(self, changes: Mapping[str, Any]) -> None:
        """Update root attributes, with their digest, in one write of the root metadata; then flush it."""
        self._root.attrs.put(with_digest({**self.attrs, **changes}))
        self.attrs = dict(self._root.attrs)
        if not is_remote(self.run_dir):
            fsync_paths([store_path(self.run_dir) / "zarr.json"])


def _delete_keys(store: Any, keys: set[str]) -> None:
    """Delete the objects ``keys`` (store keys) of the store at the URL ``store``, those that exist."""
    out = files(store)
    present = set(out.keys())
    doomed = [out.path(key) for key in sorted(keys) if key in present]
    if doomed:
        out.fs.rm(doomed)


def _fill_value(path: str, dtype: str) -> Any:
    if path in COMMIT_ARRAYS:
        return UNCOMMITTED
    return np.nan if dtype.startswith("float") else False if dtype == "bool" else 0


def _create(root: zarr.Group, path: str, shape: tuple[int, ...], *, dtype: str | None = None,
            dims: tuple[str, ...] = (), values: np.ndarray | None = None, chunks: tuple[int, ...] | None = None,
            shards: tuple[int, ...] | None = None, attributes: Mapping[str, Any]) -> zarr.Array:
    """Create one array of the schema: dims and dtype from :data:`ARRAYS`, else (per-epoch arrays) as given.

    An unsharded array is written whole at once (``values``, else its fill value); a sharded one (the per-epoch
    layer, parameter and dynamics arrays) is left empty for :meth:`RunWriter.write_epoch` and
    :meth:`RunWriter.write_dynamics`.
    """
    group, name = path.rsplit("/", 1)
    dims, dtypes = ARRAYS[path] if path in ARRAYS else (dims, (dtype,))
    dtype = dtype or dtypes[0]
    array = root[group].create_array(
        name, shape=shape, chunks=chunks or tuple(max(s, 1) for s in shape), shards=shards, dtype=dtype,
        fill_value=_fill_value(path, dtype), dimension_names=dims, compressors=default_compressors(),
        config=WRITE_CONFIG, attributes=dict(attributes),
    )
    if shards is None:  # every chunk outside the per-epoch layer arrays exists from the start
        array[...] = np.full(shape, array.fill_value, dtype) if values is None else np.asarray(values).astype(dtype)
    return array


def _allocate(
    store: Any,
    *,
    config: Mapping[str, Any],
    dataset: Mapping[str, Any],
    layers: Sequence[LayerSpec],
    parameters: Sequence[ParameterSpec],
    probes: ProbeSet,
    subsets: Subsets,
    record_epochs: list[int],
    n_epochs: int,
    activation_dtype: str,
    dynamics: bool,
    dynamics_source: str,
) -> None:
    from actlab import __version__

    attributes = _json_safe({
        "schema_version": SCHEMA_VERSION,
        "actlab_version": __version__,
        "status": STATUS_CREATING,
        "created": _now(),
        "config": dict(config),
        "dataset": dict(dataset),
        "layers": [asdict(layer) for layer in layers],
        "parameters": [asdict(parameter) for parameter in parameters],
        "record_epochs": record_epochs,
        "n_epochs": n_epochs,
        "activation_dtype": activation_dtype,
        "groups": list(GROUPS),
        "dynamics": dynamics,
    })
    root = zarr.open_group(store, mode="w-", zarr_format=3, attributes=with_digest(attributes))  # "creating" first
    commit = {"long_name": "training epoch", "units": "epoch", "commit": "-1 = not committed"}

    root.create_group("metrics", attributes=with_digest({"description": "per-epoch loss and accuracy, epoch 0 = initialisation"}))
    n_metric = n_epochs + 1
    _create(root, "metrics/epoch", (n_metric,), attributes=commit)
    for name, (long_name, units) in METRICS.items():
        _create(root, f"metrics/{name}", (n_metric,), attributes={"long_name": long_name, "units": units})

    n = len(probes)
    root.create_group("probes", attributes=with_digest({"description": "fixed probe samples, ordered by group code"}))
    coords: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
        "sample": (np.arange(n), {"long_name": "probe sample"}),
        "dataset_index": (probes.dataset_index, {"long_name": "index in the training set (clean, noisy) or test set (test)"}),
        "group": (probes.group, {"long_name": "probe group", "flag_values": list(range(len(GROUPS))), "flag_meanings": " ".join(GROUPS)}),
        "label": (probes.label, {"long_name": "label used in training (assigned, possibly noisy)"}),
        "original_label": (probes.original_label, {"long_name": "label before noise injection"}),
        "is_noisy": (probes.is_noisy, {"long_name": "assigned label differs from the original label"}),
    }
    for name, (values, attrs) in coords.items():
        _create(root, f"probes/{name}", (n,), values=values, attributes=attrs)
    _create(root, "probes/image", probes.images.shape, dtype=str(probes.images.dtype), values=probes.images,
            chunks=(min(n, 1024), *probes.images.shape[1:]),
            attributes={"long_name": "probe input image",
                        "units": "pixel intensity 0-255" if probes.images.dtype == np.uint8 else "input value as given",
                        "coordinates": " ".join(name for name in coords if name != "sample")})

    root.create_group("training", attributes=with_digest({"description": "every training sample used, in training order"}))
    n_train = len(subsets.train_index)
    for name, values, long_name in (
        ("dataset_index", subsets.train_index, "index in the full training set"),
        ("label", subsets.train_label, "label used in training (assigned, possibly noisy)"),
        ("original_label", subsets.train_original_label, "label before noise injection"),
        ("is_noisy", subsets.train_is_noisy, "assigned label differs from the original label"),
    ):
        _create(root, f"training/{name}", (n_train,), values=values, attributes={"long_name": long_name})
    root.create_group("evaluation", attributes=with_digest({"description": "every test sample evaluated (test_loss, test_acc)"}))
    n_test = len(subsets.test_index)
    _create(root, "evaluation/dataset_index", (n_test,), values=subsets.test_index, attributes={"long_name": "index in the full test set"})
    _create(root, "evaluation/label", (n_test,), values=subsets.test_label, attributes={"long_name": "test label"})

    n_slots = len(record_epochs)
    root.create_group("layers", attributes=with_digest({"description": "recorded epochs; one group per captured layer"}))
    _create(root, "layers/epoch", (n_slots,), attributes=commit)
    n_shards = len(layers) + len(parameters)
    _create(root, SHARD_DIGESTS, (n_slots, n_shards, 32), chunks=(1, n_shards, 32),
            attributes={"long_name": "digest of each shard of a recorded epoch (docs/store-format.md, Digests), "
                                     "written before its commit",
                        "shards": digested_arrays([layer.name for layer in layers], [p.name for p in parameters])})
    for layer in layers:
        root["layers"].create_group(layer.name, attributes=with_digest(_json_safe(asdict(layer))))
        sample_chunk = max(1, min(n, SAMPLE_CHUNK, CHUNK_VALUES // int(np.prod(layer.shape))))
        sample_shard = -(-n // sample_chunk) * sample_chunk
        what = "output" if layer.reduce == "none" else f"output, {layer.reduce} over (y, x) per channel,"
        _create(root, f"layers/{layer.name}/preact", (n_slots, n, *layer.shape), dtype=activation_dtype, dims=layer.dims,
                chunks=(1, sample_chunk, *layer.shape), shards=(1, sample_shard, *layer.shape),
                attributes={"long_name": f"{what} of {layer.module} ({layer.name})", "units": "1",
                            "activation": layer.activation})
    root.create_group("parameters", attributes=with_digest({"description": "recorded epochs; the model's state_dict by name"}))
    _create(root, "parameters/epoch", (n_slots,), attributes={**commit, "commit": "-1 = not written; layers/epoch commits"})
    for parameter in parameters:
        whole = (1, *(max(side, 1) for side in parameter.shape))
        _create(root, f"parameters/{parameter.name}", (n_slots, *parameter.shape), dtype=parameter.dtype,
                dims=parameter.dims, chunks=whole, shards=whole,
                attributes={"long_name": f"state_dict entry {parameter.name}", "units": "1"})
    if dynamics:
        description = "every training sample's trajectory at every epoch, epoch 0 = initialisation"
        root.create_group("dynamics", attributes=with_digest({"description": description, "source": dynamics_source}))
        _create(root, "dynamics/epoch", (n_metric,), attributes=commit)
        per_epoch = (1, max(n_train, 1))
        for name, (long_name, units, dtype) in DYNAMICS.items():
            _create(root, f"dynamics/{name}", (n_metric, n_train), dtype=dtype, dims=("epoch", "train_sample"),
                    chunks=per_epoch, shards=per_epoch, attributes={"long_name": long_name, "units": units})
    root.attrs.put(with_digest({**attributes, "status": STATUS_RECORDING}))  # every array allocated: readers may open it now
