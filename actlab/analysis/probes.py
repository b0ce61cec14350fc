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

import functools
from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy.linalg.blas import get_blas_funcs
from scipy.linalg.lapack import get_lapack_funcs
from scipy.stats import false_discovery_control
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from actlab.analysis.blocks import SEED
from actlab.analysis.pca import pca_epoch_indices
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
PROBE_EPOCHS = 16
"""Defaults: stratified folds of the clean probes, permutations of the null, ridge penalty (on standardised units),
false-discovery rate of the ``decodable`` flag, recorded epochs probed per layer (:func:`probe_epoch_indices`)."""


def probe_epoch_indices(n_epochs: int, probe_epochs: int | None = PROBE_EPOCHS,
                        keep: Sequence[int] = ()) -> np.ndarray:
    """Indices of the recorded epochs the probes are computed at: at most ``probe_epochs`` of them.

    The indices ``keep`` (``analyze`` passes the first recorded epoch and the phase epochs at which the findings
    are read: at most four) and ``probe_epochs - len(keep)`` (at least 2) evenly spaced over the recorded ones,
    first and last included, the rule of the PCA's epochs (:func:`~actlab.analysis.pca.pca_epoch_indices`; on a
    log-spaced recording schedule they are log-spaced in epochs). ``None`` (or a number at least ``n_epochs``)
    selects every epoch.

    Returns
    -------
    ndarray of int, sorted, without repeats
    """
    if probe_epochs is not None and (not isinstance(probe_epochs, (int, np.integer)) or probe_epochs < 2):
        raise ValueError(f"probe_epochs must be None or an integer >= 2; got {probe_epochs!r}")
    if probe_epochs is None or probe_epochs >= n_epochs:
        return np.arange(n_epochs)
    keep = np.unique(np.asarray(keep, dtype=np.int64))
    if len(keep) and (keep.min() < 0 or keep.max() >= n_epochs):
        raise ValueError(f"epoch indices to keep must lie in [0, {n_epochs}); got {keep.tolist()}")
    spaced = pca_epoch_indices(n_epochs, max(2, probe_epochs - len(keep)))
    return np.union1d(spaced, keep).astype(np.int64)


def _precision(x: np.ndarray) -> type:
    """The precision a block is probed in: float32 for a float32 block, float64 for any other (scikit-learn's
    ridge keeps float32 input in float32 and turns the rest into float64)."""
    return np.float32 if x.dtype == np.float32 else np.float64


