"""``record`` and ``resume``: train a model and write its run store."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actlab import __version__
from actlab.errors import ConfigError, OutputError, StoreError
from actlab.files import (
    FOLDER_LOCK_FILENAME,
    HOLDER_SUFFIX,
    MARKER_FILENAME,
    PARTIAL_SUFFIX,
    check_output,
    lock_holder,
    lock_path,
    make_dirs,
    marker_kind,
    remove_leftovers,
    write_failed,
    write_marker,
    writer_lock,
)
from actlab.location import Location, basename, files, is_remote, join, location, zarr_store
from actlab.progress import Progress
from actlab.record.config import CUSTOM_DATASET, INSTANCE_MODEL, MODELS, RecordConfig
from actlab.remote import check_remote_run, claimed_remote_run
from actlab.record.data import PreparedData, custom_dataset, prepare_data
from actlab.record.hooks import ActivationCapture
from actlab.record.models import (
    build_model,
    count_parameters,
    layer_specs,
    mlp_layer_specs,
    parameter_arrays,
    parameter_specs,
)
from actlab.record.trainer import Trainer, load_checkpoint, resolve_device, save_checkpoint, to_device_normalized
from actlab.record.writer import BackgroundWriter
from actlab.store import (
    ANALYSIS_DIRNAME,
    CHECKPOINT_FILENAME,
    STORE_DIRNAME,
    GROUPS,
    STATUS_COMPLETE,
    LayerSpec,
    ProbeSet,
    RunWriter,
    Subsets,
    read_attrs,
    store_location,
    store_path,
)

METRICS_FLUSH_SECONDS = 2.0
"""Per-epoch metrics are committed in batches at least this often, and at every recorded or checkpointed epoch."""


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
        channel, height, width), uint8 pixels or floats, and integer labels. Give both or neither.
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
        from actlab.record.ensemble import record_ensemble

        return record_ensemble(config)
    run_dir = config.run_dir
    _check_run_output_or_busy(run_dir, overwrite=config.overwrite)
    data = prepare_data(config, dataset)
    device = resolve_device(config.device)
    with flushed_denormals(config.flush_denormal and device.type == "cpu"):
        model = seeded_model(config, data, device, instance)
        specs = recorded_layers(config, data, model, device)
        resolved = {**resolved_settings(config, data, device, model), "run_id": uuid.uuid4().hex}
        if instance is not None:
            resolved["model_class"] = f"{type(instance).__module__}.{type(instance).__qualname__}"
        stored_config = {**config.to_dict(), "resolved": resolved, "environment": environment()}
        with _write_errors(run_dir), claimed_run_dir(run_dir, overwrite=config.overwrite) as writers:
            try:
                writer = RunWriter.create(
                    run_dir, config=stored_config, dataset=data.describe(), layers=specs, parameters=parameter_specs(model),
                    probes=probe_set(data), subsets=data_subsets(data), record_epochs=config.schedule,
                    n_epochs=config.epochs, activation_dtype=config.dtype, replace=config.overwrite,
                )
            except OSError as exc:
                raise write_failed(exc, f"the new run {run_dir}") from exc
            writers.append(writer)
            _announce(config, model, device, run_dir, resumed_from=None)
            _train(writer, config, data, model, specs, device, checkpoint=None)
    return run_dir


def resume(run_dir: str | os.PathLike, *, device: str | None = None, progress: bool | None = None,
           train: Any = None, test: Any = None) -> Path:
    """Continue an interrupted run from its checkpoint (or from the start when it has none).

    The settings come from the store, a factory model is rebuilt from its stored ``package.module:callable``
    and ``model_args``; the result equals that of an uninterrupted run (bit for bit on the CPU).

    Parameters
    ----------
    run_dir : path
        A run directory written by :func:`record`, or an ensemble folder (all its replicas continue).
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
    if not is_remote(run_dir):
        if marker_kind(run_dir) == "ensemble":
            from actlab.record.ensemble import resume_ensemble

            return resume_ensemble(run_dir, device=device, progress=progress)
        _refuse_if_busy(run_dir)
    attrs = read_attrs(run_dir)
    if attrs["config"].get("resolved", {}).get("ensemble"):
        raise ConfigError(f"{run_dir} is a replica of the ensemble {run_dir.parent}; resume the ensemble: "
                          f"'actlab record --resume {run_dir.parent}'")
    changes = {k: v for k, v in (("device", device), ("progress", progress)) if v is not None}
    config = RecordConfig.from_dict(attrs["config"], strict=False, where=str(run_dir)).replace(**changes)
    if config.model == INSTANCE_MODEL and attrs.get("status") != STATUS_COMPLETE:
        raise ConfigError(f"{run_dir} was recorded from a model instance ({attrs['config']['resolved'].get('model_class')}), "
                          "which actlab cannot rebuild; record it again with a factory 'package.module:callable' to resume")
    if attrs.get("status") == STATUS_COMPLETE:
        with locked_run(run_dir):  # a writer killed inside its final commit leaves a temporary file
            pass
        print(f"actlab record: {run_dir} is already complete; nothing to resume", file=sys.stderr)
        return run_dir
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


