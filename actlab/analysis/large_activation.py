"""Large activations: per-unit magnitudes, a single dominant unit, and what explains its size."""

from __future__ import annotations

import numpy as np
import xarray as xr
from sklearn.decomposition import PCA as SklearnPCA
from sklearn.model_selection import KFold

from actlab.analysis import blocks

OUTPUT_TARGETS: tuple[str, ...] = ("label", "original_label", "predicted")
"""Output patterns against which a unit's per-sample magnitude is explained."""


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


def dominant_unit(magnitudes: xr.Dataset, *, n_top: int = 5, min_ratio_to_median: float = 10.0,
                  min_ratio_to_second: float = 3.0) -> xr.Dataset:
    """Top units per epoch and detection of a single dominant unit.

    A layer has a dominant unit at an epoch when its largest ``mean_abs`` is at
    least ``min_ratio_to_median`` x the median ``mean_abs`` over units and at
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
        ``median_mean_abs``, ``dominant`` (epoch); ``dominant_unit``, ``is_dominant``,
        ``emergence_epoch`` (scalars); ``unit_mean_abs``, ``unit_max_abs``, ``unit_ratio_to_median`` (epoch).
    """
    mean_abs = np.asarray(magnitudes["mean_abs"].transpose("epoch", "unit").values, dtype=float)
    max_abs = np.asarray(magnitudes["max_abs"].transpose("epoch", "unit").values, dtype=float)
    epochs = magnitudes["epoch"].values
    units = magnitudes["unit"].values
    top = np.stack([blocks.top_units(m, n_top) for m in mean_abs])
    rows = np.arange(len(epochs))[:, None]
    top_mean = mean_abs[rows, top]
    median = np.median(mean_abs, axis=1)
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
            "median_mean_abs": (ed, median, {"long_name": "median over units of mean |activation|", "units": "1"}),
            "ratio_to_median": (er, ratio, {"long_name": "top mean |activation| / layer median", "units": "1"}),
            "dominant": (ed, dominant, {"long_name": (f"single dominant unit: rank 0 >= {min_ratio_to_median:g} x median "
                                                      f"and >= {min_ratio_to_second:g} x rank 1")}),
            "dominant_unit": ((), units[chosen], {"long_name": "rank-0 unit at the last epoch"}),
            "is_dominant": ((), bool(dominant[-1]), {"long_name": "dominant at the last epoch"}),
            "emergence_epoch": ((), emergence, {"long_name": "first epoch from which dominant_unit stays dominant",
                                                "units": "epoch"}),
            "unit_mean_abs": (ed, mean_abs[:, chosen], {"long_name": "mean |activation| of dominant_unit", "units": "1"}),
            "unit_max_abs": (ed, max_abs[:, chosen], {"long_name": "max |activation| of dominant_unit", "units": "1"}),
            "unit_ratio_to_median": (ed, unit_ratio, {"long_name": "dominant_unit mean |activation| / layer median",
                                                      "units": "1"}),
        },
        coords={"epoch": epochs, "rank": np.arange(top.shape[1])},
        attrs={"min_ratio_to_median": min_ratio_to_median, "min_ratio_to_second": min_ratio_to_second},
    )


def image_features(images: np.ndarray, *, n_components: int = 50, seed: int = 0) -> np.ndarray:
    """Whitened principal components of probe images scaled to [0, 1] (float32, randomized SVD, 2 power iterations).

    Parameters
    ----------
    images : ndarray of uint8, shape (sample, channel, height, width)

    Returns
    -------
    ndarray of float64, shape (sample, min(n_components, sample - 1, pixels))
    """
    flat = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / np.float32(255.0)
    k = min(n_components, len(flat) - 1, flat.shape[1])
    pca = SklearnPCA(n_components=k, whiten=True, svd_solver="randomized", iterated_power=2, random_state=seed)
    return pca.fit_transform(flat).astype(np.float64)


