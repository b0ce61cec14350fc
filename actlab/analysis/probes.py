"""Linear probes: is a probe's class decodable from a layer's activations at a recorded epoch?

A linear classifier (standardised units, then ridge regression on +-1 class targets: scikit-learn's
``make_pipeline(StandardScaler(), RidgeClassifier())``, solved in closed form) is trained on the CLEAN probes of
one (layer, epoch) block in stratified folds and scored on the held-out clean probes, on the noisy probes against
their ORIGINAL label and against their ASSIGNED label, and on the test probes. A noisy probe whose original class
is decodable from a classifier that never saw a noisy label keeps the clean label's information in that layer
(Arpit et al. 2017; Stephenson et al. 2021). Each accuracy is tested against a label-permutation null and the
p-values of each target are adjusted by Benjamini-Hochberg within the layer x epoch family.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy.stats import false_discovery_control
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from actlab.analysis.blocks import SEED
from actlab.analysis.run import Run, reduce_blocks
from actlab.progress import Progress

TARGETS: dict[str, str] = {
    "clean": "held-out clean probes against their label",
    "noisy_original": "noisy probes against their ORIGINAL (true) label",
    "noisy_assigned": "noisy probes against their ASSIGNED (noisy) label",
    "test": "test probes against their label",
}
"""What each accuracy scores: target -> description. The classifier is always trained on clean probes."""

N_FOLDS = 5
N_PERMUTATIONS = 999
RIDGE_ALPHA = 1.0
FDR_LEVEL = 0.05
"""Defaults: stratified folds of the clean probes, permutations of the null, ridge penalty (on standardised units),
false-discovery rate of the ``decodable`` flag."""


def _fold_predictions(x: np.ndarray, clean: np.ndarray, y_clean: np.ndarray, n_folds: int, alpha: float,
                      seed: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Out-of-fold predictions of the clean probes, each fold's held-out positions, and every fold's predictions
    of all samples (fold, sample).

    Each fold's classifier is scikit-learn's ``make_pipeline(StandardScaler(), RidgeClassifier(alpha))`` fitted on
    the fold's training probes, solved here in closed form: the unit x unit products of the clean probes are
    formed once and each fold subtracts its held-out probes' share, so a fold costs one small solve instead of a
    pass over its samples. Targets are +1 for the class and -1 for the others, with an intercept; a unit constant
    over the training probes keeps scale 1, as StandardScaler does.
    """
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    classes = np.unique(y_clean)
    xc = np.asarray(x[clean], dtype=np.float64)
    targets = np.where(y_clean[:, None] == classes[None, :], 1.0, -1.0)
    gram, sums, cross, target_sums = xc.T @ xc, xc.sum(axis=0), xc.T @ targets, targets.sum(axis=0)
    out_of_fold = np.empty(len(clean), dtype=np.int64)
    held_out, predicted = [], np.empty((n_folds, len(x)), dtype=np.int64)
    for f, (train, test) in enumerate(folds.split(np.zeros(len(clean)), y_clean)):
        held, n = xc[test], len(train)
        mean = (sums - held.sum(axis=0)) / n
        target_mean = (target_sums - targets[test].sum(axis=0)) / n
        scatter = gram - held.T @ held - n * np.outer(mean, mean)  # sum over the fold's training probes
        scale = xc[train].std(axis=0)
        scale[scale <= 1e-10 * np.maximum(1.0, np.abs(mean))] = 1.0
        products = (cross - held.T @ targets[test] - n * np.outer(mean, target_mean)) / scale[:, None]
        weights = np.linalg.solve(scatter / np.outer(scale, scale) + alpha * np.eye(len(scale)), products)
        weights /= scale[:, None]
        scores = x @ weights + (target_mean - mean @ weights)
        predicted[f] = classes[np.argmax(scores, axis=1)]
        out_of_fold[test] = predicted[f, clean[test]]
        held_out.append(test)
    return out_of_fold, held_out, predicted


