"""Representation similarity along training: debiased linear CKA between (layer, epoch) blocks and between runs.

Linear CKA (Kornblith et al. 2019) compares two representations of the same samples through their Gram matrices
``K = X X^T``; it is invariant to rotations and isotropic scaling of either. The debiased form replaces HSIC with
the unbiased estimator of Song et al. (2012): with the U-centred Gram matrices ``U(K)`` (Szekely and Rizzo 2014;
zero diagonal), ``HSIC_u(K, L) = <U(K), U(L)> / (n (n - 3))``, so independent representations give CKA about 0
at any sample size instead of a positive bias. A block is reduced to its normalised U-centred Gram matrix over a
fixed subset of the probes (:func:`gram_vector`), so blocks stream: only those vectors are kept.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from actlab.analysis.blocks import SEED
from actlab.analysis.pca import PCA_EPOCHS, pca_epoch_indices
from actlab.analysis.run import Run, reduce_blocks
from actlab.progress import Progress

MAX_SAMPLES = 512
"""Probes the Gram matrices are computed on (a fixed random subset when the run has more): each block is kept as
``MAX_SAMPLES * (MAX_SAMPLES - 1) / 2`` float32 numbers (0.5 MB)."""

SETTLED_CKA = 0.95
"""A layer has settled from the first recorded epoch after which its CKA to its final state stays at or above this."""


def u_centred_gram(x: np.ndarray) -> np.ndarray:
    """U-centred linear Gram matrix of a (sample, unit) block.

    Parameters
    ----------
    x : ndarray, shape (sample, unit); at least 4 samples

    Returns
    -------
    ndarray of float64, shape (sample, sample)
        ``K = x x^T`` with its diagonal set to 0, then ``K_ij - r_i / (n-2) - r_j / (n-2) + s / ((n-1)(n-2))``
        off the diagonal (``r``: row sums, ``s``: total), 0 on it.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if x.ndim != 2 or n < 4:
        raise ValueError(f"debiased CKA needs a (sample, unit) block of at least 4 samples; got shape {x.shape}")
    gram = x @ x.T
    np.fill_diagonal(gram, 0.0)
    rows = gram.sum(axis=0)
    gram -= rows[:, None] / (n - 2)
    gram -= rows[None, :] / (n - 2)
    gram += rows.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(gram, 0.0)
    return gram


