"""``actlab.Recorder``: record a run from any training loop (the user's optimizer, scheduler, augmentation).

::

    rec = actlab.Recorder(model, out="runs/mine", probes=(x, y), layers="auto", record_epochs="log:40", epochs=300,
                          train=(x_train, y_train), test=(x_test, y_test))
    for epoch in range(1, 301):
        ...  # the user's own training step
        rec.end_epoch(epoch, metrics={"lr": sched.get_last_lr()[0]})   # or: with rec.epoch(epoch): ...
    rec.close()

The recorder writes the same store as ``actlab record`` through the same machinery: the claim of the run folder
(:mod:`actlab.record.claim`), :class:`~actlab.store.RunWriter` and its commit protocol, the
:class:`~actlab.record.writer.BackgroundWriter`, :class:`~actlab.record.hooks.ActivationCapture`. Its evaluation
runs in ``eval()`` under ``no_grad`` and puts back afterwards every module's mode and every random generator state
it could touch (torch, CUDA, NumPy, Python), so the training it watches is the same bit for bit.

Every training sample's trajectory (``dynamics/``) comes from one of two sources, named in the store (attribute
``source`` of ``dynamics/``):

- ``train=(x, y)`` alone (``source = "evaluation"``, the exact option): the whole training set is evaluated in
  ``eval()`` mode under ``no_grad`` at the end of every epoch, the weights as they are then; it costs one extra
  forward pass over the training set per epoch.
- ``train=(x, y), observe=True`` (``source = "training"``, the cheap option): the trajectories are the logits of
  the loop's own training forward passes, handed in by ``rec.observe(index, logits)`` with the batch's indices
  into ``train``; as forgetting events, dataset cartography and the area under the margin do. They are taken in
  ``train()`` mode (dropout, batch statistics) while the weights move from batch to batch, so they differ from an
  evaluation at the epoch's end. The training metrics (``train_clean_loss``, ...) come from the same outcomes;
  epoch 0, before training, is evaluated. Every sample must be observed once per epoch (``drop_last=False``);
  ``every_sample_once=False`` accepts epochs where some are missed (``drop_last``: NaN loss and margin, false
  correct) or repeated (``DistributedSampler`` padding: the mean loss and margin, correct in most observations).

Distributed training (``torch.distributed``, DDP): make the recorder in every process; only global rank 0
evaluates and writes, the others' recorders do nothing except, with ``observe=True``, sum their observations into
rank 0's: ``end_epoch`` then runs one ``all_reduce`` in every process (call it in every process, as the training
step). A ``DistributedDataParallel`` model is evaluated through its ``module``, so the recorder runs no other
collective and cannot deadlock one (rank 0 is late to the next one by the recorder's time, as with any work done
on rank 0 only).
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from actlab.errors import ConfigError
from actlab.location import location
from actlab.record.claim import check_run_output_or_busy, claimed_run_dir, locked_run
from actlab.record.config import parse_schedule
from actlab.record.hooks import ActivationCapture
from actlab.record.models import layer_specs, parameter_arrays, parameter_specs
from actlab.record.observed import ObservedEpoch
from actlab.record.setup import environment
from actlab.record.trainer import sample_outcomes, summarize, trajectory
from actlab.record.writer import BackgroundWriter
from actlab.store import GROUPS, METRICS, STATUS_COMPLETE, ProbeSet, RunWriter, Subsets, open_store, user_metric_problem


COMMIT_SECONDS = 10.0
"""The recorder commits the metrics and trajectories of the epochs not recorded at most this often (and at every
recorded epoch and the last): each commit rewrites every metric array in the background writer's thread, whose
Python holds the interpreter lock that a training loop bound by kernel launches needs for each launch. A process
killed in between leaves the epochs up to the last commit."""


def global_rank() -> int:
    """This process's global rank in an initialised ``torch.distributed`` process group; 0 without one."""
    distributed = torch.distributed
    return distributed.get_rank() if distributed.is_available() and distributed.is_initialized() else 0