def _permutation_test(predicted: np.ndarray, truth: np.ndarray, n_permutations: int,
                      rng: np.random.Generator) -> tuple[float, float]:
    """Chance accuracy and permutation p-value of ``predicted`` (fold, sample) against ``truth`` (sample,).

    The statistic is the accuracy averaged over folds; the null permutes ``truth`` over the samples (the same
    permutation for every fold), which keeps both label frequencies. Chance is the null's exact mean,
    ``mean over folds of sum_c freq_predicted(c) * freq_truth(c)``; the p-value is
    ``(1 + #{null >= observed}) / (1 + n_permutations)``.
    """
    observed = float(np.mean(predicted == truth))
    n_classes = int(max(predicted.max(), truth.max())) + 1
    truth_freq = np.bincount(truth, minlength=n_classes) / len(truth)
    chance = float(np.mean([np.bincount(p, minlength=n_classes) / len(p) @ truth_freq for p in predicted]))
    shuffled = rng.permuted(np.broadcast_to(truth, (n_permutations, len(truth))), axis=1)
    share = (predicted[:, :, None] == np.arange(n_classes)).mean(axis=0)  # (sample, class): folds predicting it
    null = share[np.arange(len(truth)), shuffled].mean(axis=1)
    return chance, float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))


def probe_block(x: np.ndarray, group: np.ndarray, label: np.ndarray, original_label: np.ndarray, *,
                n_folds: int = N_FOLDS, alpha: float = RIDGE_ALPHA, n_permutations: int = N_PERMUTATIONS,
                seed: int = SEED) -> xr.Dataset:
    """Linear-probe accuracies of one (sample, unit) block.

    Parameters
    ----------
    x : ndarray, shape (sample, unit)
    group : ndarray of str, shape (sample,)
        ``"clean"``, ``"noisy"`` or ``"test"``.
    label, original_label : ndarray of int, shape (sample,)
        Assigned and original label.
    n_folds : int
        Stratified folds of the clean probes (every class needs at least ``n_folds`` clean probes).
    alpha : float
        Ridge penalty of the classifier, on standardised units.
    n_permutations : int
        Permutations of the label-permutation null.
    seed : int
        Seed of the folds and of the permutations.

    Returns
    -------
    xr.Dataset, dims (target, fold)
        ``accuracy_fold`` (target, fold); ``accuracy`` (target,) (clean: out-of-fold accuracy; others: mean over
        folds); ``chance`` and ``p_value`` (target,); NaN for a target without samples.
    """
    x = np.asarray(x, dtype=np.float64)
    group = np.asarray(group).astype(str)
    label, original_label = np.asarray(label, dtype=np.int64), np.asarray(original_label, dtype=np.int64)
    clean, noisy, test = (np.flatnonzero(group == g) for g in ("clean", "noisy", "test"))
    y_clean = label[clean]
    smallest = int(np.bincount(y_clean).min()) if len(y_clean) else 0
    if len(np.unique(y_clean)) < 2 or smallest < n_folds:
        raise ValueError(f"linear probes need at least {n_folds} clean probes of each of at least 2 classes "
                         f"(the stratified folds); got class counts {np.bincount(y_clean).tolist()}")
    out_of_fold, held_out, predicted = _fold_predictions(x, clean, y_clean, n_folds, alpha, seed)
    scored = {
        "clean": (np.stack([np.isin(np.arange(len(clean)), t) for t in held_out]), out_of_fold, y_clean),
        "noisy_original": (None, predicted[:, noisy], original_label[noisy]),
        "noisy_assigned": (None, predicted[:, noisy], label[noisy]),
        "test": (None, predicted[:, test], label[test]),
    }
    rng = np.random.default_rng(seed)
    n_targets = len(TARGETS)
    per_fold = np.full((n_targets, n_folds), np.nan)
    accuracy, chance, p_value = (np.full(n_targets, np.nan) for _ in range(3))
    for t, (held, pred, truth) in enumerate(scored.values()):
        if len(truth) == 0:
            continue
        if held is not None:  # clean: each fold scores its own held-out probes; the test pools the out-of-fold ones
            per_fold[t] = [np.mean(pred[h] == truth[h]) for h in held]
            pred = pred[None, :]
        else:
            per_fold[t] = np.mean(pred == truth[None, :], axis=1)
        accuracy[t] = np.mean(pred == truth[None, :])
        chance[t], p_value[t] = _permutation_test(pred, truth, n_permutations, rng)
    coords = {"target": list(TARGETS), "fold": np.arange(n_folds)}
    return xr.Dataset(
        {
            "accuracy_fold": (("target", "fold"), per_fold, {"long_name": "accuracy of each fold's classifier", "units": "1"}),
            "accuracy": ("target", accuracy, {"long_name": "linear-probe accuracy", "units": "1"}),
            "chance": ("target", chance, {"long_name": "accuracy expected under the label-permutation null", "units": "1"}),
            "p_value": ("target", p_value, {"long_name": "label-permutation p-value (one-sided: above chance)", "units": "1"}),
        },
        coords=coords,
    )


