"""Generic activation capture: forward hooks on named submodules of any ``torch.nn.Module``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from actlab.errors import ConfigError


class ActivationCapture:
    """Capture the outputs of named submodules while inputs flow through a model.

    Parameters
    ----------
    model : nn.Module
    modules : mapping of str -> str
        Capture name -> qualified submodule name (as in ``model.named_modules()``),
        e.g. ``{"hidden1": "linear1", "output": "output"}``.

    Examples
    --------
    >>> capture = ActivationCapture(model, {"hidden1": "linear1"})
    >>> acts = capture.collect(inputs)          # {"hidden1": ndarray (sample, unit)}

    Used as a context manager, the hooks stay registered inside the block and
    :attr:`outputs` holds the detached outputs of the latest forward pass.
    """

    def __init__(self, model: nn.Module, modules: Mapping[str, str]) -> None:
        available = dict(model.named_modules())
        missing = [qualified for qualified in modules.values() if qualified not in available]
        if missing:
            names = ", ".join(name for name in available if name) or "(none)"
            raise ConfigError(f"model has no submodules {missing}; capture one of {names}")
        self.model = model
        self.modules = dict(modules)
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):
        def store(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"module {self.modules[name]!r} returned {type(output).__name__}, not a tensor; capture a module with a tensor output")
            self.outputs[name] = output.detach()
        return store

    def __enter__(self) -> ActivationCapture:
        for name, qualified in self.modules.items():
            self._handles.append(self.model.get_submodule(qualified).register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.outputs = {}

    def collect(self, inputs: torch.Tensor, batch_size: int = 4096, dtype: str = "float32",
                reduce: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
        """Run ``inputs`` through the model in eval mode without gradients and gather the captures.

        Parameters
        ----------
        inputs : Tensor, shape (sample, ...)
            On the model's device.
        batch_size : int
        dtype : {"float32", "float16"}
            NumPy dtype of the returned arrays.
        reduce : mapping of name -> {"mean", "max", "none"}, optional
            For captures whose output has dims (sample, channel, y, x): reduce over (y, x) per channel on the
            device, before the copy to the host, or keep the maps whole (``"none"``). Default: ``"none"``.

        Returns
        -------
        dict of name -> ndarray
            (sample, channel) for a reduced 4-dim output, (sample, channel, y, x) for an unreduced one, and any
            other output flattened to (sample, features).
        """
        reduce = dict(reduce or {})
        was_training = self.model.training
        self.model.eval()
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.modules}
        try:
            with self, torch.inference_mode():
                for start in range(0, len(inputs), batch_size):
                    self.model(inputs[start:start + batch_size])
                    for name in self.modules:
                        out = reduce_output(self.outputs[name], reduce.get(name, "none"))
                        parts[name].append(out.float().cpu().numpy().astype(dtype, copy=False))
        finally:
            self.model.train(was_training)
        return {name: np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype) for name, chunks in parts.items()}


def reduce_output(out: torch.Tensor, reduce: str) -> torch.Tensor:
    """One captured output as stored: a 4-dim (sample, channel, y, x) output reduced over (y, x) by ``reduce``
    (``"mean"``, ``"max"``) or kept (``"none"``); any other output flattened to (sample, features)."""
    if out.dim() == 4:
        if reduce == "mean":
            return out.mean(dim=(2, 3))
        if reduce == "max":
            return out.amax(dim=(2, 3))
        if reduce == "none":
            return out
        raise ValueError(f"reduce must be mean, max or none; got {reduce!r}")
    return out.reshape(len(out), -1)
