"""Training loop over device-resident tensors, full-set evaluation and checkpoint state."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from actlab.errors import ConfigError, StoreError
from actlab.record.data import PreparedData

CHECKPOINT_FORMAT = 1


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit accelerator must be present."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"--device {name} was asked for but is not available here; use --device auto or cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)


def to_device_normalized(images: np.ndarray, mean: np.ndarray, std: np.ndarray, device: torch.device,
                         chunk: int = 8192) -> torch.Tensor:
    """uint8 images (sample, channel, height, width) -> normalised float32 tensor on ``device``, same dims."""
    out = torch.empty(images.shape, dtype=torch.float32, device=device)
    mean_t = torch.as_tensor(np.asarray(mean, np.float32), device=device)[:, None, None]
    std_t = torch.as_tensor(np.asarray(std, np.float32), device=device)[:, None, None]
    for start in range(0, len(images), chunk):
        block = torch.from_numpy(np.ascontiguousarray(images[start:start + chunk])).to(device).float() / 255.0
        out[start:start + chunk] = (block - mean_t) / std_t
    return out


class Trainer:
    """Adam + cross-entropy on data held as tensors on the device.

    Each epoch draws a permutation from a seeded ``torch.Generator`` (on the
    CPU, so the order is the same on every device) and slices it into
    mini-batches; there is no DataLoader and no per-sample Python work.

    Parameters
    ----------
    model : nn.Module
        Already on ``device``.
    data : PreparedData
    device : torch.device
    batch_size, eval_batch_size : int
    lr : float
    betas : (float, float)
    weight_decay : float
    seed : int
        Seeds the batch-order generator.
    """

    def __init__(self, model: nn.Module, data: PreparedData, device: torch.device, *, batch_size: int = 128,
                 eval_batch_size: int = 4096, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 0.0, seed: int = 0) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        dataset = data.dataset
        self.x_train = to_device_normalized(dataset.train_images, data.mean, data.std, device)
        self.y_train = torch.as_tensor(data.noisy.labels, device=device)
        self.y_train_original = torch.as_tensor(data.noisy.original_labels, device=device)
        self.is_noisy = data.noisy.is_noisy.copy()
        self.x_test = to_device_normalized(dataset.test_images, data.mean, data.std, device)
        self.y_test = torch.as_tensor(dataset.test_labels, device=device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas), weight_decay=weight_decay)
        self.generator = torch.Generator().manual_seed(int(seed))

    def train_epoch(self) -> float:
        """One pass over the training set in a fresh random order; returns the mean mini-batch loss."""
        self.model.train()
        n = len(self.x_train)
        order = torch.randperm(n, generator=self.generator).to(self.device)
        total = torch.zeros((), device=self.device)
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            loss = F.cross_entropy(self.model(self.x_train[index]), self.y_train[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(index)
        return float(total) / n

    def _per_sample(self, x: torch.Tensor, *labels: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per-sample (loss, correct) against each label vector, in float64 NumPy."""
        self.model.eval()
        losses: list[list[torch.Tensor]] = [[] for _ in labels]
        correct: list[list[torch.Tensor]] = [[] for _ in labels]
        with torch.inference_mode():
            for start in range(0, len(x), self.eval_batch_size):
                logits = self.model(x[start:start + self.eval_batch_size])
                logp = F.log_softmax(logits.float(), dim=1)
                pred = logits.argmax(dim=1)
                for k, y in enumerate(labels):
                    target = y[start:start + self.eval_batch_size]
                    losses[k].append(-logp.gather(1, target[:, None])[:, 0])
                    correct[k].append(pred == target)
        return [(torch.cat(l).cpu().double().numpy(), torch.cat(c).cpu().numpy()) for l, c in zip(losses, correct)]

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the whole training set (clean / noisy, assigned / original labels) and the test set.

        Returns every name of :data:`actlab.store.METRICS` but ``wall_time``; a
        group without samples gets NaN.
        """
        (loss, hit), (true_loss, true_hit) = self._per_sample(self.x_train, self.y_train, self.y_train_original)
        ((test_loss, test_hit),) = self._per_sample(self.x_test, self.y_test)
        clean, noisy = ~self.is_noisy, self.is_noisy

        def mean(values: np.ndarray, mask: np.ndarray | None = None) -> float:
            values = values if mask is None else values[mask]
            return float(values.mean()) if len(values) else float("nan")

        metrics = {
            "train_clean_loss": mean(loss, clean), "train_clean_acc": mean(hit, clean),
            "train_noisy_loss": mean(loss, noisy), "train_noisy_acc": mean(hit, noisy),
            "train_noisy_true_loss": mean(true_loss, noisy), "train_noisy_true_acc": mean(true_hit, noisy),
            "test_loss": mean(test_loss), "test_acc": mean(test_hit),
        }
        return metrics

    # -- checkpoint state ------------------------------------------------------------
    def state(self, epoch: int, elapsed: float) -> dict[str, Any]:
        """A detached CPU copy of everything needed to continue after ``epoch`` (safe to save from another thread)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": int(epoch),
            "elapsed": float(elapsed),
            "model": {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()},
            "optimizer": _to_cpu(copy.deepcopy(self.optimizer.state_dict())),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore model, optimizer and random states from :meth:`state`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to("cpu")
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StoreError(f"checkpoint {path} cannot be read ({exc}); delete it to restart the run from epoch 0 with --resume") from exc
    if state.get("format") != CHECKPOINT_FORMAT:
        raise StoreError(f"checkpoint {path} has format {state.get('format')}, expected {CHECKPOINT_FORMAT}; record the run again")
    return state
