"""Learning phases and the double-descent criterion on planted curves."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fixtures_store import dd_curve, monotone_curve, planted_metrics, u_curve

import actlab.analysis  # noqa: F401  (registers the accessor)
from actlab.analysis.pipeline import phase_targets
from actlab.analysis.curves import (
    best_and_final_test,
    double_descent,
    learning_curves,
    learning_phases,
    training_instabilities,
)

EPOCHS = np.arange(61)


def curve(values: np.ndarray, name: str = "test_loss") -> xr.DataArray:
    return xr.DataArray(values, dims="epoch", coords={"epoch": EPOCHS[: len(values)]}, name=name)


def metrics_dataset(double: bool = True) -> xr.Dataset:
    rows = planted_metrics(60, double_descent=double)
    names = list(rows[0])
    return xr.Dataset({n: ("epoch", [rows[e][n] for e in EPOCHS]) for n in names}, coords={"epoch": EPOCHS})


def test_double_descent_found_with_its_epochs():
    values = dd_curve(EPOCHS, np.random.default_rng(1))
    found = double_descent(curve(values))
    assert bool(found["present"])
    # independent: 5-epoch centred mean with shrinking ends
    smoothed = np.array([values[max(0, i - 2): i + 3].mean() for i in range(len(values))])
    np.testing.assert_allclose(found["smoothed"].values, smoothed)
    peak = int(found["peak_epoch"])
    assert 20 <= peak <= 28 and smoothed[peak] == pytest.approx(float(found["peak"]))
    first = int(found["first_min_epoch"])
    assert 8 <= first <= 16 and first == int(np.argmin(smoothed[: peak + 1]))
    second = int(found["second_min_epoch"])
    assert second == peak + int(np.argmin(smoothed[peak:])) and second > 40


@pytest.mark.parametrize("make", [monotone_curve, u_curve])
def test_no_double_descent_in_monotone_or_u_shaped_curves(make):
    found = double_descent(curve(make(EPOCHS, np.random.default_rng(2))))
    assert not bool(found["present"])


def test_passing_dip_in_a_rising_curve_is_not_double_descent():
    """The shape of MLP7's full-scale test loss: a minimum, a long rise with one short dip, a rise to the end."""
    e = np.arange(200, dtype=float)
    values = 1.5 * np.exp(-e / 4) + 0.5 + 0.02 * e - 0.6 * np.exp(-(((e - 120) / 3) ** 2))
    found = double_descent(xr.DataArray(values, dims="epoch", coords={"epoch": e}))
    # without criterion 4 the dip is a "second minimum": the peak sits just before it, the curve ends far above it
    assert 100 <= float(found["peak_epoch"]) < float(found["second_min_epoch"]) <= 125
    assert float(found["final"]) == pytest.approx(found["smoothed"].values[-20:].mean())
    assert float(found["final"]) > float(found["peak"]) and not bool(found["present"])
    # the same curve levelling off below its peak after the dip is double descent
    falling = np.where(e > 120, values[120] + 0.05 * np.exp(-(e - 120) / 5), values)
    assert bool(double_descent(xr.DataArray(falling, dims="epoch", coords={"epoch": e}))["present"])


def test_small_bump_below_thresholds_is_not_double_descent():
    values = monotone_curve(EPOCHS, np.random.default_rng(3), noise=0.0)
    values = values + 0.005 * np.exp(-(((EPOCHS - 50) / 4) ** 2))  # a 1 % bump, below the 5 % rise
    found = double_descent(curve(values))
    assert np.isfinite(float(found["peak_epoch"])) and not bool(found["present"])


def test_learning_phases_planted_epochs():
    phases = learning_phases(metrics_dataset())
    # clean acc = 0.95 * min(1, e/10): smoothed within 0.02 of 0.95 first at epoch 11
    assert float(phases["clean_learned_epoch"]) == 11
    # noisy acc = clip((e - 20) / 20, 0, 1)
    np.testing.assert_array_equal(phases["noisy_memorised_epoch"].values, [30, 38, 40])
    assert float(phases["noisy_fitted_epoch"]) == 40


