"""``record`` and ``resume``: train a model and write its run store."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
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
    remove_created,
    remove_leftovers,
    write_atomic,
    write_failed,
    write_marker,
    writer_lock,
)
from actlab.location import Location, basename, files, is_remote, join, location, zarr_store
from actlab.record.config import CUSTOM_DATASET, INSTANCE_MODEL, MODELS, RecordConfig
from actlab.record.data import PreparedData, custom_dataset, prepare_data
from actlab.record.hooks import ActivationCapture
from actlab.record.loop import run_epochs
from actlab.record.models import (
    build_model,
    count_parameters,
    layer_specs,
    mlp_layer_specs,
    parameter_arrays,
    parameter_specs,
)
from actlab.record.trainer import Trainer, load_checkpoint, resolve_device, to_device_normalized
from actlab.remote import check_remote_run, claimed_remote_run
from actlab.store import (
    ANALYSIS_DIRNAME,
    CHECKPOINT_FILENAME,
    GROUPS,
    STATUS_COMPLETE,
    STORE_DIRNAME,
    LayerSpec,
    ProbeSet,
    RunWriter,
    Subsets,
    read_attrs,
    store_location,
    store_path,
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
        with _write_errors(run_dir), claimed_run_dir(run_dir, overwrite=config.overwrite) as claim:
            try:
                writer = RunWriter.create(
                    run_dir, config=stored_config, dataset=data.describe(), layers=specs, parameters=parameter_specs(model),
                    probes=probe_set(data), subsets=data_subsets(data), record_epochs=config.schedule,
                    n_epochs=config.epochs, activation_dtype=config.dtype, replace=config.overwrite,
                )
            except OSError as exc:
                raise write_failed(exc, f"the new run {run_dir}") from exc
            claim.writers.append(writer)
            claim.replaced()
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
        remove_writer_leftovers(run_dir)
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
        result = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=source, capture_output=True, text=True, timeout=5)
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


RUN_OUTPUTS: tuple[str, ...] = (STORE_DIRNAME, CHECKPOINT_FILENAME)
"""What a recording writes into its run folder besides the marker and the lock (what a failed claim removes)."""


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
    check_record_output(run_dir, "run", overwrite=overwrite)


def check_record_output(folder: Path, kind: str, *, overwrite: bool) -> None:
    """Refuse a local folder that ``record`` may not write as a ``kind`` folder (``"run"``, ``"ensemble"``).

    A new or empty folder is allowed; with ``overwrite``, also one that holds a ``kind`` of actlab's. Without
    it, such a folder is refused with the way forward (``--resume``, or ``--overwrite`` where that would be
    allowed: not for a symbolic link or a folder without write access).

    Raises
    ------
    OutputError
    """
    if overwrite:
        check_output(folder, kind, replace=True)
        return
    try:
        check_output(folder, kind, replace=False)
    except OutputError:
        if marker_kind(folder) == kind:
            check_output(folder, kind, replace=True)  # what --overwrite would refuse too: a link, no write access
            article = "an" if kind[0] in "aeiou" else "a"
            raise OutputError(f"{folder} already holds {article} {kind}; continue it with 'actlab record --resume {folder}', "
                              "replace it with --overwrite, or choose a new --out") from None
        raise


def _abandoned_claim(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only what a ``record`` killed (or undone) before its store existed left: the marker,
    the lock files (the run's, its analysis folder's) and temporary files or staging folders of those (removed under
    the lock)."""
    if not run_dir.is_dir() or run_dir.is_symlink() or store_path(run_dir).exists() or marker_kind(run_dir) not in (None, "run"):
        return False
    analysis_lock = lock_path(run_dir / ANALYSIS_DIRNAME).name
    own = {MARKER_FILENAME, FOLDER_LOCK_FILENAME, FOLDER_LOCK_FILENAME + HOLDER_SUFFIX, analysis_lock, analysis_lock + HOLDER_SUFFIX}
    temporary = tuple(f".{name}." for name in (STORE_DIRNAME, CHECKPOINT_FILENAME, *own))
    entries = list(run_dir.iterdir())
    return bool(entries) and all(entry.name in own or (entry.name.startswith(temporary) and entry.name.endswith(PARTIAL_SUFFIX))
                                 for entry in entries)