@contextlib.contextmanager
def locked_run(run_dir: Location) -> Iterator[None]:
    """Hold a local run's writer lock and remove an interrupted writer's leftovers while the block runs.

    A run URL has neither: object stores have no locks (one recorder per URL is up to the user) and
    leave no temporary files (each object is written in one PUT).
    """
    if is_remote(run_dir):
        yield
        return
    with _write_errors(run_dir), writer_lock(run_dir / FOLDER_LOCK_FILENAME, f"run {run_dir}"):
        _remove_run_leftovers(run_dir)
        yield


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


@contextlib.contextmanager
def flushed_denormals(enabled: bool) -> Iterator[None]:
    """Flush denormal floats to zero on the CPU while the block runs (no-op when not ``enabled``).

    A run that has fitted its training set computes gradients below 1.2e-38, which x86 CPUs process
    several times slower (``benchmarks/bench_denormal.py``). The flag is per thread and torch's
    intra-op threads copy it when they start, so it reaches them only if set before the first
    parallel torch operation of the process (as ``actlab record`` does; in a notebook that has
    already run torch code only the calling thread flushes).
    """
    if not enabled:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def seeded_model(config: RecordConfig, data: PreparedData, device: torch.device,
                 instance: torch.nn.Module | None = None) -> torch.nn.Module:
    """The run's model, initialised from ``config.seed`` (the same weights for a run and its resume), on ``device``.

    A built-in model or a factory is built after seeding torch; an ``instance`` is taken as it is.
    """
    torch.manual_seed(config.seed)
    if instance is not None:
        return instance.to(device)
    return build_model(config.model, config.model_args, data.dataset.image_shape, data.dataset.n_classes,
                       config.width).to(device)


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


def probe_set(data: PreparedData) -> ProbeSet:
    """The stored probe samples: clean, noisy (training set) then test; ``dataset_index`` into the full sets."""
    dataset, noisy = data.dataset, data.noisy
    parts = []
    for code, group in enumerate(GROUPS):
        index = data.probes[group]
        if group == "test":
            images, label, original, is_noisy = (dataset.test_images[index], dataset.test_labels[index],
                                                 dataset.test_labels[index], np.zeros(len(index), bool))
            full_index = data.test_index[index]
        else:
            images, label, original, is_noisy = (dataset.train_images[index], noisy.labels[index],
                                                 noisy.original_labels[index], noisy.is_noisy[index])
            full_index = data.train_index[index]
        parts.append((images, full_index, np.full(len(index), code, np.int8), label, original, is_noisy))
    images, full_index, group, label, original, is_noisy = (np.concatenate(column) for column in zip(*parts))
    return ProbeSet(images=images, dataset_index=full_index, group=group, label=label, original_label=original,
                    is_noisy=is_noisy)