def test_clean_accuracy_that_plateaus_low_is_not_learned():
    """A cnn5-like run: the clean training accuracy creeps up to 18 % and stays there; its maximum is no plateau of learning."""
    metrics = metrics_dataset()
    e = metrics["epoch"].values
    metrics["train_clean_acc"] = ("epoch", 0.183 * (1 - np.exp(-e / 3)))
    phases = learning_phases(metrics)
    smoothed = np.array([metrics["train_clean_acc"].values[max(0, i - 2): i + 3].mean() for i in range(len(e))])
    assert float(phases["clean_plateau_acc"]) == pytest.approx(smoothed.max()) and smoothed.max() < 0.2
    assert not bool(phases["clean_learned"]) and np.isnan(float(phases["clean_learned_epoch"]))
    assert float(phases["clean_final_acc"]) == pytest.approx(0.183 * (1 - np.exp(-60 / 3)))
    # the same shape reaching 95 % is learned, at the first epoch whose smoothed value is within 0.02 of the plateau
    metrics["train_clean_acc"] = metrics["train_clean_acc"] * (0.95 / 0.183)
    phases = learning_phases(metrics)
    smoothed = smoothed * (0.95 / 0.183)
    assert bool(phases["clean_learned"])
    assert float(phases["clean_learned_epoch"]) == int(np.flatnonzero(smoothed >= smoothed.max() - 0.02)[0])
    # the level is a parameter: a plateau of 95 % is not learned when 0.97 is asked for
    assert not bool(learning_phases(metrics, learned_acc=0.97)["clean_learned"])


def test_u_shaped_test_loss_keeps_its_minimum_and_the_best_and_final_values():
    """Test loss bottoming out at epoch 10 (1.876) and climbing to the end: no interior peak, yet a test-loss minimum."""
    metrics = metrics_dataset(double=False)
    e = metrics["epoch"].values.astype(float)
    loss = 1.876 + 0.0008 * (e - 10) ** 2 + np.where(e > 10, 0.03 * (e - 10), 0.0)
    acc = 0.35 - 0.001 * np.abs(e - 12)
    metrics["test_loss"], metrics["test_acc"] = ("epoch", loss), ("epoch", acc)
    node = learning_curves(metrics)
    assert np.isnan(float(node["dd_first_min_epoch"].sel(curve="test_loss")))  # no rise followed by a fall
    smoothed = np.array([loss[max(0, i - 2): i + 3].mean() for i in range(len(e))])
    assert float(node["test_loss_min_epoch"]) == int(np.argmin(smoothed))  # smoothed: epoch 8, before the steep rise
    assert (float(node["best_test_loss"]), float(node["best_test_loss_epoch"])) == (1.876, 10)
    assert (float(node["best_test_acc"]), float(node["best_test_acc_epoch"])) == (pytest.approx(0.35), 12)
    assert (float(node["final_test_loss"]), float(node["final_test_acc"]), float(node["final_epoch"])) == (
        pytest.approx(loss[-1]), pytest.approx(acc[-1]), 60)
    # the layer-wise findings are read there: the "at the test-loss minimum" rows are no longer dropped
    tree = xr.DataTree.from_dict({"/curves": node})
    assert phase_targets(tree, 60)["test_loss_min"] == int(np.argmin(smoothed))
    # with an interior peak the phase is the double-descent first minimum
    node = learning_curves(metrics_dataset())
    assert float(node["test_loss_min_epoch"]) == float(node["dd_first_min_epoch"].sel(curve="test_loss"))


def test_best_and_final_test_skip_unevaluated_epochs():
    metrics = xr.Dataset({"test_loss": ("epoch", [2.3, 1.5, np.nan, 1.2, 1.4, np.nan]),
                          "test_acc": ("epoch", [0.1, 0.4, np.nan, 0.5, 0.45, np.nan])}, coords={"epoch": np.arange(6)})
    found = best_and_final_test(metrics)
    assert {name: float(found[name]) for name in found} == {
        "best_test_loss": 1.2, "best_test_loss_epoch": 3, "best_test_acc": 0.5, "best_test_acc_epoch": 3,
        "final_test_loss": 1.4, "final_test_acc": 0.45, "final_epoch": 4}
    empty = best_and_final_test(metrics.isel(epoch=[2, 5]))
    assert all(np.isnan(float(empty[name])) for name in empty)


def test_never_reached_threshold_is_nan():
    metrics = metrics_dataset()
    metrics["train_noisy_acc"] = metrics["train_noisy_acc"] * 0.6
    phases = learning_phases(metrics)
    assert float(phases["noisy_memorised_epoch"].sel(threshold=0.5)) == 37  # 0.6 * (e - 20) / 20 >= 0.5
    assert np.isnan(phases["noisy_memorised_epoch"].sel(threshold=0.9)) and np.isnan(phases["noisy_fitted_epoch"])


