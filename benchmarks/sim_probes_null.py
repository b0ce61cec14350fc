"""False-positive rate of the linear-probe test, measured in simulation (docs/beyond.md, "decodable").

Each simulated family is one run's layer x epoch grid of blocks whose activations are independent of every
label (Gaussian units; the probes' labels balanced, noisy probes' original labels drawn apart from their
assigned ones, as in a run). For each block, :func:`actlab.analysis.probes.probe_block` gives the permutation
p-value of the noisy probes' original label; :func:`actlab.analysis.probes.fdr_adjust` adjusts them within the
family. Under this global null every "decodable" is false, so the share of families with at least one is the
family-wise error, which Benjamini-Hochberg holds at the FDR level. Prints the per-test rejection rate at 0.05
and the share of families with a false "decodable", each with its binomial standard error. It never asserts.

    python benchmarks/sim_probes_null.py --families 200 > docs/beyond/probes_null.txt
"""

from __future__ import annotations

import argparse

import numpy as np
import xarray as xr

from actlab.analysis.probes import FDR_LEVEL, fdr_adjust, probe_block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", type=int, default=200)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--clean", type=int, default=100)
    parser.add_argument("--noisy", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--permutations", type=int, default=199)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n = args.clean + args.noisy
    group = np.repeat(["clean", "noisy"], [args.clean, args.noisy])
    p_values, family_errors = [], 0
    for _ in range(args.families):
        label = np.concatenate([np.arange(args.clean) % args.classes, rng.integers(0, args.classes, args.noisy)])
        original = label.copy()
        original[args.clean:] = (label[args.clean:] + rng.integers(1, args.classes, args.noisy)) % args.classes
        p = np.array([[float(probe_block(rng.standard_normal((n, args.units)), group, label, original,
                                         n_permutations=args.permutations, seed=int(rng.integers(1 << 30)))
                             ["p_value"].sel(target="noisy_original"))
                       for _ in range(args.epochs)] for _ in range(args.layers)])
        p_values.append(p.ravel())
        q = fdr_adjust(xr.DataArray(p, dims=("layer", "epoch")))
        family_errors += bool((q <= FDR_LEVEL).any())
    p_values = np.concatenate(p_values)
    rate = np.mean(p_values <= 0.05)
    fwer = family_errors / args.families
    print(f"null simulation: {args.families} families of {args.layers} layers x {args.epochs} epochs, "
          f"{args.clean} clean + {args.noisy} noisy probes, {args.units} units, {args.classes} classes, "
          f"{args.permutations} permutations, seed {args.seed}")
    print(f"per-test rejection rate at p <= 0.05: {rate:.4f} (standard error {np.sqrt(rate * (1 - rate) / len(p_values)):.4f}; "
          f"{len(p_values)} tests; nominal 0.05)")
    print(f"families with a false 'decodable' (BH q <= {FDR_LEVEL}): {fwer:.4f} "
          f"(standard error {np.sqrt(fwer * (1 - fwer) / args.families):.4f}; nominal at most {FDR_LEVEL})")


if __name__ == "__main__":
    main()
