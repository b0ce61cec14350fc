"""Many seeds at once: K replicas of one run trained in one process as one vectorised ensemble.

``actlab record --seeds 0-7`` trains one MLP per seed. The replicas' weights are stacked along a
leading replica dimension and every mini-batch step is one batched forward, backward and Adam
step for all of them (:class:`EnsembleMLP`, :class:`EnsembleTrainer`). The replicas never mix:
the loss is the sum of each replica's mean cross-entropy, so each gets the gradient of its own
loss, and Adam is elementwise, so one Adam over the stacked weights is K separate Adams.

Replica k is the single run ``--seed S_k --data-seed D_k``: its initialisation is
:func:`actlab.record.setup.seeded_model` of its seed, its batch order comes from a generator
seeded as :class:`~actlab.record.trainer.Trainer` seeds it, and its data (subset, noise, probes)
from its data seed (the first of the seeds for all replicas, or its own seed with
``--noise-per-seed``). Each replica is written as a complete run, ``RUN/seed<S>/``; the ensemble
folder holds their marker and one checkpoint of all replicas (``docs/store-format.md``, Ensembles).
Steps are not replayed from CUDA graphs (``--cuda-graphs`` applies to single runs).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from actlab.errors import ConfigError, OutputError, StoreError
from actlab.files import (
    FOLDER_LOCK_FILENAME,
    MARKER_FILENAME,
    marker_kind,
    read_marker,
    replica_dirs,
    replica_name,
    write_failed,
    writer_lock,
)
from actlab.location import is_remote
from actlab.record.claim import (
    Claim,
    abandoned_claim,
    check_record_output,
    claimed_folder,
    claimed_run_dir,
    previous_outputs,
    remove_writer_leftovers,
)
from actlab.record.config import RecordConfig
from actlab.record.data import PreparedData, load_dataset, prepare_data
from actlab.record.loop import run_epochs
from actlab.record.models import count_parameters, mlp_layer_specs, parameter_specs
from actlab.record.setup import (
    check_same_data,
    data_subsets,
    environment,
    flushed_denormals,
    probe_set,
    resolved_settings,
    seeded_model,
)
from actlab.record.trainer import (
    load_checkpoint,
    resolve_device,
    restore_random_state,
    sample_outcomes,
    summarize,
    trajectory,
    to_device_normalized,
    training_state,
)
from actlab.store import (
    CHECKPOINT_DIGEST_FILENAME,
    CHECKPOINT_FILENAME,
    STATUS_COMPLETE,
    STORE_DIRNAME,
    LayerSpec,
    RunWriter,
    missing_epochs,
    read_attrs,
    recorded_ensemble_id,
)


ENSEMBLE_OUTPUTS: tuple[str, ...] = (CHECKPOINT_FILENAME, CHECKPOINT_DIGEST_FILENAME)
"""What an ensemble recording writes into its folder besides the marker, the lock and the replica folders (which
claim and clean up themselves)."""


def replica_configs(config: RecordConfig, run_dir: Path) -> list[RecordConfig]:
    """The single-run settings of each replica of the ensemble ``config`` whose folder is ``run_dir``.

    Replica k gets ``seed`` S_k, ``data_seed`` the ensemble's data seed (its own seed with
    ``noise_per_seed``) and ``out`` ``run_dir/seed<S_k>``; recorded alone, these settings give the
    same run.
    """
    return [config.replace(seeds=None, seed=seed, noise_per_seed=False, out=str(run_dir / replica_name(seed)),
                           data_seed=seed if config.noise_per_seed else config.resolved_data_seed)
            for seed in config.seeds]


# -- the vectorised model and its training -------------------------------------------------------------------


class EnsembleMLP(nn.Module):
    """K MLPs of one architecture with their weights stacked along a leading replica dimension.

    Layer ``l`` holds ``weights[l]`` of shape (replica, in_unit, unit) (the transpose of
    ``nn.Linear.weight``, so that the batched product and its weight gradient are contiguous)
    and ``biases[l]`` of shape (replica, unit).

    Parameters
    ----------
    models : sequence of nn.Module
        MLPs from :func:`actlab.record.models.make_mlp`, all of the same shape, one per replica.
    specs : sequence of LayerSpec
        Their layers (:func:`actlab.record.models.mlp_layer_specs`), in forward order.
    """

    def __init__(self, models: Sequence[nn.Module], specs: Sequence[LayerSpec]) -> None:
        super().__init__()
        self.specs = list(specs)
        self.n_replicas = len(models)
        with torch.no_grad():
            linears = [[model.get_submodule(spec.module) for model in models] for spec in self.specs]
            self.weights = nn.ParameterList(torch.stack([m.weight.t() for m in layer]).contiguous() for layer in linears)
            self.biases = nn.ParameterList(torch.stack([m.bias for m in layer]).contiguous() for layer in linears)

    def forward(self, x: torch.Tensor, preacts: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (replica, sample, class) of inputs (replica, sample, in_features); appends each layer's output to ``preacts``."""
        h = x
        for spec, weight, bias in zip(self.specs, self.weights, self.biases):
            h = torch.matmul(h, weight) + bias[:, None, :]
            if preacts is not None:
                preacts.append(h)
            if spec.activation == "relu":
                h = torch.relu(h)
        return h

    def replica_parameters(self, k: int) -> dict[str, np.ndarray]:
        """Copies of replica ``k``'s state_dict as the MLP of :func:`~actlab.record.models.make_mlp` holds it:
        ``<module>.weight`` (unit, in_unit) and ``<module>.bias`` (unit,) of every Linear."""
        params = {}
        for spec, weight, bias in zip(self.specs, self.weights, self.biases):
            params[f"{spec.module}.weight"] = weight[k].detach().t().cpu().numpy().copy()
            params[f"{spec.module}.bias"] = bias[k].detach().cpu().numpy().copy()
        return params


