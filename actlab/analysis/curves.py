"""Learning curves: training phases and epoch-wise double descent of the test curves."""

from __future__ import annotations

import numpy as np
import xarray as xr

DD_CURVES: tuple[str, ...] = ("test_loss", "test_error")
"""Curves tested for double descent, in the ``curve`` coord of the results."""

SMOOTH_WINDOW = 5
RISE = 0.05
DROP = 0.05
NOISE_K = 3.0
SUSTAIN = 3
FINAL_FRACTION = 0.1
INSTABILITY_DROP = 0.1
PLATEAU_TOL = 0.02
LEARNED_ACC = 0.9
THRESHOLDS: tuple[float, ...] = (0.5, 0.9, 0.99)
"""Defaults of the criteria, shared by the functions below, the ``.actlab`` accessor and :func:`analyze`."""


def smooth(curve: xr.DataArray, window: int) -> xr.DataArray:
    """Centred rolling mean over ``epoch`` of ``window`` epochs, shrinking at the ends (NaN epochs dropped)."""
    return curve.dropna("epoch").rolling(epoch=window, center=True, min_periods=1).mean()


def double_descent(
    curve: xr.DataArray,
    *,
    smooth_window: int = SMOOTH_WINDOW,
    rise: float = RISE,
    drop: float = DROP,
    noise_k: float = NOISE_K,
    sustain: int = SUSTAIN,
    final_fraction: float = FINAL_FRACTION,
    unstable: xr.DataArray | None = None,
) -> xr.Dataset:
    """Detect epoch-wise double descent in a curve over epochs.

    The curve is smoothed (:func:`smooth`). For each epoch p the bump height is
    ``min(s[p] - min(s[:p+1]), s[p] - min(s[p:]))``; the peak is the epoch of
    the largest bump, the first minimum the argmin of ``s`` before it, the
    second minimum the argmin after it. Present when (1) peak - first min >=
    ``rise`` x first min and >= ``noise_k`` x noise, (2) peak - second min >=
    ``drop`` x peak and >= ``noise_k`` x noise, (3) at least ``sustain``
    epochs after the peak lie at or below ``peak * (1 - drop)``, (4) the curve
    ends low: the mean of its last ``final_fraction`` of epochs (at least
    ``sustain`` of them) lies ``drop`` x peak and ``noise_k`` x noise below the
    peak, so that a passing dip in a curve that keeps rising is no second
    descent, and (5) no epoch from ``smooth_window`` epochs before the peak to
    the second minimum is marked in ``unstable``: a descent that comes with the
    training data being unlearnt, or a peak made by such a loss spike of the
    optimiser, is no benign overfitting. The noise is
    1.4826 x median absolute deviation of (curve - smoothed curve).

    Parameters
    ----------
    curve : xr.DataArray, dims (epoch,)
    unstable : xr.DataArray of bool, dims (epoch,), optional
        Epochs of training instability (:func:`training_instabilities`); without it criterion 5 is not
        checked (``metrics.actlab.double_descent()`` and :func:`learning_curves` pass it).

    Returns
    -------
    xr.Dataset of scalars
        ``present`` (bool), ``instability_epoch`` (first unstable epoch from ``smooth_window`` epochs
        before the peak to the second minimum, NaN if none), ``first_min_epoch``, ``peak_epoch``, ``second_min_epoch`` (float, NaN
        without an interior peak), ``first_min``, ``peak``, ``second_min``, ``final`` (mean of the
        last epochs, criterion 4), ``noise``; and
        ``smoothed`` (epoch,).
    """
    if curve.dims != ("epoch",):
        raise ValueError(f"double_descent expects a curve with dims ('epoch',); got {curve.dims}")
    if smooth_window < 1:
        raise ValueError(f"smooth_window must be >= 1; got {smooth_window}")
    smoothed = smooth(curve, smooth_window)
    s = smoothed.values.astype(float)
    epochs = smoothed["epoch"].values
    if not 0 < final_fraction <= 1:
        raise ValueError(f"final_fraction must lie in (0, 1]; got {final_fraction}")
    out = {name: np.nan for name in ("first_min_epoch", "peak_epoch", "second_min_epoch", "first_min", "peak", "second_min",
                                     "final", "instability_epoch")}
    residual = curve.dropna("epoch").values - s
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual)))) if len(s) else np.nan
    present = False
    if len(s) >= 3:
        before = np.minimum.accumulate(s)
        after = np.minimum.accumulate(s[::-1])[::-1]
        bump = np.minimum(s - before, s - after)
        p = int(np.argmax(bump))
        if bump[p] > 0:
            m1 = int(np.argmin(s[: p + 1]))
            m2 = p + int(np.argmin(s[p:]))
            out.update(first_min_epoch=epochs[m1], peak_epoch=epochs[p], second_min_epoch=epochs[m2],
                       first_min=s[m1], peak=s[p], second_min=s[m2])
            rises = s[p] - s[m1] >= rise * abs(s[m1]) and s[p] - s[m1] >= noise_k * noise
            drops = s[p] - s[m2] >= drop * abs(s[p]) and s[p] - s[m2] >= noise_k * noise
            sustained = int(np.sum(s[p + 1:] <= s[p] * (1 - drop))) >= sustain
            final = float(np.mean(s[-max(sustain, int(np.ceil(final_fraction * len(s)))):]))
            out.update(final=final)
            ends_low = s[p] - final >= drop * abs(s[p]) and s[p] - final >= noise_k * noise
            if unstable is not None:
                # from smooth_window epochs before the peak: a spike of the optimiser, smoothed, peaks just after it
                window = unstable.sel(epoch=slice(epochs[max(p - smooth_window, 0)], epochs[m2]))
                flagged = window["epoch"].values[window.values.astype(bool)]
                if len(flagged):
                    out.update(instability_epoch=flagged[0])
            present = bool(rises and drops and sustained and ends_low and np.isnan(out["instability_epoch"]))
    ds = xr.Dataset({name: ((), float(value)) for name, value in out.items()})
    ds["present"] = ((), present)
    ds["noise"] = ((), noise)
    ds["smoothed"] = smoothed.assign_attrs(long_name=f"{curve.name or 'curve'} smoothed ({smooth_window}-epoch centred mean)")
    ds.attrs.update(
        criterion=(f"smoothed peak >= {rise:g} above first min and second min >= {drop:g} below peak, both >= "
                   f"{noise_k:g} x noise; >= {sustain} epochs after the peak below peak*(1-{drop:g}); the mean of the last "
                   f"{final_fraction:g} of epochs also {drop:g} and {noise_k:g} x noise below the peak; no training "
                   f"instability from {smooth_window} epochs before the peak to the second minimum"),
        curve=str(curve.name),
    )
    return ds


