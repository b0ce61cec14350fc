"""False-positive rate of the early/late memorisation tests, measured in simulation (docs/analysis.md, "Joined").

Each simulated family is one run's layer x epoch grid of blocks in which the activations say nothing about when a
noisy probe is memorised: clean, noisy and test probes sit at their class means (noisy probes between their original
and assigned class, the same weight for all) plus Gaussian noise, the memorisation epochs are drawn apart from
them, and the test predictions are right 70 % of the time. :func:`actlab.analysis.memorisation.memorisation_split`
gives each block's two-sided permutation p-values and :func:`~actlab.analysis.memorisation.memorisation_summary`
adjusts them within the families ``memorised_separation`` and ``memorised_split``. Under this null every rejection is
false: prints the per-test rate of p <= 0.05 and the share of families with at least one rejection after
Benjamini-Hochberg (a false "late-memorised probes separate more" somewhere), each with its binomial standard error.
It never asserts.

    python benchmarks/sim_memorisation_null.py --families 100 > docs/benchmarks/sim_memorisation_null.txt
"""

from __future__ import annotations

import argparse

import numpy as np
import xarray as xr

from actlab.analysis.memorisation import STATISTICS, memorisation_split, memorisation_summary


def simulated_layer(rng: np.random.Generator, means: np.ndarray, args: argparse.Namespace, label: np.ndarray,
                    original: np.ndarray, coords: dict) -> xr.DataArray:
    """One layer's activations (epoch, sample, unit) independent of the memorisation epochs."""
    blocks = [np.maximum(0.5 * means[original] + 0.5 * means[label] + rng.normal(0, 0.6, (len(label), args.units)), 0)
              for _ in range(args.epochs)]
    return xr.DataArray(np.stack(blocks).astype(np.float32), dims=("epoch", "sample", "unit"), coords=coords)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", type=int, default=100)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--clean", type=int, default=100)
    parser.add_argument("--noisy", type=int, default=100)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--permutations", type=int, default=199)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    group = np.repeat(["clean", "noisy", "test"], [args.clean, args.noisy, args.test]).astype(object)
    n = len(group)
    rejections = {statistic: [] for statistic in STATISTICS}
    family_errors = {statistic: 0 for statistic in STATISTICS}
    for _ in range(args.families):
        original = rng.integers(0, args.classes, n)
        label = np.where(group == "noisy", (original + rng.integers(1, args.classes, n)) % args.classes, original)
        coords = {"epoch": np.arange(args.epochs), "sample": np.arange(n), "group": ("sample", group),
                  "label": ("sample", label), "original_label": ("sample", original)}
        memorised = xr.DataArray(np.where(group == "noisy", rng.integers(1, 60, n), np.nan).astype(float),
                                 dims="sample", coords={"sample": np.arange(n)})
        predicted = xr.DataArray(np.where(rng.uniform(size=(args.epochs, n)) < 0.7, label, (label + 1) % args.classes),
                                 dims=("epoch", "sample"), coords={"epoch": np.arange(args.epochs), "sample": np.arange(n)})
        means = rng.uniform(0, 1, (args.classes, args.units)) ** 4 * 3
        found = xr.concat([memorisation_split(simulated_layer(rng, means, args, label, original, coords), memorised,
                                              predicted, n_permutations=args.permutations,
                                              seed=int(rng.integers(1 << 30)), n_classes=args.classes)
                           for _ in range(args.layers)], dim=xr.DataArray([f"layer{i}" for i in range(args.layers)],
                                                                          dims="layer"))
        summary = memorisation_summary(found)
        for statistic in STATISTICS:
            rejections[statistic].extend((found[f"{statistic}_p_value"].values <= 0.05).ravel().tolist())
            family_errors[statistic] += any(row[f"{statistic}_epochs_rejected"] for row in summary["by_layer"].values())
    print(f"families {args.families} of {args.layers} layers x {args.epochs} epochs; {args.clean} clean, {args.noisy} "
          f"noisy, {args.test} test probes, {args.classes} classes, {args.units} units; {args.permutations} permutations; "
          f"seed {args.seed}")
    for statistic in STATISTICS:
        rate = float(np.mean(rejections[statistic]))
        tests = len(rejections[statistic])
        share = family_errors[statistic] / args.families
        print(f"{statistic}: p <= 0.05 in {rate:.4f} of {tests} tests (se {np.sqrt(rate * (1 - rate) / tests):.4f}); "
              f"a family with a Benjamini-Hochberg rejection: {share:.3f} (se "
              f"{np.sqrt(share * (1 - share) / args.families):.3f})")


if __name__ == "__main__":
    main()
