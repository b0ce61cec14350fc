"""Small planted-signal run stores for the analysis tests, written through actlab.store.RunWriter.

The planted run (:func:`planted_run`) has 4 classes and layers
``hidden1`` (16 units), ``hidden2`` (8), ``hidden3`` (16), ``output`` (4):

- hidden1: every training probe sits at the clean mean of its ORIGINAL class, so noisy means grouped by
  original label equal the clean means (cosine ~ 1); unit ``LARGE_UNIT`` is ``10 * scale(epoch) * a`` where
  ``a`` is the amplitude of a fixed pattern in the probe image (independent of every label), dominant
  from epoch ``EMERGENCE_EPOCH`` on;
- hidden3: clean probes of class c are active on units 2c, 2c+1; noisy probes with assigned label c on units
  8+2c, 8+2c+1 (memorisation units), so clean and noisy means are orthogonal; correctly predicted test probes
  look clean, wrongly predicted ones look like the noisy probes of their predicted class;
- output: logits favour the label for 75 % of the test probes and label + 1 for the others.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from actlab.store import METRICS, LayerSpec, ParameterSpec, ProbeSet, RunWriter, Subsets, store_path

N_CLASSES = 4
RECORD_EPOCHS = [0, 10, 20, 30, 40, 50]
N_EPOCHS = 60
LARGE_UNIT = 3
SCALES = [0.1, 0.1, 0.5, 3.0, 4.0, 5.0]
EMERGENCE_EPOCH = 30
LAYERS = [
    LayerSpec("hidden1", 16, 192, "relu", "body.0"),
    LayerSpec("hidden2", 8, 16, "relu", "body.2"),
    LayerSpec("hidden3", 16, 8, "relu", "body.4"),
    LayerSpec("output", N_CLASSES, 16, "identity", "head"),
]
PARAMETERS = [ParameterSpec(f"{layer.module}.{kind}", (layer.width, layer.fan_in) if kind == "weight" else (layer.width,),
                            "float32") for layer in LAYERS for kind in ("weight", "bias")]


@dataclass
class Planted:
    """What was written, for independent checks in the tests."""

    run_dir: Path
    probes: ProbeSet
    amplitude: np.ndarray
    preacts: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    wrong_test: np.ndarray | None = None
    dynamics: PlantedDynamics | None = None


def dd_curve(epochs: np.ndarray, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    """Test loss with epoch-wise double descent: min near 12, peak near 25, lower values after 40."""
    e = np.asarray(epochs, dtype=float)
    base = 1.5 * np.exp(-e / 4) + 0.8 + 0.5 * np.exp(-(((e - 25) / 7) ** 2)) - 0.25 / (1 + np.exp(-(e - 35) / 4))
    return base + noise * rng.standard_normal(len(e))


def monotone_curve(epochs: np.ndarray, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    """Test loss decreasing to a plateau."""
    return 1.5 * np.exp(-np.asarray(epochs, float) / 6) + 0.5 + noise * rng.standard_normal(len(epochs))


def u_curve(epochs: np.ndarray, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    """Test loss decreasing then rising for good (overfitting without a second descent)."""
    e = np.asarray(epochs, float)
    return 1.5 * np.exp(-e / 4) + 0.6 + 0.01 * e + noise * rng.standard_normal(len(e))


def planted_metrics(n_epochs: int = N_EPOCHS, *, double_descent: bool = True, seed: int = 0,
                    instability_epoch: int | None = None) -> dict[int, dict[str, float]]:
    """Metrics of every epoch: clean acc plateaus at epoch 10, noisy acc 0.5/0.9/0.99 at 30/38/40.

    ``instability_epoch``: the clean training accuracy falls by 0.3 at that epoch (a training instability).
    """
    rng = np.random.default_rng(seed)
    epochs = np.arange(n_epochs + 1)
    loss = dd_curve(epochs, rng) if double_descent else monotone_curve(epochs, rng)
    clean_acc = 0.95 * np.minimum(1.0, epochs / 10)
    if instability_epoch is not None:
        clean_acc[instability_epoch] -= 0.3
    noisy_acc = np.clip((epochs - 20) / 20, 0, 1)
    out = {}
    for e in epochs:
        values = {name: 0.0 for name in METRICS}
        values.update(train_clean_acc=clean_acc[e], train_noisy_acc=noisy_acc[e], test_loss=loss[e],
                      test_acc=float(np.clip(1.3 - loss[e] / 2, 0, 1)), train_clean_loss=1 - clean_acc[e],
                      wall_time=float(e))
        out[int(e)] = values
    return out


def planted_probes(rng: np.random.Generator, *, n_clean: int = 120, n_noisy: int = 60, n_test: int = 80,
                   empty_noisy_class: int | None = None) -> tuple[ProbeSet, np.ndarray]:
    """Probes with balanced labels, noisy labels always different from the original, images carrying a pattern."""
    classes = np.arange(N_CLASSES)
    noisy_classes = classes if empty_noisy_class is None else classes[classes != empty_noisy_class]
    clean_label = np.tile(classes, n_clean // N_CLASSES)
    noisy_original = rng.choice(noisy_classes, n_noisy)
    shift = rng.integers(1, len(noisy_classes), n_noisy)
    noisy_assigned = noisy_classes[(np.searchsorted(noisy_classes, noisy_original) + shift) % len(noisy_classes)]
    test_label = np.tile(classes, n_test // N_CLASSES)
    n = n_clean + n_noisy + n_test
    amplitude = rng.uniform(0, 1, n)
    pattern = rng.choice([-1.0, 1.0], size=(3, 8, 8))
    images = 128 + 60 * (amplitude[:, None, None, None] - 0.5) * pattern + 4 * rng.standard_normal((n, 3, 8, 8))
    probes = ProbeSet(
        images=np.clip(np.round(images), 0, 255).astype(np.uint8),
        dataset_index=np.concatenate([np.arange(n_clean + n_noisy), np.arange(n_test)]),
        group=np.repeat(np.array([0, 1, 2], dtype=np.int8), [n_clean, n_noisy, n_test]),
        label=np.concatenate([clean_label, noisy_assigned, test_label]),
        original_label=np.concatenate([clean_label, noisy_original, test_label]),
        is_noisy=np.repeat([False, True, False], [n_clean, n_noisy, n_test]),
    )
    return probes, amplitude


def planted_subsets(probes: ProbeSet, *, n_extra_train: int = 60, n_extra_test: int = 40) -> Subsets:
    """Training and evaluated test samples that hold the probes (same indices and labels) plus clean extras."""
    train = probes.group != 2
    extra_train = np.arange(n_extra_train) % N_CLASSES
    extra_test = np.arange(n_extra_test) % N_CLASSES
    n_train, n_test = int(train.sum()), int((~train).sum())
    return Subsets(
        train_index=np.concatenate([probes.dataset_index[train], n_train + np.arange(n_extra_train)]),
        train_label=np.concatenate([probes.label[train], extra_train]),
        train_original_label=np.concatenate([probes.original_label[train], extra_train]),
        train_is_noisy=np.concatenate([probes.is_noisy[train], np.zeros(n_extra_train, bool)]),
        test_index=np.concatenate([probes.dataset_index[~train], n_test + np.arange(n_extra_test)]),
        test_label=np.concatenate([probes.label[~train], extra_test]),
    )


def planted_preacts(probes: ProbeSet, amplitude: np.ndarray, scale: float, rng: np.random.Generator,
                    wrong_test: np.ndarray, apart: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pre-activations of one epoch (see the module docstring); in hidden1 the probes marked ``apart`` sit at the clean
    mean of their ASSIGNED class instead."""
    n = len(probes)
    group, label, original = probes.group, probes.label, probes.original_label
    centres1 = np.random.default_rng(7).uniform(0.5, 1.5, (N_CLASSES, 16))
    hidden1 = centres1[original if apart is None else np.where(apart, label, original)] + 0.05 * rng.standard_normal((n, 16))
    hidden1[:, LARGE_UNIT] = 10 * scale * amplitude + 0.01 * rng.standard_normal(n)
    hidden2 = rng.standard_normal((n, 8))
    predicted = np.where(group == 2, np.where(wrong_test, (label + 1) % N_CLASSES, label), label)
    hidden3 = np.full((n, 16), -0.5) + 0.02 * rng.standard_normal((n, 16))
    clean_like = (group == 0) | ((group == 2) & ~wrong_test)
    for i in range(n):
        units = 2 * predicted[i] + np.array([0, 1]) + (0 if clean_like[i] else 8)
        hidden3[i, units] = 2.0 + 0.1 * rng.standard_normal(2)
    output = 0.1 * rng.standard_normal((n, N_CLASSES))
    output[np.arange(n), predicted] += 3.0
    return {"hidden1": hidden1, "hidden2": hidden2, "hidden3": hidden3, "output": output}