class ProbePlan:
    """The per-run constants of the linear probes, the same for every (layer, epoch) block: the stratified folds of
    the clean probes, their +-1 class targets, and the label permutations of the null.

    A block is then probed by :meth:`probe` from its activations alone, so the probes run inside the fused pass
    (:func:`~actlab.analysis.pipeline.analyze`) or on their own (:func:`linear_probes`) with the same numbers.

    Parameters
    ----------
    group : ndarray of str, shape (sample,)
        ``"clean"``, ``"noisy"`` or ``"test"``.
    label, original_label : ndarray of int, shape (sample,)
        Assigned and original label.
    n_folds, alpha, n_permutations, seed
        See :func:`probe_block`.
    """

    def __init__(self, group: np.ndarray, label: np.ndarray, original_label: np.ndarray, *, n_folds: int = N_FOLDS,
                 alpha: float = RIDGE_ALPHA, n_permutations: int = N_PERMUTATIONS, seed: int = SEED) -> None:
        group = np.asarray(group).astype(str)
        label, original_label = np.asarray(label, dtype=np.int64), np.asarray(original_label, dtype=np.int64)
        self.clean, noisy, test = (np.flatnonzero(group == g) for g in ("clean", "noisy", "test"))
        y_clean = label[self.clean]
        smallest = int(np.bincount(y_clean).min()) if len(y_clean) else 0
        if len(np.unique(y_clean)) < 2 or smallest < n_folds:
            raise ValueError(f"linear probes need at least {n_folds} clean probes of each of at least 2 classes "
                             f"(the stratified folds); got class counts {np.bincount(y_clean).tolist()}")
        self.n_samples, self.n_folds, self.alpha, self.n_permutations = len(group), n_folds, alpha, n_permutations
        self.classes = np.unique(y_clean)
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        self.held_out = [test for _, test in folds.split(np.zeros(len(self.clean)), y_clean)]
        order = np.concatenate(self.held_out)
        self.clean_by_fold = self.clean[order]
        self.targets_by_fold = np.where(y_clean[order, None] == self.classes[None, :], 1.0, -1.0)
        ends = np.cumsum([len(h) for h in self.held_out])
        self.fold_bounds = list(zip((ends - [len(h) for h in self.held_out]).tolist(), ends.tolist()))
        self.n_classes = int(max(label.max(), original_label.max(), self.classes.max())) + 1
        self.truth = {"clean": y_clean, "noisy_original": original_label[noisy], "noisy_assigned": label[noisy],
                      "test": label[test]}  # in the order of TARGETS
        # the noisy and test probes, scored by every fold; each target's samples as positions among them
        self.scored = np.flatnonzero(group != "clean")
        noisy, test = np.searchsorted(self.scored, noisy), np.searchsorted(self.scored, test)
        self.samples = {"clean": None, "noisy_original": noisy, "noisy_assigned": noisy, "test": test}
        # the same permutations for every block, drawn once: target after target, from one generator seeded with
        # ``seed``; (n_permutations, samples scored) class codes of one or two bytes
        rng = np.random.default_rng(seed)
        code = np.min_scalar_type(self.n_classes)
        self.shuffled = {name: rng.permuted(np.broadcast_to(truth, (n_permutations, len(truth))), axis=1).astype(code)
                         for name, truth in self.truth.items() if len(truth)}

    def fold_weights(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each fold's classifier fitted on the fold's training probes of one (sample, unit) block.

        Each fold's classifier is scikit-learn's ``make_pipeline(StandardScaler(), RidgeClassifier(alpha))``,
        solved here in closed form from sufficient statistics, in the block's precision as scikit-learn's ridge
        solvers are: float32 for a float32 block (a store's blocks), float64 otherwise. The clean probes are
        centred on the mean of all of them (computed in float64, so a constant unit centres to exactly 0); the
        unit x unit scatter of each fold's held-out probes is one symmetric rank-k update (NumPy's ``X^T X``), and a
        fold's training scatter is the sum of them all minus its own (a downdate), recentred on the
        fold's training mean. Standardising unit ``j`` by ``s_j`` and penalising by ``alpha`` is the same as solving
        ``(S + alpha diag(s^2)) w = X^T t`` for the weights of the unstandardised units, which one Cholesky
        factorisation and solve (LAPACK ``posv``) per fold gives, for every class's +-1 targets at once. Targets
        are +1 for the class and -1 for the others, with an intercept; a unit constant over the training probes
        keeps scale 1, as StandardScaler does.

        Parameters
        ----------
        x : ndarray, shape (sample, unit)

        Returns
        -------
        weights : ndarray, shape (fold, unit, class)
            Of the unstandardised units; the classes are ``self.classes``. float32 for a float32 block, else
            float64 (as the two arrays below).
        intercepts : ndarray, shape (fold, class)
            A sample's decision score is ``x @ weights[f] + intercepts[f]``.
        centred : ndarray, shape (clean sample, unit)
            The clean probes in the order of ``clean_by_fold``, minus ``centre``.
        centre : ndarray, shape (unit,)
            The mean of the clean probes.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] != self.n_samples:
            raise ValueError(f"linear probes need a (sample, unit) block of {self.n_samples} samples; "
                             f"got shape {x.shape}")
        dtype = _precision(x)
        centred = x[self.clean_by_fold].astype(dtype, copy=False)  # the clean probes, fold after fold: slices
        centre = centred.mean(axis=0, dtype=np.float64).astype(dtype)
        centred = centred - centre
        (syr,) = get_blas_funcs(("syr",), dtype=dtype)
        (posv,) = get_lapack_funcs(("posv",), dtype=dtype)
        targets = self.targets_by_fold.astype(dtype)
        # X^T X of each fold's held-out probes by NumPy, which releases the interpreter lock while BLAS runs (SciPy's
        # BLAS wrappers hold it), so blocks probed on threads run side by side
        held_grams = [centred[a:b].T @ centred[a:b] for a, b in self.fold_bounds]
        held_sums = [centred[a:b].sum(axis=0) for a, b in self.fold_bounds]
        held_cross = [centred[a:b].T @ targets[a:b] for a, b in self.fold_bounds]
        held_targets = [targets[a:b].sum(axis=0) for a, b in self.fold_bounds]
        gram, sums, cross, target_sums = (functools.reduce(np.add, parts)
                                          for parts in (held_grams, held_sums, held_cross, held_targets))
        units = x.shape[1]
        weights = np.empty((self.n_folds, units, len(self.classes)), dtype=dtype)
        intercepts = np.empty((self.n_folds, len(self.classes)), dtype=dtype)
        diagonal = np.diag_indices(units)
        for f in range(self.n_folds):
            n = len(self.clean) - len(self.held_out[f])
            shift, target_mean = (sums - held_sums[f]) / dtype(n), (target_sums - held_targets[f]) / dtype(n)
            # the training probes' X^T X; symmetric, so its transpose is the same matrix, already in Fortran order
            system = np.subtract(gram.T, held_grams[f].T, order="F")
            system = syr(-n, shift, a=system, lower=0, overwrite_a=1)  # about the fold's training mean (upper triangle)
            mean = centre + shift
            variance = np.maximum(system[diagonal], 0) / dtype(n)
            variance[np.sqrt(variance) <= 1e-10 * np.maximum(1, np.abs(mean))] = 1
            system[diagonal] += dtype(self.alpha) * variance
            products = cross - held_cross[f]
            products -= dtype(n) * np.outer(shift, target_mean)
            # LAPACK posv through SciPy holds the GIL for its ~1.6 ms (NumPy's Cholesky, which releases it, took 3.9
            # ms: benchmarks/bench_gil.py)
            _, solved, info = posv(system, products, lower=0, overwrite_a=1, overwrite_b=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"the ridge system of fold {f} is not positive definite (LAPACK posv "
                                            f"info {info}); the block holds non-finite activations")
            weights[f] = solved
            intercepts[f] = target_mean - mean @ solved
        return weights, intercepts, centred, centre

    def fold_predictions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every fold's predicted class of the noisy and test probes (fold, ``self.scored`` sample), and the
        out-of-fold predictions of the clean probes (clean sample,).

        A clean probe is predicted only by the fold that held it out (the other folds trained on it); the noisy
        and test probes by every fold. The classifiers are :meth:`fold_weights`', in the same precision.
        """
        weights, intercepts, centred, centre = self.fold_weights(x)
        out_of_fold = np.empty(len(self.clean), dtype=np.int64)
        for f, ((a, b), held) in enumerate(zip(self.fold_bounds, self.held_out)):
            # (x - centre) @ w + (centre @ w + intercept): the centred probes are at hand
            scores = centred[a:b] @ weights[f] + (centre @ weights[f] + intercepts[f])
            out_of_fold[held] = self.classes[np.argmax(scores, axis=1)]
        others = np.asarray(x)[self.scored].astype(weights.dtype, copy=False)
        units = others.shape[1]
        scores = (others @ weights.transpose(1, 0, 2).reshape(units, -1)).reshape(len(others), self.n_folds, -1)
        predicted = self.classes[np.argmax(scores + intercepts[None], axis=2)].T
        return predicted, out_of_fold

    def _permutation_test(self, name: str, predicted: np.ndarray) -> tuple[float, float]:
        """Chance accuracy and permutation p-value of ``predicted`` (fold, sample) against target ``name``.

        The statistic is the accuracy averaged over folds; the null permutes the target's truth over the samples
        (the same permutation for every fold), which keeps both label frequencies. Chance is the null's exact
        mean, ``mean over folds of sum_c freq_predicted(c) * freq_truth(c)``; the p-value is
        ``(1 + #{null >= observed}) / (1 + n_permutations)``, both counted exactly in integers (correct
        predictions summed over folds and samples).
        """
        truth, shuffled = self.truth[name], self.shuffled[name]
        truth_freq = np.bincount(truth, minlength=self.n_classes) / len(truth)
        chance = float(np.mean([np.bincount(p, minlength=self.n_classes) / len(p) @ truth_freq for p in predicted]))
        observed = int(np.count_nonzero(predicted == truth[None, :]))
        null = np.zeros(len(shuffled), dtype=np.int64)  # correct predictions of each permutation, over folds
        for fold in predicted.astype(shuffled.dtype):
            null += np.count_nonzero(shuffled == fold[None, :], axis=1)
        above = int(np.count_nonzero(null >= observed))
        return chance, (1 + above) / (1 + self.n_permutations)

    def probe(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The accuracies of one (sample, unit) block: arrays ``accuracy_fold`` (target, fold) and ``accuracy``,
        ``chance``, ``p_value`` (target,) as :func:`probe_block` returns them."""
        if x.shape[0] != self.n_samples:
            raise ValueError(f"the block has {x.shape[0]} samples; the probes have {self.n_samples}")
        predicted, out_of_fold = self.fold_predictions(x)
        n_targets = len(TARGETS)
        per_fold = np.full((n_targets, self.n_folds), np.nan)
        accuracy, chance, p_value = (np.full(n_targets, np.nan) for _ in range(3))
        for t, name in enumerate(TARGETS):
            truth, samples = self.truth[name], self.samples[name]
            if len(truth) == 0:
                continue
            if samples is None:  # clean: each fold scores its own held-out probes; the test pools the out-of-fold ones
                per_fold[t] = [np.mean(out_of_fold[h] == truth[h]) for h in self.held_out]
                pred = out_of_fold[None, :]
            else:
                pred = predicted[:, samples]
                per_fold[t] = np.mean(pred == truth[None, :], axis=1)
            accuracy[t] = np.mean(pred == truth[None, :])
            chance[t], p_value[t] = self._permutation_test(name, pred)
        return {"accuracy_fold": per_fold, "accuracy": accuracy, "chance": chance, "p_value": p_value}


