"""Prediction-path attribution: does a test sample align with the clean or the noisy signal of its class?

The clean signal of class c is the mean activation of clean training probes
labelled c; the noisy signal is the mean of noisy training probes whose
ASSIGNED label is c (the network is trained to send those samples to c, so
that mean is what pushes a prediction towards c). Both are taken at the same
epoch and layer as the test activation.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from actlab.analysis import blocks
from actlab.analysis.blocks import PATH_SOURCES

RELEVANT = ("predicted", "label")


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


def attribute_paths(cosines: xr.DataArray, predicted: xr.DataArray, relevant: str = "predicted") -> xr.Dataset:
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
        ``clean_path`` (epoch, sample); ``clean_share_correct``, ``clean_share_wrong``, ``n_correct``,
        ``n_wrong`` (epoch).
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
            "n_correct": (e, correct.sum(axis=1), {"long_name": "correctly predicted test probes"}),
            "n_wrong": (e, (~correct).sum(axis=1), {"long_name": "wrongly predicted test probes"}),
        },
        coords={"epoch": cosines["epoch"].values, **{k: v.variable for k, v in cosines["sample"].coords.items()}},
        attrs={"relevant": relevant, "noisy_signal": "noisy training probes grouped by assigned label"},
    )
    return out


def path_attribution(act: xr.DataArray, predicted: xr.DataArray, relevant: str = "predicted",
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
