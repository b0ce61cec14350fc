"""Large activations: per-unit magnitudes, a single dominant unit, and what explains its size."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import scipy.linalg
import xarray as xr
from sklearn.decomposition import PCA as SklearnPCA
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold

from actlab.analysis import blocks
from actlab.analysis.blocks import N_BOOTSTRAP, SEED
from actlab.analysis.chunked import block_bytes

OUTPUT_TARGETS: tuple[str, ...] = ("label", "original_label", "predicted")
"""Output patterns against which a unit's per-sample magnitude is explained."""

N_TOP = 5
MIN_RATIO_TO_MEDIAN = 10.0
MIN_RATIO_TO_SECOND = 3.0
N_PERMUTATIONS = 199
"""Defaults shared by the composable functions, the accessor and :func:`actlab.analysis.analyze`."""

EXPLAINED_BY: tuple[str, ...] = ("input", "output", "undecided")
"""Verdicts of :func:`explained_by`."""


def unit_magnitudes(act: xr.DataArray) -> xr.Dataset:
    """Mean and max of |activation| over probe samples.

    Parameters
    ----------
    act : xr.DataArray, dims (epoch, sample, unit)

    Returns
    -------
    xr.Dataset, dims (epoch, unit): ``mean_abs``, ``max_abs`` (float64, lazy for dask input)
    """
    act = blocks.check_activations(act)
    both = blocks.map_epochs(act, lambda x: np.stack(blocks.unit_magnitudes(x)), (2, act.sizes["unit"]), np.float64)
    return magnitudes_dataset(both[:, 0], both[:, 1], act["epoch"].values, act["unit"].values)


def magnitudes_dataset(mean_abs, max_abs, epoch: np.ndarray, unit: np.ndarray) -> xr.Dataset:
    """Label (epoch, unit) arrays of mean and max |activation|."""
    dims = ("epoch", "unit")
    return xr.Dataset(
        {
            "mean_abs": (dims, mean_abs, {"long_name": "mean |activation| over probes", "units": "1"}),
            "max_abs": (dims, max_abs, {"long_name": "max |activation| over probes", "units": "1"}),
        },
        coords={"epoch": epoch, "unit": unit},
    )


