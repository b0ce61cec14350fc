"""PyTorch Lightning: :class:`ActlabCallback` records a Lightning run with :class:`actlab.Recorder`.

Importing this module needs Lightning (``lightning`` or ``pytorch_lightning``); ``import actlab`` never imports it.

::

    from actlab.lightning import ActlabCallback
    trainer = lightning.Trainer(max_epochs=30, callbacks=[ActlabCallback("runs/mine", probes=np.arange(1000),
                                                                         train=(x, y, y_original))])
    trainer.fit(module, loader)

The callback makes the recorder when fitting starts (epoch 0, before training), ends an epoch after each training
epoch (after its validation, whose logged numbers are stored as user metrics) and closes the recorder when fitting
ends. With several devices, only global rank 0 writes (:class:`actlab.Recorder`).

The trajectories of ``train`` come from an evaluation pass at every epoch's end, or, cheaper, with
``observe=True``, from the training step's own logits (:meth:`actlab.Recorder.observe`). Lightning does not know a
batch's dataset indices, so for ``observe=True`` the dataset returns them and ``training_step`` hands them back
with the logits::

    dataset = TensorDataset(torch.arange(len(x)), x, y)      # (index, x, y): indices into train's order

    def training_step(self, batch, batch_idx):
        index, x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        return {"loss": loss, "logits": logits, "index": index, "label": y}   # "label" optional: a check

The callback passes them to the recorder in ``on_train_batch_end``. Every sample must come once per epoch; with
several devices Lightning's ``DistributedSampler`` repeats a few samples to even the shards, and ``drop_last`` or
``limit_train_batches`` leave some out: give ``every_sample_once=False`` then (:class:`actlab.Recorder`).
"""

from __future__ import annotations

import math
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    try:
        import pytorch_lightning as pl
    except ImportError as exc:
        raise ImportError("actlab.lightning needs PyTorch Lightning; install it with 'pip install lightning'") from exc

from actlab.record.recorder import Recorder


def logged_metrics(values: dict[str, Any]) -> dict[str, float]:
    """The scalar numbers among Lightning's ``callback_metrics``, named as store user metrics ('/' becomes '.')."""
    out = {}
    for name, value in values.items():
        value = value.item() if hasattr(value, "numel") and value.numel() == 1 else value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            out[name.replace("/", ".")] = float(value)
    return out


class ActlabCallback(pl.Callback):
    """Record the Lightning run of the fitted module into the run folder ``out``.

    Parameters
    ----------
    out : path
        The run folder.
    probes, train, test, layers, record_epochs, observe, every_sample_once, **recorder_args
        As for :class:`actlab.Recorder`; ``epochs`` is the trainer's ``max_epochs``. With ``observe=True``,
        ``training_step`` returns ``{"loss", "logits", "index"}`` (and optionally ``"label"``), as above.
    log_metrics : bool
        Store the numbers the module logs (``self.log``) as user metrics.
    """

    def __init__(self, out: Any, probes: Any, *, log_metrics: bool = True, **recorder_args: Any) -> None:
        self.out, self.probes, self.log_metrics, self.recorder_args = out, probes, log_metrics, recorder_args
        self.recorder: Recorder | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if not isinstance(trainer.max_epochs, int) or trainer.max_epochs < 1:
            raise ValueError("ActlabCallback needs Trainer(max_epochs=N) to schedule the recorded epochs")
        self.recorder = Recorder(pl_module, out=self.out, probes=self.probes, epochs=trainer.max_epochs,
                                 **self.recorder_args)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.recorder is None or not self.recorder_args.get("observe"):
            return
        if not isinstance(outputs, dict) or "logits" not in outputs or "index" not in outputs:
            raise ValueError("ActlabCallback(observe=True) needs training_step to return {'loss': loss, 'logits': "
                             "logits, 'index': index} with the batch's dataset indices; see actlab.lightning")
        self.recorder.observe(outputs["index"], outputs["logits"], outputs.get("label"))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.recorder is not None and not trainer.sanity_checking:
            metrics = logged_metrics(dict(trainer.callback_metrics)) if self.log_metrics else {}
            self.recorder.end_epoch(trainer.current_epoch + 1, metrics=metrics)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.recorder is not None:
            self.recorder.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.recorder is not None and not self.recorder.closed:
            self.recorder.__exit__(type(exception), exception, exception.__traceback__)
