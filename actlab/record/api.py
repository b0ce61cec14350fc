"""``record`` and ``resume``: train a model and write its run store."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actlab.errors import ConfigError
from actlab.files import marker_kind, write_failed
from actlab.location import Location, basename, files, is_remote, join, location
from actlab.record.claim import check_run_output_or_busy, claimed_run_dir, locked_run, refuse_if_busy, write_errors
from actlab.record.config import BUILTIN_MODELS, CUSTOM_DATASET, INSTANCE_MODEL, MODELS, RecordConfig
from actlab.record.data import PreparedData, custom_dataset, prepare_data
from actlab.record.ensemble import record_ensemble, resume_ensemble
from actlab.record.hooks import ActivationCapture
from actlab.record.loop import run_epochs
from actlab.record.models import count_parameters, layer_specs, mlp_layer_specs, parameter_arrays, parameter_specs
from actlab.record.setup import (
    check_same_data,
    data_subsets,
    environment,
    flushed_denormals,
    probe_set,
    resolved_settings,
    seeded_model,
)
from actlab.record.trainer import Trainer, load_checkpoint, resolve_device, to_device_normalized
from actlab.store import (
    CHECKPOINT_FILENAME,
    STATUS_COMPLETE,
    STATUS_CREATING,
    LayerSpec,
    RunWriter,
    check_schema,
    creating_error,
    missing_epochs,
    read_attrs,
)


def record(config: RecordConfig | None = None, *, train: Any = None, test: Any = None, **overrides: Any) -> Path:
    """Train a model and record its activations into a new run store.

    With ``seeds``, the replicas of those seeds train at once as one ensemble
    (:mod:`actlab.record.ensemble`), each written as a run ``seed<S>/`` in ``config.run_dir``.

    Parameters
    ----------
    config : RecordConfig, optional
        Settings; the defaults of :class:`RecordConfig` when omitted.
    train, test : (x, y) or dataset of (x, y) items, optional
        Your own data instead of ``dataset`` (:func:`actlab.record.data.custom_dataset`): images (sample,
        channel, height, width), uint8 pixels or floats, or float vectors (sample, feature) for a model that takes
        vectors, and integer labels. Give both or neither.
    **overrides
        Settings to change, by field name (``model="mlp3", epochs=50``). ``model`` may also be a factory
        (a function or class importable as ``package.module:callable``, called with ``model_args``), which
        the run stores and ``resume`` rebuilds, or an ``nn.Module`` instance, which records but cannot be
        resumed.

    Returns
    -------
    Path
        The run directory (``config.run_dir``).

    Raises
    ------
    ConfigError, DataError, OutputError
        Before anything is written when the settings, data or output folder are unusable.
    WriteError
        When a write fails (disk full); committed epochs stay readable and :func:`resume` finishes the run.
    """
    instance = overrides.get("model")
    if isinstance(instance, torch.nn.Module):
        overrides["model"] = INSTANCE_MODEL
        print(f"actlab record: the model is an instance of {type(instance).__qualname__}, which --resume cannot rebuild; "
              "give a factory ('package.module:callable' with model_args) to make the run resumable", file=sys.stderr)
    else:
        instance = None
        if callable(overrides.get("model")):
            overrides["model"] = factory_spec(overrides["model"])
    if (train is None) != (test is None):
        raise ConfigError("train and test go together; give both, or neither to use the dataset setting")
    if train is not None:
        overrides["dataset"] = CUSTOM_DATASET
    config = config or RecordConfig()
    if overrides:
        config = config.replace(**overrides)
    if config.model == INSTANCE_MODEL and instance is None:
        raise ConfigError(f"model {INSTANCE_MODEL!r} stands for an nn.Module handed in from Python; pass the module itself")
    dataset = _custom_data(config, train, test)
    if config.seeds is not None:
        return record_ensemble(config)
    run_dir = config.run_dir
    check_run_output_or_busy(run_dir, overwrite=config.overwrite)
    data = prepare_data(config, dataset)
    device = resolve_device(config.device)
    with flushed_denormals(config.flush_denormal and device.type == "cpu"):
        model = seeded_model(config, data, device, instance)
        specs = recorded_layers(config, data, model, device)
        resolved = {**resolved_settings(config, data, device, model), "run_id": uuid.uuid4().hex}
        if instance is not None:
            resolved["model_class"] = f"{type(instance).__module__}.{type(instance).__qualname__}"
        stored_config = {**config.to_dict(), "resolved": resolved, "environment": environment()}
        with write_errors(run_dir), claimed_run_dir(run_dir, overwrite=config.overwrite, run_id=resolved["run_id"]) as claim:
            try:
                writer = RunWriter.create(
                    run_dir, config=stored_config, dataset=data.describe(), layers=specs, parameters=parameter_specs(model),
                    probes=probe_set(data), subsets=data_subsets(data), record_epochs=config.schedule,
                    n_epochs=config.epochs, activation_dtype=config.dtype, dynamics=True, replace=config.overwrite,
                )
            except OSError as exc:
                raise write_failed(exc, f"the new run {run_dir}") from exc
            claim.writers.append(writer)
            claim.replaced()
            _announce(config, model, device, run_dir, resumed_from=None)
            _train(writer, config, data, model, specs, device, checkpoint=None)
    return run_dir


def resume(run_dir: str | os.PathLike, *, model: Any = None, device: str | None = None, progress: bool | None = None,
           train: Any = None, test: Any = None) -> Path:
    """Continue an interrupted run from its checkpoint (or from the start when it has none).

    The settings come from the store; the result equals that of an uninterrupted run (bit for bit on the CPU).
    A factory model is rebuilt from its stored ``model_args`` only when ``model`` names the same factory again:
    resume never imports code that a store names without the user saying so.

    Parameters
    ----------
    run_dir : path
        A run directory written by :func:`record`, or an ensemble folder (all its replicas continue).
    model : str or callable, optional
        The model the run was recorded with, the same again: ``package.module:callable`` (or the factory itself)
        for a factory model, where it is required; a built-in name may be given and must then match.
    device : str, optional
        Override the stored ``device`` (e.g. continue on another machine).
    progress : bool, optional
        Override the stored ``progress``.
    train, test : optional
        The data of a run recorded from data handed in from Python, the same again (checked by checksum).

    Returns
    -------
    Path
        ``run_dir``.
    """
    run_dir = location(run_dir)
    given = factory_spec(model) if callable(model) else model
    if not is_remote(run_dir):
        if marker_kind(run_dir) == "ensemble":
            return resume_ensemble(run_dir, model=given, device=device, progress=progress)
        refuse_if_busy(run_dir)
    attrs = read_attrs(run_dir)
    if attrs.get("status") == STATUS_CREATING:  # its arrays may not all exist yet: nothing to resume from
        raise creating_error(run_dir)
    check_schema(attrs, run_dir, writing=True)  # an older schema is read, never continued
    if attrs["config"].get("resolved", {}).get("ensemble"):
        raise ConfigError(f"{run_dir} is a replica of the ensemble {run_dir.parent}; resume the ensemble: "
                          f"'actlab record --resume {run_dir.parent}'")
    changes = {k: v for k, v in (("device", device), ("progress", progress)) if v is not None}
    config = RecordConfig.from_dict(attrs["config"], strict=False, where=str(run_dir)).replace(**changes)
    if config.model == INSTANCE_MODEL and attrs.get("status") != STATUS_COMPLETE:
        raise ConfigError(f"{run_dir} was recorded from a model instance ({attrs['config']['resolved'].get('model_class')}), "
                          "which actlab cannot rebuild; record it again with a factory 'package.module:callable' to resume")
    if attrs.get("status") == STATUS_COMPLETE and not any(missing_epochs(run_dir)):
        with locked_run(run_dir):  # a writer killed inside its final commit leaves a temporary file
            pass
        print(f"actlab record: {run_dir} is already complete; nothing to resume", file=sys.stderr)
        return run_dir
    check_resumed_model(run_dir, config.model, given)
    data = prepare_data(config, _custom_data(config, train, test, where=str(run_dir)))
    check_same_data(run_dir, attrs, data)
    resolved_device = resolve_device(config.device)
    with flushed_denormals(config.flush_denormal and resolved_device.type == "cpu"), locked_run(run_dir):
        model = seeded_model(config, data, resolved_device)
        specs = [LayerSpec(**layer) for layer in attrs["layers"]]
        checkpoint = _own_checkpoint(run_dir, attrs)
        writer = RunWriter.open(run_dir)
        writer.mark_recording()
        _announce(config, model, resolved_device, run_dir, resumed_from=checkpoint["epoch"] if checkpoint else -1)
        _train(writer, config, data, model, specs, resolved_device, checkpoint=checkpoint)
    return run_dir


def check_resumed_model(run_dir: Location, stored: str, given: str | None) -> None:
    """Refuse to resume ``run_dir``, whose settings name the model ``stored``, unless the user's ``given`` model
    (``package.module:callable`` or a built-in name, None when not given) allows it: a factory must be given again,
    the same one; a built-in model needs nothing, and a given name must match it.

    Raises
    ------
    ConfigError
        Naming the model the run asks for.
    """
    if stored in BUILTIN_MODELS or stored == INSTANCE_MODEL:
        if given is not None and given != stored:
            raise ConfigError(f"{run_dir} was recorded with the model {stored}, not {given}; drop --model, or record a new run")
        return
    if given is None:
        raise ConfigError(f"{run_dir} was recorded from the factory {stored}, which resuming imports and calls; resume runs "
                          f"only code you name: if you trust it, give it again with --model {stored} (model={stored!r} in Python)")
    if given != stored:
        raise ConfigError(f"{run_dir} was recorded from the factory {stored}, not {given}; give --model {stored} to resume "
                          "it, or record a new run with your model")


def _own_checkpoint(run_dir: Location, attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The run's checkpoint, or None when there is none or it belongs to another run (it is then not used)."""
    path = join(run_dir, CHECKPOINT_FILENAME)
    if files(path).size("") is None:
        return None
    checkpoint = load_checkpoint(path)
    run_id = attrs["config"].get("resolved", {}).get("run_id")
    if checkpoint.get("run_id") != run_id:
        print(f"actlab record: {path} belongs to another recording of {run_dir}; restarting from epoch 0", file=sys.stderr)
        return None
    return checkpoint


