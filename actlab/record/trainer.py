"""Training loop over device-resident tensors, full-set evaluation and checkpoint state."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from actlab.errors import ConfigError, StoreError
from actlab.files import write_atomic, write_failed
from actlab.location import Location, basename, files, is_remote, location
from actlab.record.data import PreparedData
from actlab.store import DYNAMICS

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
    """Images (sample, channel, height, width) -> normalised float32 tensor on ``device``, same dims.

    uint8 pixels are scaled to [0, 1] first; float32 values are taken as they are. Then ``(x - mean) / std``
    per channel.
    """
    out = torch.empty(images.shape, dtype=torch.float32, device=device)
    mean_t = torch.as_tensor(np.asarray(mean, np.float32), device=device)[:, None, None]
    std_t = torch.as_tensor(np.asarray(std, np.float32), device=device)[:, None, None]
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    for start in range(0, len(images), chunk):
        block = torch.from_numpy(np.ascontiguousarray(images[start:start + chunk])).to(device).float() / scale
        out[start:start + chunk] = (block - mean_t) / std_t
    return out


CROP_PADDING = 4
"""Zero padding (black, before normalisation) of ``augment="crop-flip"`` on each side, in pixels."""


def crop_flip(x: torch.Tensor, fill: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
              padding: int = CROP_PADDING) -> torch.Tensor:
    """Random crop with ``padding`` pixels of padding plus horizontal flip, per sample, on the tensor's device.

    Parameters
    ----------
    x : Tensor, shape (sample, channel, height, width)
    fill : Tensor, shape (channel,)
        Value of the padding (a black pixel after normalisation).
    offsets : Tensor of int, shape (sample, 2)
        Top-left (row, column) of each crop in the padded image, in [0, 2 * padding].
    flips : Tensor of bool, shape (sample,)
        Whether to mirror each crop left-right.

    Returns
    -------
    Tensor, shape (sample, channel, height, width)
    """
    n, channels, height, width = x.shape
    padded = fill.view(1, channels, 1, 1).expand(n, channels, height + 2 * padding, width + 2 * padding).clone()
    padded[:, :, padding:padding + height, padding:padding + width] = x
    rows = offsets[:, :1] + torch.arange(height, device=x.device)
    cols = offsets[:, 1:] + torch.arange(width, device=x.device)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    picked = padded[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return picked.permute(0, 3, 1, 2).contiguous()  # advanced indices first: (sample, height, width, channel)


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
        Seeds the batch-order generator (which also draws the augmentation).
    augment : {"none", "crop-flip"}
        ``"crop-flip"``: each training mini-batch is randomly cropped with 4 pixels of black padding and flipped
        left-right with probability 1/2, on the device (:func:`crop_flip`); evaluation sees the images as they are.
    cuda_graphs : bool, optional
        Replay each full mini-batch step (forward, backward, Adam) from a CUDA graph, which removes the
        per-kernel launch cost that dominates small MLPs on a GPU. Default: on for CUDA devices. The
        graph is captured at the first step; warm-up steps are undone, so training is the same
        sequence of updates as without it.
    """

    def __init__(self, model: nn.Module, data: PreparedData, device: torch.device, *, batch_size: int = 128,
                 eval_batch_size: int = 4096, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 0.0, seed: int = 0, cuda_graphs: bool | None = None,
                 augment: str = "none") -> None:
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
        if augment not in ("none", "crop-flip"):
            raise ConfigError(f"unknown augment {augment!r}; choose none or crop-flip")
        self.augment = augment
        mean, std = np.asarray(data.mean, np.float32), np.asarray(data.std, np.float32)
        self._black = torch.as_tensor(-mean / std, device=device)
        self.cuda_graphs = (device.type == "cuda" if cuda_graphs is None else bool(cuda_graphs)) and augment == "none"
        if self.cuda_graphs and device.type != "cuda":
            raise ConfigError(f"CUDA graphs need a CUDA device; got {device}")
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                                          capturable=self.cuda_graphs)
        self.generator = torch.Generator().manual_seed(int(seed))
        self._graph: torch.cuda.CUDAGraph | None = None

    def train_epoch(self) -> float:
        """One pass over the training set in a fresh random order; returns the mean mini-batch loss."""
        self.model.train()
        n = len(self.x_train)
        order = torch.randperm(n, generator=self.generator).to(self.device)
        total = torch.zeros((), device=self.device)
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            if self.cuda_graphs and len(index) == self.batch_size:
                loss = self._graphed_step(index)
            else:
                x = self.x_train[index]
                if self.augment == "crop-flip":
                    offsets = torch.randint(0, 2 * CROP_PADDING + 1, (len(index), 2), generator=self.generator)
                    flips = torch.randint(0, 2, (len(index),), generator=self.generator).bool()
                    x = crop_flip(x, self._black, offsets.to(self.device), flips.to(self.device))
                loss = self._step(x, self.y_train[index])
            total += loss.detach() * len(index)
        return float(total) / n

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def _graphed_step(self, index: torch.Tensor) -> torch.Tensor:
        if self._graph is None:
            self._capture()
        torch.index_select(self.x_train, 0, index, out=self._static_x)
        torch.index_select(self.y_train, 0, index, out=self._static_y)
        self._graph.replay()
        return self._static_loss

    def _capture(self) -> None:
        """Capture one full-batch training step in a CUDA graph (PyTorch's whole-network capture recipe).

        Capturing needs warm-up steps on a side stream; parameters and Adam state are saved before and
        copied back in place after, so the captured graph starts from the untouched training state.
        """
        model, optimizer = self.model, self.optimizer
        params = [p for group in optimizer.param_groups for p in group["params"]]
        saved_params = [p.detach().clone() for p in params]
        saved_state = {id(p): {k: v.clone() for k, v in optimizer.state[p].items() if torch.is_tensor(v)}
                       for p in params if p in optimizer.state}
        self._static_x = self.x_train[: self.batch_size].clone()
        self._static_y = self.y_train[: self.batch_size].clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step(self._static_x, self._static_y)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)  # backward inside the capture allocates grads from the graph's pool
        with torch.cuda.graph(graph):
            loss = F.cross_entropy(model(self._static_x), self._static_y)
            loss.backward()
            optimizer.step()
        # the replays write into the loss's memory; detached, it no longer keeps the captured autograd graph (and
        # its gradient accumulators, bound to the capture stream) alive for the eager steps of partial batches
        self._static_loss = loss.detach()
        with torch.no_grad():
            for p, saved in zip(params, saved_params):
                p.copy_(saved)
            for p in params:
                before = saved_state.get(id(p), {})
                for key, value in optimizer.state[p].items():
                    if not torch.is_tensor(value):
                        continue
                    if key in before:
                        value.copy_(before[key])
                    else:  # state created by the warm-up: a fresh Adam state is all zeros
                        value.zero_()
        torch.cuda.synchronize()
        self._graph = graph

    def _per_sample(self, x: torch.Tensor, label: torch.Tensor, original: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        """:func:`sample_outcomes` of every sample of ``x``, concatenated, in NumPy."""
        self.model.eval()
        parts: list[dict[str, torch.Tensor]] = []
        with torch.inference_mode():
            for start in range(0, len(x), self.eval_batch_size):
                stop = start + self.eval_batch_size
                parts.append(sample_outcomes(self.model(x[start:stop]), label[start:stop],
                                             None if original is None else original[start:stop]))
        return {name: torch.cat([part[name] for part in parts]).cpu().numpy() for name in parts[0]}

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the whole training set (clean / noisy, assigned / original labels) and the test set.

        Returns every name of :data:`actlab.store.METRICS` but ``wall_time``; a
        group without samples gets NaN.
        """
        return self.evaluate_samples()[0]

    def evaluate_samples(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """:meth:`evaluate` and, from the same forward pass, every training sample's trajectory (:func:`trajectory`)."""
        train = self._per_sample(self.x_train, self.y_train, self.y_train_original)
        test = self._per_sample(self.x_test, self.y_test)
        return summarize(train, test, self.is_noisy), trajectory(train)

    # -- checkpoint state ------------------------------------------------------------
    def state(self, epoch: int, elapsed: float) -> dict[str, Any]:
        """A detached CPU copy of everything needed to continue after ``epoch`` (safe to save from another thread)."""
        return {**training_state(self.model, self.optimizer, epoch, elapsed), "generator": self.generator.get_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore model, optimizer and random states from :meth:`state`."""
        if self._graph is not None:
            raise RuntimeError("load_state must come before the first training step (the CUDA graph holds the state)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # the device of this run decides, not the checkpoint's
            group["capturable"] = self.cuda_graphs
        self.generator.set_state(state["generator"])
        restore_random_state(state)


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, elapsed: float) -> dict[str, Any]:
    """The checkpoint state every trainer shares: format, epoch, elapsed time, weights, optimizer and the global
    random states, detached CPU copies (safe to save from another thread)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": int(epoch),
        "elapsed": float(elapsed),
        "model": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
        "optimizer": to_cpu(copy.deepcopy(optimizer.state_dict())),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_random_state(state: dict[str, Any]) -> None:
    """Put back the global random states saved by :func:`training_state`."""
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def sample_outcomes(logits: torch.Tensor, label: torch.Tensor, original: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-sample outcomes of a forward pass.

    Parameters
    ----------
    logits : Tensor, shape (..., class)
    label : Tensor of int, shape (...)
        The assigned labels.
    original : Tensor of int, shape (...), optional
        The original labels.

    Returns
    -------
    dict of str -> Tensor, each shape (...)
        ``loss`` (cross-entropy against ``label``, float32), ``correct`` (argmax equals ``label``), ``margin``
        (logit of ``label`` minus the largest other logit, float32); with ``original``, also ``loss_original``
        and ``correct_original``.
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    pred = logits.argmax(dim=-1)
    assigned = logits.float().gather(-1, label[..., None])
    others = logits.float().scatter(-1, label[..., None], float("-inf")).amax(dim=-1)
    out = {"loss": -logp.gather(-1, label[..., None])[..., 0], "correct": pred == label, "margin": assigned[..., 0] - others}
    if original is not None:
        out["loss_original"] = -logp.gather(-1, original[..., None])[..., 0]
        out["correct_original"] = pred == original
    return out


def trajectory(train: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One epoch of ``dynamics/`` from the training set's :func:`sample_outcomes`: every name of
    :data:`actlab.store.DYNAMICS` in its stored dtype, shape (train_sample,)."""
    return {name: np.asarray(train[name]).astype(dtype) for name, (_, _, dtype) in DYNAMICS.items()}


def summarize(train: dict[str, np.ndarray], test: dict[str, np.ndarray], is_noisy: np.ndarray) -> dict[str, float]:
    """The metrics of :meth:`Trainer.evaluate` from per-sample outcomes (:func:`sample_outcomes`).

    Parameters
    ----------
    train : dict of str -> ndarray, each shape (train_sample,)
        ``loss``, ``correct``, ``loss_original``, ``correct_original`` of the training set.
    test : dict of str -> ndarray, each shape (test_sample,)
        ``loss`` and ``correct`` of the test set.
    is_noisy : ndarray of bool, shape (train_sample,)
    """
    clean, noisy = ~is_noisy, is_noisy

    def mean(values: np.ndarray, mask: np.ndarray | None = None) -> float:
        values = np.asarray(values, dtype=np.float64) if mask is None else np.asarray(values, dtype=np.float64)[mask]
        return float(values.mean()) if len(values) else float("nan")

    return {
        "train_clean_loss": mean(train["loss"], clean), "train_clean_acc": mean(train["correct"], clean),
        "train_noisy_loss": mean(train["loss"], noisy), "train_noisy_acc": mean(train["correct"], noisy),
        "train_noisy_true_loss": mean(train["loss_original"], noisy),
        "train_noisy_true_acc": mean(train["correct_original"], noisy),
        "test_loss": mean(test["loss"]), "test_acc": mean(test["correct"]),
    }


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (nested dicts and lists too) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.to("cpu")
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    return value


def checkpoint_digest_path(path: Location) -> Location:
    """Where the digest of the checkpoint at ``path`` is kept: beside it, ``<name>.sha256``."""
    return f"{path}.sha256" if is_remote(path) else Path(path).with_name(Path(path).name + ".sha256")


def _read_digests(path: Location) -> dict[str, Any]:
    """The digest file of the checkpoint at ``path`` as a mapping; empty when there is none or it is not JSON."""
    try:
        digests = json.loads(_read_bytes(path))
    except (OSError, ValueError):
        return {}
    return digests if isinstance(digests, dict) else {}


def _read_bytes(path: Location) -> bytes:
    return files(path).read("") if is_remote(path) else Path(path).read_bytes()


def _current_sha256(path: Location) -> str | None:
    """SHA-256 of the checkpoint now at ``path``; None when there is none."""
    try:
        return hashlib.sha256(_read_bytes(path)).hexdigest()
    except OSError:
        return None


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` atomically with its digest.

    The SHA-256 of the serialised checkpoint, and that of the checkpoint now in place (still the valid one until the
    rename), go to ``<path>.sha256`` first; then the checkpoint goes to a temporary sibling (``.NAME.XXXX.partial``),
    fsync, and a rename over ``path``. At a URL: the digest object, then the checkpoint object, one upload each (an
    object store replaces an object whole).

    Raises
    ------
    WriteError
        When a write fails (disk full); its temporary file is removed and the previous checkpoint stays in place.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    loc = location(path)
    digest_path = checkpoint_digest_path(loc)
    digests = json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "previous_sha256": _current_sha256(loc)}) + "\n"
    try:
        if is_remote(loc):  # an object store: one PUT each, atomic by itself
            files(digest_path).write("", digests.encode("utf-8"))
            files(loc).write("", data)
        else:
            write_atomic(digest_path, digests)
            write_atomic(loc, data)
    except OSError as exc:
        raise write_failed(exc, f"checkpoint {path}") from exc


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (a local file or a URL), after checking its SHA-256.

    Raises
    ------
    StoreError
        When the checkpoint's SHA-256 is neither of those in its digest file (damaged, or not this run's), the digest
        file is missing, or the checkpoint cannot be read.
    """
    loc = location(path)
    try:
        data = _read_bytes(loc)
    except OSError as exc:
        raise StoreError(f"checkpoint {path} cannot be read ({exc}); fix permissions, or move it aside to restart "
                         "the run from epoch 0 with --resume") from exc
    digests = _read_digests(checkpoint_digest_path(loc))
    if hashlib.sha256(data).hexdigest() not in {digests.get("sha256"), digests.get("previous_sha256")} - {None}:
        why = "has no readable digest file" if not digests else "fails its SHA-256 check (it is damaged)"
        raise StoreError(
            f"checkpoint {path} {why} ({checkpoint_digest_path(loc)}); the store keeps each recorded epoch's "
            "parameters but not the optimizer and random states, so training cannot continue from it exactly: move "
            f"{basename(loc)} and its digest aside to restart from epoch 0 with --resume (committed epochs are "
            "recorded again), or record the run again with --overwrite")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StoreError(f"checkpoint {path} cannot be read ({exc}); delete it to restart the run from epoch 0 with --resume") from exc
    if state.get("format") != CHECKPOINT_FORMAT:
        raise StoreError(f"checkpoint {path} has format {state.get('format')}, expected {CHECKPOINT_FORMAT}; record the run again")
    return state