def data_subsets(data: PreparedData) -> Subsets:
    """The stored training samples (in training order, with assigned and original labels) and evaluated test samples."""
    return Subsets(train_index=data.train_index, train_label=data.noisy.labels, train_original_label=data.noisy.original_labels,
                   train_is_noisy=data.noisy.is_noisy, test_index=data.test_index, test_label=data.dataset.test_labels)


def environment() -> dict[str, Any]:
    """Versions of Python, torch, NumPy and actlab, the platform and the git commit of the actlab source (if any)."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "actlab": __version__,
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    source = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def resolved_settings(config: RecordConfig, data: PreparedData, device: torch.device, model: torch.nn.Module) -> dict[str, Any]:
    """What the settings resolved to on this machine (run folder, data folder, device, epochs, probe sizes, parameters)."""
    return {
        "run_dir": str(config.run_dir),
        "data_dir": str(config.resolved_data_dir) if config.dataset == "cifar10" else None,
        "device": str(device),
        "record_epochs": config.schedule,
        "probe_sizes": data.probe_sizes,
        "parameters": count_parameters(model),
    }


RUN_FILES: tuple[str, ...] = (STORE_DIRNAME, CHECKPOINT_FILENAME, ANALYSIS_DIRNAME, MARKER_FILENAME,
                              FOLDER_LOCK_FILENAME, FOLDER_LOCK_FILENAME + HOLDER_SUFFIX)
"""Everything actlab writes into a run folder; the only names a failed new recording removes."""


def check_run_output(run_dir: Location, *, overwrite: bool) -> None:
    """Refuse a run folder that ``record`` may not write; every refusal names a way forward.

    A run goes into a new folder or an empty one; ``overwrite`` also allows a folder that holds an
    actlab run (its marker says so), and nothing else. A refusal suggests ``--resume`` and
    ``--overwrite`` only where ``--overwrite`` would be allowed (not for a symbolic link to a run).

    Raises
    ------
    OutputError
    """
    if is_remote(run_dir):
        check_remote_run(run_dir, overwrite=overwrite)
        return
    inside = next((folder for folder in Path(os.path.abspath(run_dir)).parents if marker_kind(folder) == "run"), None)
    if inside is not None:
        raise OutputError(f"--out {run_dir} lies inside the run {inside}; choose a folder outside it")
    if store_path(run_dir).exists() and marker_kind(run_dir) != "run":
        raise OutputError(f"--out {run_dir} holds a run store that this actlab did not mark as its own; "
                          "choose a new --out (or continue it with 'actlab record --resume')")
    if _abandoned_claim(run_dir):
        return
    if overwrite:
        check_output(run_dir, "run", replace=True)
        return
    try:
        check_output(run_dir, "run", replace=False)
    except OutputError:
        if marker_kind(run_dir) == "run":
            check_output(run_dir, "run", replace=True)  # what --overwrite would refuse too: a link, no write access
            raise OutputError(f"{run_dir} already holds a run; continue it with 'actlab record --resume {run_dir}', "
                              "replace it with --overwrite, or choose a new --out") from None
        raise


def _abandoned_claim(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only what a ``record`` killed before its store existed left: the marker,
    the lock files and temporary files or staging folders of those (removed under the lock)."""
    if not run_dir.is_dir() or run_dir.is_symlink() or store_path(run_dir).exists() or marker_kind(run_dir) not in (None, "run"):
        return False
    own = {MARKER_FILENAME, FOLDER_LOCK_FILENAME, FOLDER_LOCK_FILENAME + HOLDER_SUFFIX}
    temporary = tuple(f".{name}." for name in (STORE_DIRNAME, CHECKPOINT_FILENAME, *own))
    entries = list(run_dir.iterdir())
    return bool(entries) and all(entry.name in own or (entry.name.startswith(temporary) and entry.name.endswith(PARTIAL_SUFFIX))
                                 for entry in entries)


def _refuse_if_busy(run_dir: Path) -> None:
    """Refuse at once, naming the holder, when another process is writing ``run_dir``."""
    holder = lock_holder(run_dir / FOLDER_LOCK_FILENAME)
    if holder is not None:
        raise OutputError(f"run {run_dir} is being written by {holder}; wait for it to finish, "
                          "or stop that process and run the command again")