# -- pieces ------------------------------------------------------------------------------


def recorded_layers(config: RecordConfig, data: PreparedData, model: torch.nn.Module, device: torch.device) -> list[LayerSpec]:
    """The layers a run records: an MLP's hidden and output Linears (unless ``layers`` is given), else every
    activation module and the last module (``layers="auto"``, the default) or the named modules."""
    if config.model in MODELS and config.layers is None:
        return mlp_layer_specs(model)
    sample = to_device_normalized(data.dataset.train_images[:1], data.mean, data.std, device)
    return layer_specs(model, sample, config.layers or "auto", config.conv_reduce)


def factory_spec(factory: Any) -> str:
    """``package.module:callable`` of a factory given as a Python callable; it must import back to itself."""
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", None)
    spec = f"{module}:{name}"
    if not module or not name or module == "__main__" or "<" in name:
        raise ConfigError(f"model {factory!r} cannot be imported again by --resume (defined in __main__ or locally); "
                          "define it at the top level of an importable module, or pass 'package.module:callable'")
    from actlab.record.models import load_factory

    if load_factory(spec) is not factory:
        raise ConfigError(f"model {factory!r} is not what {spec} imports; pass 'package.module:callable'")
    return spec


def _custom_data(config: RecordConfig, train: Any, test: Any, where: str | None = None) -> Any:
    """The dataset of data handed in from Python (None for a named dataset); refuses data given to a named one."""
    if config.dataset != CUSTOM_DATASET:
        if train is not None:
            raise ConfigError(f"{where or 'this run'} uses dataset {config.dataset}; drop train and test")
        return None
    if train is None or test is None:
        raise ConfigError(f"{where} was recorded from data handed in from Python; resume it from Python with the same "
                          "data: actlab.record.resume(run, train=(x, y), test=(x, y))")
    return custom_dataset(train, test)