def training_instabilities(metrics: xr.Dataset, *, drop: float = INSTABILITY_DROP) -> xr.DataArray:
    """Epochs at which training data are unlearnt: a training accuracy falls ``drop`` below its best so far.

    Parameters
    ----------
    metrics : xr.Dataset, dims (epoch,)
        With ``train_clean_acc`` and ``train_noisy_acc`` (a NaN group, e.g. no noisy samples, is ignored).

    Returns
    -------
    xr.DataArray of bool, dims (epoch,)
    """
    flags = np.zeros(metrics.sizes["epoch"], dtype=bool)
    for name in ("train_clean_acc", "train_noisy_acc"):
        acc = np.nan_to_num(metrics[name].values.astype(float), nan=0.0)
        flags |= np.maximum.accumulate(acc) - acc > drop
    return xr.DataArray(flags, dims="epoch", coords={"epoch": metrics["epoch"].values},
                        attrs={"long_name": f"a training accuracy more than {drop:g} below its best so far"})


def learning_phases(metrics: xr.Dataset, *, plateau_tol: float = PLATEAU_TOL, learned_acc: float = LEARNED_ACC,
                    smooth_window: int = SMOOTH_WINDOW, thresholds: tuple[float, ...] = THRESHOLDS) -> xr.Dataset:
    """Epochs at which clean data is learned and noisy data memorised.

    Clean data counts as learned only when the plateau of the smoothed ``train_clean_acc`` (its
    maximum) is itself high, at least ``learned_acc``: a run whose clean accuracy tops out at 18 % has
    a maximum but has not learned its clean samples. It is then learned at the first epoch within
    ``plateau_tol`` of that plateau; otherwise ``clean_learned`` is False and the epoch NaN ("not
    learned by the last epoch").

    Parameters
    ----------
    metrics : xr.Dataset, dims (epoch,)
        With ``train_clean_acc`` and ``train_noisy_acc``.
    plateau_tol : float
        Distance below the plateau that still counts as on it.
    learned_acc : float
        Lowest plateau that counts as learned (0.9: an absolute accuracy, well above chance for any
        number of classes).
    thresholds : tuple of float
        Accuracies for ``noisy_memorised_epoch``.

    Returns
    -------
    xr.Dataset
        ``clean_learned`` (bool), ``clean_learned_epoch``, ``clean_plateau_acc``, ``clean_final_acc``,
        ``noisy_fitted_epoch`` (scalars) and ``noisy_memorised_epoch`` (threshold,); epochs are float,
        NaN when never reached.
    """
    for name in ("train_clean_acc", "train_noisy_acc"):
        if name not in metrics:
            raise ValueError(f"metrics lack {name!r}; got {list(metrics.data_vars)}")
    clean = smooth(metrics["train_clean_acc"], smooth_window)
    plateau = float(clean.max()) if clean.size else np.nan
    learned = bool(plateau >= learned_acc)
    on_plateau = clean["epoch"].values[clean.values >= plateau - plateau_tol]
    final_clean = metrics["train_clean_acc"].dropna("epoch")
    noisy = metrics["train_noisy_acc"].dropna("epoch")

    def first_epoch(threshold: float) -> float:
        reached = noisy["epoch"].values[noisy.values >= threshold]
        return float(reached[0]) if len(reached) else np.nan

    memorised = [first_epoch(t) for t in thresholds]
    return xr.Dataset(
        {
            "clean_learned": ((), learned, {"long_name": f"smoothed train_clean_acc reaches a plateau of at least "
                                                         f"{learned_acc:g}", "learned_acc": learned_acc}),
            "clean_learned_epoch": ((), float(on_plateau[0]) if learned else np.nan,
                                    {"long_name": f"first epoch with smoothed train_clean_acc within {plateau_tol:g} of its "
                                                  f"maximum, when that maximum is at least {learned_acc:g}",
                                     "units": "epoch"}),
            "clean_plateau_acc": ((), plateau, {"long_name": "maximum of smoothed train_clean_acc", "units": "1"}),
            "clean_final_acc": ((), float(final_clean.values[-1]) if final_clean.size else np.nan,
                                {"long_name": "train_clean_acc at the last epoch", "units": "1"}),
            "noisy_memorised_epoch": (("threshold",), memorised,
                                      {"long_name": "first epoch with train_noisy_acc >= threshold", "units": "epoch"}),
            "noisy_fitted_epoch": ((), first_epoch(0.99),
                                   {"long_name": "first epoch with train_noisy_acc >= 0.99", "units": "epoch"}),
        },
        coords={"threshold": ("threshold", list(thresholds), {"long_name": "train_noisy_acc threshold"})},
    )


