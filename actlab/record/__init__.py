"""Record side: train a model and write its activations into a run store.

``from actlab.record import record`` gives the entry point; the module itself
is callable too, so ``actlab.record(...)`` works whether or not this
subpackage was imported before. Settings and data (:mod:`.config`,
:mod:`.data`) import without torch; the torch pieces load on first use, and where torch is missing
(an install without the extra ``record``) they raise a :class:`~actlab.errors.ConfigError` saying how to get it.

Public API: :func:`record`, :func:`resume`, :class:`RecordConfig`,
:func:`load_dataset`, :func:`inject_label_noise`, :func:`prepare_data`,
:func:`make_mlp`, :class:`ActivationCapture`, :class:`Trainer`,
:class:`BackgroundWriter`, :class:`Recorder` (record from your own training loop).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from actlab.errors import ConfigError
from actlab.record.config import RecordConfig, parse_schedule
from actlab.record.data import (
    ImageDataset,
    NoisyLabels,
    PreparedData,
    inject_label_noise,
    load_dataset,
    prepare_data,
    stratified_subset,
)

_LAZY = {
    "record": "actlab.record.api",
    "resume": "actlab.record.api",
    "make_mlp": "actlab.record.models",
    "ActivationCapture": "actlab.record.hooks",
    "Trainer": "actlab.record.trainer",
    "BackgroundWriter": "actlab.record.writer",
    "intervene": "actlab.record.intervene",
    "Recorder": "actlab.record.recorder",
}

__all__ = [
    "ActivationCapture", "BackgroundWriter", "ImageDataset", "NoisyLabels", "PreparedData", "RecordConfig", "Recorder", "Trainer",
    "inject_label_noise", "intervene", "load_dataset", "make_mlp", "parse_schedule", "prepare_data", "record", "resume",
    "stratified_subset",
]


TORCH_MISSING = ("recording needs torch, which is not installed here (the analysis half runs without it); "
                 "install it with pip install 'actlab[record]', or on a machine without a GPU the CPU-only build first: "
                 "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu")


def require_torch() -> None:
    """Raise :class:`~actlab.errors.ConfigError` saying how to install torch when it is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError(TORCH_MISSING) from None


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        require_torch()
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'actlab.record' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Lets ``actlab.record(...)`` call :func:`record` once the name refers to this subpackage."""

    def __call__(self, config: RecordConfig | None = None, **overrides: Any):
        return self.record(config, **overrides)


sys.modules[__name__].__class__ = _CallableModule
