"""Every training sample's trajectory from the training loop's own logits (``Recorder(..., observe=True)``).

Forgetting events (Toneva et al. 2019), dataset cartography (Swayamdipta et al. 2020) and the area under the margin
(Pleiss et al. 2020) all read the logits of the training step itself: no extra forward pass. :class:`ObservedEpoch`
keeps each batch's logits on the model's device and sums their per-sample outcomes into buffers there, many
batches at once (no host synchronisation per batch, bounded memory), and hands the epoch over once, at its end;
in a distributed run the buffers of every process are summed first (one ``all_reduce``), so every process sees the
same epoch and raises the same refusal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from actlab.errors import ConfigError
from actlab.record.trainer import sample_outcomes

SUMMED: tuple[str, ...] = ("loss", "margin", "loss_original", "correct", "correct_original", "count")
"""The per-sample sums kept on the device, one row each; ``count`` is the number of observations."""
FOLD_VALUES = 2**22
"""Logits (batch x class values) kept on the device before they are folded into the sums: 16 MiB of float32."""


def _distributed() -> bool:
    distributed = torch.distributed
    return distributed.is_available() and distributed.is_initialized() and distributed.get_world_size() > 1


def _kept(values: Any) -> torch.Tensor:
    """A batch's indices or labels: a tensor as given (where it is: no per-batch copy to a GPU, which waits for it
    from pageable host memory, nor a copy on the host, which costs an operation per batch); anything else copied
    into a host tensor (a NumPy array or list changed later leaves it as it was)."""
    return values if isinstance(values, torch.Tensor) else torch.from_numpy(np.array(values))


def _joined(parts: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The batches' indices or labels joined on ``device``: the host ones joined there first and moved in one copy
    (from pinned memory to a GPU, not waiting for it)."""
    if device.type != "cpu" and all(part.device.type == "cpu" for part in parts):
        joined = torch.cat(parts)
        return (joined.pin_memory() if device.type == "cuda" else joined).to(device, non_blocking=True)
    return torch.cat([part.to(device, non_blocking=True) for part in parts])


