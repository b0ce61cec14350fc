"""Sample dynamics: every training sample's trajectory across epochs (the store's ``dynamics/`` group).

- learned epoch (the first epoch after which a sample stays predicted as its assigned label) and forgetting
  events (a sample predicted correctly at one epoch and wrongly at the next), as in Toneva et al. (2019); for a
  noisy sample the learned epoch is the epoch its wrong label is memorised;
- the training-dynamics map of dataset cartography (Swayamdipta et al. 2020): confidence, the mean of the
  assigned-label probability ``exp(-loss)`` across training epochs, and variability, its standard deviation;
- the area under the margin (Pleiss et al. 2020): the mean across training epochs of the assigned-label logit
  minus the largest other logit; a low value marks a likely mislabelled sample. Its ranking is scored against
  the known noisy labels with the ROC AUC, the precision at the true noise rate and a permutation null of the AUC.

Training epochs are the committed epochs after the initialisation (epoch 0), or epoch 0 alone when no other is
committed yet. Everything here is NumPy on the (epoch, train_sample) arrays; no torch.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import rankdata

N_PERMUTATIONS = 999
"""Permutations of the null of the mislabel ranking's ROC AUC."""

N_TOP = 100
"""Likely mislabelled samples listed (lowest area under the margin first)."""

SEED = 0
"""Seed of the permutation null."""

NO_NOISE = ("no training sample is marked noisy (the store has no noise information), so the clean/noisy "
            "comparisons and the mislabel ranking's AUC are skipped")
"""The one line that says why the clean/noisy parts are missing."""


def sample_coords(values: xr.DataArray) -> dict[str, xr.Variable]:
    """The coords of ``values`` on ``train_sample`` alone (``dataset_index``, ``label``, ...), for its per-sample results."""
    return {name: coord.variable for name, coord in values.coords.items() if coord.dims == ("train_sample",)}


def carried_forward(correct: xr.DataArray, observed: xr.DataArray | None) -> np.ndarray:
    """``correct`` as (epoch, train_sample) bool, each epoch where a sample was not observed (``observed`` False:
    a trajectory recorded from training steps that missed it, whose loss is NaN) taking the sample's value at its
    last observed epoch, so that a missed epoch is neither a forgetting event nor a wrong prediction."""
    values = np.asarray(correct.transpose("epoch", "train_sample").values, dtype=bool)
    if observed is None:
        return values
    seen = np.asarray(observed.transpose("epoch", "train_sample").values, dtype=bool)
    last_seen = np.where(seen, np.arange(len(values))[:, None], 0)
    np.maximum.accumulate(last_seen, axis=0, out=last_seen)
    return np.take_along_axis(values, last_seen, axis=0)


def learned_epoch(correct: xr.DataArray, observed: xr.DataArray | None = None) -> xr.DataArray:
    """First epoch from which a sample is correct at every later committed epoch.

    Parameters
    ----------
    correct : xr.DataArray of bool, dims (epoch, train_sample)
    observed : xr.DataArray of bool, dims (epoch, train_sample), optional
        Where the sample was observed (:func:`carried_forward`); default everywhere.

    Returns
    -------
    xr.DataArray of float, dims (train_sample,)
        The epoch (a value of the ``epoch`` coord); NaN for a sample wrong at the last epoch (never learned). The
        coords of ``correct`` on ``train_sample`` are kept (``dataset_index`` joins it to the probes).
    """
    values = carried_forward(correct, observed)
    epochs = correct["epoch"].values
    wrong = ~values
    last_wrong = len(epochs) - 1 - np.argmax(wrong[::-1], axis=0)  # the sample is learned from the next epoch on
    first = np.where(wrong.any(axis=0), last_wrong + 1, 0)
    out = np.where(first < len(epochs), epochs[np.minimum(first, len(epochs) - 1)].astype(float), np.nan)
    return xr.DataArray(out, dims="train_sample", coords=sample_coords(correct),
                        attrs={"long_name": "first epoch after which the sample stays correct", "units": "epoch"})


def forgetting_events(correct: xr.DataArray, observed: xr.DataArray | None = None) -> xr.DataArray:
    """Number of consecutive observed epochs (e, e') with the sample correct at e and wrong at e'.

    Parameters
    ----------
    correct : xr.DataArray of bool, dims (epoch, train_sample)
    observed : xr.DataArray of bool, dims (epoch, train_sample), optional
        Where the sample was observed (:func:`carried_forward`); default everywhere.

    Returns
    -------
    xr.DataArray of int, dims (train_sample,)
    """
    values = carried_forward(correct, observed)
    events = (values[:-1] & ~values[1:]).sum(axis=0)
    return xr.DataArray(events.astype(np.int64), dims="train_sample", coords=sample_coords(correct),
                        attrs={"long_name": "forgetting events (correct, then wrong at the next epoch)", "units": "1"})


