"""The run store: the one place where actlab's on-disk schema is defined.

Recording (torch) writes through :class:`RunWriter`; analysis (xarray/dask)
reads through :func:`open_store` and checks the chunks of committed epochs with
:func:`damaged_chunks`. This module imports neither half, only NumPy, zarr and
xarray. ``docs/store-format.md`` is the contract for people (enough to write a
compatible store without actlab); keep the two in step and bump
:data:`SCHEMA_VERSION` on any incompatible change.

Layout of a run directory::

    runs/<name>/
      store.zarr/            Zarr v3 hierarchy, below
      checkpoint.pt          latest training checkpoint (record side only)
      analysis/              written by ``actlab analyze``

    store.zarr/                      root attrs: schema_version, status, config, dataset, layers, groups, ...
      metrics/                       dim epoch (every epoch 0..n_epochs)
        epoch                        int32, -1 until that epoch's metrics are committed
        train_clean_loss, ...        float64
      probes/                        dim sample (+ channel, height, width)
        sample, dataset_index, group, label, original_label, is_noisy
        image                        uint8 (sample, channel, height, width)
      training/                      dim train_sample: every training sample used, in training order
        dataset_index, label, original_label, is_noisy
      evaluation/                    dim test_sample: every test sample evaluated
        dataset_index, label
      layers/                        dim epoch (recorded epochs only)
        epoch                        int32, -1 until that recorded epoch is committed
        <layer>/                     one group per captured module, in forward order
          preact                     (epoch, sample, unit), or (epoch, sample, channel, y, x) for an unreduced conv layer
      parameters/                    dim epoch (recorded epochs only)
        <state_dict name>            (epoch, *shape): every parameter and buffer of the model

Integrity
---------
Every array ends its codec chain with a CRC32C checksum, so a flipped bit fails
on read; the readers here turn that into a :class:`~actlab.errors.StoreError`
naming the array. The per-epoch layer arrays are sharded (one shard file per
epoch, index at the end with its own CRC32C); :func:`damaged_chunks` reads only
the shard tails to find missing, empty or truncated shards and missing inner
chunks of committed epochs, which zarr would otherwise read as NaN.

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
until the run finishes and ``"complete"`` after (the partial marker).

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import dask.array as da
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ShardingCodec

from actlab.errors import OutputError, StoreError
from actlab.files import PARTIAL_SUFFIX, follow_umask, swap_in, write_marker
from actlab.location import Files, Location, files, is_remote, join, location, zarr_store

SCHEMA_VERSION = 3
"""Bumped on any change that older readers cannot read (2: CRC32C on every array, sharded parameters,
``training/`` and ``evaluation/`` groups; 3: layer ``kind``, ``reduce`` and ``shape``, conv layers with dims
(epoch, sample, channel, y, x), the model's parameters in ``parameters/`` under their state_dict names instead of
``weight`` and ``bias`` in each layer group)."""

STORE_DIRNAME = "store.zarr"
CHECKPOINT_FILENAME = "checkpoint.pt"
ANALYSIS_DIRNAME = "analysis"

STATUS_CREATING = "creating"
STATUS_RECORDING = "recording"
STATUS_COMPLETE = "complete"

GROUPS: tuple[str, ...] = ("clean", "noisy", "test")
"""Probe groups in the order this writer stores them (root attr ``groups``); readers take the order from the store."""

ACTIVATIONS: tuple[str, ...] = ("relu", "identity")
"""Allowed ``activation`` of a layer: the nonlinearity the model applies to ``preact``."""

LAYER_KINDS: tuple[str, ...] = ("dense", "conv")
"""Allowed ``kind`` of a layer: ``"dense"``, one value per unit (a Linear's output, or any output flattened per sample);
``"conv"``, a module output with dims (channel, y, x), one unit per channel."""

REDUCTIONS: tuple[str, ...] = ("none", "mean", "max")
"""Allowed ``reduce`` of a layer: how a conv layer's maps were reduced over (y, x) when captured (``"none"``: kept
whole); a dense layer has ``"none"``."""

PARAMETER_DTYPES: tuple[str, ...] = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
"""Allowed dtypes of the arrays in ``parameters/``: the dtype of the state_dict tensor (the recorder stores a bfloat16
tensor, which NumPy lacks, as float32)."""

CHUNK_VALUES = 2**22
"""Values per inner chunk of an activation array at most (16 MiB of float32), whatever the samples' size."""

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
"""Array configuration of every array: every chunk is written as given, even one that equals the fill value,
so that a chunk missing from a committed epoch always means damage (and zarr's full comparison per write
is skipped)."""


def _writable(array: zarr.Array) -> zarr.Array:
    """``array`` with :data:`WRITE_CONFIG`: the array configuration is not stored, so a reopened array needs it again
    (without it zarr skips, or deletes, a chunk that equals the fill value: an all-NaN metric, a zero counter)."""
    return array.with_config(WRITE_CONFIG)


