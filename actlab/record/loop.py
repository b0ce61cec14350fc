"""The epoch loop that a run and an ensemble share: train, evaluate, record, checkpoint.

What the loop trains is an :class:`EpochSource`: one model written to one run store
(:class:`actlab.record.api.ModelEpochs`), or the replicas of an ensemble, each written to its own
(:class:`actlab.record.ensemble.EnsembleTrainer`). Store writes and checkpoints go to one background
thread in the order they are made, so the store's commit protocol sees the same sequence either way:
an epoch's training-sample trajectories and metrics (every few seconds, and at every recorded or
checkpointed epoch), then its activations and parameters, then the checkpoint.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from actlab.location import Location
from actlab.progress import Progress
from actlab.record.config import RecordConfig
from actlab.record.trainer import save_checkpoint
from actlab.record.writer import BackgroundWriter
from actlab.store import RunWriter, missing_epochs

METRICS_FLUSH_SECONDS = 2.0
"""Per-epoch metrics are committed in batches at least this often, and at every recorded or checkpointed epoch."""

PROGRESS_METRICS: tuple[str, ...] = ("train_clean_loss", "train_noisy_loss", "test_loss")
"""Metrics shown on the progress bar (the mean over the replicas of an ensemble)."""


class EpochSource(Protocol):
    """What the epoch loop trains: one model per run store, in the order of the stores."""

    def train_epoch(self) -> Any:
        """One pass of every model over its training set."""

    def evaluate(self) -> list[tuple[dict[str, float], dict[str, np.ndarray]]]:
        """Every model's metrics (:data:`actlab.store.METRICS` but ``wall_time``) and the trajectory of its training
        samples (:data:`actlab.store.DYNAMICS`), from one pass."""

    def snapshots(self, batch_size: int, dtype: str) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """Every model's (activations of its probes per store layer, copies of its parameters)."""

    def state(self, epoch: int, elapsed: float) -> dict[str, Any]:
        """A detached CPU copy of everything needed to continue after ``epoch``."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` saved."""


def checkpoint_epochs(config: RecordConfig) -> list[int]:
    """Epochs after which a checkpoint is saved: every ``checkpoint_every`` epochs (at the recorded epochs
    when it is 0), and the last epoch."""
    if config.checkpoint_every:
        due = set(range(0, config.epochs + 1, config.checkpoint_every))
    else:
        due = set(config.schedule)
    return sorted(due | {config.epochs})


def run_epochs(writers: Sequence[RunWriter], source: EpochSource, config: RecordConfig, *,
               checkpoint: dict[str, Any] | None, checkpoint_path: Location, owner: dict[str, str], desc: str) -> None:
    """Train ``source`` from the start (or from ``checkpoint``) to ``config.epochs`` and write each model to its store.

    Parameters
    ----------
    writers : sequence of RunWriter
        One per model of ``source``, in its order.
    source : EpochSource
    config : RecordConfig
        Epochs, recorded epochs, checkpoint epochs, evaluation batch size, activation dtype, progress.
    checkpoint : dict, optional
        A checkpoint to continue from (:meth:`EpochSource.state` plus ``owner``).
    checkpoint_path : path or URL
        Where checkpoints are saved.
    owner : dict
        Saved with every checkpoint, to tell it from another recording's (``{"run_id": ...}``).
    desc : str
        Label of the progress bar.

    Every writer is marked complete at the end, once each store reads back every scheduled epoch as committed. A
    checkpoint ahead of a store (an epoch up to the checkpoint's not committed there) is not used: training restarts
    from epoch 0, the last state the checkpoint and every store agree on.
    """
    start, elapsed_before = 0, 0.0
    if checkpoint is not None:
        checkpoint = _agreed_checkpoint(writers, checkpoint, checkpoint_path)
    if checkpoint is not None:
        source.load_state(checkpoint)
        start, elapsed_before = checkpoint["epoch"] + 1, checkpoint["elapsed"]
    schedule = set(config.schedule)
    checkpoints = set(checkpoint_epochs(config))
    background = BackgroundWriter(maxsize=3 * len(writers) + 1)  # an epoch's writes: trajectories, metrics and activations per store, a checkpoint
    bar = Progress(config.epochs, desc=desc, unit="epoch", initial=max(start - 1, 0), enabled=config.progress)
    t0 = last_flush = time.perf_counter()
    pending: list[dict[int, dict[str, float]]] = [{} for _ in writers]
    trajectories: list[dict[int, dict[str, np.ndarray]]] = [{} for _ in writers]
    try:
        for epoch in range(start, config.epochs + 1):
            if epoch > 0:
                source.train_epoch()
            evaluations = source.evaluate()
            metrics = [row for row, _ in evaluations]
            elapsed = elapsed_before + time.perf_counter() - t0
            for rows, samples, (row, values) in zip(pending, trajectories, evaluations, strict=True):
                rows[epoch] = {**row, "wall_time": elapsed}
                samples[epoch] = values
            checkpoint_now = epoch in checkpoints
            if checkpoint_now or epoch in schedule or time.perf_counter() - last_flush >= METRICS_FLUSH_SECONDS:
                for writer, rows, samples in zip(writers, pending, trajectories):
                    background.submit(writer.write_dynamics, samples)
                    background.submit(writer.write_metrics, rows)
                pending, trajectories = [{} for _ in writers], [{} for _ in writers]
                last_flush = time.perf_counter()
            if epoch in schedule:
                for writer, (preacts, params) in zip(writers, source.snapshots(config.eval_batch_size, config.dtype), strict=True):
                    background.submit(writer.write_epoch, epoch, preacts, params)
            if checkpoint_now:
                background.submit(save_checkpoint, checkpoint_path, {**source.state(epoch, elapsed), **owner})
            mean = {name: np.mean([row[name] for row in metrics]) for name in PROGRESS_METRICS}
            bar.update(1 if epoch > 0 else 0, train=f"{mean['train_clean_loss']:.3f}", noisy=f"{mean['train_noisy_loss']:.3f}",
                       test=f"{mean['test_loss']:.3f}")
        background.close()
    except BaseException:
        background.close(raise_errors=False)
        raise
    finally:
        bar.close()
    for writer in writers:
        writer.mark_complete()


def _agreed_checkpoint(writers: Sequence[RunWriter], checkpoint: dict[str, Any], path: Location) -> dict[str, Any] | None:
    """``checkpoint`` when every store holds each epoch up to the checkpoint's as committed; None otherwise (after
    saying which store lacks which epochs), so that training restarts from epoch 0."""
    epoch = int(checkpoint["epoch"])
    for writer in writers:
        metric_epochs, record_epochs = missing_epochs(writer.run_dir)
        behind = sorted({e for e in (*metric_epochs, *record_epochs) if e <= epoch})
        if behind:
            shown = ", ".join(map(str, behind[:5])) + (", ..." if len(behind) > 5 else "")
            print(f"actlab record: checkpoint {path} (after epoch {epoch}) is ahead of {writer.run_dir}, which lacks "
                  f"committed epochs {shown}; restarting from epoch 0, the last state both hold", file=sys.stderr)
            return None
    return checkpoint