class ObservedEpoch:
    """Per-sample outcomes of the current epoch, summed from the training step's logits.

    Parameters
    ----------
    label, original : ndarray of int, shape (train_sample,)
        Assigned and original labels of the training set, in the order of the indices given to :meth:`add`.
    device : torch.device
        Where the sums are kept (the model's device).
    every_sample_once : bool
        Refuse an epoch in which a training sample was not observed, or observed more than once.
    """

    def __init__(self, label: np.ndarray, original: np.ndarray, device: torch.device, *, every_sample_once: bool) -> None:
        self.n_samples = len(label)
        self.every_sample_once = every_sample_once
        self._label = torch.as_tensor(label, device=device)
        self._original = torch.as_tensor(original, device=device)
        self._sums = torch.zeros((len(SUMMED), self.n_samples), dtype=torch.float32, device=device)
        # indices out of range, labels that differ, batches changed in place after add
        self._problems = torch.zeros(3, dtype=torch.float32, device=device)
        self._batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, tuple[int, ...]]] = []
        self._buffered = 0

    def add(self, index: Any, logits: torch.Tensor, label: Any = None) -> None:
        """Add one batch: ``index`` (batch,) dataset indices into the training set, ``logits`` (batch, class),
        ``label`` (batch,) optional, checked against the training set's assigned labels at :meth:`take`.

        The batch is kept as given, not copied: the logits detached from their graph, the indices and labels where
        they are (a NumPy array or list copied to a host tensor); their version counters are noted, and a batch
        whose tensors were changed in place before it is folded is refused at :meth:`take`. Batches are folded into
        the per-sample sums together, every :data:`FOLD_VALUES` logits and at :meth:`take`: a batch costs one
        operation here (the detach; on a GPU, a launch-bound loop pays some 20 us for each), not a dozen."""
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ConfigError(f"observe: logits must be a tensor (batch, class); got {getattr(logits, 'shape', type(logits).__name__)}")
        index = _kept(index)
        if index.ndim != 1 or len(index) != len(logits) or index.dtype.is_floating_point or index.dtype == torch.bool:
            raise ConfigError(f"observe: index must be integers of shape ({len(logits)},) like the logits' batch; "
                              f"got {index.dtype} {tuple(index.shape)}")
        if label is not None:
            label = _kept(label)
            if label.shape != index.shape:
                raise ConfigError(f"observe: label must have shape {tuple(index.shape)} like index; got {tuple(label.shape)}")
        # detached, it shares the version counter of the logits the loop holds; a view of a larger tensor is copied
        # (so as not to keep that tensor for the epoch)
        logits = logits.detach() if logits._base is None else logits.detach().clone()
        versions = (index._version, logits._version, -1 if label is None else label._version)
        self._batches.append((index, logits, label, versions))
        self._buffered += logits.numel()
        if self._buffered >= FOLD_VALUES:
            self._fold()

    def _fold(self) -> None:
        """Add the buffered batches to the per-sample sums (on the device, without waiting for it)."""
        if not self._batches:
            return
        device = self._sums.device
        kept = [batch for batch in self._batches if batch[3] == (batch[0]._version, batch[1]._version,
                                                                  -1 if batch[2] is None else batch[2]._version)]
        changed, self._batches = len(self._batches) - len(kept), kept
        if changed:
            self._problems[2] += changed
        if not self._batches:
            self._buffered = 0
            return
        with torch.no_grad():
            index = _joined([batch[0] for batch in self._batches], device)
            logits = torch.cat([batch[1].to(device) for batch in self._batches])
            inside = (index >= 0) & (index < self.n_samples)
            index = torch.where(inside, index, torch.zeros_like(index))
            assigned = self._label.index_select(0, index)  # index_select: much faster than tensor[index] on a CPU
            out = sample_outcomes(logits, assigned, self._original.index_select(0, index))
            rows = torch.stack([out[name].float() for name in SUMMED[:-1]] + [torch.ones_like(out["loss"])])
            self._sums.index_add_(1, index, rows * inside)
            self._problems[0] += (~inside).sum()
            checked = [k for k, batch in enumerate(self._batches) if batch[2] is not None]
            if checked:
                label = _joined([self._batches[k][2] for k in checked], device)
                if len(checked) < len(self._batches):  # the checked batches' rows, chosen on the host, moved in one copy
                    starts = np.cumsum([0] + [len(batch[0]) for batch in self._batches])
                    picked = np.concatenate([np.arange(starts[k], starts[k + 1]) for k in checked])
                    picked = _joined([torch.from_numpy(picked)], device)
                    assigned, inside = assigned.index_select(0, picked), inside.index_select(0, picked)
                self._problems[1] += ((label != assigned) & inside).sum()
        self._batches, self._buffered = [], 0

    def take(self, epoch: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The epoch's outcomes and start a new epoch; the sums of every process first, in a distributed run.

        Returns
        -------
        outcomes : dict of str -> ndarray, each shape (train_sample,)
            ``loss``, ``margin``, ``loss_original`` (the mean over the sample's observations; NaN where it was not
            observed), ``correct``, ``correct_original`` (true in more than half of its observations).
        observed : ndarray of bool, shape (train_sample,)
        """
        self._fold()
        both = torch.cat([self._sums.flatten(), self._problems])
        if _distributed():
            torch.distributed.all_reduce(both)
        both = both.cpu().numpy()
        self._sums.zero_()
        self._problems.zero_()
        sums = dict(zip(SUMMED, both[:-3].reshape(len(SUMMED), self.n_samples)))
        outside, wrong_labels, changed = (int(v) for v in both[-3:])
        if changed:
            raise ConfigError(f"epoch {epoch}: the logits, indices or labels of {changed} observed batches were changed "
                              "in place after observe; hand observe tensors the loop does not change afterwards")
        if outside:
            raise ConfigError(f"epoch {epoch}: {outside} observed indices lie outside 0..{self.n_samples - 1}; give "
                              "observe the indices of the batch's samples in the training set given as train=")
        if wrong_labels:
            raise ConfigError(f"epoch {epoch}: {wrong_labels} observed labels differ from train's labels at their "
                              "indices; give observe the indices into train's order (have the dataset return them)")
        count = sums["count"]
        missing, repeated = int(np.sum(count == 0)), int(np.sum(count > 1))
        if self.every_sample_once and (missing or repeated):
            raise ConfigError(f"epoch {epoch}: {missing} of {self.n_samples} training samples were not observed and "
                              f"{repeated} were observed more than once; call observe once for every training sample "
                              "each epoch (DataLoader drop_last=False), or make the Recorder with every_sample_once=False")
        with np.errstate(invalid="ignore", divide="ignore"):
            outcomes = {name: (sums[name] / count).astype(np.float32) for name in ("loss", "margin", "loss_original")}
        outcomes.update({name: sums[name] > count / 2 for name in ("correct", "correct_original")})
        return outcomes, count > 0