def default_compressors() -> tuple[Any, ...]:
    """Codecs of every array: fast Blosc-LZ4 with byte shuffle, then a CRC32C checksum.

    The checksum makes a corrupted chunk fail loudly on read instead of returning garbage.
    """
    return (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())


@dataclass(frozen=True)
class LayerSpec:
    """One captured layer.

    Parameters
    ----------
    name : str
        Store name of the layer (``hidden1`` ... ``hiddenK``, ``output`` for actlab's MLPs; the qualified module
        name for other models).
    width : int
        Number of units: output features of a dense layer, channels of a conv layer.
    fan_in : int
        Inputs of the module's weight (``in_features``, ``in_channels``); 0 for a module without one.
    activation : str
        Nonlinearity the model applies to ``preact``: ``"relu"`` or ``"identity"`` (what was captured is used as it
        is, e.g. the output of a ReLU module).
    module : str
        Qualified name of the torch submodule whose output is ``preact``.
    kind : {"dense", "conv"}
        ``"conv"`` for a module output with dims (channel, y, x).
    reduce : {"none", "mean", "max"}
        Reduction over (y, x) applied at capture time to a conv layer; ``"none"`` for a dense layer.
    shape : tuple of int
        Stored value of one sample: ``(width,)``, or ``(width, y, x)`` for a conv layer with ``reduce="none"``.
        Left empty, it is ``(width,)``.
    """

    name: str
    width: int
    fan_in: int
    activation: str
    module: str
    kind: str = "dense"
    reduce: str = "none"
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape) or (int(self.width),)
        object.__setattr__(self, "shape", shape)
        problem = layer_spec_problem(asdict(self))
        if problem:
            raise ValueError(problem)

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimension names of the stored ``preact`` array."""
        return layer_dims(self.kind, self.reduce)


def layer_dims(kind: str, reduce: str) -> tuple[str, ...]:
    """Dimension names of ``layers/<layer>/preact`` for a layer of this ``kind`` and ``reduce``."""
    return ("epoch", "sample", "channel", "y", "x") if kind == "conv" and reduce == "none" else ("epoch", "sample", "unit")


def layer_spec_problem(spec: Any) -> str | None:
    """What is wrong with one entry of root attr ``layers`` (a mapping), or None when it is a valid layer spec."""
    fields = {"name": str, "width": int, "fan_in": int, "activation": str, "module": str, "kind": str, "reduce": str,
              "shape": (list, tuple)}
    if not isinstance(spec, Mapping) or any(not isinstance(spec.get(k), t) or isinstance(spec.get(k), bool)
                                            for k, t in fields.items()):
        return f"root attr layers holds {spec!r}, not a spec with {', '.join(fields)}"
    name = spec["name"]
    if spec["activation"] not in ACTIVATIONS:
        return f"layer {name} has activation {spec['activation']!r}, not one of {ACTIVATIONS}"
    if spec["kind"] not in LAYER_KINDS or spec["reduce"] not in REDUCTIONS:
        return f"layer {name} has kind {spec['kind']!r} and reduce {spec['reduce']!r}, not one of {LAYER_KINDS} and {REDUCTIONS}"
    if spec["kind"] == "dense" and spec["reduce"] != "none":
        return f"layer {name} is dense with reduce {spec['reduce']!r}; only a conv layer is reduced"
    if spec["width"] < 1 or spec["fan_in"] < 0:
        return f"layer {name} has width {spec['width']} and fan_in {spec['fan_in']}, not >= 1 and >= 0"
    shape = list(spec["shape"])
    full = spec["kind"] == "conv" and spec["reduce"] == "none"
    if (len(shape) != (3 if full else 1) or shape[0] != spec["width"]
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
        return (f"layer {name} has shape {shape}, expected [width, y, x] for an unreduced conv layer and [width] "
                "otherwise")
    if not name or "/" in name or name.startswith("__") or name in (".", ".."):
        return f"layer name {name!r} is not a valid zarr node name (non-empty, no '/', not starting with '__')"
    return None


@dataclass(frozen=True)
class ParameterSpec:
    """One entry of the model's state_dict, stored at every recorded epoch as ``parameters/<name>``.

    Parameters
    ----------
    name : str
        The state_dict name (``linear1.weight``, ``layer1.0.bn1.running_mean``).
    shape : tuple of int
        The tensor's shape.
    dtype : str
        NumPy dtype of the stored array, one of :data:`PARAMETER_DTYPES`.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        problem = parameter_spec_problem(asdict(self))
        if problem:
            raise ValueError(problem)

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimension names of ``parameters/<name>``: ``epoch``, then ``<name>[0]``, ``<name>[1]``, ..."""
        return parameter_dims(self.name, len(self.shape))


def parameter_dims(name: str, ndim: int) -> tuple[str, ...]:
    """Dimension names of the array ``parameters/<name>`` of a tensor with ``ndim`` dims."""
    return ("epoch", *(f"{name}[{i}]" for i in range(ndim)))


def parameter_spec_problem(spec: Any) -> str | None:
    """What is wrong with one entry of root attr ``parameters`` (a mapping), or None when it is valid."""
    if (not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("dtype"), str)
            or not isinstance(spec.get("shape"), (list, tuple))):
        return f"root attr parameters holds {spec!r}, not a spec with name, shape, dtype"
    name = spec["name"]
    if not name or "/" in name or name.startswith("__") or name in (".", ".."):
        return f"parameter name {name!r} is not a valid zarr node name (non-empty, no '/', not starting with '__')"
    if spec["dtype"] not in PARAMETER_DTYPES:
        return f"parameter {name} has dtype {spec['dtype']!r}, not one of {PARAMETER_DTYPES}"
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec["shape"]):
        return f"parameter {name} has shape {spec['shape']!r}, not a list of integers >= 0"
    return None


@dataclass(frozen=True)
class ProbeSet:
    """The fixed probe samples of a run, in stored order (clean, then noisy, then test).

    Parameters
    ----------
    images : ndarray of uint8 or float32, shape (sample, channel, height, width)
        Pixels 0-255, or float inputs as handed in (before normalisation either way).
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
        if self.images.ndim != 4 or self.images.dtype not in (np.uint8, np.float32):
            raise ValueError(f"probe images must be uint8 or float32 (sample, channel, height, width); got {self.images.dtype} {self.images.shape}")
        for name in ("dataset_index", "group", "label", "original_label", "is_noisy"):
            value = getattr(self, name)
            if value.shape != (n,):
                raise ValueError(f"probe {name} must have shape ({n},); got {value.shape}")
        if np.any(np.diff(self.group.astype(int)) < 0):
            raise ValueError("probes must be ordered by group: clean, then noisy, then test")

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Subsets:
    """The training and test samples a run used, so that its metrics can be checked from the store alone.

    Parameters
    ----------
    train_index : ndarray of int, shape (train_sample,)
        Index into the full training set of every training sample used, in training order.
    train_label : ndarray of int, shape (train_sample,)
        Assigned label (after noise injection), the one trained on.
    train_original_label : ndarray of int, shape (train_sample,)
        Label before noise injection.
    train_is_noisy : ndarray of bool, shape (train_sample,)
        Whether the assigned label differs from the original one.
    test_index : ndarray of int, shape (test_sample,)
        Index into the full test set of every test sample evaluated (``test_loss``, ``test_acc``).
    test_label : ndarray of int, shape (test_sample,)
        Label of each evaluated test sample.
    """

    train_index: np.ndarray
    train_label: np.ndarray
    train_original_label: np.ndarray
    train_is_noisy: np.ndarray
    test_index: np.ndarray
    test_label: np.ndarray

    def __post_init__(self) -> None:
        for prefix, names in (("train", ("label", "original_label", "is_noisy")), ("test", ("label",))):
            n = len(getattr(self, f"{prefix}_index"))
            for name in names:
                value = np.asarray(getattr(self, f"{prefix}_{name}"))
                if value.shape != (n,):
                    raise ValueError(f"{prefix}_{name} must have shape ({n},) like {prefix}_index; got {value.shape}")

    @classmethod
    def of_probes(cls, probes: ProbeSet, test_group: int = GROUPS.index("test")) -> Subsets:
        """Subsets made of the probes alone: for synthetic stores whose only training and test samples are the probes."""
        train = probes.group != test_group
        return cls(train_index=probes.dataset_index[train], train_label=probes.label[train],
                   train_original_label=probes.original_label[train], train_is_noisy=probes.is_noisy[train],
                   test_index=probes.dataset_index[~train], test_label=probes.label[~train])


