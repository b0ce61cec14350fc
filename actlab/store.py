"""The run store: the one place where actlab's on-disk schema is defined.

Recording (torch) writes through :class:`RunWriter`; analysis (xarray/dask)
reads through :func:`open_store`. This module imports neither half, only
NumPy, zarr and xarray. ``docs/store-format.md`` describes the same schema
for people; keep the two in step and bump :data:`SCHEMA_VERSION` on any
incompatible change.

Layout of a run directory::

    runs/<name>/
      store.zarr/            Zarr v3 hierarchy, below
      checkpoint.pt          latest training checkpoint (record side only)
      analysis/              written by ``actlab analyze``

    store.zarr/                      root attrs: schema_version, status, config, dataset, layers, ...
      metrics/                       dim epoch (every epoch 0..n_epochs)
        epoch                        int32, -1 until that epoch's metrics are committed
        train_clean_loss, ...        float64
      probes/                        dim sample (+ channel, height, width)
        sample, dataset_index, group, label, original_label, is_noisy
        image                        uint8 (sample, channel, height, width)
      layers/                        dim epoch (recorded epochs only)
        epoch                        int32, -1 until that recorded epoch is committed
        <layer>/                     one group per captured module, in forward order
          preact                     (epoch, sample, unit) pre-activation values
          weight                     float32 (epoch, unit, in_unit)
          bias                       float32 (epoch, unit)

Commit protocol
---------------
Arrays are allocated at full size when the run is created. Each write of a
chunk or metadata document is atomic (zarr's ``LocalStore`` writes to a
temporary file and renames it). A recorded epoch is written as whole shards,
one per layer (a single writer, no read-modify-write), and becomes visible
only when its slot in ``layers/epoch`` is set, which is written last. Metrics
are committed the same way through ``metrics/epoch``. Readers keep the slots
whose epoch is not -1, so a store killed at any moment still opens and shows
every committed epoch. Root attribute ``status`` reads ``"recording"`` until
the run finishes and ``"complete"`` after (the partial marker).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from actlab.errors import StoreError
from actlab.files import PARTIAL_SUFFIX, exchange, follow_umask, write_marker

SCHEMA_VERSION = 1
"""Bumped on any change that older readers cannot read."""

STORE_DIRNAME = "store.zarr"
CHECKPOINT_FILENAME = "checkpoint.pt"
ANALYSIS_DIRNAME = "analysis"

STATUS_RECORDING = "recording"
STATUS_COMPLETE = "complete"

GROUPS: tuple[str, ...] = ("clean", "noisy", "test")
"""Probe groups; stored as int8 codes in this order (``flag_values``)."""

UNCOMMITTED = -1
"""Fill value of the ``epoch`` commit arrays: slot not (yet) committed."""

METRICS: dict[str, tuple[str, str]] = {
    "train_clean_loss": ("cross-entropy on clean training samples", "nats"),
    "train_clean_acc": ("accuracy on clean training samples", "1"),
    "train_noisy_loss": ("cross-entropy on noisy training samples against their assigned labels", "nats"),
    "train_noisy_acc": ("accuracy on noisy training samples against their assigned labels", "1"),
    "train_noisy_true_loss": ("cross-entropy on noisy training samples against their original labels", "nats"),
    "train_noisy_true_acc": ("accuracy on noisy training samples against their original labels", "1"),
    "test_loss": ("cross-entropy on test samples", "nats"),
    "test_acc": ("accuracy on test samples", "1"),
    "wall_time": ("wall-clock time since the start of training", "s"),
}
"""Per-epoch metrics: name -> (long_name, units). Epoch 0 is the initialisation."""

SAMPLE_CHUNK = 512
"""Probe samples per inner chunk of an activation array; one shard holds all samples of one epoch."""


WRITE_CONFIG = {"write_empty_chunks": True}
"""Array configuration of activations and parameters: every chunk is written as given. Recorded data are
never all fill value, so zarr's check for empty chunks (a full comparison per write) is skipped."""


