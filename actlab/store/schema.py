"""The contract of a run store: every name, dim, dtype and spec, and the schema check.

``docs/store-format.md`` is the contract for people (enough to write a compatible store without actlab); this
module is the same contract in code, section by section in the order of that page. It imports no other part of
:mod:`actlab.store`. Keep the two in step and bump :data:`SCHEMA_VERSION` on any incompatible change.

Layout of a run directory::

    runs/<name>/
      store.zarr/            Zarr v3 hierarchy, below
      checkpoint.pt          latest training checkpoint (record side only)
      checkpoint.pt.sha256   its SHA-256 (and that of the checkpoint it replaced)
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
        epoch                        int32, -1 until that recorded epoch is written
        <state_dict name>            (epoch, *shape): every parameter and buffer of the model
      dynamics/                      dims (epoch, train_sample): every epoch 0..n_epochs; only with root attr dynamics
        epoch                        int32, -1 until that epoch's trajectories are committed
        loss, margin                 float16 (epoch, train_sample)
        correct, correct_original    bool (epoch, train_sample)
                                     group attr source: "evaluation" or "training" (DYNAMICS_SOURCES)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, Crc32cCodec

from actlab.errors import StoreError
from actlab.location import Location, join

# -- format ----------------------------------------------------------------------------

SCHEMA_VERSION = 5
"""The version this release writes; bumped on any change that older readers cannot read (2: CRC32C on every array,
sharded parameters, ``training/`` and ``evaluation/`` groups; 3: layer ``kind``, ``reduce`` and ``shape``, conv
layers with dims (epoch, sample, channel, y, x), the model's parameters in ``parameters/`` under their state_dict
names instead of ``weight`` and ``bias`` in each layer group; 4: ``parameters/epoch``, the epoch of each slot of
``parameters/``; root and group attributes carry ``actlab_digest``; ``layers/shard_sha256`` keeps the SHA-256 of
every shard of a recorded epoch with its commit; the per-sample ``dynamics/`` group and root attr
``dynamics``; root attr ``user_metrics``; 5: ``layers/shard_digest``, the SHA-256 of each shard's index and
inner-chunk CRC32Cs, instead of ``layers/shard_sha256``, that of the whole shard file). docs/store-format.md, section "Versions", says what each adds."""
READABLE_SCHEMAS: tuple[int, ...] = (1, 2, 3, 4, 5)
"""Schema versions this release opens and analyses (:func:`actlab.store.open_store` reads the older ones as the
current one); it writes and resumes :data:`SCHEMA_VERSION` only."""

STORE_DIRNAME = "store.zarr"
CHECKPOINT_FILENAME = "checkpoint.pt"
CHECKPOINT_DIGEST_FILENAME = "checkpoint.pt.sha256"
"""Beside the checkpoint: ``{"sha256": HEX, "previous_sha256": HEX or null}``, the SHA-256 of the checkpoint file
and of the one it replaced, written (atomically) before the checkpoint is renamed into place."""
ANALYSIS_DIRNAME = "analysis"


def store_path(run_dir: str | os.PathLike) -> Path:
    """Path of the Zarr store inside a local run directory."""
    return Path(run_dir) / STORE_DIRNAME


def store_location(run: Location) -> Location:
    """Location of the Zarr store inside the run at ``run`` (:func:`actlab.location.location`): a Path for a local
    run, a URL for a remote one."""
    return join(run, STORE_DIRNAME)


def check_schema(attrs: Mapping[str, Any], where: str | os.PathLike, *, writing: bool = False) -> None:
    """Raise :class:`StoreError` unless ``attrs`` come from a store of a schema this release reads
    (:data:`READABLE_SCHEMAS`), or, ``writing``, of the schema it writes (:data:`SCHEMA_VERSION`)."""
    version = attrs.get("schema_version")
    if version is None:
        raise StoreError(f"{where} is not an actlab run store (no schema_version); check the path")
    if writing and version in READABLE_SCHEMAS and version != SCHEMA_VERSION:
        raise StoreError(f"{where} has store schema version {version}, which this actlab reads but does not write "
                         f"(it writes version {SCHEMA_VERSION}); continue the run with the actlab release that "
                         "recorded it, or record it again")
    if version not in READABLE_SCHEMAS:
        raise StoreError(
            f"{where} has store schema version {version}, this actlab reads versions "
            f"{', '.join(map(str, READABLE_SCHEMAS))}; use a newer actlab or record the run again"
        )


WRITE_CONFIG = {"write_empty_chunks": True}
"""Array configuration of every array: every chunk is written as given, even one that equals the fill value,
so that a chunk missing from a committed epoch always means damage (and zarr's full comparison per write
is skipped)."""


def default_compressors() -> tuple[Any, ...]:
    """Codecs of every array: fast Blosc-LZ4 with byte shuffle, then a CRC32C checksum.

    The checksum makes a corrupted chunk fail loudly on read instead of returning garbage.
    """
    return (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())


# -- root attributes -------------------------------------------------------------------

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


# -- arrays ----------------------------------------------------------------------------

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


def user_metric_problem(name: Any) -> str | None:
    """What is wrong with one entry of root attr ``user_metrics`` (a metric the user's own loop reports, stored as
    ``metrics/<name>``, float64, dims (epoch,), NaN where not reported), or None when it is a valid name."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith("__") or name in (".", ".."):
        return f"user metric name {name!r} is not a valid zarr node name (non-empty, no '/', not starting with '__')"
    if name in METRICS or name == "epoch":
        return f"user metric name {name!r} is taken by a standard metric; choose another name"
    return None

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
    "layers/shard_digest": (("epoch", "shard", "digest_byte"), ("uint8",)),
    "parameters/epoch": (("epoch",), ("int32",)),
}
"""Every array outside the layer groups and the state_dict entries: path -> (dimension_names, allowed dtypes)."""

