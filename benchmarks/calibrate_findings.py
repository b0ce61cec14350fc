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
from actlab.analysis.blocks import FLOOR_PERMUTATIONS
from actlab.analysis.inference import LEVEL, benjamini_hochberg
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


def as_activations(x: np.ndarray, coords: dict[str, np.ndarray]) -> xr.DataArray:
    """Post-ReLU activations (epoch, sample, unit) of pre-activations ``x`` with the probe coords."""
    return xr.DataArray(np.maximum(x, 0).astype(np.float32), dims=("epoch", "sample", "unit"),
                        coords={"epoch": np.arange(len(x)), "sample": np.arange(x.shape[1]),
                                **{k: ("sample", v) for k, v in coords.items()}})


def class_centres(rng: np.random.Generator, draws: int) -> np.ndarray:
    """Per-draw class centres, shape (draw, class, unit)."""
    return rng.standard_normal((draws, N_CLASSES, N_UNITS)) + 1.0


def unit_directions(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random unit-length directions, shape (*shape, unit)."""
    d = rng.standard_normal((*shape, N_UNITS))
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def floor_p_values(design: tuple[int, int], effect: float, rng: np.random.Generator, draws: int,
                   permutations: int = PERMUTATIONS) -> np.ndarray:
    """``draws`` draws of the noise-floor test (noisy by original label), one per epoch of one activation array: each
    its own class centres and probes; ``effect`` shifts every noisy probe by that length along one random direction.
    Returns the one-sided p-values of the mean clean-noisy cosine below its within-class permutation floor."""
    coords = probes(*design, 0, rng)
    noisy = coords["group"] == "noisy"
    x = class_centres(rng, draws)[:, coords["original_label"]] + rng.standard_normal((draws, len(noisy), N_UNITS))
    x[:, noisy] += effect * unit_directions(rng, (draws, 1))
    act = as_activations(x, coords)
    separated = separation.signal_separation(act, N_CLASSES).compute()
    null = separation.floor_null(act, permutations, seed=int(rng.integers(2**31)), n_classes=N_CLASSES).compute()
    return separation.floor_test(separated, null)["cos_clean_noisy_by_original_p_value"].values


def depth_p_values(design: tuple[int, int], slope: float, rng: np.random.Generator, draws: int,
                   n_layers: int = 4) -> np.ndarray:
    """``draws`` draws of the depth-trend test: the change of the depth slope between a first epoch (no trend
    planted) and a later one whose layer k's noisy probes are shifted by ``slope * k`` along a random direction
    (0: every layer and epoch alike). Each (draw, epoch, layer) cell is one epoch of one activation array, with
    its own class centres."""
    coords = probes(*design, 0, rng)
    noisy = coords["group"] == "noisy"
    cells = draws * 2 * n_layers
    x = class_centres(rng, cells)[:, coords["original_label"]] + rng.standard_normal((cells, len(noisy), N_UNITS))
    x = x.reshape(draws, 2, n_layers, len(noisy), N_UNITS)
    x[:, 1][:, :, noisy] += slope * np.arange(n_layers)[None, :, None, None] * unit_directions(rng, (draws, n_layers, 1))
    cos = separation.signal_separation(as_activations(x.reshape(cells, len(noisy), N_UNITS), coords), N_CLASSES)
    cos = cos["cos_clean_noisy_by_original"].compute().values.reshape(draws, 2, n_layers, N_CLASSES)
    return np.array([separation.depth_trend(xr.DataArray(c[1], dims=("layer", "class")),
                                            xr.DataArray(c[0], dims=("layer", "class")), n_bootstrap=9)["p_value"]
                     for c in cos], dtype=float)


def path_draws(design: tuple[int, int], effect: np.ndarray, rng: np.random.Generator,
               n_test: int = 30) -> tuple[xr.Dataset, xr.Dataset]:
    """Attributed paths and their permutation null, one epoch per entry of ``effect``. ``effect`` > 0 plants the
    studied mechanism: noisy probes are shifted along a direction d_c of their ASSIGNED class c, and so are the
    test probes wrongly predicted as c, so wrong predictions follow the noisy signal; 0: the clean and noisy probes
    of an assigned class are exchangeable (noisy probes drawn at their assigned class's centre). Each epoch has its
    own class centres and predictions (70 % correct, the rest uniform)."""
    coords = probes(*design, n_test, rng)
    epochs, n = len(effect), len(coords["group"])
    drawn_at = np.where(coords["group"] == "noisy", coords["label"], coords["original_label"])  # exchangeable null
    x = class_centres(rng, epochs)[:, drawn_at] + rng.standard_normal((epochs, n, N_UNITS))
    predicted = np.where(rng.random((epochs, n)) < 0.7, coords["label"], rng.integers(0, N_CLASSES, (epochs, n)))
    directions = unit_directions(rng, (epochs, N_CLASSES))
    noisy = coords["group"] == "noisy"
    for e in range(epochs):
        wrong = (coords["group"] == "test") & (predicted[e] != coords["label"])
        x[e, noisy] += effect[e] * directions[e, coords["label"][noisy]]
        x[e, wrong] += effect[e] * directions[e, predicted[e, wrong]]
    act = as_activations(x, coords)
    pred = xr.DataArray(predicted, dims=("epoch", "sample"), coords={"epoch": act["epoch"].values, "sample": np.arange(n)})
    attributed = paths.path_attribution(act, pred, n_classes=N_CLASSES)
    null = paths.null_clean_paths(act, PERMUTATIONS, seed=int(rng.integers(2**31)), n_classes=N_CLASSES).compute()
    return attributed, paths.path_split_null(attributed, null, n_bootstrap=9)


def path_p_values(design: tuple[int, int], effect: float, rng: np.random.Generator, draws: int) -> np.ndarray:
    """``draws`` draws of the path-split test: its one-sided permutation p-values."""
    _, found = path_draws(design, np.full(draws, effect), rng)
    return found["split_p_value"].values


def split_change_p_values(design: tuple[int, int], effect: float, rng: np.random.Generator, draws: int) -> np.ndarray:
    """``draws`` draws of the split-change test between two epochs (``effect`` planted at the second only); both
    epochs use the same permutations of the training probes, as in the fused pass."""
    attributed, found = path_draws(design, np.tile([0.0, effect], draws), rng)
    split, null = attributed["split"].values, found["split_null"].values
    return np.array([paths.split_change_p_value(float(split[2 * k + 1]), float(split[2 * k]), null[2 * k + 1], null[2 * k])
                     for k in range(draws)], dtype=float)


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
    "noise_floor (below its noise floor)": (floor_p_values, 1.0),
    "depth_trend (change of depth slope)": (depth_p_values, 0.5),
    "path_split (beyond its null)": (path_p_values, 2.0),
    "split_change (grown/shrunk since init)": (split_change_p_values, 2.0),
}
"""Test -> (draws' p-values, planted effect size: the shift length in units of the per-unit noise sd)."""

def halves_rule_p_values(design: tuple[int, int], effect: float, rng: np.random.Generator, draws: int) -> np.ndarray:
    """For comparison, the rule before issue 17: "below its noise floor" when the mean clean-noisy cosine lies below the
    cosine of two random halves of the clean probes (n/2 against n/2). Returned as p-values of 0 (fires) or 1."""
    coords = probes(*design, 0, rng)
    noisy = coords["group"] == "noisy"
    x = class_centres(rng, draws)[:, coords["original_label"]] + rng.standard_normal((draws, len(noisy), N_UNITS))
    x[:, noisy] += effect * unit_directions(rng, (draws, 1))
    found = separation.signal_separation(as_activations(x, coords), N_CLASSES, seed=int(rng.integers(2**31))).compute()
    return np.where(found["cos_clean_noisy_by_original_mean"].values < found["cos_clean_halves_mean"].values, 0.0, 1.0)


def family_rejections(design: tuple[int, int], families: int, size: int, seed: int) -> int:
    """Families of ``size`` noise-floor tests where nothing is planted in which Benjamini-Hochberg rejects any test
    (with every hypothesis true, the false discovery rate is this family-wise rate); each test with the analysis's
    :data:`~actlab.analysis.blocks.FLOOR_PERMUTATIONS`, so that a lone p-value can reach 0.05 / size."""
    rng = np.random.default_rng(seed)
    p = np.concatenate([floor_p_values(design, 0.0, rng, BATCH, FLOOR_PERMUTATIONS)
                        for _ in range(-(-families * size // BATCH))])
    return sum(any(q <= LEVEL for q in benjamini_hochberg(p[k * size:(k + 1) * size].tolist())) for k in range(families))


BATCH = 20
"""Draws simulated together (one activation array, its own probes and permutations)."""


def rate(draw, design, effect: float, draws: int, seed: int) -> tuple[int, int]:
    """Rejections at :data:`LEVEL` over ``draws`` seeded draws (in batches of :data:`BATCH`), and the number of draws
    with a p-value."""
    rng = np.random.default_rng(seed)
    p = np.concatenate([draw(design, effect, rng, min(BATCH, draws - start)) for start in range(0, draws, BATCH)])
    p = p[np.isfinite(p)]
    return int(np.sum(p <= LEVEL)), len(p)


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
    print(f"family-wise: Benjamini-Hochberg over a family of 12 noise-floor tests (3 read epochs x 2 groupings x 2 "
          f"layers), {FLOOR_PERMUTATIONS} permutations each, nothing planted; the share of families with any rejection "
          "is the FDR")
    families = args.draws // 2
    for d, design in enumerate((DESIGNS[0], DESIGNS[-1])):
        found = family_rejections(design, families, 12, 9000 + d)
        print(f"{'noise_floor family of 12, BH':42s} {design[0]:>9d}/{design[1]:<8d} {found:>5d}/{families:<4d} = "
              f"{found / families:.3f}", flush=True)
    print("for comparison, the rule before issue 17 (cosine below the floor of two clean halves, n/2 vs n/2):")
    for d, design in enumerate(DESIGNS):
        fp, n0 = rate(halves_rule_p_values, design, 0.0, args.draws, 7000 + d)
        tp, n1 = rate(halves_rule_p_values, design, 1.0, args.draws, 7500 + d)
        print(f"{'old halves rule (below its noise floor)':42s} {design[0]:>9d}/{design[1]:<8d} {fp:>5d}/{n0:<4d} = "
              f"{fp / max(n0, 1):.3f}   {tp:>4d}/{n1:<4d} = {tp / max(n1, 1):.2f}  1", flush=True)
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