def best_and_final_test(metrics: xr.Dataset) -> xr.Dataset:
    """The best and the last test loss and test accuracy, with their epochs (the early-stopping point).

    Parameters
    ----------
    metrics : xr.Dataset, dims (epoch,)
        With ``test_loss`` and ``test_acc`` (NaN epochs are left out).

    Returns
    -------
    xr.Dataset of scalars
        ``best_test_loss`` and ``best_test_loss_epoch`` (the lowest test loss and the first epoch with it),
        ``best_test_acc`` and ``best_test_acc_epoch`` (the highest test accuracy, first epoch), ``final_test_loss``,
        ``final_test_acc`` and ``final_epoch`` (the last epoch with both); NaN without such epochs. Raw, not smoothed.
    """
    both = metrics[["test_loss", "test_acc"]].dropna("epoch")
    loss, acc, epochs = both["test_loss"].values, both["test_acc"].values, both["epoch"].values
    if not len(epochs):
        values = dict.fromkeys(("best_test_loss", "best_test_loss_epoch", "best_test_acc", "best_test_acc_epoch",
                                "final_test_loss", "final_test_acc", "final_epoch"), np.nan)
    else:
        best_loss, best_acc = int(np.argmin(loss)), int(np.argmax(acc))
        values = dict(best_test_loss=loss[best_loss], best_test_loss_epoch=epochs[best_loss], best_test_acc=acc[best_acc],
                      best_test_acc_epoch=epochs[best_acc], final_test_loss=loss[-1], final_test_acc=acc[-1],
                      final_epoch=epochs[-1])
    units = {"loss": "nats", "acc": "1", "epoch": "epoch"}
    return xr.Dataset({name: ((), float(value), {"long_name": name.replace("_", " "), "units": units[name.split("_")[-1]]})
                       for name, value in values.items()})


