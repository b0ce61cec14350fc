"""Prediction-path attribution: does a test sample align with the clean or the noisy signal of its class?

The clean signal of class c is the mean activation of clean training probes
labelled c; the noisy signal is the mean of noisy training probes whose
ASSIGNED label is c (the network is trained to send those samples to c, so
that mean is what pushes a prediction towards c). Both are taken at the same
epoch and layer as the test activation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from actlab.analysis import blocks
from actlab.analysis.blocks import N_BOOTSTRAP, PATH_SOURCES, SEED

RELEVANT = ("predicted", "label")
"""Classes whose signals can be compared; the first is the default."""
PATH_PERMUTATIONS = 199
"""Default permutations of the path-attribution null (:func:`null_clean_paths`)."""


def predictions(output: xr.DataArray) -> xr.DataArray:
    """Predicted class: argmax over units of the output layer.

    Parameters
    ----------
    output : xr.DataArray, dims (epoch, sample, unit)
        Output-layer activations (logits).

    Returns
    -------
    xr.DataArray of int64, dims (epoch, sample) (lazy for dask input)
    """
    output = blocks.check_activations(output)
    data = blocks.map_epochs(output, lambda x: np.argmax(x, axis=1), (output.sizes["sample"],), np.int64)
    coords = {"epoch": output["epoch"].values, **{k: v.variable for k, v in output["sample"].coords.items()}}
    return xr.DataArray(data, dims=("epoch", "sample"), coords=coords,
                        name="predicted", attrs={"long_name": "predicted class (argmax of the output layer)"})


def path_cosines(act: xr.DataArray, n_classes: int | None = None) -> xr.DataArray:
    """Cosine of each test probe to every clean and noisy (assigned label) class mean of the same epoch.

    Parameters
    ----------
    act : xr.DataArray, dims (epoch, sample, unit)

    Returns
    -------
    xr.DataArray of float32, dims (epoch, source, sample, class); ``sample`` = test probes only
    """
    act = blocks.check_activations(act)
    codes = blocks.codes_of(act)
    n_classes = n_classes or blocks.infer_n_classes(act)
    counts = blocks.group_counts(codes, n_classes)
    test_index = np.flatnonzero(act["group"].values == "test")
    data = blocks.map_epochs(
        act, lambda x: blocks.path_cosines(x, blocks.group_sums(x, codes, n_classes), counts, test_index),
        (len(PATH_SOURCES), len(test_index), n_classes), np.float32,
    )
    return cosines_dataarray(data, act["epoch"].values, act["sample"].isel(sample=test_index), n_classes)


def null_clean_paths(act: xr.DataArray, n_permutations: int = PATH_PERMUTATIONS, seed: int = SEED,
                     n_classes: int | None = None) -> xr.DataArray:
    """Clean path of each test probe to every class under permutations of the training probes' clean/noisy membership.

    Select the few epochs wanted first (``act.sel(epoch=[...])``): each costs about ``n_permutations`` times
    the path cosines of one epoch.

    Parameters
    ----------
    act : xr.DataArray, dims (epoch, sample, unit)

    Returns
    -------
    xr.DataArray of int8, dims (epoch, permutation, sample, class); ``sample`` = test probes; 1 clean, 0 noisy,
    -1 undefined (see :func:`actlab.analysis.blocks.null_clean_paths`)
    """
    act = blocks.check_activations(act)
    codes = blocks.codes_of(act)
    n_classes = n_classes or blocks.infer_n_classes(act)
    test_index = np.flatnonzero(act["group"].values == "test")
    plan = blocks.BlockPlan(codes=codes, n_classes=n_classes, test_index=test_index, n_top=1, seed=seed,
                            null_permutations=n_permutations)
    data = blocks.map_epochs(act, lambda x: blocks.null_clean_paths(x, plan),
                             (n_permutations, len(test_index), n_classes), np.int8)
    test = act["sample"].isel(sample=test_index)
    return xr.DataArray(data, dims=("epoch", "permutation", "sample", "class"),
                        coords={"epoch": act["epoch"].values, "permutation": np.arange(n_permutations),
                                "class": np.arange(n_classes), **{k: v.variable for k, v in test.coords.items()}},
                        name="null_clean_path",
                        attrs={"long_name": "clean path (1), noisy path (0), undefined (-1) under permuted training probes"})


def cosines_dataarray(data, epochs: np.ndarray, samples: xr.DataArray, n_classes: int) -> xr.DataArray:
    """Label an (epoch, source, test sample, class) array of path cosines; ``samples`` is the test ``sample`` coord."""
    return xr.DataArray(
        data,
        dims=("epoch", "source", "sample", "class"),
        coords={"epoch": epochs, "source": list(PATH_SOURCES), "class": np.arange(n_classes),
                **{name: coord.variable for name, coord in samples.coords.items()}},
        name="path_cosine",
        attrs={"long_name": "cosine of a test activation to a class mean of the same epoch", "units": "1"},
    )


def attribute_paths(cosines: xr.DataArray, predicted: xr.DataArray, relevant: str = RELEVANT[0]) -> xr.Dataset:
    """Attribute each test prediction to the clean or the noisy path.

    Parameters
    ----------
    cosines : xr.DataArray, dims (epoch, source, sample, class)
        From :func:`path_cosines` (test probes, with coord ``label``).
    predicted : xr.DataArray, dims (epoch, sample)
        Predicted classes (any superset of the test probes).
    relevant : {"predicted", "label"}
        Class whose signals are compared.

    Returns
    -------
    xr.Dataset
        ``predicted``, ``correct``, ``relevant_class`` (epoch, sample); ``cos_clean``, ``cos_noisy``,
        ``clean_path`` (epoch, sample); ``clean_share_correct``, ``clean_share_wrong``, ``split``
        (= correct - wrong share), ``n_correct``, ``n_wrong`` (epoch).
    """
    if relevant not in RELEVANT:
        raise ValueError(f"relevant must be one of {RELEVANT}; got {relevant!r}")
    cosines = cosines.transpose("epoch", "source", "sample", "class")
    predicted = predicted.sel(sample=cosines["sample"].values, epoch=cosines["epoch"].values).transpose("epoch", "sample")
    pred = np.asarray(predicted.values, dtype=np.int64)
    label = np.asarray(cosines["label"].values, dtype=np.int64)
    cls = pred if relevant == "predicted" else np.broadcast_to(label, pred.shape)
    values = np.asarray(cosines.values, dtype=np.float64)
    picked = np.take_along_axis(values, np.broadcast_to(cls[:, None, :, None], values.shape[:3] + (1,)), axis=3)[..., 0]
    cos_clean, cos_noisy = picked[:, PATH_SOURCES.index("clean")], picked[:, PATH_SOURCES.index("noisy_by_assigned")]
    defined = np.isfinite(cos_clean) & np.isfinite(cos_noisy)
    clean_path = np.where(defined, (cos_clean >= cos_noisy).astype(float), np.nan)
    correct = pred == label[None, :]

    def share(mask: np.ndarray) -> np.ndarray:
        numerator = np.nansum(np.where(mask, clean_path, np.nan), axis=1)
        denominator = np.sum(mask & defined, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)

    es, e = ("epoch", "sample"), ("epoch",)
    out = xr.Dataset(
        {
            "predicted": (es, pred, {"long_name": "predicted class (argmax of the output layer)"}),
            "correct": (es, correct, {"long_name": "prediction equals label"}),
            "relevant_class": (es, cls.copy(), {"long_name": f"class whose signals are compared ({relevant})"}),
            "cos_clean": (es, cos_clean, {"long_name": "cosine to the clean mean of the relevant class", "units": "1"}),
            "cos_noisy": (es, cos_noisy, {"long_name": "cosine to the noisy mean (by assigned label) of the relevant class",
                                          "units": "1"}),
            "clean_path": (es, clean_path, {"long_name": "1 = clean path (cos_clean >= cos_noisy), 0 = noisy, NaN = undefined"}),
            "clean_share_correct": (e, share(correct), {"long_name": "share of clean-path attribution, correct predictions",
                                                         "units": "1"}),
            "clean_share_wrong": (e, share(~correct), {"long_name": "share of clean-path attribution, wrong predictions",
                                                        "units": "1"}),
            "split": (e, share(correct) - share(~correct), {"long_name": "clean_share_correct - clean_share_wrong",
                                                            "units": "1"}),
            "n_correct": (e, correct.sum(axis=1), {"long_name": "correctly predicted test probes"}),
            "n_wrong": (e, (~correct).sum(axis=1), {"long_name": "wrongly predicted test probes"}),
        },
        coords={"epoch": cosines["epoch"].values, **{k: v.variable for k, v in cosines["sample"].coords.items()}},
        attrs={"relevant": relevant, "noisy_signal": "noisy training probes grouped by assigned label"},
    )
    return out


def path_attribution(act: xr.DataArray, predicted: xr.DataArray, relevant: str = RELEVANT[0],
                     n_classes: int | None = None) -> xr.Dataset:
    """Clean- versus noisy-path attribution of the test probes in one layer.

    Parameters
    ----------
    act : xr.DataArray, dims (epoch, sample, unit)
    predicted : xr.DataArray, dims (epoch, sample)
        E.g. ``predictions(run.layer("output"))``.

    Returns
    -------
    xr.Dataset, see :func:`attribute_paths`
    """
    return attribute_paths(path_cosines(act, n_classes), predicted, relevant)


def weighted_splits(weights: np.ndarray, clean_path: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Clean share of the correct minus that of the wrong predictions, with sample weights.

    Parameters
    ----------
    weights : ndarray, shape (draw, sample)
        Multiplicity of each test probe (ones for the plain split, resample counts for a bootstrap). The
        numerators and denominators of both shares are one product in float32 when ``weights`` are float32
        (integer counts: every sum is an integer below 2**24, exact), else in float64.
    clean_path : ndarray, shape (path, sample)
        1 (clean), 0 (noisy) or NaN (undefined, left out).
    correct : ndarray of bool, shape (sample,)

    Returns
    -------
    ndarray of float64, shape (draw, path); NaN where a share has no defined probe
    """
    weights = np.asarray(weights)
    dtype = np.float32 if weights.dtype == np.float32 else np.float64
    return _shares(weights.astype(dtype, copy=False) @ _split_columns(clean_path, correct, dtype))