def store_path(run_dir: str | os.PathLike) -> Path:
    """Path of the Zarr store inside a local run directory."""
    return Path(run_dir) / STORE_DIRNAME


def store_location(run: str | os.PathLike) -> Location:
    """Location of the Zarr store inside a run: a Path for a local run, a URL for a remote one."""
    return join(location(run), STORE_DIRNAME)


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
        self._root = zarr.open_group(zarr_store(store_location(self.run_dir), read_only=False), mode="r+", zarr_format=3)
        self.attrs = dict(self._root.attrs)
        check_schema(self.attrs, self.run_dir)
        self.record_epochs: list[int] = list(self.attrs["record_epochs"])
        self.layer_names: list[str] = [layer["name"] for layer in self.attrs["layers"]]
        self.parameter_names: list[str] = [parameter["name"] for parameter in self.attrs["parameters"]]
        self._slot = {epoch: i for i, epoch in enumerate(self.record_epochs)}
        self._metrics = self._root["metrics"]
        self._layers = self._root["layers"]
        self._parameters = self._root["parameters"]
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
        subsets: Subsets,
        record_epochs: Sequence[int],
        n_epochs: int,
        parameters: Sequence[ParameterSpec] = (),
        activation_dtype: str = "float32",
        replace: bool = False,
    ) -> RunWriter:
        """Allocate an empty, full-size store inside the run folder ``run_dir``.

        The folder is created when missing and marked as a run (:func:`actlab.files.write_marker`);
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
        replace : bool
            Replace the store already in ``run_dir`` (``--overwrite``); otherwise one there is an error.
        """
        run_dir = location(run_dir)
        record_epochs = [int(e) for e in record_epochs]
        if activation_dtype not in ("float32", "float16"):
            raise ValueError(f"activation_dtype must be 'float32' or 'float16'; got {activation_dtype!r}")
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
                          subsets=subsets, record_epochs=record_epochs, n_epochs=n_epochs, activation_dtype=activation_dtype)
        if is_remote(run_dir):
            return cls._create_remote(run_dir, replace=replace, **allocation)
        target = store_path(run_dir)
        if target.exists() and not replace:
            raise StoreError(f"{run_dir} already holds a run store; continue it with 'actlab record --resume {run_dir}'")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_marker(run_dir, "run")
        built = Path(tempfile.mkdtemp(prefix=f".{STORE_DIRNAME}.", suffix=PARTIAL_SUFFIX, dir=run_dir))
        try:
            follow_umask(built)
            _allocate(built, **allocation)
            swap_in(built, target)
        except BaseException:
            shutil.rmtree(built, ignore_errors=True)
            raise
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
        _allocate(zarr_store(target, read_only=False), **allocation)
        return cls(run)

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
            _writable(self._metrics[name])[...] = values
        for epoch in rows:
            self._metric_epoch[epoch] = epoch
        _writable(self._metrics["epoch"])[...] = self._metric_epoch  # commit

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
        for name in self.layer_names:
            _writable(self._layers[name]["preact"])[slot] = preacts[name]
        for name in self.parameter_names:
            _writable(self._parameters[name])[slot] = params[name]
        self._record_epoch[slot] = epoch
        _writable(self._layers["epoch"])[...] = self._record_epoch  # commit

    def mark_complete(self) -> None:
        """Set the root status to complete: every scheduled epoch is in."""
        self._root.attrs.update({"status": STATUS_COMPLETE, "completed": _now()})
        self.attrs = dict(self._root.attrs)

    def mark_recording(self) -> None:
        """Set the root status back to recording (when a run is resumed)."""
        self._root.attrs.update({"status": STATUS_RECORDING})
        self.attrs = dict(self._root.attrs)