@dataclass
class PlantedDynamics:
    """Trajectories planted for every training sample (rows of ``correct``/``margin``: epochs 0..n_epochs).

    A clean sample is learned at ``learned[i]`` (NaN: never) and stays correct after, except for one forgetting
    event (wrong at ``learned[i] + 2`` only) where ``forgets[i]``; a noisy sample is memorised late. The margin is
    +/- a positive magnitude matching ``correct``; noisy samples' magnitude is 3 while wrong, so their area under
    the margin is the lowest.
    """

    learned: np.ndarray
    forgets: np.ndarray
    correct: np.ndarray
    margin: np.ndarray
    loss: np.ndarray


def planted_dynamics(is_noisy: np.ndarray, n_epochs: int, rng: np.random.Generator) -> PlantedDynamics:
    """Planted trajectories (see :class:`PlantedDynamics`) for training samples with noise flags ``is_noisy``."""
    n = len(is_noisy)
    learned = np.where(is_noisy, rng.integers(n_epochs // 2, n_epochs - 3, n), rng.integers(1, n_epochs // 3, n)).astype(float)
    never = ~is_noisy & (rng.uniform(size=n) < 0.05)
    learned[never] = np.nan
    forgets = ~is_noisy & ~never & (rng.uniform(size=n) < 0.3)
    epochs = np.arange(n_epochs + 1)[:, None]
    correct = epochs >= np.where(np.isnan(learned), n_epochs + 1, learned)
    correct &= ~(forgets & (epochs == learned + 2))
    magnitude = np.where(is_noisy & ~correct, 3.0, 1.0) * rng.uniform(0.5, 1.5, (n_epochs + 1, n))
    margin = np.where(correct, magnitude, -magnitude)
    loss = np.where(correct, rng.uniform(0.01, 0.6, margin.shape), rng.uniform(0.8, 4.0, margin.shape))
    return PlantedDynamics(learned=learned, forgets=forgets, correct=correct, margin=margin, loss=loss)


def planted_run(run_dir: Path, *, commit_epochs: list[int] | None = None, double_descent: bool = True,
                empty_noisy_class: int | None = None, seed: int = 0, record_epochs: tuple[int, ...] | None = None,
                instability_epoch: int | None = None, dynamics: bool = False, late_apart: bool = False) -> Planted:
    """Write the planted run; only ``commit_epochs`` (default all recorded epochs) are committed.

    ``record_epochs`` (default :data:`RECORD_EPOCHS`) get the large-unit scales of :data:`SCALES`, interpolated.
    With ``dynamics``, every training sample's trajectory of :func:`planted_dynamics` is stored too
    (``Planted.dynamics``). With ``late_apart`` (needs ``dynamics``) the noisy probes memorised after the median
    memorisation epoch of the noisy probes sit, in hidden1, at the clean mean of their assigned class: they separate
    from the clean probes of their original class, those memorised earlier do not.
    """
    record_epochs = list(record_epochs or RECORD_EPOCHS)
    scales = np.interp(record_epochs, RECORD_EPOCHS, SCALES)
    rng = np.random.default_rng(seed)
    probes, amplitude = planted_probes(rng, empty_noisy_class=empty_noisy_class)
    wrong_test = (probes.group == 2) & (rng.uniform(size=len(probes)) < 0.25)
    writer = RunWriter.create(
        run_dir, config={"model": "planted", "seed": seed},
        dataset={"name": "planted", "class_names": [f"c{i}" for i in range(N_CLASSES)]},
        layers=LAYERS, parameters=PARAMETERS, probes=probes, subsets=planted_subsets(probes), record_epochs=record_epochs, n_epochs=N_EPOCHS,
        dynamics=dynamics,
    )
    planted = Planted(run_dir=Path(run_dir), probes=probes, amplitude=amplitude, wrong_test=wrong_test[probes.group == 2])
    planted.metrics = planted_metrics(double_descent=double_descent, seed=seed, instability_epoch=instability_epoch)
    writer.write_metrics(planted.metrics)
    if dynamics:
        planted.dynamics = planted_dynamics(planted_subsets(probes).train_is_noisy, N_EPOCHS, np.random.default_rng(seed + 1))
        writer.write_dynamics({epoch: {"loss": planted.dynamics.loss[epoch], "margin": planted.dynamics.margin[epoch],
                                       "correct": planted.dynamics.correct[epoch],
                                       "correct_original": planted.dynamics.correct[epoch]}
                               for epoch in range(N_EPOCHS + 1)})
    apart = None
    if late_apart:
        train = probes.group != 2  # the training probes are the first training samples, in order
        learned = np.full(len(probes), np.nan)
        learned[train] = planted.dynamics.learned[:int(train.sum())]
        apart = probes.is_noisy & (learned > np.median(learned[probes.is_noisy]))
    for epoch, scale in zip(record_epochs, scales):
        if commit_epochs is not None and epoch not in commit_epochs:
            continue
        preacts = {k: v.astype(np.float32)
                   for k, v in planted_preacts(probes, amplitude, scale, rng, wrong_test, apart).items()}
        params = {spec.name: np.zeros(spec.shape, np.float32) for spec in PARAMETERS}
        writer.write_epoch(epoch, preacts, params)
        planted.preacts[epoch] = preacts
    if commit_epochs is None:
        writer.mark_complete()
    return planted


def post(planted: Planted, epoch: int, layer: str) -> np.ndarray:
    """Post-activation written for ``layer`` at ``epoch`` (ReLU except for the output layer)."""
    x = planted.preacts[epoch][layer].astype(np.float64)
    return x if layer == "output" else np.maximum(x, 0)


_CACHE: dict[tuple, object] = {}


def flip_bit(path: Path, position: int) -> None:
    """Flip one bit of the byte at ``position`` of the file ``path``."""
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0x10
    path.write_bytes(bytes(raw))


def cached_planted(tmp_path_factory, **params) -> Planted:
    """:func:`planted_run` written once per session and parameter set; tests must not modify it (copy it first)."""
    key = ("run", *sorted(params.items()))
    if key not in _CACHE:
        _CACHE[key] = planted_run(tmp_path_factory.mktemp("planted") / "run", **params)
    return _CACHE[key]


def cached_results(tmp_path_factory, **params):
    """``analyze`` of :func:`cached_planted` computed once per session (do not modify)."""
    from actlab.analysis import analyze

    key = ("results", *sorted(params.items()))
    if key not in _CACHE:
        planted = cached_planted(tmp_path_factory, **params)
        _CACHE[key] = (planted, analyze(planted.run_dir, progress=False, n_permutations=99))
    return _CACHE[key]


def assert_same_recording(view, full) -> None:
    """Two store views (:func:`actlab.store.open_store`) hold the same recording, bit for bit: every metric but
    ``wall_time``, the recorded epochs, every layer's activations, every parameter and every training sample's
    trajectory."""
    for name in METRICS:
        if name != "wall_time":
            np.testing.assert_array_equal(view.metrics[name].values, full.metrics[name].values, err_msg=name)
    assert list(view.epochs) == list(full.epochs)
    for layer in full.layer_names:
        np.testing.assert_array_equal(view.layers[layer]["preact"].values, full.layers[layer]["preact"].values,
                                      err_msg=f"{layer}/preact")
    for name in full.parameters.data_vars:
        np.testing.assert_array_equal(view.parameters[name].values, full.parameters[name].values, err_msg=name)
    assert (view.dynamics is None) == (full.dynamics is None)
    for name in full.dynamics.data_vars if full.dynamics is not None else ():
        np.testing.assert_array_equal(view.dynamics[name].values, full.dynamics[name].values, err_msg=f"dynamics/{name}")


def _committed_metric_epochs(run_dir: Path) -> int:
    """Epochs whose metrics the run at ``run_dir`` has committed (0 before its store exists)."""
    try:
        epochs = zarr.open_array(store_path(run_dir) / "metrics" / "epoch", mode="r")[...]
    except FileNotFoundError:  # not created yet
        return 0
    return int((epochs >= 0).sum())


ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Environment of the child recorders: one thread each, as a bit-for-bit comparison with a reference needs."""


def kill_recording(argv: list[str], run_dir: Path, *, watched: Path, committed: int) -> None:
    """Record ``argv`` to ``run_dir`` in a child process and ``kill -9`` it once the run at ``watched`` has committed
    ``committed`` epochs of metrics."""
    proc = subprocess.Popen([sys.executable, "-m", "actlab.cli", "record", *argv, "--out", str(run_dir)],
                            env={**os.environ, **ONE_THREAD}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _committed_metric_epochs(watched) < committed and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished (or failed) before it could be killed: " + proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def resume_in_child(run_dir: Path) -> str:
    """``actlab record --resume run_dir`` in a child process (one thread); asserts it succeeds, returns its stderr."""
    result = subprocess.run([sys.executable, "-m", "actlab.cli", "record", "--resume", str(run_dir), "--no-progress"],
                            env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return result.stderr


@contextlib.contextmanager
def interrupted_in_epoch(n: int) -> Iterator[None]:
    """While the block runs, the ``n``-th call of ``Trainer.train_epoch`` raises ``KeyboardInterrupt`` (a Ctrl-C in
    the middle of a recording)."""
    from actlab.record.trainer import Trainer

    original, calls = Trainer.train_epoch, {"n": 0}

    def train_epoch(self):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self)

    Trainer.train_epoch = train_epoch
    try:
        yield
    finally:
        Trainer.train_epoch = original


def snapshot(root: Path, *, inodes: bool = False) -> dict[str, tuple[int, ...]]:
    """Every path under ``root`` (itself included) -> (file type, size, mtime_ns[, inode]); symbolic links not followed."""
    def entry(path: str) -> tuple[int, ...]:
        st = os.lstat(path)
        return (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns) + ((st.st_ino,) if inodes else ())

    tree = {".": entry(str(root))}
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(folder, name)
            tree[os.path.relpath(path, root)] = entry(path)
    return tree


def changes(before: dict, after: dict) -> list[str]:
    """What differs between two snapshots (``+`` new, ``-`` gone, ``~`` changed), for an assertion message."""
    return sorted([f"+ {p}" for p in after.keys() - before.keys()] + [f"- {p}" for p in before.keys() - after.keys()]
                  + [f"~ {p}" for p in before.keys() & after.keys() if before[p] != after[p]])