def default_compressors() -> tuple[Any, ...]:
    """Codecs of the activation and parameter arrays: fast Blosc-LZ4 with byte shuffle, then a CRC32C checksum.

    The checksum makes a corrupted chunk fail loudly on read instead of returning garbage.
    """
    return (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())


@dataclass(frozen=True)
class LayerSpec:
    """One captured layer.

    Parameters
    ----------
    name : str
        Store name of the layer (``hidden1`` ... ``hiddenK``, ``output``).
    width : int
        Number of units (output features).
    fan_in : int
        Number of inputs (``in_unit`` dimension of ``weight``).
    activation : str
        Nonlinearity applied to ``preact`` in the model: ``"relu"`` or ``"identity"``.
    module : str
        Qualified name of the torch submodule whose output is ``preact``.
    """

    name: str
    width: int
    fan_in: int
    activation: str
    module: str


@dataclass(frozen=True)
class ProbeSet:
    """The fixed probe samples of a run, in stored order (clean, then noisy, then test).

    Parameters
    ----------
    images : ndarray of uint8, shape (sample, channel, height, width)
    dataset_index : ndarray of int, shape (sample,)
        Index into the training set (groups clean and noisy) or test set (group test).
    group : ndarray of int8, shape (sample,)
        Codes into :data:`GROUPS`.
    label : ndarray of int, shape (sample,)
        Label used in training (after noise injection); the test label for test probes.
    original_label : ndarray of int, shape (sample,)
        Label before noise injection.
    is_noisy : ndarray of bool, shape (sample,)
        Whether noise was injected into this sample's label.
    """

    images: np.ndarray
    dataset_index: np.ndarray
    group: np.ndarray
    label: np.ndarray
    original_label: np.ndarray
    is_noisy: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"probe images must be uint8 (sample, channel, height, width); got {self.images.dtype} {self.images.shape}")
        for name in ("dataset_index", "group", "label", "original_label", "is_noisy"):
            value = getattr(self, name)
            if value.shape != (n,):
                raise ValueError(f"probe {name} must have shape ({n},); got {value.shape}")
        if np.any(np.diff(self.group.astype(int)) < 0):
            raise ValueError("probes must be ordered by group: clean, then noisy, then test")

    def __len__(self) -> int:
        return len(self.images)