def gram_vector(x: np.ndarray) -> np.ndarray:
    """The U-centred Gram matrix of ``x`` as a unit vector: its upper triangle, divided by its norm.

    The dot product of two such vectors is the debiased linear CKA of the two blocks (both Gram matrices are
    symmetric with a zero diagonal, so the upper triangles carry the inner product). A block whose U-centred
    Gram matrix is zero (a constant representation) gives NaN.

    Computed as :func:`u_centred_gram` defines it, with half the work: ``x x^T`` by NumPy (a symmetric rank-k
    update, computed with the interpreter lock released, so blocks reduced on threads run side by side), the row
    sums off the diagonal from ``x`` (``x_i . sum_j x_j - |x_i|^2``), and the centring applied to the upper
    triangle alone.

    Parameters
    ----------
    x : ndarray, shape (sample, unit); at least 4 samples

    Returns
    -------
    ndarray of float32, shape (sample * (sample - 1) / 2,)
        In the order of ``numpy.triu_indices(sample, k=1)``.
    """
    x = np.asarray(x)
    n = len(x)
    if x.ndim != 2 or n < 4:
        raise ValueError(f"debiased CKA needs a (sample, unit) block of at least 4 samples; got shape {x.shape}")
    if _constant(x):
        return np.full(n * (n - 1) // 2, np.nan, dtype=np.float32)
    # centred on the mean sample first (the U-centred Gram matrix does not change: a shift adds row, column and
    # constant terms, which U-centring removes), so that x x^T in float32 keeps its small entries
    x = x.astype(np.float64)
    x -= x.mean(axis=0)
    single = x.astype(np.float32)
    gram = single @ single.T  # symmetric: its Fortran-ordered upper triangle (_upper) is its C-ordered lower one, equal
    rows = x @ x.sum(axis=0) - np.einsum("ij,ij->i", x, x)  # row sums of x x^T without its diagonal
    # U(K)_ij = K_ij - r_i / (n-2) - r_j / (n-2) + s / ((n-1)(n-2)): half the constant on each index's term
    half = rows / (n - 2) - rows.sum() / (2 * (n - 1) * (n - 2))
    first, second, flat = _upper(n)
    upper = np.take(gram.ravel(), flat).astype(np.float64)
    upper -= half[first]
    upper -= half[second]
    upper /= np.sqrt(upper @ upper)
    return upper.astype(np.float32)


@functools.lru_cache(maxsize=4)
def _upper(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column of each entry above the diagonal of an (n, n) matrix (``numpy.triu_indices(n, k=1)``),
    and its position in the matrix's Fortran-ordered memory (in a symmetric matrix, that of the same value in C order)."""
    first, second = np.triu_indices(n, k=1)
    return first, second, first + n * second


def _constant(x: np.ndarray) -> bool:
    """Whether every sample of ``x`` is the same (up to float64 rounding): its U-centred Gram matrix is zero."""
    x = np.asarray(x)
    if len(x) == 0:
        return True
    # |x_ij - x_0j| <= tol for every i, j: the column maxima and minima against the first sample, in float64 (the
    # differences of float32 values are exact in it)
    high, low = x.max(axis=0).astype(np.float64), x.min(axis=0).astype(np.float64)
    first = x[0].astype(np.float64)
    tolerance = 1e-12 * max(1.0, float(max(np.abs(high).max(initial=0.0), np.abs(low).max(initial=0.0))))
    return bool(np.all(high - first <= tolerance) and np.all(first - low <= tolerance))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA of two representations of the same samples.

    Parameters
    ----------
    x : ndarray, shape (sample, unit_x)
    y : ndarray, shape (sample, unit_y)

    Returns
    -------
    float
        1 for representations equal up to rotation, isotropic scaling and translation; about 0 for independent
        ones; NaN when either is constant.
    """
    if len(x) != len(y):
        raise ValueError(f"CKA compares representations of the same samples; got {len(x)} and {len(y)} samples")
    if _constant(x) or _constant(y):
        return float("nan")
    gx, gy = u_centred_gram(x), u_centred_gram(y)
    return float(np.sum(gx * gy) / np.sqrt(np.sum(gx * gx) * np.sum(gy * gy)))


def sample_subset(n_samples: int, max_samples: int = MAX_SAMPLES, seed: int = SEED) -> np.ndarray:
    """Sorted indices of the probes the Gram matrices use: all of them, or ``max_samples`` drawn without
    replacement by ``numpy.random.default_rng(seed)``."""
    if n_samples <= max_samples:
        return np.arange(n_samples)
    return np.sort(np.random.default_rng(seed).choice(n_samples, max_samples, replace=False))


def subset_gram_vector(subset: np.ndarray, x: np.ndarray) -> np.ndarray:
    """:func:`gram_vector` of the probes ``subset`` of block ``x`` (sample, unit)."""
    return gram_vector(x[subset])


def _gram_vectors(run: Run, blocks: Sequence[tuple[str, int]], subset: np.ndarray, kind: str, max_workers: int,
                  bar: Progress) -> dict[tuple[str, int], np.ndarray]:
    """:func:`gram_vector` of each (layer, epoch index) block on the probes ``subset``."""
    return reduce_blocks(run, blocks, functools.partial(subset_gram_vector, subset), kind=kind, max_workers=max_workers,
                         advance=bar.update)


def settled_epoch(to_final: xr.DataArray, threshold: float = SETTLED_CKA) -> xr.DataArray:
    """First recorded epoch from which ``to_final`` (layer, epoch) stays at or above ``threshold``.

    Returns
    -------
    xr.DataArray, float, dims (layer,); the epoch (the last recorded epoch at least, where CKA is 1)
    """
    above = (to_final >= threshold).transpose("layer", "epoch").values
    epochs = to_final["epoch"].values
    stays = np.flip(np.logical_and.accumulate(np.flip(above, axis=1), axis=1), axis=1)
    first = np.where(stays.any(axis=1), np.argmax(stays, axis=1), len(epochs) - 1)
    return xr.DataArray(epochs[first].astype(float), dims="layer", coords={"layer": to_final["layer"].values},
                        attrs={"long_name": f"first epoch from which CKA to the final state stays >= {threshold}",
                               "units": "epoch"})


class SimilarityAlongTraining:
    """Debiased linear CKA of a run's blocks, collected block by block in any order.

    :attr:`reduce` (picklable: it runs where a block is read) turns a block into its :func:`gram_vector`;
    :meth:`add` keeps the vectors of the pair epochs and each layer's final state, and turns every other vector
    into its CKA to the final state as soon as that is in (until then it waits: at most one layer's epochs when
    blocks come layer by layer); :meth:`result` assembles the dataset of :func:`similarity_along_training`.

    Parameters
    ----------
    run : Run
    layers : sequence of str
    kind, pair_epochs, max_samples, seed
        See :func:`similarity_along_training`.
    """

    def __init__(self, run: Run, layers: Sequence[str], *, kind: str = "post", pair_epochs: int | None = PCA_EPOCHS,
                 max_samples: int = MAX_SAMPLES, seed: int = SEED) -> None:
        self.subset = sample_subset(run.n_samples, max_samples, seed)
        self.reduce = functools.partial(subset_gram_vector, self.subset)
        self.indices = np.arange(len(run.epochs))  # every block: each one's CKA to its layer's final state
        self.layers, self.epochs, self.last = list(layers), run.epochs, len(run.epochs) - 1
        self.pair_index = pca_epoch_indices(len(run.epochs), pair_epochs)
        self.pair_set = set(self.pair_index.tolist())
        self.settings = dict(kind=kind, n_samples=len(self.subset), seed=seed, settled_cka=SETTLED_CKA)
        self.kept: dict[tuple[str, int], np.ndarray] = {}
        self.finals: dict[str, np.ndarray] = {}
        self.waiting: dict[str, list[tuple[int, np.ndarray]]] = {layer: [] for layer in self.layers}
        self.to_final = np.full((len(self.layers), len(self.epochs)), np.nan)

    def add(self, layer: str, index: int, vector: np.ndarray) -> None:
        """Take the :func:`gram_vector` of block (``layer``, epoch ``index``), as :attr:`reduce` returned it."""
        if index in self.pair_set:
            self.kept[(layer, index)] = vector
        if index == self.last:
            self.finals[layer] = vector
            for waited in [*self.waiting.pop(layer), (index, vector)]:
                self._to_final(layer, *waited)
        elif layer in self.finals:
            self._to_final(layer, index, vector)
        else:
            self.waiting[layer].append((index, vector))

    def _to_final(self, layer: str, index: int, vector: np.ndarray) -> None:
        self.to_final[self.layers.index(layer), index] = self.finals[layer] @ vector

    def result(self) -> xr.Dataset:
        """The dataset of :func:`similarity_along_training`."""
        layers, pair_index = self.layers, self.pair_index
        stacked = np.stack([self.kept[(layer, int(i))] for layer in layers for i in pair_index])
        pairs = (stacked @ stacked.T).astype(np.float64).reshape(len(layers), len(pair_index), len(layers),
                                                                 len(pair_index))
        epoch_attrs = {"long_name": "training epoch", "units": "epoch"}
        pair_epochs_values = self.epochs[pair_index]
        ds = xr.Dataset(
            {
                "cka_to_final": (("layer", "epoch"), np.clip(self.to_final, -1, 1),
                                 {"long_name": "debiased linear CKA with the same layer at the last recorded epoch",
                                  "units": "1"}),
                "cka": (("layer", "epoch_pair", "layer_other", "epoch_other"), np.clip(pairs, -1, 1),
                        {"long_name": "debiased linear CKA between two blocks", "units": "1"}),
            },
            coords={"layer": layers, "epoch": ("epoch", self.epochs, epoch_attrs), "layer_other": layers,
                    "epoch_pair": ("epoch_pair", pair_epochs_values, epoch_attrs),
                    "epoch_other": ("epoch_other", pair_epochs_values, epoch_attrs)},
        )
        ds["settled_epoch"] = settled_epoch(ds["cka_to_final"])
        return ds.assign_attrs(**self.settings, estimator="debiased linear CKA (Kornblith et al. 2019; unbiased HSIC "
                                                          "of Song et al. 2012)")


def similarity_along_training(run: Run, *, layers: Sequence[str] | None = None, kind: str = "post",
                              pair_epochs: int | None = PCA_EPOCHS, max_samples: int = MAX_SAMPLES,
                              seed: int = SEED, max_workers: int = 1, progress: bool = False) -> xr.Dataset:
    """Debiased linear CKA of one run's blocks: each layer to its final state, and every pair of blocks.

    :func:`~actlab.analysis.pipeline.analyze` computes the same inside its single pass over the store
    (``extras=["cka"]``); this reads the blocks on its own, each layer's final state first.

    Parameters
    ----------
    run : Run
    layers : sequence of str, optional
        Default: every layer.
    kind : {"post", "pre"}
    pair_epochs : int or None
        The pairwise CKA is computed over this many recorded epochs, evenly spaced, first and last included
        (``None``: all); memory grows with ``len(layers) * pair_epochs * max_samples ** 2 / 2`` float32.
    max_samples : int
        Probes the Gram matrices are computed on (:func:`sample_subset`).
    seed : int
        Seed of the probe subset.
    max_workers : int
        Blocks reduced concurrently (threads).
    progress : bool

    Returns
    -------
    xr.Dataset
        ``cka_to_final`` (layer, epoch): CKA of each block with the same layer at the last recorded epoch;
        ``settled_epoch`` (layer,) (:func:`settled_epoch`); ``cka`` (layer, epoch_pair, layer_other,
        epoch_other): CKA between every pair of blocks at the ``pair_epochs``; the layer x layer map at an epoch is
        ``cka.sel(epoch_pair=e, epoch_other=e)``.
    """
    layers = list(run.layer_names if layers is None else layers)
    similarity = SimilarityAlongTraining(run, layers, kind=kind, pair_epochs=pair_epochs, max_samples=max_samples,
                                         seed=seed)
    last = len(run.epochs) - 1
    tasks = [(layer, i) for i in [last, *range(last)] for layer in layers]  # the final states first: nothing waits
    batch = max(1, max_workers) * 4  # a few blocks in memory at a time
    with (threadpool_limits(limits=1, user_api="blas"),
          Progress(len(tasks), desc="CKA", unit="block", enabled=progress) as bar):
        for start in range(0, len(tasks), batch):
            for (layer, i), vector in reduce_blocks(run, tasks[start:start + batch], similarity.reduce, kind=kind,
                                                    max_workers=max_workers, advance=bar.update).items():
                similarity.add(layer, i, vector)
    return similarity.result()


def same_probes(run_a: Run, run_b: Run) -> None:
    """Raise ValueError unless the two runs hold the same probes (dataset index, group and both labels)."""
    for name in ("dataset_index", "group", "label", "original_label"):
        a, b = run_a.probes[name].values, run_b.probes[name].values
        if a.shape != b.shape or not np.array_equal(a, b):
            raise ValueError(f"CKA between runs needs the same probes; {run_a.path} and {run_b.path} differ in "
                             f"{name!r}; record both with the same data, noise and probe settings")


def similarity_between_runs(run_a: Run, run_b: Run, *, layers: Sequence[str] | None = None, kind: str = "post",
                            epochs: Sequence[int] | None = None, max_samples: int = MAX_SAMPLES, seed: int = SEED,
                            max_workers: int = 1, progress: bool = False) -> xr.Dataset:
    """Debiased linear CKA between the layers of two runs over the same probes (seeds of an ensemble, or two runs).

    Parameters
    ----------
    run_a, run_b : Run
        Recorded on the same probes (:func:`same_probes`).
    layers : sequence of str, optional
        Default: the layers both runs have, in ``run_a``'s order.
    epochs : sequence of int, optional
        Recorded epochs of both runs compared; default: the last epoch both recorded.
    max_samples, seed, max_workers, kind, progress
        See :func:`similarity_along_training`.

    Returns
    -------
    xr.Dataset
        ``cka`` (epoch, layer, layer_other): CKA of ``run_a``'s layer with ``run_b``'s layer_other; ``cka_same``
        (epoch, layer): the diagonal (the same layer in both runs).
    """
    same_probes(run_a, run_b)
    layers = [n for n in (run_a.layer_names if layers is None else layers) if n in run_b.layer_names]
    common = sorted(set(run_a.epochs.tolist()) & set(run_b.epochs.tolist()))
    if not common or not layers:
        raise ValueError(f"{run_a.path} and {run_b.path} share no recorded epoch or no layer name")
    epochs = [common[-1]] if epochs is None else [int(e) for e in epochs]
    missing = sorted(set(epochs) - set(common))
    if missing:
        raise ValueError(f"epochs {missing} are not recorded by both runs; both recorded {common}")
    subset = sample_subset(run_a.n_samples, max_samples, seed)
    out = np.empty((len(epochs), len(layers), len(layers)))
    with threadpool_limits(limits=1, user_api="blas"), Progress(
            2 * len(layers) * len(epochs), desc="CKA between runs", unit="block", enabled=progress) as bar:
        for e, epoch in enumerate(epochs):
            stacked = []
            for run in (run_a, run_b):
                index = int(np.flatnonzero(run.epochs == epoch)[0])
                vectors = _gram_vectors(run, [(name, index) for name in layers], subset, kind, max_workers, bar)
                stacked.append(np.stack([vectors[(name, index)] for name in layers]))
            out[e] = stacked[0] @ stacked[1].T
    epoch_attrs = {"long_name": "training epoch", "units": "epoch"}
    ds = xr.Dataset(
        {"cka": (("epoch", "layer", "layer_other"), np.clip(out, -1, 1),
                 {"long_name": "debiased linear CKA of run_a's layer with run_b's layer_other", "units": "1"})},
        coords={"epoch": ("epoch", epochs, epoch_attrs), "layer": layers, "layer_other": layers},
    )
    diagonal = np.clip(np.diagonal(out, axis1=1, axis2=2), -1, 1)
    ds["cka_same"] = (("epoch", "layer"), diagonal, {"long_name": "debiased linear CKA of the same layer in both runs",
                                                     "units": "1"})
    return ds.assign_attrs(run_a=str(run_a.path), run_b=str(run_b.path), kind=kind, n_samples=len(subset), seed=seed)