def _split_columns(clean_path: np.ndarray, correct: np.ndarray, dtype: Any) -> np.ndarray:
    """The (sample, 4 * path) columns of :func:`weighted_splits`: clean and defined, among the correct then the
    wrong predictions; built in ``dtype`` (the values are 0 and 1, exact in any float), a quarter at a time."""
    values = np.asarray(clean_path).astype(dtype, copy=False)
    n_paths, n_samples = values.shape
    defined = np.isfinite(values)
    filled = np.where(defined, values, dtype(0))
    columns = np.empty((n_samples, 4 * n_paths), dtype=dtype)
    for k, (part, among) in enumerate([(filled, correct), (defined, correct), (filled, ~correct), (defined, ~correct)]):
        np.multiply(part, among, out=columns[:, k * n_paths:(k + 1) * n_paths].T, casting="unsafe")
    return columns


def _shares(products: np.ndarray) -> np.ndarray:
    """(draw, path) splits from the (draw, 4 * path) products of weights and :func:`_split_columns`."""
    products = products.astype(np.float64)
    n_paths = products.shape[1] // 4
    numerator_correct, denominator_correct, numerator_wrong, denominator_wrong = (
        products[:, k * n_paths:(k + 1) * n_paths] for k in range(4))

    def share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)

    return share(numerator_correct, denominator_correct) - share(numerator_wrong, denominator_wrong)