def store_path(run_dir: str | os.PathLike) -> Path:
    """Path of the Zarr store inside a run directory."""
    return Path(run_dir) / STORE_DIRNAME


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
        self.run_dir = Path(run_dir)
        self._root = zarr.open_group(store_path(self.run_dir), mode="r+", zarr_format=3)
        self.attrs = dict(self._root.attrs)
        check_schema(self.attrs, self.run_dir)
        self.record_epochs: list[int] = list(self.attrs["record_epochs"])
        self.layer_names: list[str] = [layer["name"] for layer in self.attrs["layers"]]
        self._slot = {epoch: i for i, epoch in enumerate(self.record_epochs)}
        self._metrics = self._root["metrics"]
        self._layers = self._root["layers"]
        self._metric_epoch = self._metrics["epoch"][...]
        self._metric_values = {name: self._metrics[name][...] for name in METRICS}
        self._record_epoch = self._layers["epoch"][...]

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
        record_epochs: Sequence[int],
        n_epochs: int,
        activation_dtype: str = "float32",
        replace: bool = False,
    ) -> RunWriter:
        """Allocate an empty, full-size store inside the run folder ``run_dir``.

        The folder is created when missing and marked as a run (:func:`actlab.files.write_marker`);
        ``actlab.record`` has claimed it and holds its writer lock (:func:`actlab.files.writer_lock`).
        The store is built in a hidden sibling, ``.store.zarr.XXXX.partial``, and renamed into place
        only when complete, so a failure leaves no half-written store; with ``replace``, an existing
        store is swapped out in one atomic exchange and then deleted.

        Parameters
        ----------
        run_dir : path
            Run folder (``runs/<name>``).
        config : mapping
            The resolved run configuration (JSON-serialisable).
        dataset : mapping
            Dataset description: name, class_names, sizes, checksums.
        layers : sequence of LayerSpec
            Captured layers in forward order.
        probes : ProbeSet
            The probe samples.
        record_epochs : sequence of int
            Epochs whose activations are recorded, ascending, within [0, n_epochs].
        n_epochs : int
            Number of training epochs; metrics are kept for epochs 0..n_epochs.
        activation_dtype : {"float32", "float16"}
        replace : bool
            Replace the store already in ``run_dir`` (``--overwrite``); otherwise one there is an error.
        """
        run_dir = Path(run_dir)
        record_epochs = [int(e) for e in record_epochs]
        if activation_dtype not in ("float32", "float16"):
            raise ValueError(f"activation_dtype must be 'float32' or 'float16'; got {activation_dtype!r}")
        if sorted(set(record_epochs)) != record_epochs or not record_epochs:
            raise ValueError(f"record_epochs must be strictly increasing and non-empty; got {record_epochs}")
        if record_epochs[0] < 0 or record_epochs[-1] > n_epochs:
            raise ValueError(f"record_epochs must lie within [0, {n_epochs}]; got {record_epochs}")
        target = store_path(run_dir)
        if target.exists() and not replace:
            raise StoreError(f"{run_dir} already holds a run store; continue it with 'actlab record --resume {run_dir}'")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_marker(run_dir, "run")
        built = Path(tempfile.mkdtemp(prefix=f".{STORE_DIRNAME}.", suffix=PARTIAL_SUFFIX, dir=run_dir))
        try:
            follow_umask(built)
            _allocate(
                built,
                config=config,
                dataset=dataset,
                layers=layers,
                probes=probes,
                record_epochs=record_epochs,
                n_epochs=n_epochs,
                activation_dtype=activation_dtype,
            )
            if target.exists():
                exchange(built, target)
                shutil.rmtree(built)
            else:
                os.replace(built, target)
        except BaseException:
            shutil.rmtree(built, ignore_errors=True)
            raise
        return cls(run_dir)

    @classmethod
    def open(cls, run_dir: str | os.PathLike) -> RunWriter:
        """Reopen an existing run store for writing (``--resume``)."""
        run_dir = Path(run_dir)
        if not store_path(run_dir).is_dir():
            raise StoreError(f"{run_dir} is not an actlab run (no {STORE_DIRNAME} inside); check the path")
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

    def write_metrics(self, rows: Mapping[int, Mapping[str, float]]) -> None:
        """Write and commit the metrics of one or more epochs.

        Parameters
        ----------
        rows : mapping of epoch -> mapping of metric name -> value
            Every name in :data:`METRICS` for each epoch. Each metric array is
            rewritten whole once per call, so batching epochs (the recorder
            flushes every few seconds) keeps the cost per epoch small.
        """
        for epoch, values in rows.items():
            missing = set(METRICS) - set(values)
            if missing:
                raise ValueError(f"metrics for epoch {epoch} lack {sorted(missing)}")
            if not 0 <= epoch < len(self._metric_epoch):
                raise ValueError(f"epoch {epoch} is outside 0..{len(self._metric_epoch) - 1}")
        for name in METRICS:
            values = self._metric_values[name]
            for epoch, row in rows.items():
                values[epoch] = float(row[name])
            self._metrics[name][...] = values
        for epoch in rows:
            self._metric_epoch[epoch] = epoch
        self._metrics["epoch"][...] = self._metric_epoch  # commit

    def write_epoch(
        self,
        epoch: int,
        preacts: Mapping[str, np.ndarray],
        params: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ) -> None:
        """Write and commit one recorded epoch.

        Parameters
        ----------
        epoch : int
            A scheduled record epoch.
        preacts : mapping of layer name -> ndarray (sample, unit)
            Pre-activation values of every layer for all probe samples.
        params : mapping of layer name -> (weight (unit, in_unit), bias (unit,))
        """
        if epoch not in self._slot:
            raise ValueError(f"epoch {epoch} is not a scheduled record epoch")
        slot = self._slot[epoch]
        for name in self.layer_names:
            node = self._layers[name]
            node["preact"][slot] = preacts[name]
            weight, bias = params[name]
            node["weight"][slot] = weight
            node["bias"][slot] = bias
        self._record_epoch[slot] = epoch
        self._layers["epoch"][...] = self._record_epoch  # commit

    def mark_complete(self) -> None:
        """Set the root status to complete: every scheduled epoch is in."""
        self._root.attrs.update({"status": STATUS_COMPLETE, "completed": _now()})
        self.attrs = dict(self._root.attrs)

    def mark_recording(self) -> None:
        """Set the root status back to recording (when a run is resumed)."""
        self._root.attrs.update({"status": STATUS_RECORDING})
        self.attrs = dict(self._root.attrs)