def test_learning_curves_node_and_accessor():
    metrics = metrics_dataset()
    node = learning_curves(metrics)
    np.testing.assert_allclose(node["test_error"].values, 1 - metrics["test_acc"].values)
    assert bool(node["dd_present"].sel(curve="test_loss"))
    assert not bool(learning_curves(metrics_dataset(double=False))["dd_present"].sel(curve="test_loss"))
    via_accessor = metrics.actlab.double_descent()
    assert float(via_accessor["peak_epoch"]) == float(node["dd_peak_epoch"].sel(curve="test_loss"))
    xr.testing.assert_identical(metrics.actlab.learning_phases(), learning_phases(metrics))


def test_bad_input():
    with pytest.raises(ValueError, match="dims"):
        double_descent(xr.DataArray(np.zeros((3, 3)), dims=("epoch", "x")))
    with pytest.raises(ValueError, match="train_noisy_acc"):
        learning_phases(xr.Dataset({"train_clean_acc": ("epoch", [0.1, 0.2])}))


def test_descent_during_a_training_instability_is_not_double_descent():
    """A loss spike of the optimiser: the noisy training data are unlearnt and the test loss falls with them."""
    e = np.arange(120)
    noisy_acc = np.clip((e - 10) / 20, 0, 1)
    noisy_acc[80:84] = [0.5, 0.6, 0.8, 0.95]  # collapse and re-memorisation
    test_loss = 1.5 * np.exp(-e / 4) + 0.5 + 0.05 * e
    test_loss[80:] = test_loss[80:] - 4.0  # the fall that comes with the collapse and stays
    metrics = xr.Dataset(
        {"train_clean_acc": ("epoch", np.clip(e / 10, 0, 1)), "train_noisy_acc": ("epoch", noisy_acc),
         "test_loss": ("epoch", test_loss), "test_acc": ("epoch", np.full(len(e), 0.5))},
        coords={"epoch": e},
    )
    unstable = training_instabilities(metrics)
    # by hand: epochs where an accuracy lies more than 0.1 below its running maximum
    expected = (np.maximum.accumulate(noisy_acc) - noisy_acc > 0.1) | (np.maximum.accumulate(np.clip(e / 10, 0, 1)) - np.clip(e / 10, 0, 1) > 0.1)
    np.testing.assert_array_equal(unstable.values, expected)
    assert list(e[expected]) == [80, 81, 82]
    node = learning_curves(metrics).sel(curve="test_loss")
    assert not bool(node["dd_present"]) and float(node["dd_instability_epoch"]) == 80
    # the same curves without the collapse in training accuracy: double descent
    calm = metrics.assign(train_noisy_acc=("epoch", np.clip((e - 10) / 20, 0, 1)))
    node = learning_curves(calm).sel(curve="test_loss")
    assert bool(node["dd_present"]) and np.isnan(float(node["dd_instability_epoch"]))


def test_a_peak_made_by_a_loss_spike_is_not_double_descent():
    """Weight-decay-like drift on a plateau, with a two-epoch spike of the optimiser: the smoothed peak sits just after it."""
    e = np.arange(200)
    test_loss = 1.5 * np.exp(-e / 4) + np.minimum(0.05 * e, 3.0) + 0.5
    test_loss[120:124] += 8.0  # the spike that comes with an instability at epoch 120 and outlasts it
    test_loss[122:] -= np.linspace(0.0, 0.3, 78)  # then a slow drift down, under the 5 % a second descent needs
    clean_acc = np.clip(e / 10, 0, 1)
    noisy_acc = np.clip((e - 10) / 20, 0, 1)
    noisy_acc[120] = 0.6
    metrics = xr.Dataset(
        {"train_clean_acc": ("epoch", clean_acc), "train_noisy_acc": ("epoch", noisy_acc),
         "test_loss": ("epoch", test_loss), "test_acc": ("epoch", np.full(len(e), 0.5))},
        coords={"epoch": e},
    )
    node = learning_curves(metrics).sel(curve="test_loss")
    peak = float(node["dd_peak_epoch"])
    assert 120 < peak <= 123  # the smoothed spike peaks after the only unstable epoch
    assert not bool(node["dd_present"]) and float(node["dd_instability_epoch"]) == 120
    # the criterion alone, without the instabilities, would have taken the spike for a peak
    assert bool(double_descent(metrics["test_loss"])["present"])