def fdr_adjust(p_values: xr.DataArray, dims: Sequence[str] = ("layer", "epoch")) -> xr.DataArray:
    """Benjamini-Hochberg adjusted p-values (q-values) within the family spanned by ``dims``.

    Parameters
    ----------
    p_values : xr.DataArray
        With ``dims`` among its dims; the other dims index separate families. NaN entries stay NaN and are not
        counted in the family.

    Returns
    -------
    xr.DataArray, same dims as ``p_values``
    """
    other = [d for d in p_values.dims if d not in dims]
    stacked = p_values.transpose(*other, *dims)
    flat = stacked.values.reshape(int(np.prod([stacked.sizes[d] for d in other])), -1)  # (family, member)
    q = np.full(flat.shape, np.nan)
    for family, p in enumerate(flat):
        finite = np.isfinite(p)
        if finite.any():
            q[family, finite] = false_discovery_control(p[finite], method="bh")
    q = q.reshape(stacked.shape)
    return stacked.copy(data=q).transpose(*p_values.dims).assign_attrs(
        long_name=f"Benjamini-Hochberg q-value within the {' x '.join(dims)} family", units="1")


def linear_probes(run: Run, *, layers: Sequence[str] | None = None, kind: str = "post", n_folds: int = N_FOLDS,
                  alpha: float = RIDGE_ALPHA, n_permutations: int = N_PERMUTATIONS, fdr_level: float = FDR_LEVEL,
                  seed: int = SEED, max_workers: int = 1, progress: bool = False) -> xr.Dataset:
    """Linear probes of every (layer, recorded epoch) block of a run, one block in memory per worker.

    Parameters
    ----------
    run : Run
    layers : sequence of str, optional
        Default: every layer.
    kind : {"post", "pre"}
    n_folds, alpha, n_permutations, seed
        See :func:`probe_block`.
    fdr_level : float
        ``decodable`` is ``q_value <= fdr_level``, Benjamini-Hochberg within the layer x epoch family of each
        target.
    max_workers : int
        Blocks probed concurrently (threads).
    progress : bool
        Show a progress bar over blocks.

    Returns
    -------
    xr.Dataset, dims (layer, epoch, target, fold)
        The variables of :func:`probe_block` with dims (layer, epoch, ...), ``accuracy_low`` / ``accuracy_high``
        (the range over folds), ``q_value`` and ``decodable`` (layer, epoch, target).
    """
    if not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer; got {n_permutations!r}")
    if not 0 < fdr_level < 1:
        raise ValueError(f"fdr_level must be in (0, 1); got {fdr_level!r}")
    layers = list(run.layer_names if layers is None else layers)
    probes = run.probes
    group, label, original = probes["group"].values, probes["label"].values, probes["original_label"].values

    def probe(x: np.ndarray) -> xr.Dataset:
        return probe_block(x, group, label, original, n_folds=n_folds, alpha=alpha, n_permutations=n_permutations,
                           seed=seed)

    tasks = [(layer, i) for layer in layers for i in range(len(run.epochs))]
    with (threadpool_limits(limits=1, user_api="blas"),
          Progress(len(tasks), desc="linear probes", unit="block", enabled=progress) as bar):
        results = reduce_blocks(run, tasks, probe, kind=kind, max_workers=max_workers, advance=bar.update)
    by_layer = [xr.concat([results[(layer, i)] for i in range(len(run.epochs))], dim="epoch") for layer in layers]
    ds = xr.concat(by_layer, dim="layer").assign_coords(
        layer=("layer", layers), epoch=("epoch", run.epochs, {"long_name": "training epoch", "units": "epoch"}))
    ds["accuracy_low"] = ds["accuracy_fold"].min("fold").assign_attrs(long_name="lowest fold accuracy", units="1")
    ds["accuracy_high"] = ds["accuracy_fold"].max("fold").assign_attrs(long_name="highest fold accuracy", units="1")
    ds["q_value"] = fdr_adjust(ds["p_value"])
    ds["decodable"] = (ds["q_value"] <= fdr_level).assign_attrs(
        long_name=f"accuracy above chance at false-discovery rate {fdr_level} (layer x epoch family)")
    ds["target_description"] = ("target", list(TARGETS.values()))
    return ds.assign_attrs(
        kind=kind, n_folds=n_folds, alpha=alpha, n_permutations=n_permutations, p_floor=1.0 / (1 + n_permutations),
        fdr_level=fdr_level, seed=seed, classifier="StandardScaler + RidgeClassifier (closed form) trained on the clean probes")