def first_loss_minimum_epoch(dd: xr.Dataset) -> float:
    """The phase "test-loss minimum": the first minimum of the smoothed test loss.

    With an interior peak it is the double-descent ``first_min_epoch``; without one (a curve that falls and then
    only rises, or only falls) the argmin of the whole smoothed curve, so the early-stopping point is never lost.

    Parameters
    ----------
    dd : xr.Dataset
        :func:`double_descent` of the test loss.

    Returns
    -------
    float
        The epoch, NaN for an empty curve.
    """
    first = float(dd["first_min_epoch"])
    if np.isfinite(first) or not dd["smoothed"].size:
        return first
    return float(dd["smoothed"]["epoch"].values[int(np.argmin(dd["smoothed"].values))])


def learning_curves(metrics: xr.Dataset, *, smooth_window: int = SMOOTH_WINDOW, rise: float = RISE, drop: float = DROP,
                    noise_k: float = NOISE_K, sustain: int = SUSTAIN, final_fraction: float = FINAL_FRACTION,
                    instability_drop: float = INSTABILITY_DROP, plateau_tol: float = PLATEAU_TOL,
                    learned_acc: float = LEARNED_ACC) -> xr.Dataset:
    """Metrics plus training phases, the best and final test values, and double descent of ``test_loss`` and ``test_error``.

    Parameters
    ----------
    metrics : xr.Dataset, dims (epoch,)

    Returns
    -------
    xr.Dataset, dims (epoch, threshold, curve); the ``/curves`` node of ``docs/analysis.md``
    """
    if "test_loss" not in metrics or "test_acc" not in metrics:
        raise ValueError(f"metrics need 'test_loss' and 'test_acc'; got {list(metrics.data_vars)}")
    out = metrics.copy()
    out["test_error"] = (1 - metrics["test_acc"]).assign_attrs(long_name="error on test samples", units="1")
    found = []
    out["unstable"] = training_instabilities(metrics, drop=instability_drop)
    for name in DD_CURVES:
        dd = double_descent(out[name], smooth_window=smooth_window, rise=rise, drop=drop, noise_k=noise_k, sustain=sustain,
                            final_fraction=final_fraction, unstable=out["unstable"])
        out[f"{name}_smooth"] = dd["smoothed"].reindex(epoch=out["epoch"])
        found.append(dd.drop_vars("smoothed"))
        if name == "test_loss":
            out["test_loss_min_epoch"] = ((), first_loss_minimum_epoch(dd), {
                "long_name": "first minimum of the smoothed test loss (the argmin when it has no interior peak)",
                "units": "epoch"})
        criterion = dd.attrs["criterion"]
    dd_all = xr.concat(found, dim="curve").assign_coords(curve=list(DD_CURVES))
    for name in dd_all.data_vars:
        out[f"dd_{name}"] = dd_all[name]
    out["dd_present"].attrs.update(long_name="epoch-wise double descent present", criterion=criterion)
    out = out.merge(learning_phases(metrics, plateau_tol=plateau_tol, learned_acc=learned_acc, smooth_window=smooth_window))
    out = out.merge(best_and_final_test(metrics))
    return out