def _announce(config: RecordConfig, model: torch.nn.Module, device: torch.device, run_dir: Location, resumed_from: int | None) -> None:
    action = "recording" if resumed_from is None else f"resuming after epoch {resumed_from}" if resumed_from >= 0 else "restarting"
    print(f"actlab record: {action} {config.model} ({count_parameters(model):,} parameters) on {config.dataset}, "
          f"{config.epochs} epochs, device {device} -> {run_dir}", file=sys.stderr)


class ModelEpochs:
    """One model and its run store as the epoch loop trains them (an :class:`~actlab.record.loop.EpochSource`):
    its :class:`~actlab.record.trainer.Trainer`, and the capture of its recorded layers on the probes.

    Parameters
    ----------
    config : RecordConfig
    data : PreparedData
    model : torch.nn.Module
        Already on ``device``.
    specs : list of LayerSpec
        The recorded layers.
    device : torch.device
    """

    def __init__(self, config: RecordConfig, data: PreparedData, model: torch.nn.Module, specs: list[LayerSpec],
                 device: torch.device) -> None:
        self.model = model
        self.trainer = Trainer(model, data, device, batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
                               lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, seed=config.seed,
                               cuda_graphs=config.cuda_graphs and device.type == "cuda", augment=config.augment)
        self.capture = ActivationCapture(model, {spec.name: spec.module for spec in specs})
        self.reduce = {spec.name: spec.reduce for spec in specs}
        probe_index = {group: torch.as_tensor(index, device=device) for group, index in data.probes.items()}
        self.probe_inputs = torch.cat([self.trainer.x_train[probe_index["clean"]], self.trainer.x_train[probe_index["noisy"]],
                                       self.trainer.x_test[probe_index["test"]]])

    def train_epoch(self) -> float:
        """One pass over the training set (:meth:`Trainer.train_epoch <actlab.record.trainer.Trainer.train_epoch>`)."""
        return self.trainer.train_epoch()

    def evaluate(self) -> list[tuple[dict[str, float], dict[str, np.ndarray]]]:
        """The model's metrics and training samples' trajectory, as a list of one."""
        return [self.trainer.evaluate_samples()]

    def snapshots(self, batch_size: int, dtype: str) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """The recorded layers' values on the probes and copies of the parameters, as a list of one."""
        return [(self.capture.collect(self.probe_inputs, batch_size, dtype, self.reduce), parameter_arrays(self.model))]

    def state(self, epoch: int, elapsed: float) -> dict[str, Any]:
        """The trainer's checkpoint state."""
        return self.trainer.state(epoch, elapsed)

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore the trainer's checkpoint state."""
        self.trainer.load_state(state)


def _train(writer: RunWriter, config: RecordConfig, data: PreparedData, model: torch.nn.Module, specs: list[LayerSpec],
           device: torch.device, checkpoint: dict[str, Any] | None) -> None:
    """Train and record the run (:func:`~actlab.record.loop.run_epochs`), from ``checkpoint`` when given."""
    run_epochs([writer], ModelEpochs(config, data, model, specs, device), config, checkpoint=checkpoint,
               checkpoint_path=join(writer.run_dir, CHECKPOINT_FILENAME),
               owner={"run_id": writer.attrs["config"].get("resolved", {}).get("run_id")}, desc=basename(writer.run_dir))