ACTIVATION_DTYPES: tuple[str, ...] = ("float32", "float16")
"""Allowed dtypes of ``layers/<layer>/preact``; its dims are :func:`layer_dims` of the layer."""

DYNAMICS: dict[str, tuple[str, str, str]] = {
    "loss": ("cross-entropy against the assigned label", "nats", "float16"),
    "margin": ("logit of the assigned label minus the largest other logit", "1", "float16"),
    "correct": ("predicted class equals the assigned label", "1", "bool"),
    "correct_original": ("predicted class equals the original label", "1", "bool"),
}
"""Per-sample trajectory of every training sample at every epoch: name -> (long_name, units, dtype); each array
``dynamics/<name>`` has dims (epoch, train_sample), epoch 0..n_epochs, one shard per epoch, and is present only when
root attr ``dynamics`` is true."""

ARRAYS["dynamics/epoch"] = (("epoch",), ("int32",))

DYNAMICS_SOURCES: dict[str, str] = {
    "evaluation": "a forward pass over the whole training set in eval() mode under no_grad at the end of each epoch",
    "training": "the logits of the training loop's own forward passes during each epoch (train() mode, the weights "
                "moving between batches); epoch 0, before training, is an evaluation pass",
}
"""Where the trajectories of ``dynamics/`` come from: the values of the group attribute ``source`` of ``dynamics/``
(optional; absent means ``"evaluation"``, as every store written before it existed)."""
DEFAULT_DYNAMICS_SOURCE = "evaluation"

COMMIT_ARRAYS: tuple[str, ...] = ("metrics/epoch", "layers/epoch", "parameters/epoch", "dynamics/epoch")
"""The epoch arrays: slot i holds its epoch once written, -1 until then. ``metrics/epoch`` commits the metrics and
``layers/epoch`` the recorded epoch (layers and parameters); ``parameters/epoch``, written just before ``layers/epoch``,
labels the slots of ``parameters/`` where xarray finds it; ``dynamics/epoch`` commits an epoch's per-sample
trajectories (written with the metrics, before ``metrics/epoch``)."""

SHARD_DIGESTS = "layers/shard_digest"
"""Array (epoch, shard, digest_byte) of uint8: row ``[slot, k]`` is the digest of the shard file of slot ``slot``
of the k-th array of :func:`digested_arrays` (:func:`actlab.store.integrity.shard_digest`: the SHA-256 of its index
and of the CRC32C of each inner chunk), written before the slot's commit in ``layers/epoch`` (zeros until then). A
shard moved from another epoch or copied from another run fails it. Schema 4 kept the SHA-256 of the whole shard
file in ``layers/shard_sha256`` instead."""


def digested_arrays(layers: Sequence[str], parameters: Sequence[str]) -> list[str]:
    """Paths of the per-epoch arrays whose shards :data:`SHARD_DIGESTS` covers, in its ``shard`` order: every
    layer's ``preact`` in the order of root attr ``layers``, then every parameter in the order of root attr
    ``parameters``. Each holds one shard per epoch."""
    return [f"layers/{name}/preact" for name in layers] + [f"parameters/{name}" for name in parameters]


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


# -- layers and parameters -------------------------------------------------------------

PARAMETER_DTYPES: tuple[str, ...] = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
"""Allowed dtypes of the arrays in ``parameters/``: the dtype of the state_dict tensor (the recorder stores a bfloat16
tensor, which NumPy lacks, as float32)."""


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
    if not name or "/" in name or name.startswith("__") or name in (".", "..", "epoch"):
        return (f"parameter name {name!r} is not a valid zarr node name (non-empty, no '/', not starting with '__') "
                "or is 'epoch'")
    if spec["dtype"] not in PARAMETER_DTYPES:
        return f"parameter {name} has dtype {spec['dtype']!r}, not one of {PARAMETER_DTYPES}"
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec["shape"]):
        return f"parameter {name} has shape {spec['shape']!r}, not a list of integers >= 0"
    return None


# -- chunks, shards and codecs ---------------------------------------------------------

CHUNK_VALUES = 2**22
"""Values per inner chunk of an activation array at most (16 MiB of float32), whatever the samples' size."""

SAMPLE_CHUNK = 512
"""Probe samples per inner chunk of an activation array; one shard holds all samples of one epoch."""