def cv_ridge_r2(features: np.ndarray, targets: np.ndarray, *, alpha: float = 1.0, n_splits: int = 5,
                seed: int = 0) -> np.ndarray:
    """Cross-validated R^2 of ridge regression (with intercept), one per target column.

    Out-of-fold predictions from ``KFold(n_splits, shuffle=True, random_state=seed)`` are pooled and
    scored with R^2 against the overall mean, like ``r2_score(y, cross_val_predict(Ridge(alpha), X, y))``.

    Parameters
    ----------
    features : ndarray, shape (sample, feature)
    targets : ndarray, shape (sample, target)

    Returns
    -------
    ndarray, shape (target,)
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    predicted = np.empty_like(y)
    eye = alpha * np.eye(x.shape[1])
    for train, test in KFold(n_splits, shuffle=True, random_state=seed).split(x):
        x_mean, y_mean = x[train].mean(axis=0), y[train].mean(axis=0)
        xc = x[train] - x_mean
        coef = np.linalg.solve(xc.T @ xc + eye, xc.T @ (y[train] - y_mean))
        predicted[test] = (x[test] - x_mean) @ coef + y_mean
    total = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - np.sum((y - predicted) ** 2, axis=0) / total


def permutation_r2(features: np.ndarray, values: np.ndarray, *, alpha: float = 1.0, n_splits: int = 5,
                   n_permutations: int = 199, seed: int = 0) -> tuple[float, float]:
    """CV R^2 of ``values`` on ``features`` and its permutation p-value.

    p = (1 + #{R^2 of permuted values >= observed}) / (1 + n_permutations); permutations drawn
    with ``numpy.random.default_rng(seed)``, folds fixed.
    """
    rng = np.random.default_rng(seed)
    columns = [values] + [values[rng.permutation(len(values))] for _ in range(n_permutations)]
    r2 = cv_ridge_r2(features, np.column_stack(columns), alpha=alpha, n_splits=n_splits, seed=seed)
    return float(r2[0]), float((1 + np.sum(r2[1:] >= r2[0])) / (1 + n_permutations))


def correlation_ratio(values: np.ndarray, classes: np.ndarray) -> float:
    """eta^2: between-class over total sum of squares of ``values`` grouped by ``classes``."""
    values = np.asarray(values, dtype=np.float64)
    total = np.sum((values - values.mean()) ** 2)
    between = sum(np.sum(classes == c) * (values[classes == c].mean() - values.mean()) ** 2 for c in np.unique(classes))
    return float(between / total) if total > 0 else np.nan


def explain_unit(values: xr.DataArray, probes: xr.Dataset, predicted: xr.DataArray | None = None, *,
                 n_components: int = 50, alpha: float = 1.0, n_splits: int = 5, n_permutations: int = 199,
                 seed: int = 0, input_features: np.ndarray | None = None) -> xr.Dataset:
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
        (target,) with ``target`` = :data:`OUTPUT_TARGETS` (NaN for ``predicted`` when not given).
    """
    if values.dims != ("sample",):
        raise ValueError(f"values must have dims ('sample',); got {values.dims}")
    y = np.asarray(values.values, dtype=np.float64)
    if input_features is None:
        input_features = image_features(probes["image"].values, n_components=n_components, seed=seed)
    options = dict(alpha=alpha, n_splits=n_splits, n_permutations=n_permutations, seed=seed)
    input_r2, input_p = permutation_r2(input_features, y, **options)
    targets = {"label": probes["label"].values, "original_label": probes["original_label"].values,
               "predicted": None if predicted is None else np.asarray(predicted.values)}
    r2, eta2, p = [], [], []
    for name in OUTPUT_TARGETS:
        classes = targets[name]
        if classes is None:
            r2.append(np.nan), eta2.append(np.nan), p.append(np.nan)
            continue
        onehot = (classes[:, None] == np.unique(classes)[None, :]).astype(np.float64)
        observed, p_value = permutation_r2(onehot, y, **options)
        r2.append(observed), eta2.append(correlation_ratio(y, classes)), p.append(p_value)
    return xr.Dataset(
        {
            "input_r2": ((), input_r2, {"long_name": "CV R^2 of ridge on image principal components", "units": "1"}),
            "input_p_value": ((), input_p, {"long_name": f"permutation p-value of input_r2 ({n_permutations} permutations)"}),
            "output_r2": (("target",), r2, {"long_name": "CV R^2 of ridge on the one-hot target", "units": "1"}),
            "output_eta2": (("target",), eta2, {"long_name": "correlation ratio eta^2 (in-sample)", "units": "1"}),
            "output_p_value": (("target",), p, {"long_name": f"permutation p-value of output_r2 ({n_permutations} permutations)"}),
        },
        coords={"target": list(OUTPUT_TARGETS)},
        attrs={"alpha": alpha, "n_splits": n_splits, "n_permutations": n_permutations, "seed": seed,
               "n_input_components": int(input_features.shape[1])},
    )