def training_epochs(dynamics: xr.Dataset) -> xr.Dataset:
    """The committed epochs after the initialisation (epoch 0 alone when no other is committed)."""
    trained = dynamics["epoch"].values > 0
    return dynamics.isel(epoch=trained) if trained.any() else dynamics


def cartography(loss: xr.DataArray) -> xr.Dataset:
    """Training-dynamics map: mean and standard deviation across epochs of the assigned-label probability.

    Parameters
    ----------
    loss : xr.DataArray, dims (epoch, train_sample)
        Cross-entropy against the assigned label, over the epochs to average (:func:`training_epochs`).

    Returns
    -------
    xr.Dataset, dims (train_sample,)
        ``confidence`` (mean of ``exp(-loss)``) and ``variability`` (its population standard deviation).
    """
    p = np.exp(-np.asarray(loss.transpose("epoch", "train_sample").values, dtype=np.float64))
    confidence = _observed_mean(p)
    variability = np.sqrt(_observed_mean((p - confidence) ** 2))
    return xr.Dataset({
        "confidence": ("train_sample", confidence, {"long_name": "mean assigned-label probability", "units": "1"}),
        "variability": ("train_sample", variability, {"long_name": "std of the assigned-label probability", "units": "1"}),
    }, coords=sample_coords(loss))