def _stacked_inputs(images: Sequence[np.ndarray], keys: Sequence[bytes], data: Sequence[PreparedData],
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised, flattened inputs (group, sample, in_features) held once per distinct ``key``, and each replica's group."""
    groups: dict[bytes, int] = {}
    group_of = [groups.setdefault(key, len(groups)) for key in keys]
    first = [group_of.index(g) for g in range(len(groups))]
    x = torch.stack([to_device_normalized(images[k], data[k].mean, data[k].std, device).flatten(1) for k in first])
    return x, torch.as_tensor(group_of, device=device)


def _fused_adam_supported(device: torch.device) -> bool:
    """Whether this torch has the fused (one pass per step) Adam kernel for ``device``: CUDA, and the CPU from torch 2.4."""
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    return device.type == "cuda" or (device.type == "cpu" and version >= (2, 4))


class EnsembleTrainer:
    """Adam + cross-entropy for all replicas of an :class:`EnsembleMLP` at once, on data held as tensors on the device.

    Replica k's epoch order is drawn from its own ``torch.Generator`` seeded with ``seeds[k]``, exactly
    as :class:`~actlab.record.trainer.Trainer` draws it. Inputs that replicas share (the same subset
    and normalisation) are held once.

    Parameters
    ----------
    model : EnsembleMLP
        Already on ``device``.
    data : sequence of PreparedData
        One per replica (the same object for replicas that share their data).
    device : torch.device
    seeds : sequence of int
        The replicas' seeds.
    batch_size, eval_batch_size : int
        Mini-batch size of each replica; samples per replica in one evaluation forward.
    lr : float
    betas : (float, float)
    weight_decay : float
    """

    def __init__(self, model: EnsembleMLP, data: Sequence[PreparedData], device: torch.device, seeds: Sequence[int], *,
                 batch_size: int = 128, eval_batch_size: int = 4096, lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.data = list(data)
        norm = [d.mean.tobytes() + d.std.tobytes() for d in data]
        self.x_train, self.train_group = _stacked_inputs(
            [d.dataset.train_images for d in data], [d.train_index.tobytes() + n for d, n in zip(data, norm)], data, device)
        self.x_test, self.test_group = _stacked_inputs(
            [d.dataset.test_images for d in data], [d.test_index.tobytes() + n for d, n in zip(data, norm)], data, device)
        self.y_train = torch.as_tensor(np.stack([d.noisy.labels for d in data]), device=device)
        self.y_train_original = torch.as_tensor(np.stack([d.noisy.original_labels for d in data]), device=device)
        self.y_test = torch.as_tensor(np.stack([d.dataset.test_labels for d in data]), device=device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                                          fused=_fused_adam_supported(device) or None)
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self._probes = self.probe_inputs()

    @property
    def n_replicas(self) -> int:
        """Number of replicas."""
        return len(self.generators)

    def train_epoch(self) -> np.ndarray:
        """One pass of every replica over its training set in its own fresh random order.

        Returns
        -------
        ndarray, shape (replica,)
            Each replica's mean mini-batch loss.
        """
        self.model.train()
        n, k = self.x_train.shape[1], self.n_replicas
        order = torch.stack([torch.randperm(n, generator=g) for g in self.generators]).to(self.device)
        total = torch.zeros(k, device=self.device)
        for start in range(0, n, self.batch_size):
            index = order[:, start:start + self.batch_size]
            logits = self.model(self.x_train[self.train_group[:, None], index])
            target = torch.gather(self.y_train, 1, index)
            losses = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(k, -1).mean(dim=1)
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            self.optimizer.step()
            total += losses.detach() * index.shape[1]
        return (total / n).cpu().numpy()

    def _inputs(self, x: torch.Tensor, group: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Samples ``start:stop`` of every replica's inputs, (replica, sample, in_features); a view when all share them."""
        if len(x) == 1:
            return x[0, start:stop].expand(self.n_replicas, -1, -1)
        return x[group, start:stop]

    def _per_sample(self, x: torch.Tensor, group: torch.Tensor, label: torch.Tensor,
                    original: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        """:func:`~actlab.record.trainer.sample_outcomes` of every replica against its labels (replica, sample), in NumPy."""
        self.model.eval()
        parts: list[dict[str, torch.Tensor]] = []
        with torch.inference_mode():
            for start in range(0, x.shape[1], self.eval_batch_size):
                stop = start + self.eval_batch_size
                parts.append(sample_outcomes(self.model(self._inputs(x, group, start, stop)), label[:, start:stop],
                                             None if original is None else original[:, start:stop]))
        return {name: torch.cat([part[name] for part in parts], dim=1).cpu().numpy() for name in parts[0]}

    def evaluate(self) -> list[tuple[dict[str, float], dict[str, np.ndarray]]]:
        """Every replica's metrics and trajectory, as :meth:`Trainer.evaluate_samples
        <actlab.record.trainer.Trainer.evaluate_samples>` computes them."""
        train = self._per_sample(self.x_train, self.train_group, self.y_train, self.y_train_original)
        test = self._per_sample(self.x_test, self.test_group, self.y_test)
        out = []
        for k, d in enumerate(self.data):
            replica = {name: values[k] for name, values in train.items()}
            out.append((summarize(replica, {name: values[k] for name, values in test.items()}, d.noisy.is_noisy),
                        trajectory(replica)))
        return out

    def probe_inputs(self) -> torch.Tensor:
        """Every replica's probe inputs (replica, sample, in_features): its clean, noisy, then test probes."""
        parts = []
        for k, d in enumerate(self.data):
            x_train, x_test = self.x_train[self.train_group[k]], self.x_test[self.test_group[k]]
            index = {group: torch.as_tensor(value, device=self.device) for group, value in d.probes.items()}
            parts.append(torch.cat([x_train[index["clean"]], x_train[index["noisy"]], x_test[index["test"]]]))
        return torch.stack(parts)

    def collect(self, inputs: torch.Tensor, batch_size: int = 4096, dtype: str = "float32") -> list[dict[str, np.ndarray]]:
        """Every replica's pre-activations of its probe ``inputs`` (replica, sample, in_features), per store layer (sample, unit)."""
        was_training = self.model.training
        self.model.eval()
        parts: list[list[torch.Tensor]] = [[] for _ in self.model.specs]
        try:
            with torch.inference_mode():
                for start in range(0, inputs.shape[1], batch_size):
                    preacts: list[torch.Tensor] = []
                    self.model(inputs[:, start:start + batch_size], preacts)
                    for layer, out in zip(parts, preacts):
                        layer.append(out.float().cpu())
        finally:
            self.model.train(was_training)
        stacked = [torch.cat(chunks, dim=1).numpy().astype(dtype, copy=False) for chunks in parts]
        return [{spec.name: values[k] for spec, values in zip(self.model.specs, stacked)} for k in range(self.n_replicas)]

    def snapshots(self, batch_size: int, dtype: str) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """Every replica's (pre-activations of its probes per store layer, copies of its parameters)."""
        preacts = self.collect(self._probes, batch_size, dtype)
        return [(values, self.model.replica_parameters(k)) for k, values in enumerate(preacts)]

    # -- checkpoint state ------------------------------------------------------------
    def state(self, epoch: int, elapsed: float) -> dict[str, Any]:
        """A detached CPU copy of everything needed to continue all replicas after ``epoch``."""
        return {**training_state(self.model, self.optimizer, epoch, elapsed),
                "generators": [g.get_state() for g in self.generators]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore weights, Adam and random states from :meth:`state`."""
        self.model.load_state_dict(state["model"])
        fused = self.optimizer.defaults["fused"]
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # the device of this run decides, not the checkpoint's
            group["fused"] = fused
        for generator, saved in zip(self.generators, state["generators"], strict=True):
            generator.set_state(saved)
        restore_random_state(state)


# -- record and resume -----------------------------------------------------------------------------------------


def record_ensemble(config: RecordConfig) -> Path:
    """Train the replicas of ``config.seeds`` as one ensemble and write one run per seed (``actlab.record(seeds=...)``).

    Returns
    -------
    Path
        The ensemble folder (``config.run_dir``); replica S is ``config.run_dir / f"seed{S}"``.
    """
    run_dir = config.run_dir
    check_ensemble_output(run_dir, overwrite=config.overwrite)
    replicas = replica_configs(config, run_dir)
    data = _prepare(replicas)
    device = resolve_device(config.device)
    ensemble_id = uuid.uuid4().hex
    with flushed_denormals(config.flush_denormal and device.type == "cpu"):
        models = [seeded_model(replica, d, device) for replica, d in zip(replicas, data)]
        specs = mlp_layer_specs(models[0])
        with claimed_ensemble_dir(run_dir, config, ensemble_id) as ensemble, contextlib.ExitStack() as stack:
            # every replica folder is claimed (refused at once if busy) before any store replaces an old one
            run_ids = [uuid.uuid4().hex for _ in replicas]
            claims = [stack.enter_context(claimed_run_dir(replica.run_dir, overwrite=config.overwrite, run_id=run_id))
                      for replica, run_id in zip(replicas, run_ids)]
            _create_replicas(config, replicas, data, models, specs, device, ensemble_id, claims, run_ids,
                             ensemble.writers, replace=config.overwrite)
            ensemble.replaced()
            writers = ensemble.writers
            model = EnsembleMLP(models, specs).to(device)
            _announce(config, models[0], device, run_dir, resumed_from=None)
            _train(writers, config, data, model, device, run_dir, ensemble_id, checkpoint=None)
    return run_dir


def resume_ensemble(run_dir: Path, *, model: str | None = None, device: str | None = None,
                    progress: bool | None = None) -> Path:
    """Continue an interrupted ensemble from its checkpoint (or from the start when it has none).

    The settings come from the ensemble's marker; the result equals that of an uninterrupted
    ensemble (bit for bit on the CPU with the same number of threads). ``model``, when given, must
    name the ensemble's (built-in) model.
    """
    marker = read_marker(run_dir)
    folders = replica_dirs(run_dir)  # derived from the marker's seeds, after checking them
    changes = {k: v for k, v in (("device", device), ("progress", progress)) if v is not None}
    stored = marker.get("config")
    if not isinstance(stored, dict):
        raise StoreError(f"{run_dir / MARKER_FILENAME} holds no settings (config); the ensemble marker is damaged: "
                         f"record the ensemble again with --out {run_dir} --overwrite")
    config = RecordConfig.from_dict(stored, strict=False, where=str(run_dir / MARKER_FILENAME)).replace(**changes)
    if model is not None and model != config.model:
        raise ConfigError(f"{run_dir} is an ensemble of {config.model}, not {model}; drop --model, or record a new run")
    replicas = replica_configs(config, run_dir)
    if [replica.run_dir for replica in replicas] != folders:
        raise StoreError(f"{run_dir / MARKER_FILENAME} names the seeds {[f.name for f in folders]} but its settings "
                         f"the seeds {list(config.seeds or [])}; the ensemble marker is damaged: record the ensemble again "
                         f"with --out {run_dir} --overwrite")
    ensemble_id = marker.get("ensemble_id")
    if not isinstance(ensemble_id, str) or not ensemble_id:
        raise StoreError(f"{run_dir / MARKER_FILENAME} names no ensemble_id; the ensemble marker is damaged: record the "
                         f"ensemble again with --out {run_dir} --overwrite")
    attrs = [_replica_attrs(replica.run_dir) for replica in replicas]
    # every replica not of the marker's recording (stopped before its store existed, or left by a replacement that
    # was stopped between replicas): the marker names the ensemble to finish, so all its replicas are made anew
    replace = any(a is None or recorded_ensemble_id(a) != ensemble_id for a in attrs)
    if not replace and all(a.get("status") == STATUS_COMPLETE and not any(missing_epochs(replica.run_dir))
                           for a, replica in zip(attrs, replicas)):
        print(f"actlab record: {run_dir} is already complete; nothing to resume", file=sys.stderr)
        return run_dir
    data = _prepare(replicas)
    if not replace:
        for replica, a, d in zip(replicas, attrs, data):
            check_same_data(replica.run_dir, a, d)
    resolved_device = resolve_device(config.device)
    with flushed_denormals(config.flush_denormal and resolved_device.type == "cpu"), contextlib.ExitStack() as locks:
        locks.enter_context(writer_lock(run_dir / FOLDER_LOCK_FILENAME, f"ensemble {run_dir}"))
        remove_writer_leftovers(run_dir, ENSEMBLE_OUTPUTS)
        models = [seeded_model(replica, d, resolved_device) for replica, d in zip(replicas, data)]
        if replace:
            specs = mlp_layer_specs(models[0])
            drop_previous = previous_outputs(run_dir, locks)
            run_ids = [uuid.uuid4().hex for _ in replicas]
            claims = [locks.enter_context(claimed_run_dir(replica.run_dir, overwrite=True, run_id=run_id))
                      for replica, run_id in zip(replicas, run_ids)]
            writers: list[RunWriter] = []
            _create_replicas(config, replicas, data, models, specs, resolved_device, ensemble_id, claims, run_ids,
                             writers, replace=True)
            drop_previous()
            checkpoint = None
            print(f"actlab record: {run_dir} was stopped while its replicas were made or replaced; recording all of "
                  "them anew from epoch 0, as its marker says", file=sys.stderr)
        else:
            for replica in replicas:
                locks.enter_context(writer_lock(replica.run_dir / FOLDER_LOCK_FILENAME, f"run {replica.run_dir}"))
                remove_writer_leftovers(replica.run_dir)
            specs = [LayerSpec(**layer) for layer in attrs[0]["layers"]]
            checkpoint = _own_checkpoint(run_dir, marker)
            writers = [RunWriter.open(replica.run_dir) for replica in replicas]
            for writer in writers:
                writer.mark_recording()
        model = EnsembleMLP(models, specs).to(resolved_device)
        _announce(config, models[0], resolved_device, run_dir, resumed_from=checkpoint["epoch"] if checkpoint else -1)
        _train(writers, config, data, model, resolved_device, run_dir, ensemble_id, checkpoint=checkpoint)
    return run_dir


def _replica_attrs(run_dir: Path) -> dict[str, Any] | None:
    """The root attributes of a replica's store; None when it has no store yet."""
    if not (run_dir / STORE_DIRNAME).is_dir():
        return None
    return read_attrs(run_dir)


def _create_replicas(config: RecordConfig, replicas: Sequence[RecordConfig], data: Sequence[PreparedData],
                     models: Sequence[nn.Module], specs: Sequence[LayerSpec], device: torch.device, ensemble_id: str,
                     claims: Sequence[Claim], run_ids: Sequence[str], writers: list[RunWriter], *, replace: bool) -> None:
    """Create each replica's store in its claimed folder (replacing the store there with ``replace``), appending each
    writer to its claim and to ``writers``, and drop what the replaced replica left (:meth:`Claim.replaced`)."""
    described = {"dir": str(config.run_dir), "id": ensemble_id, "seeds": list(config.seeds),
                 "noise_per_seed": config.noise_per_seed}
    env = environment()
    for replica, d, model, claim, run_id in zip(replicas, data, models, claims, run_ids, strict=True):
        resolved = {**resolved_settings(replica, d, device, model), "run_id": run_id,
                    "ensemble": {**described, "replica": replica.run_dir.name}}
        try:
            writer = RunWriter.create(
                replica.run_dir, config={**replica.to_dict(), "resolved": resolved, "environment": env},
                dataset=d.describe(), layers=list(specs), parameters=parameter_specs(model), probes=probe_set(d),
                subsets=data_subsets(d), record_epochs=config.schedule, n_epochs=config.epochs,
                activation_dtype=config.dtype, dynamics=True, replace=replace,
            )
        except OSError as exc:
            raise write_failed(exc, f"the new run {replica.run_dir}") from exc
        claim.writers.append(writer)
        writers.append(writer)
        claim.replaced()


def _prepare(replicas: Sequence[RecordConfig]) -> list[PreparedData]:
    """Each replica's data, loaded once and prepared once per distinct data seed."""
    first = replicas[0]
    dataset = load_dataset(first.dataset, data_dir=first.resolved_data_dir, download=first.download, synthetic=first.synthetic)
    prepared: dict[int, PreparedData] = {}
    for replica in replicas:
        if replica.resolved_data_seed not in prepared:
            prepared[replica.resolved_data_seed] = prepare_data(replica, dataset)
    return [prepared[replica.resolved_data_seed] for replica in replicas]


def _own_checkpoint(run_dir: Path, marker: dict[str, Any]) -> dict[str, Any] | None:
    """The ensemble's checkpoint, or None when there is none or it belongs to another recording (it is then not used)."""
    path = run_dir / CHECKPOINT_FILENAME
    if not path.is_file():
        return None
    checkpoint = load_checkpoint(path)
    if checkpoint.get("ensemble_id") != marker.get("ensemble_id"):
        print(f"actlab record: {path} belongs to another recording of {run_dir}; restarting from epoch 0", file=sys.stderr)
        return None
    return checkpoint


# -- the ensemble folder -----------------------------------------------------------------------------------------


def check_ensemble_output(run_dir: Path, *, overwrite: bool) -> None:
    """Refuse an ensemble folder that ``record`` may not write: as for a run, with the kind ``ensemble``.

    Raises
    ------
    OutputError
        Also for a URL: ensembles are recorded to local folders.
    """
    if is_remote(run_dir):
        raise OutputError(f"--out {run_dir} is a URL; record an ensemble to a local folder (its replicas can be "
                          "copied to an object store afterwards)")
    if abandoned_claim(run_dir, "ensemble"):  # a recording killed before its first replica (its marker half-written)
        return
    check_record_output(run_dir, "ensemble", overwrite=overwrite)


@contextlib.contextmanager
def claimed_ensemble_dir(run_dir: Path, config: RecordConfig, ensemble_id: str) -> Iterator[Claim]:
    """Claim the ensemble folder (:func:`~actlab.record.claim.claimed_folder` with the kind ``ensemble``), marked as an
    ensemble of ``config.seeds``.

    The caller claims each replica folder inside (:func:`actlab.record.claim.claimed_run_dir`), appends each replica's
    writer to the claim and calls :meth:`~actlab.record.claim.Claim.replaced` once all are made. With
    ``config.overwrite``, the replicas of the previous ensemble that the new one does not have are deleted only then.
    """
    new = {replica_name(seed) for seed in config.seeds}
    with claimed_folder(run_dir, "ensemble", check=lambda: check_ensemble_output(run_dir, overwrite=config.overwrite),
                        outputs=ENSEMBLE_OUTPUTS,
                        previous=functools.partial(_previous_ensemble, run_dir, new) if config.overwrite else None,
                        seeds=list(config.seeds), replicas=[replica_name(seed) for seed in config.seeds],
                        ensemble_id=ensemble_id, config=config.to_dict()) as claim:
        yield claim


def _previous_ensemble(run_dir: Path, keep: set[str], locks: contextlib.ExitStack) -> Callable[[], None]:
    """Prepare the replacement of the ensemble in ``run_dir``: hold the lock of its analysis folder and the writer
    locks of its replicas not in ``keep`` (those in ``keep`` are replaced by their own claims), and return the
    deletion of its checkpoint, its analysis folder and those replicas, for after the new replicas are made."""
    replicas = [path for path in replica_dirs(run_dir) if path.name not in keep]
    replicas = [path for path in replicas if path.is_dir() and marker_kind(path) == "run"]
    drop_own = previous_outputs(run_dir, locks)
    drops = []
    for replica in replicas:
        locks.enter_context(writer_lock(replica / FOLDER_LOCK_FILENAME, f"run {replica}"))
        drops.append(previous_outputs(replica, locks))

    def drop() -> None:
        drop_own()
        for replica, drop_outputs in zip(replicas, drops):
            drop_outputs()
            shutil.rmtree(replica)

    return drop


# -- the epoch loop ------------------------------------------------------------------------------------------------


def _announce(config: RecordConfig, model: nn.Module, device: torch.device, run_dir: Path, resumed_from: int | None) -> None:
    action = "recording" if resumed_from is None else f"resuming after epoch {resumed_from}" if resumed_from >= 0 else "restarting"
    print(f"actlab record: {action} an ensemble of {len(config.seeds)} {config.model} ({count_parameters(model):,} "
          f"parameters each, seeds {', '.join(map(str, config.seeds))}) on {config.dataset}, {config.epochs} epochs, "
          f"device {device} -> {run_dir}", file=sys.stderr)


def _train(writers: list[RunWriter], config: RecordConfig, data: list[PreparedData], model: EnsembleMLP,
           device: torch.device, run_dir: Path, ensemble_id: str, checkpoint: dict[str, Any] | None) -> None:
    """Train and record all replicas (:func:`~actlab.record.loop.run_epochs`), from ``checkpoint`` when given."""
    trainer = EnsembleTrainer(model, data, device, config.seeds, batch_size=config.batch_size,
                              eval_batch_size=config.eval_batch_size, lr=config.lr, betas=config.betas,
                              weight_decay=config.weight_decay)
    run_epochs(writers, trainer, config, checkpoint=checkpoint, checkpoint_path=run_dir / CHECKPOINT_FILENAME,
               owner={"ensemble_id": ensemble_id}, desc=run_dir.name)