def _allocate(
    path: Path,
    *,
    config: Mapping[str, Any],
    dataset: Mapping[str, Any],
    layers: Sequence[LayerSpec],
    probes: ProbeSet,
    record_epochs: list[int],
    n_epochs: int,
    activation_dtype: str,
) -> None:
    from actlab import __version__

    root = zarr.open_group(path, mode="w", zarr_format=3)
    root.attrs.update(
        _json_safe(
            {
                "schema_version": SCHEMA_VERSION,
                "actlab_version": __version__,
                "status": STATUS_RECORDING,
                "created": _now(),
                "config": dict(config),
                "dataset": dict(dataset),
                "layers": [asdict(layer) for layer in layers],
                "record_epochs": record_epochs,
                "n_epochs": n_epochs,
                "activation_dtype": activation_dtype,
                "groups": list(GROUPS),
            }
        )
    )

    metrics = root.create_group("metrics", attributes={"description": "per-epoch loss and accuracy, epoch 0 = initialisation"})
    n_metric = n_epochs + 1
    metrics.create_array(
        "epoch", shape=(n_metric,), chunks=(n_metric,), dtype="int32", fill_value=UNCOMMITTED,
        dimension_names=("epoch",), attributes={"long_name": "training epoch", "units": "epoch", "commit": "-1 = not committed"},
    )
    for name, (long_name, units) in METRICS.items():
        metrics.create_array(
            name, shape=(n_metric,), chunks=(n_metric,), dtype="float64", fill_value=np.nan,
            dimension_names=("epoch",), attributes={"long_name": long_name, "units": units},
        )

    n = len(probes)
    probe_group = root.create_group("probes", attributes={"description": "fixed probe samples, ordered clean, noisy, test"})
    coords: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
        "sample": (np.arange(n, dtype="int64"), {"long_name": "probe sample"}),
        "dataset_index": (probes.dataset_index.astype("int64"), {"long_name": "index in the training set (clean, noisy) or test set (test)"}),
        "group": (probes.group.astype("int8"), {"long_name": "probe group", "flag_values": list(range(len(GROUPS))), "flag_meanings": " ".join(GROUPS)}),
        "label": (probes.label.astype("int16"), {"long_name": "label used in training (assigned, possibly noisy)"}),
        "original_label": (probes.original_label.astype("int16"), {"long_name": "label before noise injection"}),
        "is_noisy": (probes.is_noisy.astype(bool), {"long_name": "label noise injected"}),
    }
    for name, (values, attrs) in coords.items():
        array = probe_group.create_array(
            name, shape=values.shape, chunks=values.shape, dtype=values.dtype, dimension_names=("sample",), attributes=attrs
        )
        array[...] = values
    image = probe_group.create_array(
        "image", shape=probes.images.shape, chunks=(min(n, 1024), *probes.images.shape[1:]), dtype="uint8",
        dimension_names=("sample", "channel", "height", "width"), compressors=default_compressors(),
        attributes={"long_name": "probe input image", "units": "pixel intensity 0-255",
                    "coordinates": " ".join(name for name in coords if name != "sample")},
    )
    image[...] = probes.images

    n_slots = len(record_epochs)
    layer_root = root.create_group("layers", attributes={"description": "recorded epochs; one group per captured layer"})
    layer_root.create_array(
        "epoch", shape=(n_slots,), chunks=(n_slots,), dtype="int32", fill_value=UNCOMMITTED,
        dimension_names=("epoch",), attributes={"long_name": "training epoch", "units": "epoch", "commit": "-1 = not committed"},
    )
    sample_chunk = min(n, SAMPLE_CHUNK)
    sample_shard = -(-n // sample_chunk) * sample_chunk
    for layer in layers:
        node = layer_root.create_group(layer.name, attributes=_json_safe(asdict(layer)))
        node.create_array(
            "preact", shape=(n_slots, n, layer.width), chunks=(1, sample_chunk, layer.width),
            shards=(1, sample_shard, layer.width), dtype=activation_dtype, fill_value=np.nan,
            dimension_names=("epoch", "sample", "unit"), compressors=default_compressors(), config=WRITE_CONFIG,
            attributes={"long_name": f"pre-activation of {layer.name} ({layer.module})", "units": "1",
                        "activation": layer.activation},
        )
        node.create_array(
            "weight", shape=(n_slots, layer.width, layer.fan_in), chunks=(1, layer.width, layer.fan_in),
            dtype="float32", fill_value=np.nan, dimension_names=("epoch", "unit", "in_unit"),
            compressors=default_compressors(), config=WRITE_CONFIG, attributes={"long_name": f"weight of {layer.module}", "units": "1"},
        )
        node.create_array(
            "bias", shape=(n_slots, layer.width), chunks=(1, layer.width), dtype="float32", fill_value=np.nan,
            dimension_names=("epoch", "unit"), compressors=default_compressors(), config=WRITE_CONFIG,
            attributes={"long_name": f"bias of {layer.module}", "units": "1"},
        )


# -- reading ---------------------------------------------------------------------------


def check_schema(attrs: Mapping[str, Any], where: str | os.PathLike) -> None:
    """Raise :class:`StoreError` unless ``attrs`` come from a store of this schema version."""
    version = attrs.get("schema_version")
    if version is None:
        raise StoreError(f"{where} is not an actlab run store (no schema_version); check the path")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{where} has store schema version {version}, this actlab reads version {SCHEMA_VERSION}; "
            "use a matching actlab version or record the run again"
        )