# -- the schema ------------------------------------------------------------------------

ARRAYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "metrics/epoch": (("epoch",), ("int32",)),
    **{f"metrics/{name}": (("epoch",), ("float64",)) for name in METRICS},
    "probes/sample": (("sample",), ("int64",)),
    "probes/dataset_index": (("sample",), ("int64",)),
    "probes/group": (("sample",), ("int8",)),
    "probes/label": (("sample",), ("int16",)),
    "probes/original_label": (("sample",), ("int16",)),
    "probes/is_noisy": (("sample",), ("bool",)),
    "probes/image": (("sample", "channel", "height", "width"), ("uint8", "float32")),
    "training/dataset_index": (("train_sample",), ("int64",)),
    "training/label": (("train_sample",), ("int16",)),
    "training/original_label": (("train_sample",), ("int16",)),
    "training/is_noisy": (("train_sample",), ("bool",)),
    "evaluation/dataset_index": (("test_sample",), ("int64",)),
    "evaluation/label": (("test_sample",), ("int16",)),
    "layers/epoch": (("epoch",), ("int32",)),
}
"""Every array outside the layer groups: path -> (dimension_names, allowed dtypes)."""

ACTIVATION_DTYPES: tuple[str, ...] = ("float32", "float16")
"""Allowed dtypes of ``layers/<layer>/preact``; its dims are :func:`layer_dims` of the layer."""

COMMIT_ARRAYS: tuple[str, ...] = ("metrics/epoch", "layers/epoch")


def _fill_value(path: str, dtype: str) -> Any:
    if path in COMMIT_ARRAYS:
        return UNCOMMITTED
    return np.nan if dtype.startswith("float") else False if dtype == "bool" else 0