def _check_run_output_or_busy(run_dir: Location, *, overwrite: bool) -> None:
    """:func:`check_run_output`, except that a local folder another process is writing is refused as busy (naming it)."""
    try:
        check_run_output(run_dir, overwrite=overwrite)
    except OutputError:
        if not is_remote(run_dir):
            _refuse_if_busy(run_dir)
        raise


def _remove_run_leftovers(run_dir: Path) -> None:
    """Under the run's writer lock: remove what killed writers left (staging folders, temporary files)."""
    for name in (STORE_DIRNAME, CHECKPOINT_FILENAME, MARKER_FILENAME, FOLDER_LOCK_FILENAME + HOLDER_SUFFIX):
        remove_leftovers(run_dir, name)


@contextlib.contextmanager
def _write_errors(run_dir: Path) -> Iterator[None]:
    """Turn a failed write (``OSError``: disk full, permissions) into :class:`WriteError` (one line, exit code 3)."""
    try:
        yield
    except OSError as exc:
        raise write_failed(exc, f"the run {run_dir}") from exc


@contextlib.contextmanager
def claimed_run_dir(run_dir: Location, *, overwrite: bool) -> Iterator[list[RunWriter]]:
    """Claim the run folder for this process: create it, hold its writer lock, mark it as a run.

    The caller appends its :class:`RunWriter` to the yielded list. When the block fails before the
    run's first committed epoch, everything this call created is removed again (still under the
    lock): the folder (and parents) if it was new, else only the names of :data:`RUN_FILES` inside it
    but the lock file. When the lock is held by another process, or the folder turns out not to be
    this call's to write, nothing is removed: the folder belongs to someone else. A run URL is
    claimed by :func:`actlab.remote.claimed_remote_run` instead.
    """
    if is_remote(run_dir):
        with claimed_remote_run(run_dir, overwrite=overwrite) as writers:
            yield writers
        return
    _check_run_output_or_busy(run_dir, overwrite=overwrite)
    created = make_dirs(run_dir)
    writers: list[RunWriter] = []
    with writer_lock(run_dir / FOLDER_LOCK_FILENAME, f"run {run_dir}"):
        check_run_output(run_dir, overwrite=overwrite)
        try:
            _remove_run_leftovers(run_dir)
            if overwrite:
                remove_previous_outputs(run_dir)
            write_marker(run_dir, "run")
            yield writers
        except BaseException:
            if not any(writer.committed_metric_epochs for writer in writers):
                remove_new_files(run_dir, created, RUN_FILES)
            raise


def remove_previous_outputs(run_dir: Path) -> None:
    """Before a run is replaced: delete its checkpoint and its analysis folder (under that folder's lock)."""
    (run_dir / CHECKPOINT_FILENAME).unlink(missing_ok=True)
    analysis = run_dir / ANALYSIS_DIRNAME
    if analysis.is_dir() and marker_kind(analysis) == "analysis":
        with writer_lock(lock_path(analysis), f"analysis folder {analysis}"):
            shutil.rmtree(analysis)


def remove_new_files(folder: Path, created: list[Path], names: Sequence[str]) -> None:
    """Undo a claim that failed before anything was committed: remove the folders it created (``created``, from
    :func:`actlab.files.make_dirs`), or, in a folder that existed, only ``names`` (what actlab writes there)
    except the writer lock, which the caller still holds."""
    if created:
        shutil.rmtree(created[0], ignore_errors=True)
        return
    for name in names:
        if name == FOLDER_LOCK_FILENAME:  # held now; deleting it would let a second writer lock a new file
            continue
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def check_same_data(run_dir: Location, attrs: dict[str, Any], data: PreparedData) -> None:
    import zarr

    stored = zarr.open_array(zarr_store(store_location(run_dir), read_only=True), path="probes/dataset_index", mode="r")[...]
    expected = probe_set(data).dataset_index
    if not np.array_equal(stored, expected) or attrs["dataset"].get("checksums") != data.describe().get("checksums"):
        raise StoreError(f"the data found now differ from those {run_dir} was recorded with; point --data-dir at the original data")