def _refuse_if_busy(folder: Path, kind: str = "run") -> None:
    """Refuse at once, naming the holder, when another process is writing ``folder``."""
    holder = lock_holder(folder / FOLDER_LOCK_FILENAME)
    if holder is not None:
        raise OutputError(f"{kind} {folder} is being written by {holder}; wait for it to finish, "
                          "or stop that process and run the command again")


def _check_run_output_or_busy(run_dir: Location, *, overwrite: bool) -> None:
    """:func:`check_run_output`, except that a local folder another process is writing is refused as busy (naming it)."""
    try:
        check_run_output(run_dir, overwrite=overwrite)
    except OutputError:
        if not is_remote(run_dir):
            _refuse_if_busy(run_dir)
        raise


def remove_writer_leftovers(folder: Path, outputs: Sequence[str] = RUN_OUTPUTS) -> None:
    """Under the folder's writer lock: remove what killed writers of its ``outputs``, its marker and its lock holder
    file left (staging folders, temporary files)."""
    for name in (*outputs, MARKER_FILENAME, FOLDER_LOCK_FILENAME + HOLDER_SUFFIX):
        remove_leftovers(folder, name)


@contextlib.contextmanager
def _write_errors(run_dir: Path) -> Iterator[None]:
    """Turn a failed write (``OSError``: disk full, permissions) into :class:`WriteError` (one line, exit code 3)."""
    try:
        yield
    except OSError as exc:
        raise write_failed(exc, f"the run {run_dir}") from exc


class Claim:
    """A folder claimed for writing (:func:`claimed_folder`): the writers made in it, and the output they replace.

    The caller appends every :class:`RunWriter` it creates to :attr:`writers` and calls :meth:`replaced`
    once the new stores are in place: only then is what is left of the replaced output deleted, so a
    claim refused or failed before that point leaves the previous output as it was.
    """

    def __init__(self, writers: list[RunWriter] | None = None, drop_previous: Callable[[], None] | None = None) -> None:
        self.writers: list[RunWriter] = [] if writers is None else writers
        self._drop_previous = drop_previous

    def replaced(self) -> None:
        """The new stores are in place: delete what the output they replace left beside them (once; a no-op when
        nothing is replaced)."""
        drop, self._drop_previous = self._drop_previous, None
        if drop is not None:
            drop()


@contextlib.contextmanager
def claimed_folder(folder: Path, kind: str, *, check: Callable[[], None], outputs: Sequence[str],
                   previous: Callable[[contextlib.ExitStack], Callable[[], None]] | None = None,
                   **marker: Any) -> Iterator[Claim]:
    """Claim the local ``folder`` for this process as a ``kind`` folder: create it, hold its writer lock, mark it.

    Parameters
    ----------
    folder : Path
    kind : str
        Its marker kind (``"run"``, ``"ensemble"``).
    check : callable
        Raises :class:`OutputError` for a folder this process may not write; called before the folder is made
        (a refusal then names the process that holds the folder's lock) and again under the lock.
    outputs : sequence of str
        The names this claim's writers put into ``folder`` besides the marker and the lock.
    previous : callable, optional
        For a replacement (``--overwrite``): called under the lock before anything changes, it takes into the
        given stack the locks that deleting the previous output needs (refusing at once when one is busy) and
        returns the deletion, which :meth:`Claim.replaced` runs.
    **marker
        Details of the marker (:func:`actlab.files.write_marker`).

    Yields
    ------
    Claim
        When the block fails before any of its writers' first committed epoch, the claim is undone, still under
        the lock: a new folder (and the parents made for it) is removed; in a folder that existed, the
        ``outputs`` are removed when the block made writers (their stores replaced the old ones) and the marker
        is put back as it was. A refused claim changes nothing.
    """
    try:
        check()
    except OutputError:
        _refuse_if_busy(folder, kind)
        raise
    created = make_dirs(folder)
    with writer_lock(folder / FOLDER_LOCK_FILENAME, f"{kind} {folder}"), contextlib.ExitStack() as locks:
        check()
        marker_path = folder / MARKER_FILENAME
        old_marker = marker_path.read_bytes() if marker_path.is_file() and not marker_path.is_symlink() else None
        writers: list[RunWriter] = []
        try:
            claim = Claim(writers, previous(locks) if previous is not None else None)
            remove_writer_leftovers(folder, outputs)
            write_marker(folder, kind, **marker)
            yield claim
        except BaseException:
            if not any(writer.committed_metric_epochs for writer in writers):
                _undo_claim(folder, created, bool(writers), outputs, old_marker)
            raise