def _create(root: zarr.Group, path: str, shape: tuple[int, ...], *, dtype: str | None = None,
            dims: tuple[str, ...] = (), values: np.ndarray | None = None, chunks: tuple[int, ...] | None = None,
            shards: tuple[int, ...] | None = None, attributes: Mapping[str, Any]) -> zarr.Array:
    """Create one array of the schema: dims and dtype from :data:`ARRAYS`, else (per-epoch arrays) as given.

    An unsharded array is written whole at once (``values``, else its fill value); a sharded one (the per-epoch
    layer and parameter arrays) is left empty for :meth:`RunWriter.write_epoch`.
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
    })
    root = zarr.open_group(store, mode="w-", zarr_format=3, attributes=attributes)  # status "creating" comes first
    commit = {"long_name": "training epoch", "units": "epoch", "commit": "-1 = not committed"}

    root.create_group("metrics", attributes={"description": "per-epoch loss and accuracy, epoch 0 = initialisation"})
    n_metric = n_epochs + 1
    _create(root, "metrics/epoch", (n_metric,), attributes=commit)
    for name, (long_name, units) in METRICS.items():
        _create(root, f"metrics/{name}", (n_metric,), attributes={"long_name": long_name, "units": units})

    n = len(probes)
    root.create_group("probes", attributes={"description": "fixed probe samples, ordered by group code"})
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

    root.create_group("training", attributes={"description": "every training sample used, in training order"})
    n_train = len(subsets.train_index)
    for name, values, long_name in (
        ("dataset_index", subsets.train_index, "index in the full training set"),
        ("label", subsets.train_label, "label used in training (assigned, possibly noisy)"),
        ("original_label", subsets.train_original_label, "label before noise injection"),
        ("is_noisy", subsets.train_is_noisy, "assigned label differs from the original label"),
    ):
        _create(root, f"training/{name}", (n_train,), values=values, attributes={"long_name": long_name})
    root.create_group("evaluation", attributes={"description": "every test sample evaluated (test_loss, test_acc)"})
    n_test = len(subsets.test_index)
    _create(root, "evaluation/dataset_index", (n_test,), values=subsets.test_index, attributes={"long_name": "index in the full test set"})
    _create(root, "evaluation/label", (n_test,), values=subsets.test_label, attributes={"long_name": "test label"})

    n_slots = len(record_epochs)
    root.create_group("layers", attributes={"description": "recorded epochs; one group per captured layer"})
    _create(root, "layers/epoch", (n_slots,), attributes=commit)
    for layer in layers:
        root["layers"].create_group(layer.name, attributes=_json_safe(asdict(layer)))
        sample_chunk = max(1, min(n, SAMPLE_CHUNK, CHUNK_VALUES // int(np.prod(layer.shape))))
        sample_shard = -(-n // sample_chunk) * sample_chunk
        what = "output" if layer.reduce == "none" else f"output, {layer.reduce} over (y, x) per channel,"
        _create(root, f"layers/{layer.name}/preact", (n_slots, n, *layer.shape), dtype=activation_dtype, dims=layer.dims,
                chunks=(1, sample_chunk, *layer.shape), shards=(1, sample_shard, *layer.shape),
                attributes={"long_name": f"{what} of {layer.module} ({layer.name})", "units": "1",
                            "activation": layer.activation})
    root.create_group("parameters", attributes={"description": "recorded epochs; the model's state_dict by name"})
    for parameter in parameters:
        whole = (1, *(max(side, 1) for side in parameter.shape))
        _create(root, f"parameters/{parameter.name}", (n_slots, *parameter.shape), dtype=parameter.dtype,
                dims=parameter.dims, chunks=whole, shards=whole,
                attributes={"long_name": f"state_dict entry {parameter.name}", "units": "1"})
    root.attrs.update({"status": STATUS_RECORDING})  # every array allocated: readers may open it now


# -- reading ---------------------------------------------------------------------------

_NO_CHUNK = 2**64 - 1
"""Offset and size of an absent inner chunk in a shard index."""


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


def store_folder_id(run_dir: str | os.PathLike) -> tuple[int, int] | None:
    """Device and inode of a local run's store folder; None for a URL, or when the store folder cannot be found."""
    run_dir = location(run_dir)  # a local path given as a str is a Path here, a URL stays a str
    if is_remote(run_dir):
        return None
    try:
        stat = os.stat(store_path(run_dir))
    except OSError:  # none there, or the run path is a file
        return None
    return stat.st_dev, stat.st_ino


def store_identity(run_dir: str | os.PathLike) -> tuple[Any, ...]:
    """What tells the store of one recording from that of another at the same place (a run replaced by
    ``actlab record --overwrite``, or deleted and recorded again): :func:`store_folder_id`, and the root attrs
    ``created`` and ``config.resolved.run_id`` where present."""
    folder = store_folder_id(run_dir)
    attrs = read_attrs(run_dir)
    resolved = attrs.get("config", {}).get("resolved", {})
    return folder, attrs.get("created"), resolved.get("run_id") if isinstance(resolved, dict) else None


def replaced_error(run_dir: str | os.PathLike) -> StoreError:
    """The error of a read from a run whose store was replaced since the run was opened."""
    return StoreError(f"{run_dir} was replaced by another recording while it was read; analyse it again")