@contextlib.contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode and put back every module's mode and the torch, CUDA, NumPy and
    Python random states afterwards, whatever the block did."""
    modes = {module: module.training for module in model.modules()}
    torch_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    numpy_state, python_state = np.random.get_state(), random.getstate()
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes.items():
            module.training = mode
        torch.set_rng_state(torch_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def _split(data: Any, name: str, *, original: bool) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """``(x, y)`` or, where ``original``, ``(x, y, original_y)`` as a CPU tensor and int64 label arrays (the original
    labels default to ``y``: no noise information)."""
    if not isinstance(data, (tuple, list)) or len(data) not in ((2, 3) if original else (2,)):
        forms = "(x, y) or (x, y, original_y)" if original else "(x, y)"
        raise ConfigError(f"{name} must be {forms}; got {type(data).__name__}")
    x = torch.as_tensor(data[0]).detach().cpu()
    labels = [np.asarray(torch.as_tensor(y).cpu().numpy(), dtype=np.int64) for y in data[1:]]
    if any(y.shape != (len(x),) for y in labels):
        raise ConfigError(f"{name}: labels must have shape ({len(x)},) like x; got {[y.shape for y in labels]}")
    return x, labels[0], labels[-1]


RESIDENT_SHARE = 4
"""``train=``'s inputs stay on a GPU for the per-epoch evaluation when they take at most 1/RESIDENT_SHARE of its free
memory when the recorder is made; otherwise each batch is copied there at each epoch."""


def _resident(given: Any, x: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """``train=``'s inputs on ``device`` for the per-epoch evaluation, or None (each batch copied at each epoch): the
    given tensor where it is already there, a copy made once where it fits :data:`RESIDENT_SHARE`; None on the CPU."""
    if device.type == "cpu":
        return None
    if isinstance(given, torch.Tensor) and given.device == device:
        return given.detach()
    if device.type == "cuda" and x.numel() * x.element_size() * RESIDENT_SHARE <= torch.cuda.mem_get_info(device)[0]:
        return x.to(device)
    return None


def _stored_images(x: torch.Tensor) -> np.ndarray:
    """Probe inputs as the store keeps them: uint8 kept, anything else float32, as (sample, channel, height, width)."""
    images = x.numpy()
    images = images if images.dtype == np.uint8 else images.astype(np.float32)
    while images.ndim < 4:
        images = images[:, None]
    if images.ndim > 4:
        raise ConfigError(f"probe inputs must have at most 3 dims per sample; got shape {tuple(x.shape)}")
    return images


class Recorder:
    """Record the run of a training loop written by the user into a run store.

    Parameters
    ----------
    model : nn.Module
        The model being trained (on any device); it is only evaluated, never changed.
    out : path
        The run folder to create (``runs/<name>``); refused when it holds a run, unless ``overwrite`` or ``resume``.
    probes : (x, y) or (x, y, original_y), or ndarray of int
        The probe samples whose activations are recorded: inputs as the model takes them and their assigned labels
        (and the original labels, for label-noise studies); or, with ``train``, indices into ``train``.
    epochs : int
        Number of training epochs; :meth:`end_epoch` is called with 1..epochs.
    layers : "auto" or sequence of str
        Modules to record (``"auto"``: every activation module and the last module).
    record_epochs : str or sequence of int
        Recorded epochs (``"log:40"``, ``"every:5"``, ``"0,1,10"``); epoch 0 is recorded when the recorder is made.
    train : (x, y) or (x, y, original_y), optional
        The training set: evaluated at every epoch for the training metrics and every sample's trajectory
        (``dynamics/``), one forward pass in eval mode; with ``observe``, only its labels are used after epoch 0.
        On a GPU its inputs are kept there for that pass when they take at most a quarter of its free memory (those
        given on the model's device are used as they are); otherwise each batch is copied there at each epoch.
    observe : bool
        Take the trajectories and training metrics from the training step's own logits, handed in by
        :meth:`observe`, instead of evaluating ``train`` at every epoch (needs ``train``).
    every_sample_once : bool
        With ``observe``, refuse an epoch in which a training sample was not observed or observed more than once.
    test : (x, y), optional
        The test set: evaluated at every epoch for ``test_loss`` and ``test_acc``; its first ``test_probes``
        samples are the probes of group ``test``.
    test_probes : int
        Test samples recorded as probes (at most the test set).
    conv_reduce : {"mean", "max", "none"}
        Reduction of conv outputs over (y, x).
    dtype : {"float32", "float16"}
        Stored activation dtype.
    batch_size : int
        Samples per evaluation forward pass.
    overwrite : bool
        Replace a run already in ``out``.
    resume : bool
        Continue the run in ``out`` after its last committed epoch (restore your own checkpoint first); refused
        when its probes or model differ from these.

    Attributes
    ----------
    active : bool
        False in a process of global rank > 0 of a distributed run, whose recorder writes nothing (with
        ``observe``, it only sums its observations into rank 0's at each :meth:`end_epoch`).

    Examples
    --------
    >>> with Recorder(model, out="runs/mine", probes=(x, y), epochs=30) as rec:
    ...     for epoch in range(1, 31):
    ...         train_one_epoch(model)
    ...         rec.end_epoch(epoch)
    """

    def __init__(self, model: nn.Module, out: str | Path, probes: Any, *, epochs: int, layers: str | Sequence[str] = "auto",
                 record_epochs: str | Sequence[int] = "log:40", train: Any = None, test: Any = None, test_probes: int = 1000,
                 conv_reduce: str = "mean", dtype: str = "float32", batch_size: int = 1024, overwrite: bool = False,
                 resume: bool = False, observe: bool = False, every_sample_once: bool = True) -> None:
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1; got {epochs!r}")
        if observe and train is None:
            raise ConfigError("observe=True needs train=(x, y) or (x, y, original_y): the labels of the observed indices")
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module  # evaluated alone on rank 0: no collective runs inside the recorder
        self.active = global_rank() == 0
        self.closed = False
        self.epochs = epochs
        self.device = next(model.parameters(), torch.zeros(())).device
        self.train = _split(train, "train", original=True) if train is not None else None
        self._observed = ObservedEpoch(self.train[1], self.train[2], self.device, every_sample_once=every_sample_once) \
            if observe else None
        if not self.active:  # another process of a distributed run: it writes and evaluates nothing
            return
        self.model, self.batch_size, self.dtype = model, int(batch_size), dtype
        self._train_x = _resident(train[0], self.train[0], self.device) if train is not None and not observe else None
        self.run_dir = location(out)
        self.schedule = parse_schedule(record_epochs, epochs)
        self.test = _split(test, "test", original=False) if test is not None else None
        probe_set, self._probe_x = self._probes(probes, test_probes)
        with untouched(model):
            self.specs = layer_specs(model, self._probe_x[:1].to(self.device), layers, conv_reduce)
        self._capture = ActivationCapture(model, {spec.name: spec.module for spec in self.specs})
        self._reduce = {spec.name: spec.reduce for spec in self.specs}
        self._stack = contextlib.ExitStack()
        self._pending: dict[int, dict[str, float]] = {}
        self._trajectories: dict[int, dict[str, np.ndarray]] = {}
        self._last_flush = self._t0 = time.perf_counter()
        self._elapsed_before = 0.0
        try:
            self.writer = self._resume(probe_set) if resume else self._create(probe_set, overwrite)
            self._background = BackgroundWriter(maxsize=4)
            self._known_metrics = set(self.writer.user_metrics)
            self._stack.callback(self._background.close, raise_errors=False)
            if not resume:
                self.end_epoch(0)
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise

    # -- set-up --------------------------------------------------------------------------------------
    def _probes(self, probes: Any, test_probes: int) -> tuple[ProbeSet, torch.Tensor]:
        """The stored probe set (clean, noisy, then test) and the probe inputs in that order."""
        if self.train is not None:
            index = np.asarray(probes)
            if index.ndim != 1 or index.dtype.kind not in "iu" or (len(index) and (index.min() < 0 or index.max() >= len(self.train[0]))):
                raise ConfigError(f"with train given, probes must be indices into train (0..{len(self.train[0]) - 1}); "
                                  "pass probes=np.arange(1000) for the first 1000 training samples")
            x, label, original = self.train[0][index], self.train[1][index], self.train[2][index]
        else:
            x, label, original = _split(probes, "probes", original=True)
            index = np.arange(len(x))
        noisy = label != original
        order = np.concatenate([np.flatnonzero(~noisy), np.flatnonzero(noisy)])
        parts = [(x[order], index[order], (noisy[order]).astype(np.int8), label[order], original[order], noisy[order])]
        if self.test is not None:
            n = min(int(test_probes), len(self.test[0]))
            parts.append((self.test[0][:n], np.arange(n), np.full(n, GROUPS.index("test"), np.int8), self.test[1][:n],
                          self.test[1][:n], np.zeros(n, bool)))
        inputs = torch.cat([part[0] for part in parts])
        columns = [np.concatenate([part[k] for part in parts]) for k in range(1, 6)]
        return ProbeSet(_stored_images(inputs), *columns), inputs

    def _subsets(self, probes: ProbeSet) -> Subsets:
        if self.train is None:
            subsets = Subsets.of_probes(probes)
        else:
            _, label, original = self.train
            subsets = Subsets(train_index=np.arange(len(label)), train_label=label, train_original_label=original,
                              train_is_noisy=label != original, test_index=np.zeros(0, np.int64), test_label=np.zeros(0, np.int64))
        if self.test is not None:
            subsets = Subsets(subsets.train_index, subsets.train_label, subsets.train_original_label, subsets.train_is_noisy,
                              test_index=np.arange(len(self.test[1])), test_label=self.test[1])
        return subsets

    def _create(self, probes: ProbeSet, overwrite: bool) -> RunWriter:
        check_run_output_or_busy(self.run_dir, overwrite=overwrite)
        labels = [probes.label, probes.original_label] + ([self.train[1], self.train[2]] if self.train else []) + \
                 ([self.test[1]] if self.test else [])
        n_classes = int(max(int(y.max()) for y in labels if len(y))) + 1
        config = {"recorder": True, "epochs": self.epochs, "record_epochs": self.schedule, "dtype": self.dtype,
                  "model_class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
                  "resolved": {"run_id": uuid.uuid4().hex, "record_epochs": self.schedule,
                               "probe_sizes": {g: int(np.sum(probes.group == k)) for k, g in enumerate(GROUPS)}},
                  "environment": environment()}
        dataset = {"name": "custom", "class_names": [str(k) for k in range(n_classes)], "source": "actlab.Recorder",
                   "n_train_used": len(self.train[1]) if self.train else 0, "n_test_used": len(self.test[1]) if self.test else 0,
                   "normalization": {"mean": [0.0], "std": [1.0], "formula": "the model's input as handed in"}}
        claim = self._stack.enter_context(claimed_run_dir(self.run_dir, overwrite=overwrite))
        writer = RunWriter.create(self.run_dir, config=config, dataset=dataset, layers=self.specs,
                                  parameters=parameter_specs(self.model), probes=probes, subsets=self._subsets(probes),
                                  record_epochs=self.schedule, n_epochs=self.epochs, activation_dtype=self.dtype,
                                  dynamics=self.train is not None, replace=overwrite,
                                  dynamics_source="training" if self._observed else "evaluation")
        claim.writers.append(writer)
        claim.replaced()
        self.next_epoch = 1  # epoch 0 is recorded as soon as the writer exists
        return writer

    def _resume(self, probes: ProbeSet) -> RunWriter:
        self._stack.enter_context(locked_run(self.run_dir))
        view = open_store(self.run_dir)
        stored = {"images": view.probes["image"].values, "group": np.asarray([GROUPS.index(g) for g in view.probes["group"].values]),
                  **{name: view.probes[name].values for name in ("dataset_index", "label", "original_label", "is_noisy")}}
        same_probes = all(np.array_equal(value, getattr(probes, name)) for name, value in stored.items())
        same_model = (view.attrs["layers"] == [{**asdict(spec), "shape": list(spec.shape)} for spec in self.specs]
                      and view.attrs["parameters"] == [{**asdict(p), "shape": list(p.shape)} for p in parameter_specs(self.model)])
        if not same_probes or not same_model:
            what = "probes" if not same_probes else "model (its layers or state_dict)"
            raise ConfigError(f"{self.run_dir} was recorded with other {what}; resume with the same ones, or record "
                              "a new run")
        if view.attrs["n_epochs"] != self.epochs or view.attrs["record_epochs"] != self.schedule:
            raise ConfigError(f"{self.run_dir} was recorded for {view.attrs['n_epochs']} epochs with record epochs "
                              f"{view.attrs['record_epochs']}; resume with the same epochs and record_epochs")
        stored_source = view.dynamics.attrs["source"] if view.dynamics is not None else "none"
        source = ("training" if self._observed else "evaluation") if self.train is not None else "none"
        if stored_source != source:
            raise ConfigError(f"{self.run_dir} stores trajectories from {stored_source!r} (dynamics/ attribute source), "
                              f"these settings from {source!r}; resume with the same train= and observe=")
        if view.attrs.get("status") == STATUS_COMPLETE:
            raise ConfigError(f"{self.run_dir} is already complete; record a new run")
        writer = RunWriter.open(self.run_dir)
        writer.mark_recording()
        done = writer.committed_metric_epochs
        self.next_epoch = (max(done) + 1) if done else 0
        self._elapsed_before = float(view.metrics["wall_time"].values[-1]) if len(view.metrics["epoch"]) else 0.0
        print(f"actlab Recorder: resuming {self.run_dir} after epoch {self.next_epoch - 1}", file=sys.stderr)
        return writer

    # -- recording -----------------------------------------------------------------------------------
    def _outcomes(self, x: torch.Tensor, label: np.ndarray, original: np.ndarray) -> dict[str, np.ndarray]:
        """:func:`sample_outcomes` of evaluating ``x`` in batches; the labels go to the device once, not per batch."""
        label, original = (torch.as_tensor(y, device=self.device) for y in (label, original))
        parts = []
        for start in range(0, len(x), self.batch_size):
            stop = start + self.batch_size
            logits = self.model(x[start:stop].to(self.device))
            parts.append(sample_outcomes(logits, label[start:stop].to(logits.device), original[start:stop].to(logits.device)))
        return {name: torch.cat([p[name] for p in parts]).cpu().numpy() for name in parts[0]} if parts else {}

    def _evaluate(self, observed: tuple[dict[str, np.ndarray], np.ndarray] | None
                  ) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
        """The metrics (NaN where no data gives them) and the training samples' trajectory (None without ``train``),
        the training set's from ``observed`` (outcomes, observed mask) where given, else from evaluating it."""
        metrics = {name: float("nan") for name in METRICS}
        samples = None
        empty = {"loss": np.zeros(0), "correct": np.zeros(0, bool), "loss_original": np.zeros(0), "correct_original": np.zeros(0, bool)}
        if observed is not None:
            train, seen = observed
        else:
            train = self._outcomes(self._train_x if self._train_x is not None else self.train[0], *self.train[1:]) \
                if self.train is not None else None
            seen = slice(None)
        test = self._outcomes(self.test[0], self.test[1], self.test[1]) if self.test is not None else None
        is_noisy = (self.train[1] != self.train[2])[seen] if self.train else np.zeros(0, bool)
        found = summarize({k: v[seen] for k, v in train.items()} if train else empty, test or empty, is_noisy)
        metrics.update({k: v for k, v in found.items() if (k.startswith("train") and train) or (k.startswith("test") and test)})
        if train is not None:
            samples = trajectory(train)
        return metrics, samples

    def end_epoch(self, epoch: int, metrics: Mapping[str, float] | None = None) -> None:
        """Record the end of ``epoch``: metrics and trajectories at every epoch, activations and parameters at the
        scheduled ones. Call it with 1, 2, ..., ``epochs`` (0 is recorded when the recorder is made).

        ``metrics`` are the loop's own numbers (``{"lr": 0.1}``), stored as ``metrics/<name>`` (NaN at the epochs
        that do not report a name). With ``observe``, the epoch's observations end here (in a distributed run,
        every process must call it: they are summed by one ``all_reduce``)."""
        if self.closed:
            raise ConfigError("the recorder is closed; make a new one with resume=True to continue")
        if not isinstance(epoch, int) or not 0 <= epoch <= self.epochs:
            raise ConfigError(f"epoch must be an integer in 0..{self.epochs}; got {epoch!r}")
        observed = self._observed.take(epoch) if self._observed is not None and epoch > 0 else None
        if not self.active:
            return
        own = self._user_metrics(metrics or {})
        with untouched(self.model):
            metrics, samples = self._evaluate(observed)
            snapshot = ((self._capture.collect(self._probe_x.to(self.device), self.batch_size, self.dtype, self._reduce),
                         parameter_arrays(self.model)) if epoch in self.schedule else None)
        self._pending[epoch] = {**metrics, **own, "wall_time": self._elapsed_before + time.perf_counter() - self._t0}
        if samples is not None:
            self._trajectories[epoch] = samples
        if snapshot is not None or epoch == self.epochs or time.perf_counter() - self._last_flush >= COMMIT_SECONDS:
            self._flush()
        if snapshot is not None:
            self._background.submit(self.writer.write_epoch, epoch, *snapshot)

    def _user_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The loop's metrics as floats; a name not seen before is allocated in the store (in write order)."""
        values = {}
        for name, value in metrics.items():
            problem = user_metric_problem(name)
            if problem:
                raise ConfigError(problem)
            try:
                values[name] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"metric {name} is {value!r}, not a number; pass floats") from None
        new = [name for name in values if name not in self._known_metrics]
        if new:
            self._known_metrics.update(new)
            self._flush()  # metrics of earlier epochs first: the writer accepts a name only once it is allocated
            self._background.submit(self.writer.add_user_metrics, new)
        return values

    def observe(self, index: Any, logits: torch.Tensor, label: Any = None) -> None:
        """Hand in one training batch's logits (``Recorder(..., observe=True)``); call it in every process.

        Parameters
        ----------
        index : Tensor or ndarray of int, shape (batch,)
            The batch's indices into ``train`` (have the dataset return them with each sample).
        logits : Tensor, shape (batch, class)
            The training step's logits; kept as given (detached: the graph is not kept; a view of a larger tensor
            is copied) on their device until many batches are folded into per-sample sums there (no host
            synchronisation per batch). A batch whose logits, index or label tensors are changed in place before
            then is refused at :meth:`end_epoch`.
        label : Tensor or ndarray of int, shape (batch,), optional
            The batch's labels: checked against ``train``'s labels at ``index`` when the epoch ends, which catches
            indices in another order.
        """
        if self._observed is None:
            raise ConfigError("observe needs a recorder made with observe=True and train=(x, y)")
        if self.closed:
            raise ConfigError("the recorder is closed; make a new one with resume=True to continue")
        self._observed.add(index, logits, label)

    @contextlib.contextmanager
    def epoch(self, epoch: int) -> Iterator[None]:
        """``with rec.epoch(epoch): ...`` runs the block (one epoch of training), then :meth:`end_epoch`; nothing is
        recorded when the block raises."""
        yield
        self.end_epoch(epoch)

    def _flush(self) -> None:
        if self._trajectories:
            self._background.submit(self.writer.write_dynamics, self._trajectories)
        if self._pending:
            self._background.submit(self.writer.write_metrics, self._pending)
        self._pending, self._trajectories, self._last_flush = {}, {}, time.perf_counter()

    def close(self) -> None:
        """Write what is pending, wait for the writes and release the run folder; the run is marked complete when
        every epoch up to ``epochs`` is committed."""
        if self.closed or not self.active:
            self.closed = True
            return
        self.closed = True
        try:
            self._flush()
            self._background.close()
            if set(self.writer.committed_metric_epochs) == set(range(self.epochs + 1)) and \
                    set(self.writer.committed_record_epochs) == set(self.schedule):
                self.writer.mark_complete()
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        if exc is None or not self.active:
            self.close()
            return
        self.closed = True  # a failed loop: what is committed stays; the claim sees the error
        self._stack.__exit__(kind, exc, traceback)