def _announce(config: RecordConfig, model: torch.nn.Module, device: torch.device, run_dir: Location, resumed_from: int | None) -> None:
    action = "recording" if resumed_from is None else f"resuming after epoch {resumed_from}" if resumed_from >= 0 else "restarting"
    print(f"actlab record: {action} {config.model} ({count_parameters(model):,} parameters) on {config.dataset}, "
          f"{config.epochs} epochs, device {device} -> {run_dir}", file=sys.stderr)


def checkpoint_epochs(config: RecordConfig) -> list[int]:
    """Epochs after which a checkpoint is saved: every ``checkpoint_every`` epochs (at the recorded epochs
    when it is 0), and the last epoch."""
    if config.checkpoint_every:
        due = set(range(0, config.epochs + 1, config.checkpoint_every))
    else:
        due = set(config.schedule)
    return sorted(due | {config.epochs})


def _train(writer: RunWriter, config: RecordConfig, data: PreparedData, model: torch.nn.Module, specs: list[LayerSpec],
           device: torch.device, checkpoint: dict[str, Any] | None) -> None:
    """The epoch loop: train, evaluate, record, checkpoint; store writes on a background thread."""
    trainer = Trainer(model, data, device, batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
                      lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, seed=config.seed,
                      cuda_graphs=config.cuda_graphs and device.type == "cuda", augment=config.augment)
    start, elapsed_before = 0, 0.0
    if checkpoint is not None:
        trainer.load_state(checkpoint)
        start, elapsed_before = checkpoint["epoch"] + 1, checkpoint["elapsed"]
    schedule = set(config.schedule)
    checkpoints = set(checkpoint_epochs(config))
    capture = ActivationCapture(model, {spec.name: spec.module for spec in specs})
    reduce = {spec.name: spec.reduce for spec in specs}
    probe_index = {group: torch.as_tensor(index, device=device) for group, index in data.probes.items()}
    probe_inputs = torch.cat([trainer.x_train[probe_index["clean"]], trainer.x_train[probe_index["noisy"]],
                              trainer.x_test[probe_index["test"]]])
    checkpoint_path = join(writer.run_dir, CHECKPOINT_FILENAME)
    run_id = writer.attrs["config"].get("resolved", {}).get("run_id")
    background = BackgroundWriter()
    bar = Progress(config.epochs, desc=basename(writer.run_dir), unit="epoch", initial=max(start - 1, 0),
                   enabled=config.progress)
    t0 = time.perf_counter()
    pending_metrics: dict[int, dict[str, float]] = {}
    last_flush = t0
    try:
        for epoch in range(start, config.epochs + 1):
            if epoch > 0:
                trainer.train_epoch()
            metrics = trainer.evaluate()
            elapsed = elapsed_before + time.perf_counter() - t0
            metrics["wall_time"] = elapsed
            pending_metrics[epoch] = metrics
            checkpoint_now = epoch in checkpoints
            if checkpoint_now or epoch in schedule or time.perf_counter() - last_flush >= METRICS_FLUSH_SECONDS:
                background.submit(writer.write_metrics, pending_metrics)
                pending_metrics, last_flush = {}, time.perf_counter()
            if epoch in schedule:
                preacts = capture.collect(probe_inputs, config.eval_batch_size, config.dtype, reduce)
                background.submit(writer.write_epoch, epoch, preacts, parameter_arrays(model))
            if checkpoint_now:
                background.submit(save_checkpoint, checkpoint_path, {**trainer.state(epoch, elapsed), "run_id": run_id})
            bar.update(1 if epoch > 0 else 0, train=f"{metrics['train_clean_loss']:.3f}",
                       noisy=f"{metrics['train_noisy_loss']:.3f}", test=f"{metrics['test_loss']:.3f}")
        background.close()
    except BaseException:
        background.close(raise_errors=False)
        raise
    finally:
        bar.close()
    writer.mark_complete()