def read_attrs(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Root attributes of a run store (local path or URL), after checking that it is one of this schema version."""
    path = store_location(run_dir)
    try:
        found = files(path).size("zarr.json") is not None
    except Exception as exc:  # no such bucket, no credentials, unreachable endpoint
        raise StoreError(f"{run_dir} cannot be reached ({exception_line(exc)}); check the URL and the storage "
                         "settings in the environment") from exc
    if not found:
        raise StoreError(f"{run_dir} is not an actlab run (no {STORE_DIRNAME} inside); check the path")
    try:
        attrs = dict(zarr.open_group(zarr_store(path, read_only=True), mode="r", zarr_format=3).attrs)
    except Exception as exc:  # unreadable metadata
        raise StoreError(f"{path} cannot be opened ({exception_line(exc)}); the store is damaged") from exc
    check_schema(attrs, run_dir)
    return attrs


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


def _breach(where: str | os.PathLike, what: str) -> StoreError:
    return StoreError(f"{where}: {what}; the store breaks the contract of docs/store-format.md, fix the program that wrote it")


def layer_array_name(layer: str, array: str, epoch: int) -> str:
    """How errors name one epoch of a per-epoch layer array: ``array layers/<layer>/<array> (layer <layer> epoch <epoch>)``."""
    return f"array layers/{layer}/{array} (layer {layer} epoch {epoch})"


def parameter_array_name(name: str, epoch: int) -> str:
    """How errors name one epoch of a parameter array: ``array parameters/<name> (epoch <epoch>)``."""
    return f"array parameters/{name} (epoch {epoch})"


def _check_root_attrs(attrs: Mapping[str, Any], where: Location) -> None:
    """The binding root attributes: ``layers``, ``record_epochs``, ``n_epochs``, ``groups``, ``status``."""
    if attrs.get("status") == STATUS_CREATING:
        raise creating_error(where)
    if attrs.get("status") not in (STATUS_RECORDING, STATUS_COMPLETE):
        raise _breach(where, f"root attr status is {attrs.get('status')!r}, not {STATUS_RECORDING!r} or {STATUS_COMPLETE!r}")
    n_epochs, record_epochs = attrs.get("n_epochs"), attrs.get("record_epochs")
    if not isinstance(n_epochs, int) or n_epochs < 0:
        raise _breach(where, f"root attr n_epochs is {n_epochs!r}, not an integer >= 0")
    if (not isinstance(record_epochs, list) or not record_epochs or not all(isinstance(e, int) for e in record_epochs)
            or sorted(set(record_epochs)) != record_epochs or record_epochs[0] < 0 or record_epochs[-1] > n_epochs):
        raise _breach(where, f"root attr record_epochs is {record_epochs!r}, not increasing integers within [0, n_epochs]")
    groups = attrs.get("groups")
    if not isinstance(groups, list) or sorted(map(str, groups)) != sorted(GROUPS) or len(groups) != len(GROUPS):
        raise _breach(where, f"root attr groups is {groups!r}, not the names {list(GROUPS)} in some order")
    layers = attrs.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _breach(where, f"root attr layers is {layers!r}, not a non-empty list of layer specs")
    for spec in layers:
        problem = layer_spec_problem(spec)
        if problem:
            raise _breach(where, problem)
    names = [spec["name"] for spec in layers]
    if len(set(names)) != len(names):
        raise _breach(where, f"root attr layers repeats a name: {names}")
    parameters = attrs.get("parameters")
    if not isinstance(parameters, list):
        raise _breach(where, f"root attr parameters is {parameters!r}, not a list of parameter specs")
    for spec in parameters:
        problem = parameter_spec_problem(spec)
        if problem:
            raise _breach(where, problem)
    names = [spec["name"] for spec in parameters]
    if len(set(names)) != len(names):
        raise _breach(where, f"root attr parameters repeats a name: {names}")


@dataclass(frozen=True)
class _Source:
    """A store opened for reading: what zarr opens (``store``) and byte access to its files or objects (``files``)."""

    store: Any
    files: Files

    @classmethod
    def of(cls, run: Location) -> _Source:
        path = store_location(run)
        return cls(store=zarr_store(path, read_only=True), files=files(path))


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
        raise _breach(where, f"array {path} has dimension_names {found}, expected {dims}")
    if str(array.dtype) not in dtypes:
        raise _breach(where, f"array {path} has dtype {array.dtype}, expected {' or '.join(dtypes)}")
    for dim, size in zip(dims, array.shape):
        if sizes.setdefault(dim, size) != size:
            raise _breach(where, f"array {path} has {size} along {dim}, expected {sizes[dim]}")
    if not array.compressors or not isinstance(array.compressors[-1], Crc32cCodec):
        raise _breach(where, f"array {path} does not end its codecs with crc32c")
    if path in COMMIT_ARRAYS and array.metadata.fill_value != UNCOMMITTED:
        raise _breach(where, f"commit array {path} has fill_value {array.metadata.fill_value}, expected {UNCOMMITTED}")
    return array


def _read(src: _Source, path: str, sizes: dict[str, int], where: Location) -> tuple[np.ndarray, dict[str, Any]]:
    """Values and attrs of one (unsharded) array of :data:`ARRAYS`, every chunk present and checksummed."""
    array = _open_array(src, path, *ARRAYS[path], sizes, where)
    if array.shards is not None:
        raise _breach(where, f"array {path} is sharded; only the arrays of layers/<layer> and parameters/ are")
    chunk_shape = array.metadata.chunk_grid.chunk_shape
    for coords in np.ndindex(*(-(-s // c) for s, c in zip(array.shape, chunk_shape))):
        key = array.metadata.encode_chunk_key(coords)
        if not src.files.size(f"{path}/{key}"):
            raise damage_error(where, f"array {path} lacks chunk {STORE_DIRNAME}/{path}/{key} (missing or empty)")
    try:
        return np.asarray(array[...]), dict(array.attrs)
    except Exception as exc:
        raise damage_error(where, f"array {path} cannot be read ({exception_line(exc)})") from exc


def _committed_slots(values: np.ndarray, expected: Sequence[int], path: str, where: Location) -> np.ndarray:
    """Indices of the committed slots of a commit array; each slot holds -1 or its expected epoch."""
    bad = np.flatnonzero((values != UNCOMMITTED) & (values != np.asarray(expected)))
    if len(bad):
        raise damage_error(where, f"array {path} holds {int(values[bad[0]])} in slot {int(bad[0])}, "
                            f"expected {int(expected[bad[0]])} or {UNCOMMITTED}")
    return np.flatnonzero(values != UNCOMMITTED)


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
        Dims (epoch,): every committed epoch's metrics, in memory.
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
    """

    path: Location
    attrs: dict[str, Any]
    metrics: xr.Dataset
    probes: xr.Dataset
    training: xr.Dataset
    evaluation: xr.Dataset
    layers: dict[str, xr.Dataset]
    parameters: xr.Dataset

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


def open_store(run_dir: str | os.PathLike) -> StoreView:
    """Open a run store, showing committed epochs only, after checking it against the contract.

    Every array outside the layer groups is read (and its CRC32C checked) here; the layer arrays stay lazy.
    Check their chunks with :func:`damaged_chunks`.

    Parameters
    ----------
    run_dir : path or URL
        A run directory (``runs/<name>``) or run URL (``s3://bucket/runs/<name>``, see :mod:`actlab.location`),
        recorded or still recording.

    Returns
    -------
    StoreView

    Raises
    ------
    StoreError
        Not a run, another schema version, an array missing, damaged or not as ``docs/store-format.md`` says;
        the message names the array.
    """
    run_dir = location(run_dir)
    attrs = read_attrs(run_dir)
    _check_root_attrs(attrs, run_dir)
    path = _Source.of(run_dir)
    n_epochs, record_epochs = attrs["n_epochs"], attrs["record_epochs"]

    metric_epochs, epoch_attrs = _read(path, "metrics/epoch", {"epoch": n_epochs + 1}, run_dir)
    keep = _committed_slots(metric_epochs, range(n_epochs + 1), "metrics/epoch", run_dir)
    metrics = _dataset(path, "metrics", list(METRICS), {"epoch": n_epochs + 1}, run_dir, keep)
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
    training = _dataset(path, "training", ["dataset_index", "label", "original_label", "is_noisy"], sizes, run_dir)
    evaluation = _dataset(path, "evaluation", ["dataset_index", "label"], sizes, run_dir)
    class_names = attrs.get("dataset", {}).get("class_names")
    for name, ds in (("probes", probes), ("training", training), ("evaluation", evaluation)):
        _check_labels(ds, name, len(class_names) if class_names else None, run_dir)
    _check_probes(probes, training, evaluation, run_dir)

    layer_epochs, layer_epoch_attrs = _read(path, "layers/epoch", {"epoch": len(record_epochs)}, run_dir)
    committed = _committed_slots(layer_epochs, record_epochs, "layers/epoch", run_dir)
    probe_coords = {name: probes[name] for name in ("group", "dataset_index", "label", "original_label", "is_noisy")}
    layers: dict[str, xr.Dataset] = {}
    for spec in attrs["layers"]:
        name = spec["name"]
        dims = layer_dims(spec["kind"], spec["reduce"])
        layer_sizes = {"epoch": len(record_epochs), "sample": probes.sizes["sample"],
                       **dict(zip(dims[2:], spec["shape"]))}
        _check_sharded(_open_array(path, f"layers/{name}/preact", dims, ACTIVATION_DTYPES, layer_sizes, run_dir), run_dir)
        node = xr.open_zarr(path.store, group=f"layers/{name}", consolidated=False, zarr_format=3,
                            chunks={dim: 1 if dim == "epoch" else -1 for dim in dims})
        node = node.assign_coords(epoch=("epoch", layer_epochs, layer_epoch_attrs)).isel(epoch=committed)
        node = node.assign_coords(sample=probes["sample"].values, **probe_coords)
        node.attrs.update(spec)
        layers[name] = node
    variables = {}
    for spec in attrs["parameters"]:
        dims = parameter_dims(spec["name"], len(spec["shape"]))
        sizes = {"epoch": len(record_epochs), **dict(zip(dims[1:], spec["shape"]))}
        array = _open_array(path, f"parameters/{spec['name']}", dims, (spec["dtype"],), sizes, run_dir)
        _check_sharded(array, run_dir)
        variables[spec["name"]] = (dims, da.from_zarr(array, chunks=(1, *array.shape[1:])), dict(array.attrs))
    parameters = xr.Dataset(variables, coords={"epoch": ("epoch", layer_epochs, layer_epoch_attrs)}).isel(epoch=committed)
    return StoreView(path=run_dir, attrs=attrs, metrics=metrics, probes=probes, training=training,
                     evaluation=evaluation, layers=layers, parameters=parameters)


def _check_sharded(array: zarr.Array, where: Location) -> None:
    """A per-epoch layer array must be sharded one epoch per shard, its index at the end with a CRC32C."""
    codec = array.metadata.codecs[0] if array.metadata.codecs else None
    index_codecs = [c.to_dict()["name"] for c in codec.index_codecs] if isinstance(codec, ShardingCodec) else []
    if (not isinstance(codec, ShardingCodec) or codec.index_location.value != "end" or index_codecs != ["bytes", "crc32c"]
            or array.metadata.chunk_grid.chunk_shape[0] != 1):
        raise _breach(where, f"array {array.path} is not sharded one epoch per shard with index_location end and "
                             "index_codecs bytes, crc32c")


def _shard_problems(array: zarr.Array, src: _Source, path: str, slot: int) -> list[str]:
    """What is wrong with the shards of one epoch slot, from their tails only (the shard index: one ranged read)."""
    codec = array.metadata.codecs[0]
    shard_shape = array.metadata.chunk_grid.chunk_shape
    per_shard = tuple(s // c for s, c in zip(shard_shape, codec.chunk_shape))
    index_size = 16 * int(np.prod(per_shard)) + 4
    problems = []
    for coords in np.ndindex(*(-(-s // c) for s, c in zip(array.shape[1:], shard_shape[1:]))):
        key = array.metadata.encode_chunk_key((slot, *coords))
        name = f"{STORE_DIRNAME}/{path}/{key}"
        size = src.files.size(f"{path}/{key}")
        if size is None:
            problems.append(f"lacks chunk {name}")
            continue
        if size < index_size:
            problems.append(f"has an empty or truncated shard {name} ({size} bytes)")
            continue
        tail = src.files.read_range(f"{path}/{key}", size - index_size, size)
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


def damaged_chunks(run_dir: str | os.PathLike) -> list[str]:
    """Every problem with the shards of the committed epochs, one line each, naming the array and epoch.

    Zarr reads a missing or empty shard, or a missing inner chunk, as its fill value (NaN); this check
    turns silent NaNs into an error the caller can report. It reads only the shard indexes at the file
    tails and checks their CRC32C, that every inner chunk is present and lies within the file.

    Returns
    -------
    list of str
        E.g. ``"array layers/hidden2/preact (layer hidden2 epoch 30) lacks chunk store.zarr/layers/hidden2/preact/c/3/0/0"``;
        empty when the store is intact.
    """
    run_dir = location(run_dir)
    attrs = read_attrs(run_dir)
    _check_root_attrs(attrs, run_dir)
    path = _Source.of(run_dir)
    record_epochs = attrs["record_epochs"]
    slots, _ = _read(path, "layers/epoch", {"epoch": len(record_epochs)}, run_dir)
    committed = _committed_slots(slots, record_epochs, "layers/epoch", run_dir)
    problems = []
    arrays = [(f"layers/{spec['name']}/preact", lambda epoch, layer=spec["name"]: layer_array_name(layer, "preact", epoch))
              for spec in attrs["layers"]]
    arrays += [(f"parameters/{spec['name']}", lambda epoch, name=spec["name"]: parameter_array_name(name, epoch))
               for spec in attrs["parameters"]]
    for array_path, describe in arrays:
        array = zarr.open_array(path.store, path=array_path, mode="r", zarr_format=3)
        _check_sharded(array, run_dir)
        problems += [f"{describe(record_epochs[slot])} {problem}"
                     for slot in committed for problem in _shard_problems(array, path, array_path, int(slot))]
    return problems