def _observed_mean(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of the values that are not NaN (the epochs a sample was observed at); NaN where none is."""
    finite = ~np.isnan(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def area_under_margin(margin: xr.DataArray) -> xr.DataArray:
    """Mean across the epochs a sample was observed at (margin not NaN) of the assigned-label logit minus the largest
    other logit (dims (epoch, train_sample) -> (train_sample,))."""
    values = _observed_mean(np.asarray(margin.transpose("epoch", "train_sample").values, dtype=np.float64))
    return xr.DataArray(values, dims="train_sample", coords=sample_coords(margin),
                        attrs={"long_name": "area under the margin", "units": "logit"})


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of ``score`` for telling ``positive`` samples from the others (ties count one half); NaN without both.

    Parameters
    ----------
    score, positive : ndarray, shape (sample,)
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mislabel_ranking(aum: xr.DataArray, is_noisy: np.ndarray, *, n_permutations: int = N_PERMUTATIONS,
                     seed: int = SEED) -> xr.Dataset:
    """Score the area-under-the-margin ranking (lowest first) against the known noisy labels.

    Parameters
    ----------
    aum : xr.DataArray, dims (train_sample,)
    is_noisy : ndarray of bool, shape (train_sample,)
    n_permutations : int
        Random relabellings of the null: ``is_noisy`` permuted across samples, the AUC computed again.
    seed : int

    Returns
    -------
    xr.Dataset of scalars
        ``auc`` (ROC AUC of ``-aum`` for the noisy samples), ``precision`` (fraction noisy among the
        ``n_noisy`` lowest), ``noise_rate``, ``null_mean``, ``null_high`` (its 95th percentile), ``p_value``
        (``(1 + #null >= auc) / (n_permutations + 1)``, at least ``1 / (n_permutations + 1)``); NaN without both
        noisy and clean samples.
    """
    is_noisy = np.asarray(is_noisy, dtype=bool)
    score = -np.asarray(aum.values, dtype=np.float64)
    n_noisy, n = int(is_noisy.sum()), len(is_noisy)
    out = dict(auc=roc_auc(score, is_noisy), precision=np.nan, noise_rate=n_noisy / n if n else np.nan,
               null_mean=np.nan, null_high=np.nan, p_value=np.nan)
    if 0 < n_noisy < n:
        order = np.argsort(-score, kind="stable")
        out["precision"] = float(is_noisy[order[:n_noisy]].mean())
        ranks = rankdata(score)
        rng = np.random.default_rng(seed)
        offset, scale = n_noisy * (n_noisy + 1) / 2, n_noisy * (n - n_noisy)
        null = np.array([(ranks[rng.permutation(n)[:n_noisy]].sum() - offset) / scale for _ in range(n_permutations)])
        out.update(null_mean=float(null.mean()), null_high=float(np.quantile(null, 0.95)),
                   p_value=float((1 + np.sum(null >= out["auc"])) / (n_permutations + 1)))
    ds = xr.Dataset({name: ((), float(value)) for name, value in out.items()})
    ds.attrs.update(n_permutations=int(n_permutations), seed=int(seed))
    return ds


def sample_dynamics(dynamics: xr.Dataset, *, n_permutations: int = N_PERMUTATIONS, n_top: int = N_TOP,
                    seed: int = SEED) -> xr.Dataset:
    """Every sample-dynamics analysis of a run (``Run.dynamics``).

    Parameters
    ----------
    dynamics : xr.Dataset, dims (epoch, train_sample)
        ``loss``, ``margin``, ``correct`` with coords ``epoch``, ``dataset_index``, ``label``, ``original_label``,
        ``is_noisy``.
    n_permutations, n_top, seed
        See :func:`mislabel_ranking` and :data:`N_TOP`.

    Returns
    -------
    xr.Dataset
        Dims (train_sample,): ``learned_epoch``, ``forgetting_events``, ``confidence``, ``variability``, ``aum``,
        with the training coords; dims (rank,): ``top_*`` (``train_sample``, ``dataset_index``, ``label``,
        ``original_label``, ``is_noisy``, ``aum``) of the ``n_top`` lowest areas under the margin; scalars of
        :func:`mislabel_ranking` prefixed ``aum_``. Attrs ``epochs`` (committed), ``first_epoch``, ``last_epoch``,
        and ``skipped`` (why the clean/noisy parts are missing, or empty).
    """
    if not dynamics.sizes.get("epoch"):
        raise ValueError("the store has no committed epoch of per-sample trajectories yet")
    is_noisy = np.asarray(dynamics["is_noisy"].values, dtype=bool)
    trained = training_epochs(dynamics)
    aum = area_under_margin(trained["margin"])
    observed = ~np.isnan(dynamics["loss"])  # NaN: a sample that training steps did not reach that epoch
    ds = xr.Dataset({"learned_epoch": learned_epoch(dynamics["correct"], observed),
                     "forgetting_events": forgetting_events(dynamics["correct"], observed),
                     **cartography(trained["loss"]).data_vars, "aum": aum})
    ds = ds.assign_coords({name: ("train_sample", dynamics[name].values)
                           for name in ("dataset_index", "label", "original_label", "is_noisy")})
    ranking = mislabel_ranking(aum, is_noisy, n_permutations=n_permutations, seed=seed)
    for name, value in ranking.data_vars.items():
        ds[f"aum_{name}"] = value
    order = np.argsort(aum.values, kind="stable")[:n_top]
    ds["top_train_sample"] = ("rank", order)
    for name in ("dataset_index", "label", "original_label", "is_noisy"):
        ds[f"top_{name}"] = ("rank", dynamics[name].values[order])
    ds["top_aum"] = ("rank", aum.values[order])
    epochs = [int(e) for e in dynamics["epoch"].values]
    ds.attrs.update(epochs=epochs, first_epoch=epochs[0], last_epoch=epochs[-1], n_permutations=int(n_permutations),
                    seed=int(seed), skipped="" if 0 < is_noisy.sum() else NO_NOISE)
    return ds


def group_summary(results: xr.Dataset) -> dict[str, dict[str, float | int | None]]:
    """Per group (``clean``, ``noisy``): samples, fraction learned, quartiles of the learned epoch, mean forgetting
    events, fraction forgotten at least once, mean confidence and variability, mean area under the margin."""
    noisy = np.asarray(results["is_noisy"].values, dtype=bool)
    out: dict[str, dict[str, float | int | None]] = {}
    for group, mask in (("clean", ~noisy), ("noisy", noisy)):
        learned = results["learned_epoch"].values[mask]
        done = learned[np.isfinite(learned)]

        def value(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        quartiles = np.quantile(done, [0.25, 0.5, 0.75]) if len(done) else [np.nan] * 3
        forgets = results["forgetting_events"].values[mask]
        out[group] = {
            "n": int(mask.sum()),
            "learned_fraction": value(len(done) / mask.sum()) if mask.any() else None,
            "learned_epoch_q25": value(quartiles[0]), "learned_epoch_median": value(quartiles[1]),
            "learned_epoch_q75": value(quartiles[2]),
            "forgetting_events_mean": value(forgets.mean()) if mask.any() else None,
            "forgotten_fraction": value((forgets > 0).mean()) if mask.any() else None,
            **{f"{name}_mean": value(results[name].values[mask].mean()) if mask.any() else None
               for name in ("confidence", "variability", "aum")},
        }
    return out


SAMPLE_COLUMNS: tuple[str, ...] = ("train_sample", "dataset_index", "label", "original_label", "is_noisy", "aum",
                                   "learned_epoch", "forgetting_events", "confidence", "variability")
"""Columns of :func:`samples_csv`, in order."""


def samples_csv(results: xr.Dataset) -> str:
    """Every training sample of :func:`sample_dynamics` results as CSV text, ranked by area under the margin
    (lowest, the likeliest mislabelled, first); columns :data:`SAMPLE_COLUMNS`, an empty learned epoch for a sample
    never learned."""
    table = pd.DataFrame({"train_sample": np.arange(results.sizes["train_sample"]),
                          **{name: results[name].values for name in SAMPLE_COLUMNS[1:]}})
    table = table.iloc[np.argsort(table["aum"].values, kind="stable")]
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()
