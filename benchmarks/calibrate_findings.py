"""Calibration of the tests behind the findings' words: false-positive rate where nothing is planted, power where
an effect of known size is.

Each test is simulated at the level of the analysis functions the fused pass calls (the composable API over an
in-memory DataArray: the same block kernels), not through whole stores, so that 200 draws of every design run in a
few minutes. Probe designs per class (clean, noisy): 60 vs 6, 100 vs 20, 30 vs 20, 40 vs 40; 10 classes; post-ReLU
activations of 32 units drawn around per-class means. Where nothing is planted, a class's clean and noisy probes
come from one distribution, every layer and epoch alike, and the large unit is unrelated to input and output.
Each test is read at its nominal level 0.05 (one test per draw: the family correction only adds to it).

    OMP_NUM_THREADS=1 python benchmarks/calibrate_findings.py --draws 200 > docs/benchmarks/calibrate_findings.txt

Tests (tests/test_findings_calibration.py) run the same functions with few draws.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xarray as xr

from actlab.analysis import large_activation, paths, separation
from actlab.analysis.inference import LEVEL
from actlab.analysis.pipeline import explained_verdict, family_decisions

N_CLASSES = 10
N_UNITS = 32
DESIGNS: tuple[tuple[int, int], ...] = ((60, 6), (100, 20), (30, 20), (40, 40))
"""Probe designs: (clean, noisy) probes per class."""
PERMUTATIONS = 199
"""Permutations per simulated test (the p-value's validity does not depend on their number)."""


def probes(n_clean: int, n_noisy: int, n_test: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Probe coords: ``group`` (clean, noisy, test), ``label`` (assigned), ``original_label``; noisy probes get a
    uniformly drawn other class as their assigned label."""
    original = np.concatenate([np.repeat(np.arange(N_CLASSES), n) for n in (n_clean, n_noisy, n_test)])
    group = np.repeat(["clean", "noisy", "test"], [N_CLASSES * n for n in (n_clean, n_noisy, n_test)])
    label = original.copy()
    noisy = group == "noisy"
    label[noisy] = (original[noisy] + rng.integers(1, N_CLASSES, noisy.sum())) % N_CLASSES
    return {"group": group, "label": label, "original_label": original}


def activations(coords: dict[str, np.ndarray], centres: np.ndarray, rng: np.random.Generator, shift: np.ndarray | None = None,
                epochs: int = 1) -> xr.DataArray:
    """Post-ReLU activations (epoch, sample, unit): each probe at its ORIGINAL class's centre plus unit noise (+ ``shift``
    (epoch, sample, unit) where given), every epoch drawn afresh from the same distribution."""
    n = len(coords["group"])
    x = centres[coords["original_label"]][None] + rng.standard_normal((epochs, n, N_UNITS))
    if shift is not None:
        x = x + shift
    return xr.DataArray(np.maximum(x, 0).astype(np.float32), dims=("epoch", "sample", "unit"),
                        coords={"epoch": np.arange(epochs), "sample": np.arange(n), **{k: ("sample", v) for k, v in coords.items()}})


def class_centres(rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
    return spread * rng.standard_normal((N_CLASSES, N_UNITS)) + 1.0


def floor_p_value(design: tuple[int, int], effect: float, rng: np.random.Generator) -> float:
    """One draw of the noise-floor test (noisy by original label): p-value of the mean clean-noisy cosine below its
    within-class permutation floor. ``effect`` shifts every noisy probe by that length along one random direction."""
    coords = probes(*design, 0, rng)
    shift = np.zeros((1, len(coords["group"]), N_UNITS))
    direction = rng.standard_normal(N_UNITS)
    shift[0, coords["group"] == "noisy"] = effect * direction / np.linalg.norm(direction)
    act = activations(coords, class_centres(rng), rng, shift)
    separated = separation.signal_separation(act, N_CLASSES).compute()
    null = separation.floor_null(act, PERMUTATIONS, seed=int(rng.integers(2**31)), n_classes=N_CLASSES).compute()
    return float(separation.floor_test(separated, null)["cos_clean_noisy_by_original_p_value"].values[0])


def depth_p_value(design: tuple[int, int], slope: float, rng: np.random.Generator, n_layers: int = 4) -> float:
    """One draw of the depth-trend test: change of the depth slope between a first epoch (no trend planted) and a
    later one, whose layer k's noisy probes are shifted by ``slope * k`` along a random direction (0: every layer
    and epoch alike). The 2 x ``n_layers`` (epoch, layer) cells are drawn as the epochs of one activation array."""
    coords = probes(*design, 0, rng)
    noisy = coords["group"] == "noisy"
    shift = np.zeros((2 * n_layers, len(noisy), N_UNITS))
    for k in range(n_layers):
        direction = rng.standard_normal(N_UNITS)
        shift[n_layers + k, noisy] = slope * k * direction / np.linalg.norm(direction)
    centres = np.stack([class_centres(rng) for _ in range(2 * n_layers)])  # every layer its own class centres
    x = centres[:, coords["original_label"]] + rng.standard_normal((2 * n_layers, len(noisy), N_UNITS)) + shift
    act = xr.DataArray(np.maximum(x, 0).astype(np.float32), dims=("epoch", "sample", "unit"),
                       coords={"epoch": np.arange(2 * n_layers), **{k: ("sample", v) for k, v in coords.items()}})
    cos = separation.signal_separation(act, N_CLASSES)["cos_clean_noisy_by_original"].compute().values
    first = xr.DataArray(cos[:n_layers], dims=("layer", "class"))
    later = xr.DataArray(cos[n_layers:], dims=("layer", "class"))
    return float(separation.depth_trend(later, first, n_bootstrap=9)["p_value"])


def path_draw(design: tuple[int, int], effect: float, rng: np.random.Generator, epochs: int = 1,
              n_test: int = 30) -> tuple[xr.Dataset, xr.Dataset]:
    """Attributed paths and their permutation null. ``effect`` > 0 plants the studied mechanism at the last epoch:
    noisy probes are shifted along a direction d_c of their ASSIGNED class c, and so are the test probes wrongly
    predicted as c, so wrong predictions follow the noisy signal; 0: clean and noisy probes of an assigned class
    exchangeable (noisy probes drawn at their assigned class's centre)."""
    coords = probes(*design, n_test, rng)
    centres = class_centres(rng)
    n = len(coords["group"])
    predicted = np.where(rng.random(n) < 0.7, coords["label"], rng.integers(0, N_CLASSES, n))
    drawn_at = np.where(coords["group"] == "noisy", coords["label"], coords["original_label"])  # exchangeable null
    x = centres[drawn_at][None] + rng.standard_normal((epochs, n, N_UNITS))
    directions = rng.standard_normal((N_CLASSES, N_UNITS))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wrong_test = (coords["group"] == "test") & (predicted != coords["label"])
    x[-1, coords["group"] == "noisy"] += effect * directions[coords["label"][coords["group"] == "noisy"]]
    x[-1, wrong_test] += effect * directions[predicted[wrong_test]]
    act = xr.DataArray(np.maximum(x, 0).astype(np.float32), dims=("epoch", "sample", "unit"),
                       coords={"epoch": np.arange(epochs), "sample": np.arange(n), **{k: ("sample", v) for k, v in coords.items()}})
    pred = xr.DataArray(np.broadcast_to(predicted, (epochs, n)), dims=("epoch", "sample"),
                        coords={"epoch": np.arange(epochs), "sample": np.arange(n), **{k: ("sample", v) for k, v in coords.items()}})
    attributed = paths.path_attribution(act, pred, n_classes=N_CLASSES)
    null = paths.null_clean_paths(act, PERMUTATIONS, seed=int(rng.integers(2**31)), n_classes=N_CLASSES).compute()
    return attributed, paths.path_split_null(attributed, null, n_bootstrap=9)


def path_p_value(design: tuple[int, int], effect: float, rng: np.random.Generator) -> float:
    """One draw of the path-split test: its one-sided permutation p-value."""
    _, found = path_draw(design, effect, rng)
    return float(found["split_p_value"].values[0])


def split_change_p_value(design: tuple[int, int], effect: float, rng: np.random.Generator) -> float:
    """One draw of the split-change test between two epochs (``effect`` planted at the second only)."""
    attributed, found = path_draw(design, effect, rng, epochs=2)
    split = attributed["split"].values
    return paths.split_change_p_value(float(split[1]), float(split[0]), found["split_null"].values[1],
                                      found["split_null"].values[0])


def explained_draw(effect: float, rng: np.random.Generator, n: int = 300) -> str:
    """One draw of the large-activation verdict: a unit whose magnitude is ``effect`` x the first whitened principal
    component of the images plus unit noise (R^2 = effect^2 / (1 + effect^2); 0: unrelated to input and output),
    through :func:`explain_unit` and the family rule."""
    images = rng.integers(0, 256, (n, 3, 6, 6), dtype=np.uint8)
    label = rng.integers(0, N_CLASSES, n)
    features = large_activation.image_features(images, n_components=20)
    values = np.abs(10 + effect * features[:, 0] + rng.standard_normal(n))  # |.| of a positive value: the value
    probe = xr.Dataset({"image": (("sample", "channel", "height", "width"), images)},
                       coords={"label": ("sample", label), "original_label": ("sample", label)})
    found = large_activation.explain_unit(xr.DataArray(values, dims="sample"), probe,
                                          xr.DataArray(rng.integers(0, N_CLASSES, n), dims="sample"),
                                          n_permutations=PERMUTATIONS, n_bootstrap=199, seed=int(rng.integers(2**31)),
                                          input_features=features)
    large = {"input_p_value": float(found["input_p_value"]), "input_r2": float(found["input_r2"]),
             "output_p_value": {str(t): float(found["output_p_value"].sel(target=t)) for t in found["target"].values},
             "output_r2": {str(t): float(found["output_r2"].sel(target=t)) for t in found["target"].values},
             "best_output_target": str(found["best_output_target"].values),
             "r2_difference_low": float(found["r2_difference_low"]), "r2_difference_high": float(found["r2_difference_high"])}
    family_decisions({"large_activation": large})
    return explained_verdict(large)


TESTS = {
    "noise_floor (below its noise floor)": (floor_p_value, 1.0),
    "depth_trend (change of depth slope)": (depth_p_value, 0.5),
    "path_split (beyond its null)": (path_p_value, 2.0),
    "split_change (grown/shrunk since init)": (split_change_p_value, 2.0),
}
"""Test -> (one draw's p-value, planted effect size: the shift length in units of the per-unit noise sd)."""


def rate(draw, design, effect: float, draws: int, seed: int) -> tuple[int, int]:
    """Rejections at :data:`LEVEL` over ``draws`` seeded draws, and the number of draws with a p-value."""
    rng = np.random.default_rng(seed)
    p = [draw(design, effect, rng) for _ in range(draws)]
    p = [v for v in p if v is not None and np.isfinite(v)]
    return sum(v <= LEVEL for v in p), len(p)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"calibration of the findings' tests: nominal level {LEVEL}, {args.draws} draws per cell, "
          f"{PERMUTATIONS} permutations per test, {N_CLASSES} classes, {N_UNITS} units")
    print(f"{'test':42s} {'design clean/noisy':>18s} {'FPR (nothing planted)':>22s} {'power (planted)':>16s} effect")
    for k, (name, (draw, effect)) in enumerate(TESTS.items()):
        for d, design in enumerate(DESIGNS):
            fp, n0 = rate(draw, design, 0.0, args.draws, 1000 * k + d)
            tp, n1 = rate(draw, design, effect, args.draws, 1000 * k + d + 500)
            print(f"{name:42s} {design[0]:>9d}/{design[1]:<8d} {fp:>5d}/{n0:<4d} = {fp / max(n0, 1):.3f}   "
                  f"{tp:>4d}/{n1:<4d} = {tp / max(n1, 1):.2f}  {effect:g}", flush=True)
    rng0, rng1 = np.random.default_rng(7), np.random.default_rng(8)
    null = [explained_draw(0.0, rng0) for _ in range(args.draws)]
    planted = [explained_draw(0.5, rng1) for _ in range(args.draws)]
    fp = sum(v != "undecided" for v in null)
    tp = sum(v == "input" for v in planted)
    print(f"{'explained_by (input/output, family rule)':42s} {'300 probes':>18s} {fp:>5d}/{len(null):<4d} = "
          f"{fp / len(null):.3f}   {tp:>4d}/{len(planted):<4d} = {tp / len(planted):.2f}  0.5")
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