_ATTRS = {
    "accuracy_fold": {"long_name": "accuracy of each fold's classifier", "units": "1"},
    "accuracy": {"long_name": "linear-probe accuracy", "units": "1"},
    "chance": {"long_name": "accuracy expected under the label-permutation null", "units": "1"},
    "p_value": {"long_name": "label-permutation p-value (one-sided: above chance)", "units": "1"},
}


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
    plan = ProbePlan(group, label, original_label, n_folds=n_folds, alpha=alpha, n_permutations=n_permutations,
                     seed=seed)
    found = plan.probe(x)
    return xr.Dataset({name: (("target", "fold") if name == "accuracy_fold" else "target", found[name], _ATTRS[name])
                       for name in _ATTRS}, coords={"target": list(TARGETS), "fold": np.arange(n_folds)})


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


class ProbesAlongTraining:
    """Linear probes of a run's (layer, epoch) blocks, collected block by block in any order.

    :attr:`reduce` (picklable: it runs where a block is read) turns a block into its accuracies, :meth:`add` keeps
    them, :meth:`result` assembles the dataset of :func:`linear_probes` once every block of the epochs
    :attr:`indices` is in (blocks of other epochs are not wanted).

    Parameters
    ----------
    run : Run
    layers : sequence of str
    kind, n_folds, alpha, n_permutations, fdr_level, seed, probe_epochs
        See :func:`linear_probes`.
    keep_epochs : sequence of int
        Indices of recorded epochs probed whatever ``probe_epochs`` is (:func:`probe_epoch_indices`).
    """

    def __init__(self, run: Run, layers: Sequence[str], *, kind: str = "post", n_folds: int = N_FOLDS,
                 alpha: float = RIDGE_ALPHA, n_permutations: int = N_PERMUTATIONS, fdr_level: float = FDR_LEVEL,
                 seed: int = SEED, probe_epochs: int | None = PROBE_EPOCHS, keep_epochs: Sequence[int] = ()) -> None:
        if not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
            raise ValueError(f"n_permutations must be a positive integer; got {n_permutations!r}")
        if not 0 < fdr_level < 1:
            raise ValueError(f"fdr_level must be in (0, 1); got {fdr_level!r}")
        probes = run.probes
        self.plan = ProbePlan(probes["group"].values, probes["label"].values, probes["original_label"].values,
                              n_folds=n_folds, alpha=alpha, n_permutations=n_permutations, seed=seed)
        self.reduce = self.plan.probe
        self.indices = probe_epoch_indices(len(run.epochs), probe_epochs, keep_epochs)
        self.layers, self.epochs = list(layers), run.epochs[self.indices]
        self.settings = dict(kind=kind, n_folds=n_folds, alpha=alpha, n_permutations=n_permutations,
                             p_floor=1.0 / (1 + n_permutations), fdr_level=fdr_level, seed=seed,
                             probe_epochs=-1 if probe_epochs is None else int(probe_epochs),
                             n_recorded_epochs=len(run.epochs),
                             every_epoch=len(self.indices) == len(run.epochs))
        self.found: dict[tuple[str, int], dict[str, np.ndarray]] = {}

    def add(self, layer: str, index: int, found: dict[str, np.ndarray]) -> None:
        """Keep the accuracies of block (``layer``, epoch ``index``), as :attr:`reduce` returned them."""
        self.found[(layer, index)] = found

    def result(self) -> xr.Dataset:
        """The dataset of :func:`linear_probes`."""
        def stacked(name: str) -> np.ndarray:
            return np.stack([np.stack([self.found[(layer, int(i))][name] for i in self.indices])
                             for layer in self.layers])

        dims = {name: ("layer", "epoch", "target", "fold") if name == "accuracy_fold" else ("layer", "epoch", "target")
                for name in _ATTRS}
        ds = xr.Dataset({name: (dims[name], stacked(name), _ATTRS[name]) for name in _ATTRS}, coords={
            "layer": ("layer", self.layers), "epoch": ("epoch", self.epochs, {"long_name": "training epoch", "units": "epoch"}),
            "target": list(TARGETS), "fold": np.arange(self.settings["n_folds"])})
        ds["accuracy_low"] = ds["accuracy_fold"].min("fold").assign_attrs(long_name="lowest fold accuracy", units="1")
        ds["accuracy_high"] = ds["accuracy_fold"].max("fold").assign_attrs(long_name="highest fold accuracy", units="1")
        ds["q_value"] = fdr_adjust(ds["p_value"])
        fdr_level = self.settings["fdr_level"]
        ds["decodable"] = (ds["q_value"] <= fdr_level).assign_attrs(
            long_name=f"accuracy above chance at false-discovery rate {fdr_level} (layer x epoch family)")
        ds["target_description"] = ("target", list(TARGETS.values()))
        return ds.assign_attrs(**self.settings, classifier="StandardScaler + RidgeClassifier (closed form) trained on "
                                                           "the clean probes")


