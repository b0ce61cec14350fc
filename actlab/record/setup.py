"""What a run and an ensemble share before training: the seeded model, the probes and subsets to store, the
resolved settings and environment, the denormal flush, and the check that a resumed run finds its data again."""

from __future__ import annotations

import contextlib
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actlab import __version__
from actlab.errors import StoreError
from actlab.location import Location, zarr_store
from actlab.record.config import RecordConfig
from actlab.record.data import PreparedData
from actlab.record.models import build_model, count_parameters
from actlab.store import GROUPS, ProbeSet, Subsets, store_location

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

    A built-in model or a factory is built after seeding torch; an ``instance`` is taken as it is. For vector data
    (:attr:`~actlab.record.data.ImageDataset.takes_vectors`) a forward pre-hook flattens each input to (batch, feature).
    """
    torch.manual_seed(config.seed)
    if instance is not None:
        model = instance.to(device)
    else:
        model = build_model(config.model, config.model_args, data.dataset.image_shape, data.dataset.n_classes,
                            config.width).to(device)
    if data.dataset.takes_vectors:  # stored as (sample, feature, 1, 1), the model takes (batch, feature)
        model.register_forward_pre_hook(_flattened_input)
    return model


def _flattened_input(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].flatten(1), *args[1:])


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


def check_same_data(run_dir: Location, attrs: dict[str, Any], data: PreparedData) -> None:
    import zarr

    stored = zarr.open_array(zarr_store(store_location(run_dir), read_only=True), path="probes/dataset_index", mode="r")[...]
    expected = probe_set(data).dataset_index
    if not np.array_equal(stored, expected) or attrs["dataset"].get("checksums") != data.describe().get("checksums"):
        raise StoreError(f"the data found now differ from those {run_dir} was recorded with; point --data-dir at the original data")