def _nan_mean(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """``np.nanmean`` (the same sums and counts), NaN for an all-NaN slice without a warning."""
    kept = ~np.isnan(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(np.where(kept, x, 0.0), axis=axis) / np.sum(kept, axis=axis, dtype=np.intp)


def _nan_percentiles(x: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.nanpercentile`` of a 1-D ``x`` (the percentiles of its non-NaN values), NaN without a warning when all are NaN."""
    kept = x[~np.isnan(x)]
    return np.percentile(kept, q) if kept.size else np.full(len(q), np.nan)


def bootstrap_counts(n: int, n_bootstrap: int, seed: int = SEED) -> np.ndarray:
    """Multiplicity of each of ``n`` samples in each of ``n_bootstrap`` resamples with replacement, all at once.

    The rows of :func:`actlab.analysis.blocks.bootstrap_count_batches` (``default_rng(seed).integers(0, n,
    (n_bootstrap, n))`` counted), stacked in the smallest unsigned integer type that holds the largest count
    (uint8 in practice: 999 resamples of 50,000 samples are 50 MB, not the 200 MB of float32), so that the
    split nulls of every epoch and layer share one draw instead of drawing it again each.

    Parameters
    ----------
    n, n_bootstrap : int
        Samples (>= 1), resamples.
    seed : int

    Returns
    -------
    ndarray of unsigned int, shape (n_bootstrap, n); each row sums to ``n``
    """
    batches = [counts.astype(np.min_scalar_type(int(counts.max())))
               for counts in blocks.bootstrap_count_batches(n, n_bootstrap, seed, np.int64)]
    return np.concatenate(batches)


_Side = tuple[np.ndarray, np.ndarray, np.ndarray]
"""One side of :func:`_split_sides`: sample indices, columns, each path's pattern."""


def _split_sides(clean_path: np.ndarray, correct: np.ndarray, dtype: Any) -> list[_Side]:
    """What :func:`_sides_split` multiplies the weights with, for the correct then the wrong predictions: the
    side's sample indices, its (side sample, path + pattern) columns in ``dtype`` (each path's clean path with
    its undefined entries as 0, then each distinct pattern of defined samples among the paths: usually one, every
    sample defined) and each path's pattern. The values are 0 and 1, exact in any float."""
    values = np.asarray(clean_path).astype(dtype, copy=False)
    n_paths = values.shape[0]
    sides = []
    for among in (correct, ~correct):
        index = np.flatnonzero(among)
        part = values[:, index]
        defined = np.isfinite(part)
        found: dict[bytes, int] = {}  # pattern -> its number, in order of first appearance
        pattern_of = np.array([found.setdefault(row.tobytes(), len(found)) for row in np.packbits(defined, axis=1)],
                              dtype=np.intp)
        patterns = defined[np.unique(pattern_of, return_index=True)[1]]
        columns = np.empty((len(index), n_paths + len(patterns)), dtype=dtype)
        columns[:, :n_paths] = 0
        np.copyto(columns[:, :n_paths].T, part, where=defined)
        columns[:, n_paths:] = patterns.T
        sides.append((index, columns, pattern_of))
    return sides


def _sides_split(weights: np.ndarray, sides: list[_Side]) -> np.ndarray:
    """(draw, path) splits of the (draw, sample) ``weights`` (integer counts) from :func:`_split_sides`: each
    side's clean and defined sums are one product of the side's weights and columns (integers below 2**24 in
    float32, exact), the share of each path its clean sum over its pattern's defined sum, NaN where that is 0."""
    shares = []
    for index, columns, pattern_of in sides:
        products = (weights[:, index].astype(columns.dtype) @ columns).astype(np.float64)
        numerator, denominator = products[:, :len(pattern_of)], products[:, len(pattern_of):][:, pattern_of]
        with np.errstate(invalid="ignore", divide="ignore"):
            shares.append(np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan))
    return shares[0] - shares[1]


def split_null(clean_path: np.ndarray, null_clean_path: np.ndarray, correct: np.ndarray, *,
               n_bootstrap: int = N_BOOTSTRAP, seed: int = SEED, counts: np.ndarray | None = None,
               ) -> dict[str, np.ndarray | float]:
    """The observed split against its permutation null, at one epoch.

    Parameters
    ----------
    clean_path : ndarray, shape (sample,)
        Observed clean path of the test probes (1, 0, NaN).
    null_clean_path : ndarray, shape (permutation, sample)
        The same under each permutation of the training probes' clean/noisy membership.
    correct : ndarray of bool, shape (sample,)
    counts : ndarray, shape (n_bootstrap, sample), optional
        :func:`bootstrap_counts` ``(sample, n_bootstrap, seed)``, to share one draw between calls; drawn here
        when None.

    Returns
    -------
    dict
        ``split``, ``null`` (permutation,), ``null_mean``, ``null_low``, ``null_high`` (2.5 and 97.5 %
        points of the null), ``excess`` (= split - null_mean), ``excess_low``, ``excess_high`` (2.5 and 97.5 %
        points of the excess over ``n_bootstrap`` resamples of the test probes, drawn as
        ``default_rng(seed).integers(0, n, (n_bootstrap, n))``, the permutations held fixed) and ``p_value``
        = (1 + #{null >= split}) / (1 + permutations), one-sided.
    """
    n = len(clean_path)
    if counts is None:
        counts = bootstrap_counts(n, n_bootstrap, seed)
    elif counts.shape != (n_bootstrap, n):
        raise ValueError(f"counts must have shape (n_bootstrap, samples) = {(n_bootstrap, n)}; got {counts.shape}")
    # every product below sums counts of 0/1 columns: integers, exact in float32 below 2**24 samples, so the
    # correct and the wrong predictions are multiplied apart (half the products of one (sample, 4 * path) matrix
    # whose columns are zero on the other side) and a defined-sample pattern shared by several paths once. All-NaN
    # draws (no wrong prediction) give NaN, computed without NumPy's warnings, whose filters are not thread-safe
    # (the fused pass assembles layers on threads); the resamples a batch at a time
    dtype = np.float32 if n < 2**24 else np.float64
    observed_sides = _split_sides(clean_path[None], correct, dtype)
    null_sides = _split_sides(null_clean_path, correct, dtype)
    ones = np.ones((1, n), dtype=np.uint8)
    observed = float(_sides_split(ones, observed_sides)[0, 0])
    null = _sides_split(ones, null_sides)[0]
    excess = np.concatenate([np.zeros(0)] + [
        _sides_split(batch, observed_sides)[:, 0] - _nan_mean(_sides_split(batch, null_sides), axis=1)
        for batch in (counts[start:start + blocks.BOOTSTRAP_BATCH]
                      for start in range(0, n_bootstrap, blocks.BOOTSTRAP_BATCH))])
    null_mean = float(_nan_mean(null))
    null_low, null_high = _nan_percentiles(null, [2.5, 97.5])
    excess_low, excess_high = _nan_percentiles(excess, [2.5, 97.5])
    p_value = (1 + np.sum(null >= observed)) / (1 + len(null)) if np.isfinite(observed) else np.nan
    return {"split": observed, "null": null, "null_mean": null_mean, "null_low": float(null_low),
            "null_high": float(null_high), "excess": observed - null_mean, "excess_low": float(excess_low),
            "excess_high": float(excess_high), "p_value": float(p_value)}


def split_change_p_value(split: float, split_first: float, null: np.ndarray, null_first: np.ndarray) -> float | None:
    """Two-sided permutation p-value of the change of the split since the first recorded epoch.

    Both epochs' nulls use the same permutations of the training probes (:func:`null_clean_paths` draws them
    once per run), so ``null - null_first`` is the change under each permutation; p = (1 + #{|change_null -
    its mean| >= |change - that mean|}) / (1 + permutations).

    Parameters
    ----------
    split, split_first : float
    null, null_first : ndarray, shape (permutation,)

    Returns
    -------
    float or None (a NaN split or null)
    """
    change = split - split_first
    null_change = np.asarray(null, dtype=float) - np.asarray(null_first, dtype=float)
    if not np.isfinite(change) or not np.isfinite(null_change).all() or len(null_change) == 0:
        return None
    centre = null_change.mean()
    extreme = np.abs(null_change - centre) >= abs(change - centre) * (1 - 1e-12)
    return float((1 + np.sum(extreme)) / (1 + len(null_change)))


NULL_VARIABLES: dict[str, str] = {
    "split_null_mean": "mean of the split over permutations of the training probes' clean/noisy membership",
    "split_null_low": "2.5 % point of the permutation null of the split",
    "split_null_high": "97.5 % point of the permutation null of the split",
    "split_excess": "split - split_null_mean",
    "split_excess_low": "2.5 % point of split_excess, bootstrap over test probes",
    "split_excess_high": "97.5 % point of split_excess, bootstrap over test probes",
    "split_p_value": "one-sided permutation p-value of the split: (1 + #{null >= split}) / (1 + permutations)",
}
"""Variables of :func:`path_split_null` (epoch,), NaN at epochs without a null."""


def path_split_null(attributed: xr.Dataset, null_clean_path: xr.DataArray, *, n_bootstrap: int = N_BOOTSTRAP,
                    seed: int = SEED) -> xr.Dataset:
    """Permutation null and bootstrap interval of the path-attribution split of one layer.

    Parameters
    ----------
    attributed : xr.Dataset
        :func:`attribute_paths` output: ``clean_path``, ``correct``, ``relevant_class`` (epoch, sample).
    null_clean_path : xr.DataArray of int8, dims (epoch, permutation, sample, class)
        :func:`actlab.analysis.blocks.null_clean_paths` at some of ``attributed``'s epochs (same test samples).

    Returns
    -------
    xr.Dataset, dims (epoch, permutation) over ``attributed``'s epochs
        ``split_null`` (epoch, permutation) and the :data:`NULL_VARIABLES` (epoch,), NaN at epochs without
        a null; attrs ``null_epochs``, ``n_permutations``, ``n_bootstrap``, ``seed``, ``p_floor``.
    """
    def paths_at(epoch: Any) -> Callable[[], np.ndarray]:
        return lambda: null_clean_path.sel(epoch=epoch).transpose("permutation", "sample", "class").values

    nulls = {int(epoch): paths_at(epoch) for epoch in null_clean_path["epoch"].values}
    return path_split_null_of(attributed, nulls, null_clean_path.sizes["permutation"], n_bootstrap=n_bootstrap, seed=seed)


def path_split_null_of(attributed: xr.Dataset, nulls: Mapping[int, Callable[[], np.ndarray]], n_permutations: int, *,
                       n_bootstrap: int = N_BOOTSTRAP, seed: int = SEED, counts: np.ndarray | None = None) -> xr.Dataset:
    """:func:`path_split_null` from each epoch's null clean paths made on demand, one epoch held at a time.

    Parameters
    ----------
    attributed : xr.Dataset
        As :func:`path_split_null`.
    nulls : mapping of int -> callable
        Epoch -> a function returning that epoch's null clean paths, int8 (permutation, sample, class) as
        :func:`actlab.analysis.blocks.null_clean_paths` gives them, or (permutation, sample) at each sample's
        ``relevant_class`` of that epoch, as it gives them when told those classes (the fused pass keeps them
        packed, :class:`actlab.analysis.blocks.PackedPaths`).
    n_permutations : int
    counts : ndarray, shape (n_bootstrap, sample), optional
        :func:`bootstrap_counts` ``(sample, n_bootstrap, seed)`` of the test probes, to share one draw between
        layers; drawn here (once for every epoch) when None.

    Returns
    -------
    xr.Dataset
        As :func:`path_split_null`.
    """
    epochs = attributed["epoch"].values
    if counts is None and nulls:
        counts = bootstrap_counts(attributed.sizes["sample"], n_bootstrap, seed)
    out = {name: np.full(len(epochs), np.nan) for name in NULL_VARIABLES}
    null = np.full((len(epochs), n_permutations), np.nan)
    # the observed arrays read into NumPy once (epoch, sample), not a Dataset per epoch
    relevant, observed, correct = (attributed[name].transpose("epoch", "sample").values
                                   for name in ("relevant_class", "clean_path", "correct"))
    for epoch, made in nulls.items():
        i = int(np.flatnonzero(epochs == epoch)[0])
        cls = relevant[i].astype(np.int64)
        paths = made()
        picked = paths if paths.ndim == 2 else np.take_along_axis(
            paths, np.broadcast_to(cls[None, :, None], paths.shape[:2] + (1,)), axis=2)[..., 0]
        del paths
        found = split_null(observed[i], np.where(picked >= 0, picked, np.float32(np.nan)), correct[i],
                           n_bootstrap=n_bootstrap, seed=seed, counts=counts)
        null[i] = found["null"]
        for name in NULL_VARIABLES:
            out[name][i] = found[name.removeprefix("split_")]
    variables = {name: ("epoch", values, {"long_name": NULL_VARIABLES[name], "units": "1"}) for name, values in out.items()}
    variables["split_null"] = (("epoch", "permutation"), null, {"long_name": "split under each permutation", "units": "1"})
    return xr.Dataset(variables, coords={"epoch": epochs}, attrs={
        "null_epochs": [int(e) for e in nulls], "n_permutations": int(n_permutations), "n_bootstrap": int(n_bootstrap),
        "seed": int(seed), "p_floor": 1.0 / (1 + n_permutations)})
