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


def learning_phases(metrics: xr.Dataset, *, plateau_tol: float = PLATEAU_TOL, smooth_window: int = SMOOTH_WINDOW,
                    thresholds: tuple[float, ...] = THRESHOLDS) -> xr.Dataset:
    """Epochs at which clean data is learned and noisy data memorised.

    Parameters
    ----------
    metrics : xr.Dataset, dims (epoch,)
        With ``train_clean_acc`` and ``train_noisy_acc``.
    plateau_tol : float
        Clean data counts as learned at the first epoch where the smoothed ``train_clean_acc`` is
        within ``plateau_tol`` of its maximum.
    thresholds : tuple of float
        Accuracies for ``noisy_memorised_epoch``.

    Returns
    -------
    xr.Dataset
        ``clean_learned_epoch``, ``clean_plateau_acc``, ``noisy_fitted_epoch`` (scalars) and
        ``noisy_memorised_epoch`` (threshold,); epochs are float, NaN when never reached.
    """
    for name in ("train_clean_acc", "train_noisy_acc"):
        if name not in metrics:
            raise ValueError(f"metrics lack {name!r}; got {list(metrics.data_vars)}")
    clean = smooth(metrics["train_clean_acc"], smooth_window)
    plateau = float(clean.max()) if clean.size else np.nan
    learned = clean["epoch"].values[clean.values >= plateau - plateau_tol]
    noisy = metrics["train_noisy_acc"].dropna("epoch")

    def first_epoch(threshold: float) -> float:
        reached = noisy["epoch"].values[noisy.values >= threshold]
        return float(reached[0]) if len(reached) else np.nan

    memorised = [first_epoch(t) for t in thresholds]
    return xr.Dataset(
        {
            "clean_learned_epoch": ((), float(learned[0]) if len(learned) else np.nan,
                                    {"long_name": f"first epoch with smoothed train_clean_acc within {plateau_tol:g} of its maximum",
                                     "units": "epoch"}),
            "clean_plateau_acc": ((), plateau, {"long_name": "maximum of smoothed train_clean_acc", "units": "1"}),
            "noisy_memorised_epoch": (("threshold",), memorised,
                                      {"long_name": "first epoch with train_noisy_acc >= threshold", "units": "epoch"}),
            "noisy_fitted_epoch": ((), first_epoch(0.99),
                                   {"long_name": "first epoch with train_noisy_acc >= 0.99", "units": "epoch"}),
        },
        coords={"threshold": ("threshold", list(thresholds), {"long_name": "train_noisy_acc threshold"})},
    )


def learning_curves(metrics: xr.Dataset, *, smooth_window: int = SMOOTH_WINDOW, rise: float = RISE, drop: float = DROP,
                    noise_k: float = NOISE_K, sustain: int = SUSTAIN, final_fraction: float = FINAL_FRACTION,
                    instability_drop: float = INSTABILITY_DROP, plateau_tol: float = PLATEAU_TOL) -> xr.Dataset:
    """Metrics plus training phases and double descent of ``test_loss`` and ``test_error``.

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
        criterion = dd.attrs["criterion"]
    dd_all = xr.concat(found, dim="curve").assign_coords(curve=list(DD_CURVES))
    for name in dd_all.data_vars:
        out[f"dd_{name}"] = dd_all[name]
    out["dd_present"].attrs.update(long_name="epoch-wise double descent present", criterion=criterion)
    out = out.merge(learning_phases(metrics, plateau_tol=plateau_tol, smooth_window=smooth_window))
    return out