def _undo_claim(folder: Path, created: list[Path], made_writers: bool, outputs: Sequence[str],
                old_marker: bytes | None) -> None:
    """Undo a claim that failed before anything was committed (see :func:`claimed_folder`); the lock file stays, since
    deleting a held lock would let a second writer lock a new file of the same name."""
    if created:  # ``folder`` is the innermost: made by this claim and written under its lock
        shutil.rmtree(folder, ignore_errors=True)
        remove_created(created[:-1])  # the parents made for it, only while nothing else came into them
        return
    if made_writers:
        for name in outputs:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    marker = folder / MARKER_FILENAME
    if (marker.read_bytes() if marker.is_file() else None) == old_marker:
        return  # not rewritten yet (a claim refused under the lock): leave the file as it was
    if old_marker is None:
        marker.unlink(missing_ok=True)
    else:
        write_atomic(marker, old_marker)


def previous_outputs(folder: Path, locks: contextlib.ExitStack) -> Callable[[], None]:
    """Prepare the replacement of the run or ensemble in ``folder``: hold its analysis folder's lock (refused at once
    while an ``analyze`` writes it) and return the deletion of its checkpoint and analysis folder, for after its
    store (an ensemble: its replicas' stores) is replaced (:func:`claimed_folder`)."""
    analysis = folder / ANALYSIS_DIRNAME
    own_analysis = analysis.is_dir() and not analysis.is_symlink() and marker_kind(analysis) == "analysis"
    if own_analysis:
        locks.enter_context(writer_lock(lock_path(analysis), f"analysis folder {analysis}"))

    def drop() -> None:
        (folder / CHECKPOINT_FILENAME).unlink(missing_ok=True)
        if own_analysis:
            shutil.rmtree(analysis)

    return drop


@contextlib.contextmanager
def claimed_run_dir(run_dir: Location, *, overwrite: bool) -> Iterator[Claim]:
    """Claim the run folder for this process (:func:`claimed_folder` with the kind ``run``).

    With ``overwrite``, a run already there is replaced: its store by the new one when the caller creates
    it, its checkpoint and analysis folder when the caller then calls :meth:`Claim.replaced`. A run URL is
    claimed by :func:`actlab.remote.claimed_remote_run` instead (no lock, no marker, no replacement).
    """
    if is_remote(run_dir):
        with claimed_remote_run(run_dir, overwrite=overwrite) as writers:
            yield Claim(writers)
        return
    with claimed_folder(run_dir, "run", check=lambda: check_run_output(run_dir, overwrite=overwrite), outputs=RUN_OUTPUTS,
                        previous=functools.partial(previous_outputs, run_dir) if overwrite else None) as claim:
        yield claim


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

    def evaluate(self) -> list[dict[str, float]]:
        """The model's metrics, as a list of one."""
        return [self.trainer.evaluate()]

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