def linear_probes(run: Run, *, layers: Sequence[str] | None = None, kind: str = "post", n_folds: int = N_FOLDS,
                  alpha: float = RIDGE_ALPHA, n_permutations: int = N_PERMUTATIONS, fdr_level: float = FDR_LEVEL,
                  seed: int = SEED, probe_epochs: int | None = PROBE_EPOCHS, max_workers: int = 1,
                  progress: bool = False) -> xr.Dataset:
    """Linear probes of a run's (layer, recorded epoch) blocks, one block in memory per worker.

    :func:`~actlab.analysis.pipeline.analyze` computes the same inside its single pass over the store
    (``extras=["probes"]``); this reads the blocks on its own.

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
        target (the epochs probed).
    probe_epochs : int or None
        Probe this many recorded epochs of each layer, evenly spaced, first and last included
        (:func:`probe_epoch_indices`); ``None``: every recorded epoch. A block costs more to probe than to read.
    max_workers : int
        Blocks probed concurrently (threads).
    progress : bool
        Show a progress bar over blocks.

    Returns
    -------
    xr.Dataset, dims (layer, epoch, target, fold)
        The variables of :func:`probe_block` with dims (layer, epoch, ...) over the probed epochs,
        ``accuracy_low`` / ``accuracy_high`` (the range over folds), ``q_value`` and ``decodable`` (layer, epoch,
        target); attrs ``probe_epochs`` (-1: every epoch), ``n_recorded_epochs`` and ``every_epoch``.
    """
    layers = list(run.layer_names if layers is None else layers)
    probes = ProbesAlongTraining(run, layers, kind=kind, n_folds=n_folds, alpha=alpha, n_permutations=n_permutations,
                                 fdr_level=fdr_level, seed=seed, probe_epochs=probe_epochs)
    tasks = [(layer, int(i)) for layer in layers for i in probes.indices]
    with (threadpool_limits(limits=1, user_api="blas"),
          Progress(len(tasks), desc="linear probes", unit="block", enabled=progress) as bar):
        for (layer, i), found in reduce_blocks(run, tasks, probes.reduce, kind=kind, max_workers=max_workers,
                                               advance=bar.update).items():
            probes.add(layer, i, found)
    return probes.result()