def active_median(mean_abs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median ``mean_abs`` over the active units (``mean_abs > 0``) and their number.

    Parameters
    ----------
    mean_abs : ndarray, shape (epoch, unit)

    Returns
    -------
    median : ndarray of float64, shape (epoch,)
        NaN at an epoch without an active unit.
    n_active : ndarray of int64, shape (epoch,)
    """
    mean_abs = np.asarray(mean_abs, dtype=np.float64)
    active = mean_abs > 0
    median = np.array([np.median(row[keep]) if keep.any() else np.nan for row, keep in zip(mean_abs, active)])
    return median, active.sum(axis=1)


def dominant_unit(magnitudes: xr.Dataset, *, n_top: int = N_TOP, min_ratio_to_median: float = MIN_RATIO_TO_MEDIAN,
                  min_ratio_to_second: float = MIN_RATIO_TO_SECOND) -> xr.Dataset:
    """Top units per epoch and detection of a single dominant unit.

    A layer has a dominant unit at an epoch when its largest ``mean_abs`` is at
    least ``min_ratio_to_median`` x the median ``mean_abs`` over the active units
    (``mean_abs > 0``: dead units, silent on every probe, are left out, so the
    ratio stays finite when more than half of a layer is silent) and at
    least ``min_ratio_to_second`` x the second largest. The unit followed is the
    rank-0 unit at the last epoch; it emerges at the first epoch from which it is
    the dominant unit at every later epoch.

    Parameters
    ----------
    magnitudes : xr.Dataset, dims (epoch, unit)
        From :func:`unit_magnitudes`.

    Returns
    -------
    xr.Dataset
        ``top_unit``, ``top_mean_abs``, ``top_max_abs``, ``ratio_to_median`` (epoch, rank);
        ``median_mean_abs``, ``n_active``, ``dominant`` (epoch); ``dominant_unit``, ``is_dominant``,
        ``emergence_epoch`` (scalars); ``unit_mean_abs``, ``unit_max_abs``, ``unit_ratio_to_median`` (epoch).
    """
    mean_abs = np.asarray(magnitudes["mean_abs"].transpose("epoch", "unit").values, dtype=float)
    max_abs = np.asarray(magnitudes["max_abs"].transpose("epoch", "unit").values, dtype=float)
    epochs = magnitudes["epoch"].values
    units = magnitudes["unit"].values
    top = np.stack([blocks.top_units(m, n_top) for m in mean_abs])
    rows = np.arange(len(epochs))[:, None]
    top_mean = mean_abs[rows, top]
    median, n_active = active_median(mean_abs)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = top_mean / median[:, None]
        second = top_mean[:, 0] / top_mean[:, 1] if top.shape[1] > 1 else np.full(len(epochs), np.inf)
    dominant = (ratio[:, 0] >= min_ratio_to_median) & (second >= min_ratio_to_second)
    chosen = int(top[-1, 0])
    followed = dominant & (top[:, 0] == chosen)
    emergence = np.nan
    if followed[-1]:
        start = len(followed) - int(np.argmin(followed[::-1])) if not followed.all() else 0
        emergence = float(epochs[start])
    with np.errstate(divide="ignore", invalid="ignore"):
        unit_ratio = mean_abs[:, chosen] / median
    ed, er = ("epoch",), ("epoch", "rank")
    return xr.Dataset(
        {
            "top_unit": (er, units[top], {"long_name": "units ordered by mean |activation| (rank 0 = largest)"}),
            "top_mean_abs": (er, top_mean, {"long_name": "mean |activation| of the top units", "units": "1"}),
            "top_max_abs": (er, max_abs[rows, top], {"long_name": "max |activation| of the top units", "units": "1"}),
            "median_mean_abs": (ed, median, {"long_name": "median over active units (mean |activation| > 0) of mean "
                                                          "|activation|", "units": "1"}),
            "n_active": (ed, n_active, {"long_name": "active units (mean |activation| > 0)", "units": "1"}),
            "ratio_to_median": (er, ratio, {"long_name": "top mean |activation| / median of the active units",
                                            "units": "1"}),
            "dominant": (ed, dominant, {"long_name": (f"single dominant unit: rank 0 >= {min_ratio_to_median:g} x median "
                                                      f"and >= {min_ratio_to_second:g} x rank 1")}),
            "dominant_unit": ((), units[chosen], {"long_name": "rank-0 unit at the last epoch"}),
            "is_dominant": ((), bool(dominant[-1]), {"long_name": "dominant at the last epoch"}),
            "emergence_epoch": ((), emergence, {"long_name": "first epoch from which dominant_unit stays dominant",
                                                "units": "epoch"}),
            "unit_mean_abs": (ed, mean_abs[:, chosen], {"long_name": "mean |activation| of dominant_unit", "units": "1"}),
            "unit_max_abs": (ed, max_abs[:, chosen], {"long_name": "max |activation| of dominant_unit", "units": "1"}),
            "unit_ratio_to_median": (ed, unit_ratio, {"long_name": "dominant_unit mean |activation| / median of the "
                                                                   "active units", "units": "1"}),
        },
        coords={"epoch": epochs, "rank": np.arange(top.shape[1])},
        attrs={"min_ratio_to_median": min_ratio_to_median, "min_ratio_to_second": min_ratio_to_second},
    )


IMAGE_CHUNK = 2048
"""Images converted to float at a time by :func:`image_features` when the pixels are not held whole."""

EIGEN_TOLERANCE = 1e-5
"""Residual ``|C v - lambda v| / lambda`` at which :func:`leading_eigenpairs` accepts an eigenpair."""
DENSE_EIGEN_SIZE = 512
"""Pixel covariances of at most this size (or four times the components) are decomposed whole
(``numpy.linalg.eigh`` in float64) by :func:`image_features`."""


def _orthonormal(block: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``block`` made orthonormal and orthogonal to the orthonormal ``basis`` (classical Gram-Schmidt, twice)."""
    for _ in range(2):
        block = block - basis @ (basis.T @ block)
        block = np.linalg.qr(block)[0]
    return block


def leading_eigenpairs(apply: Callable[[np.ndarray], np.ndarray], size: int, k: int, *, seed: int = SEED,
                       tol: float = EIGEN_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenvalues and their eigenvectors of a symmetric positive semi-definite operator.

    Thick-restart block Lanczos: blocks of ``max(8, ceil(k / 2))`` vectors, a float64 basis reorthogonalised in
    full (classical Gram-Schmidt twice), Rayleigh-Ritz in float64 once the basis holds 12 blocks past the
    ``2 k`` Ritz vectors it restarts from (with the next Lanczos block, which spans their residuals). Every
    product with the operator is one matrix product of a block (BLAS-3, which NumPy runs without the
    interpreter lock), so ``apply`` may take it in float32: the basis, the projections and the residual test
    stay in float64. It stops when each of the ``k`` leading Ritz pairs has ``|A v - theta v| <= tol theta``;
    an eigenvalue's error is then below ``|A v - theta v|^2 / gap`` plus the rounding of ``apply``.

    Parameters
    ----------
    apply : callable
        ``(size, m) float64 -> (size, m) float64`` products with the operator (computed in any precision).
    size : int
    k : int
        At least 1; ``size`` must hold ``2 k`` vectors and two blocks (about ``3 k``).
    seed : int
        Seed of the random start block (``numpy.random.default_rng``).
    tol : float

    Returns
    -------
    eigenvalues : ndarray of float64, shape (k,), descending
    eigenvectors : ndarray of float64, shape (size, k), orthonormal columns
    """
    block = max(8, -(-k // 2))
    keep = max(2 * k, k + block)
    largest = min(size, keep + 12 * block)
    if keep + 2 * block > largest:
        raise ValueError(f"leading_eigenpairs: {k} eigenpairs of a size-{size} operator need size >= "
                         f"{keep + 2 * block}; decompose it whole")
    basis, products = np.empty((size, largest)), np.empty((size, largest))
    start = np.random.default_rng(seed).standard_normal((size, min(block, largest)))
    used = start.shape[1]
    basis[:, :used] = np.linalg.qr(start)[0]
    products[:, :used] = apply(basis[:, :used])
    for _ in range(1000):
        if used + block <= largest:
            fresh = _orthonormal(products[:, used - block:used], basis[:, :used])
            basis[:, used:used + block], products[:, used:used + block] = fresh, apply(fresh)
            used += block
            continue
        projected = basis[:, :used].T @ products[:, :used]
        theta, rotation = np.linalg.eigh((projected + projected.T) / 2)
        theta, rotation = theta[::-1][:keep], rotation[:, ::-1][:, :keep]
        ritz, ritz_products = basis[:, :used] @ rotation, products[:, :used] @ rotation
        residuals = ritz_products - ritz * theta
        if np.all(np.linalg.norm(residuals[:, :k], axis=0) <= tol * theta[:k]):
            return theta[:k], ritz[:, :k]
        # the next Lanczos block (orthogonal to the whole basis, so to the Ritz vectors kept; it spans their
        # residuals) continues the Krylov space from the restart
        fresh = _orthonormal(products[:, used - block:used], basis[:, :used])
        basis[:, :keep], products[:, :keep] = ritz, ritz_products
        basis[:, keep:keep + block], products[:, keep:keep + block] = fresh, apply(fresh)
        used = keep + block
    raise RuntimeError(f"leading_eigenpairs: no convergence to {tol:g} in 1000 blocks")


def image_features(images: np.ndarray, *, n_components: int = 50, seed: int = SEED,
                   max_bytes: int | None = None) -> np.ndarray:
    """Whitened principal components of probe images scaled to [0, 1] (iterated to convergence, not sketched).

    When the float32 pixels fit ``max_bytes``, the leading components come from scikit-learn's
    ``PCA(svd_solver="arpack")`` (Lanczos iterations run to convergence, ``tol=0``, on the float32 pixels:
    explained variances equal those of a float64 eigendecomposition to about 1e-6 relative), or a full SVD when
    ``n_components`` is not below the smaller side of the data. Larger probe sets (50,000 images are 614 MB of
    float32 pixels) never hold the pixels as floats: the (pixel, pixel) covariance is summed in float32 from
    :data:`IMAGE_CHUNK` images at a time (centred on the float64 pixel means first), its leading eigenvectors
    found by :func:`leading_eigenpairs` (block Lanczos with float32 products, every residual below
    :data:`EIGEN_TOLERANCE` of its eigenvalue: explained variances within about 1e-7 relative of a float64
    eigendecomposition), or by a float64 eigendecomposition of the covariance when the pixels are at most
    :data:`DENSE_EIGEN_SIZE` (or four times the components), and the images projected a chunk at a time in
    float64; the components' signs follow scikit-learn's (each component's largest entry positive), so both
    ways give the same features to float32 rounding (amplified by nearly equal variances, which mix their
    components: about 1e-3 of the largest feature for ARPACK on 3,000 random images, 3e-5 for the block Lanczos
    on 12,000).

    Parameters
    ----------
    images : ndarray of uint8, shape (sample, channel, height, width)
    n_components : int
    seed : int
        ``random_state`` of the ARPACK start vector; seed of :func:`leading_eigenpairs`' start block.
    max_bytes : int, optional
        Largest float32 pixel array held whole (default: the block budget, :func:`actlab.analysis.chunked.block_bytes`).

    Returns
    -------
    ndarray of float64, shape (sample, min(n_components, sample - 1, pixels))
    """
    images = np.asarray(images)
    n = len(images)
    pixels = images.reshape(n, -1)
    size = pixels.shape[1]
    k = min(n_components, n - 1, size)
    if 4 * pixels.size <= block_bytes(max_bytes) or k >= min(pixels.shape) - 1:
        flat = np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
        solver = "arpack" if k < min(flat.shape) else "full"
        pca = SklearnPCA(n_components=k, whiten=True, svd_solver=solver, random_state=seed)
        return pca.fit_transform(flat).astype(np.float64)
    mean = pixels.mean(axis=0, dtype=np.float64) / 255.0

    def centred(start: int) -> np.ndarray:
        return pixels[start:start + IMAGE_CHUNK] / 255.0 - mean

    if size <= max(DENSE_EIGEN_SIZE, 4 * k):
        covariance = np.zeros((size, size))
        for start in range(0, n, IMAGE_CHUNK):
            chunk = centred(start)
            covariance += chunk.T @ chunk
        variance, components = np.linalg.eigh(covariance / (n - 1))
        variance, components = variance[::-1][:k], components[:, ::-1][:, :k]
    else:
        covariance = np.zeros((size, size), dtype=np.float32)
        for start in range(0, n, IMAGE_CHUNK):
            chunk = centred(start).astype(np.float32)
            covariance += chunk.T @ chunk

        def apply(vectors: np.ndarray) -> np.ndarray:
            return (covariance @ vectors.astype(np.float32)).astype(np.float64) / (n - 1)

        variance, components = leading_eigenpairs(apply, size, k, seed=seed)
    del covariance
    components *= np.sign(components[np.argmax(np.abs(components), axis=0), np.arange(k)])
    scale = 1.0 / np.sqrt(variance)
    return np.concatenate([(centred(start) @ components) * scale for start in range(0, n, IMAGE_CHUNK)])


class _FoldedRidge:
    """The per-fold ridge solutions of :func:`cv_ridge_predict` for fixed features, applied to any targets.

    The features' per-fold sums and the Cholesky factor of each fold's regularised Gram matrix are computed
    once; :meth:`predict` then costs one pass over the targets, so targets can come in batches of columns.
    """

    def __init__(self, features: np.ndarray, *, alpha: float, n_splits: int, seed: int) -> None:
        # ridge with an intercept is unchanged by shifting features or targets; centring them on their overall
        # means keeps the per-fold sums below free of cancellation
        x = np.asarray(features, dtype=np.float64)
        x = x - x.mean(axis=0)
        self.n = len(x)
        self.folds = [test for _, test in KFold(n_splits, shuffle=True, random_state=seed).split(x)]
        self.x_folds = [x[test] for test in self.folds]
        x_sums = [x_fold.sum(axis=0) for x_fold in self.x_folds]
        grams = [x_fold.T @ x_fold for x_fold in self.x_folds]
        x_total, gram_total = sum(x_sums), sum(grams)
        self.x_means, self.factors = [], []
        for test, x_sum, gram in zip(self.folds, x_sums, grams):
            n = self.n - len(test)
            x_mean = (x_total - x_sum) / n
            train_gram = (gram_total - gram) - n * np.outer(x_mean, x_mean) + alpha * np.eye(x.shape[1])
            self.x_means.append(x_mean)
            self.factors.append(scipy.linalg.cho_factor(train_gram))

    def predict(self, targets: np.ndarray) -> np.ndarray:
        """Out-of-fold predictions of ``targets`` (sample, target), float64 of the same shape."""
        y = np.asarray(targets, dtype=np.float64)
        offset = y.mean(axis=0)
        y = y - offset
        parts = [(y[test].sum(axis=0), x_fold.T @ y[test]) for test, x_fold in zip(self.folds, self.x_folds)]
        y_total, cross_total = sum(part[0] for part in parts), sum(part[1] for part in parts)
        predicted = np.empty_like(y)
        for test, x_fold, x_mean, factor, (y_sum, cross) in zip(self.folds, self.x_folds, self.x_means, self.factors,
                                                                 parts):
            n = self.n - len(test)
            y_mean = (y_total - y_sum) / n
            weights = scipy.linalg.cho_solve(factor, (cross_total - cross) - n * np.outer(x_mean, y_mean))
            predicted[test] = (x_fold - x_mean) @ weights + y_mean
        return predicted + offset


def cv_ridge_predict(features: np.ndarray, targets: np.ndarray, *, alpha: float = 1.0, n_splits: int = 5,
                     seed: int = SEED) -> np.ndarray:
    """Out-of-fold predictions of ridge regression (with intercept), all target columns at once.

    Equal, to rounding, to ``cross_val_predict(Ridge(alpha), features, targets, cv=KFold(n_splits, shuffle=True,
    random_state=seed))``: the folds are scikit-learn's, and each fold's ridge solution solves the same normal
    equations as ``Ridge``'s Cholesky solver. They are built from per-fold sums (Gram matrix and cross
    products, one pass over the targets), so the cost grows with the target columns only through that one
    pass; the permutation tests fit hundreds of columns per unit. The folds depend on ``seed`` and the
    number of samples only, so calls with the same samples share them.

    Parameters
    ----------
    features : ndarray, shape (sample, feature)
    targets : ndarray, shape (sample,) or (sample, target)

    Returns
    -------
    ndarray of float64, shape of ``targets``
    """
    targets = np.asarray(targets, dtype=np.float64)
    ridge = _FoldedRidge(features, alpha=alpha, n_splits=n_splits, seed=seed)
    return ridge.predict(targets.reshape(len(targets), -1)).reshape(targets.shape)


def pooled_r2(targets: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """R^2 of pooled out-of-fold predictions against the overall mean, per target column.

    ``r2_score(targets, predicted, multioutput="raw_values")``, NaN (not 0) for a constant column.

    Parameters
    ----------
    targets, predicted : ndarray, shape (sample, target)

    Returns
    -------
    ndarray, shape (target,)
    """
    total = np.sum((targets - targets.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - np.sum((targets - predicted) ** 2, axis=0) / total


PERMUTATION_BATCH = 64
"""Permutations drawn and fitted at a time by :func:`permutation_fits`, at most."""
PERMUTATION_BATCH_BYTES = 4 * 2**20
"""Bytes of one (sample, batch) float64 array of :func:`permutation_fits` at most: a batch fewer than
:data:`PERMUTATION_BATCH` where the probes are many (a fit holds about six such arrays; 64 permutations of
50,000 probes were 26 MB each)."""


def permutation_batch(n: int) -> int:
    """Permutations of ``n`` samples fitted at a time: :data:`PERMUTATION_BATCH`, fewer where a (sample, batch)
    float64 array would exceed :data:`PERMUTATION_BATCH_BYTES` (at least 1)."""
    return max(1, min(PERMUTATION_BATCH, PERMUTATION_BATCH_BYTES // (8 * max(n, 1))))


def permutation_batches(n: int, n_permutations: int, seed: int, batch: int = PERMUTATION_BATCH) -> Iterator[np.ndarray]:
    """``n_permutations`` permutations of ``range(n)``, one after another from ``numpy.random.default_rng(seed)``,
    ``batch`` at a time (in order: the same permutations whatever the batch).

    Yields
    ------
    ndarray of int64, shape (min(batch, rest), n)
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1; got {batch}")
    rng = np.random.default_rng(seed)
    for start in range(0, n_permutations, batch):
        yield np.stack([rng.permutation(n) for _ in range(min(batch, n_permutations - start))])


def permutation_fits(feature_sets: Sequence[np.ndarray], values: np.ndarray, *, alpha: float = 1.0, n_splits: int = 5,
                     n_permutations: int = N_PERMUTATIONS, seed: int = SEED,
                     batch: int | None = None) -> list[tuple[np.ndarray, float, float]]:
    """:func:`permutation_fit` of the same ``values`` from each of several feature sets, on the same permutations.

    The permutations are drawn once, ``batch`` at a time (:func:`permutation_batches`), and each batch of
    permuted values is fitted from every feature set before the next is drawn, so memory holds (sample, batch)
    targets, not (sample, n_permutations) ones.

    Parameters
    ----------
    feature_sets : sequence of ndarray, each shape (sample, feature)
    values : ndarray, shape (sample,)
    batch : int, optional
        Permutations fitted at a time (default :func:`permutation_batch`); the results do not depend on it.

    Returns
    -------
    list of (predicted (sample,), r2, p_value), one per feature set
    """
    values = np.asarray(values)
    batch = permutation_batch(len(values)) if batch is None else batch
    ridges = [_FoldedRidge(features, alpha=alpha, n_splits=n_splits, seed=seed) for features in feature_sets]
    y = values.reshape(-1, 1)
    observed = [ridge.predict(y) for ridge in ridges]
    r2 = [float(pooled_r2(y, predicted)[0]) for predicted in observed]
    exceed = [0] * len(ridges)
    for indices in permutation_batches(len(values), n_permutations, seed, batch):
        permuted = values[indices].T
        for k, ridge in enumerate(ridges):
            exceed[k] += int(np.sum(pooled_r2(permuted, ridge.predict(permuted)) >= r2[k]))
    return [(predicted[:, 0], observed_r2, float((1 + count) / (1 + n_permutations)))
            for predicted, observed_r2, count in zip(observed, r2, exceed)]


def permutation_fit(features: np.ndarray, values: np.ndarray, *, alpha: float = 1.0, n_splits: int = 5,
                    n_permutations: int = N_PERMUTATIONS, seed: int = SEED) -> tuple[np.ndarray, float, float]:
    """Out-of-fold predictions of ``values`` from ``features``, their CV R^2 and its permutation p-value.

    p = (1 + #{R^2 of permuted values >= observed}) / (1 + n_permutations), so p >= 1 / (1 + n_permutations);
    permutations drawn with ``numpy.random.default_rng(seed)``, folds fixed. The permuted targets are extra
    columns of the same ridge fits (:func:`cv_ridge_predict`'s per-fold solutions, one factorisation per fold),
    fitted :func:`permutation_batch` at a time (:func:`permutation_fits`); scikit-learn's
    ``permutation_test_score`` would average per-fold R^2 instead of scoring the pooled predictions.

    Parameters
    ----------
    features : ndarray, shape (sample, feature)
    values : ndarray, shape (sample,)

    Returns
    -------
    (predicted (sample,), r2, p_value)
    """
    return permutation_fits([features], values, alpha=alpha, n_splits=n_splits, n_permutations=n_permutations,
                            seed=seed)[0]


def paired_r2_difference(values: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray, *,
                         n_bootstrap: int = N_BOOTSTRAP, seed: int = SEED) -> tuple[float, float, float]:
    """R^2(a) - R^2(b) of two sets of predictions of the same values, with a paired bootstrap 95 % interval.

    The samples are resampled with replacement ``n_bootstrap`` times (``default_rng(seed).integers(0, n, (n_bootstrap,
    n))``), the same resample for both predictions; the interval is the 2.5 and 97.5 percentiles of the
    resampled differences. Predictions are held fixed (out-of-fold predictions are not refitted). Each
    resample's sums of squares are one product of its multiplicities, drawn and counted 64 resamples at a time
    (:func:`actlab.analysis.blocks.bootstrap_count_batches`).

    Parameters
    ----------
    values, predicted_a, predicted_b : ndarray, shape (sample,)

    Returns
    -------
    (difference, low, high) : floats
    """
    y = np.asarray(values, dtype=np.float64)
    a, b = np.asarray(predicted_a, dtype=np.float64), np.asarray(predicted_b, dtype=np.float64)
    observed = float(r2_score(y, a) - r2_score(y, b))
    # total sum of squares of each resample about its own mean: sum c y0^2 - (sum c y0)^2 / n, with y0 centred on
    # the mean of all samples to keep the subtraction small; the resamples' counts a batch at a time
    centred = y - y.mean()
    columns = np.column_stack([centred, centred ** 2, (y - a) ** 2, (y - b) ** 2])
    batches = [counts @ columns for counts in blocks.bootstrap_count_batches(len(y), n_bootstrap, seed)]
    sums = np.concatenate(batches) if batches else np.zeros((0, 4))
    total = sums[:, 1] - sums[:, 0] ** 2 / len(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        difference = (sums[:, 3] - sums[:, 2]) / total
    low, high = np.nanpercentile(difference, [2.5, 97.5]) if np.isfinite(difference).any() else (np.nan, np.nan)
    return observed, float(low), float(high)


def explained_by(difference_low: float, difference_high: float, input_p_value: float, output_p_value: float,
                 input_r2: float = np.inf, output_r2: float = np.inf, alpha: float = 0.05) -> str:
    """Verdict of the input-versus-output comparison of one unit (one test at ``alpha``; the summary's verdict
    also controls the false discovery rate over the four tests, :func:`actlab.analysis.pipeline.explained_verdict`).

    ``"input"`` when the 95 % interval of R^2_input - R^2_best_output lies above 0, ``input_p_value < alpha``
    and ``input_r2 > 0``; ``"output"`` when it lies below 0, the best output target's ``output_p_value < alpha``
    and its ``output_r2 > 0``; ``"undecided"`` otherwise (including NaN): a negative R^2 explains nothing.
    """
    if difference_low > 0 and input_p_value < alpha and input_r2 > 0:
        return "input"
    if difference_high < 0 and output_p_value < alpha and output_r2 > 0:
        return "output"
    return "undecided"


def correlation_ratio(values: np.ndarray, classes: np.ndarray) -> float:
    """eta^2: between-class over total sum of squares of ``values`` grouped by ``classes``."""
    values = np.asarray(values, dtype=np.float64)
    total = np.sum((values - values.mean()) ** 2)
    between = sum(np.sum(classes == c) * (values[classes == c].mean() - values.mean()) ** 2 for c in np.unique(classes))
    return float(between / total) if total > 0 else np.nan


def explain_unit(values: xr.DataArray, probes: xr.Dataset, predicted: xr.DataArray | None = None, *,
                 n_components: int = 50, alpha: float = 1.0, n_splits: int = 5, n_permutations: int = N_PERMUTATIONS,
                 n_bootstrap: int = N_BOOTSTRAP, seed: int = SEED, input_features: np.ndarray | None = None) -> xr.Dataset:
    """How much of a unit's per-sample magnitude is explained by input versus output patterns.

    Parameters
    ----------
    values : xr.DataArray, dims (sample,)
        Per-sample |activation| of the unit.
    probes : xr.Dataset
        ``run.probes``: ``image`` (sample, channel, height, width) and coords ``label``, ``original_label``.
    predicted : xr.DataArray, dims (sample,), optional
        Predicted class of each probe (argmax of the output layer).
    input_features : ndarray (sample, feature), optional
        Precomputed :func:`image_features` (computed from ``probes`` when omitted).

    Returns
    -------
    xr.Dataset
        ``input_r2``, ``input_p_value`` (scalars); ``output_r2``, ``output_eta2``, ``output_p_value``
        (target,) with ``target`` = :data:`OUTPUT_TARGETS` (NaN for ``predicted`` when not given);
        ``best_output_target`` (str), ``r2_difference``, ``r2_difference_low``, ``r2_difference_high``
        (paired bootstrap of input R^2 - best output R^2, :func:`paired_r2_difference`) and ``explained_by``
        (:func:`explained_by`), scalars. Attrs ``p_floor`` = 1 / (1 + n_permutations).
    """
    if values.dims != ("sample",):
        raise ValueError(f"values must have dims ('sample',); got {values.dims}")
    y = np.asarray(values.values, dtype=np.float64)
    if input_features is None:
        input_features = image_features(probes["image"].values, n_components=n_components, seed=seed)
    targets = {"label": probes["label"].values, "original_label": probes["original_label"].values,
               "predicted": None if predicted is None else np.asarray(predicted.values)}
    given = [name for name in OUTPUT_TARGETS if targets[name] is not None]
    onehots = [(targets[name][:, None] == np.unique(targets[name])[None, :]).astype(np.float64) for name in given]
    # the input and every output target fitted on the same permutations, drawn once, a batch at a time
    fits = permutation_fits([input_features, *onehots], y, alpha=alpha, n_splits=n_splits,
                            n_permutations=n_permutations, seed=seed)
    input_predicted, input_r2, input_p = fits[0]
    r2, eta2, p, output_predicted = [], [], [], {}
    for name in OUTPUT_TARGETS:
        if name not in given:
            r2.append(np.nan), eta2.append(np.nan), p.append(np.nan)
            continue
        output_predicted[name], observed, p_value = fits[1 + given.index(name)]
        r2.append(observed), eta2.append(correlation_ratio(y, targets[name])), p.append(p_value)
    best = OUTPUT_TARGETS[int(np.argmax(np.where(np.isnan(r2), -np.inf, r2)))]
    difference, low, high = paired_r2_difference(y, input_predicted, output_predicted[best], n_bootstrap=n_bootstrap,
                                                 seed=seed)
    verdict = explained_by(low, high, input_p, p[OUTPUT_TARGETS.index(best)], input_r2, r2[OUTPUT_TARGETS.index(best)])
    p_floor = 1.0 / (1 + n_permutations)
    return xr.Dataset(
        {
            "input_r2": ((), input_r2, {"long_name": "CV R^2 of ridge on image principal components", "units": "1"}),
            "input_p_value": ((), input_p, {"long_name": f"permutation p-value of input_r2 ({n_permutations} permutations)",
                                            "units": "1", "p_floor": p_floor}),
            "output_r2": (("target",), r2, {"long_name": "CV R^2 of ridge on the one-hot target", "units": "1"}),
            "output_eta2": (("target",), eta2, {"long_name": "correlation ratio eta^2 (in-sample)", "units": "1"}),
            "output_p_value": (("target",), p, {"long_name": f"permutation p-value of output_r2 ({n_permutations} permutations)",
                                                "units": "1", "p_floor": p_floor}),
            "best_output_target": ((), best, {"long_name": "output target with the largest output_r2"}),
            "r2_difference": ((), difference, {"long_name": "input_r2 - output_r2 of best_output_target", "units": "1"}),
            "r2_difference_low": ((), low, {"long_name": f"2.5 % point of r2_difference, paired bootstrap over samples "
                                                         f"({n_bootstrap} resamples)", "units": "1"}),
            "r2_difference_high": ((), high, {"long_name": f"97.5 % point of r2_difference, paired bootstrap over samples "
                                                           f"({n_bootstrap} resamples)", "units": "1"}),
            "explained_by": ((), verdict, {"long_name": "input if the 95 % interval of r2_difference lies above 0, "
                                                        "input_p_value < 0.05 and input_r2 > 0, output if below 0 and "
                                                        "the best target's p-value < 0.05 and R^2 > 0, else undecided"}),
        },
        coords={"target": list(OUTPUT_TARGETS)},
        attrs={"alpha": alpha, "n_splits": n_splits, "n_permutations": n_permutations, "n_bootstrap": n_bootstrap,
               "seed": seed, "p_floor": p_floor, "n_input_components": int(input_features.shape[1])},
    )