def read_attrs(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Root attributes of a run store, after checking that it is one of this schema version."""
    path = store_path(run_dir)
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{run_dir} is not an actlab run (no {STORE_DIRNAME} inside); check the path")
    try:
        attrs = dict(zarr.open_group(path, mode="r", zarr_format=3).attrs)
    except Exception as exc:  # unreadable metadata
        raise StoreError(f"{path} cannot be opened ({exc}); the store is damaged") from exc
    check_schema(attrs, run_dir)
    return attrs


@dataclass(frozen=True)
class StoreView:
    """Lazy, committed-only view of a run store.

    Attributes
    ----------
    path : Path
        The run directory.
    attrs : dict
        Root attributes (config, dataset, layers, record_epochs, status, ...).
    metrics : xr.Dataset
        Dims (epoch,): every committed epoch's metrics, in memory.
    probes : xr.Dataset
        Dims (sample, channel, height, width): ``image`` (lazy) with probe coords
        ``group`` (str), ``label``, ``original_label``, ``is_noisy``, ``dataset_index``.
    layers : dict of str -> xr.Dataset
        Per layer, in forward order: ``preact`` (epoch, sample, unit), ``weight``
        (epoch, unit, in_unit), ``bias`` (epoch, unit), all dask-backed with one
        chunk per recorded epoch; coords ``epoch`` and the probe coords.
    """

    path: Path
    attrs: dict[str, Any]
    metrics: xr.Dataset
    probes: xr.Dataset
    layers: dict[str, xr.Dataset]

    @property
    def layer_names(self) -> list[str]:
        """Layer names in forward order."""
        return list(self.layers)

    @property
    def epochs(self) -> np.ndarray:
        """Committed recorded epochs."""
        first = next(iter(self.layers.values()))
        return first["epoch"].values


def _open_group(path: Path, group: str) -> xr.Dataset:
    return xr.open_zarr(path, group=group, consolidated=False, zarr_format=3, chunks=None, decode_times=False)


def _committed(ds: xr.Dataset) -> xr.Dataset:
    keep = np.flatnonzero(ds["epoch"].values != UNCOMMITTED)
    return ds.isel(epoch=keep)


def open_store(run_dir: str | os.PathLike) -> StoreView:
    """Open a run store lazily, showing committed epochs only.

    Parameters
    ----------
    run_dir : path
        A run directory (``runs/<name>``), recorded or still recording.

    Returns
    -------
    StoreView
    """
    run_dir = Path(run_dir)
    attrs = read_attrs(run_dir)
    path = store_path(run_dir)
    try:
        metrics = _committed(_open_group(path, "metrics"))[list(METRICS)].load()
        probes = _open_group(path, "probes")
        layer_epochs = _open_group(path, "layers")["epoch"]
    except Exception as exc:
        raise StoreError(f"{path} cannot be read ({exc}); the store is damaged") from exc
    group_codes = probes["group"].values
    probes = probes.assign_coords(
        sample=probes["sample"].values,
        group=("sample", np.asarray(GROUPS, dtype=object)[group_codes], probes["group"].attrs),
    )
    for name in ("dataset_index", "label", "original_label", "is_noisy"):
        probes = probes.set_coords(name) if name in probes.data_vars else probes
        probes[name] = probes[name].load()
    probe_coords = {name: probes[name] for name in ("group", "dataset_index", "label", "original_label", "is_noisy")}
    keep = np.flatnonzero(layer_epochs.values != UNCOMMITTED)
    layers: dict[str, xr.Dataset] = {}
    for spec in attrs["layers"]:
        name = spec["name"]
        try:
            node = xr.open_zarr(
                path, group=f"layers/{name}", consolidated=False, zarr_format=3,
                chunks={"epoch": 1, "sample": -1, "unit": -1, "in_unit": -1},
            )
        except Exception as exc:
            raise StoreError(f"{path}/layers/{name} cannot be read ({exc}); the store is damaged") from exc
        node = node.assign_coords(epoch=("epoch", layer_epochs.values, layer_epochs.attrs))
        node = node.isel(epoch=keep)
        node = node.assign_coords(sample=probes["sample"].values, **probe_coords)
        node.attrs.update(spec)
        layers[name] = node
    return StoreView(path=run_dir, attrs=attrs, metrics=metrics, probes=probes, layers=layers)


def missing_chunks(run_dir: str | os.PathLike) -> list[str]:
    """Shard files that a committed epoch should have but the store lacks.

    Zarr reads a missing chunk as its fill value; this check turns silent
    NaNs into an error the caller can report.
    """
    run_dir = Path(run_dir)
    path = store_path(run_dir)
    attrs = read_attrs(run_dir)
    slots = np.asarray(zarr.open_array(path / "layers" / "epoch", mode="r")[...])
    missing = []
    for spec in attrs["layers"]:
        for slot in np.flatnonzero(slots != UNCOMMITTED):
            for array, key in (("preact", f"c/{slot}/0/0"), ("weight", f"c/{slot}/0/0"), ("bias", f"c/{slot}/0")):
                chunk = path / "layers" / spec["name"] / array / key
                if not chunk.is_file():
                    missing.append(str(chunk.relative_to(run_dir)))
    return missing
