"""The sample-dynamics numbers of ensembles (one per model), over their seeds: the ROC AUC of the area-under-the-margin
ranking for finding the noisy labels, and the learned-epoch distributions of clean and noisy training samples.

    python examples/seed_dynamics.py runs/seeds/mlp3 [runs/seeds/mlp5 ...] --out docs/reproduction/seeds/dynamics.json

Only the dynamics analysis runs (``actlab.analysis.dynamics``, no activation pass); each replica's summary section and
the median with its 95 % interval over the seeds (``actlab.analysis.seeds.aggregate_summaries``) go to ``--out``, and
a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from actlab.analysis import open_run
from actlab.analysis.dynamics import sample_dynamics
from actlab.analysis.pipeline import sample_dynamics_summary
from actlab.analysis.seeds import aggregate_summaries
from actlab.files import replica_dirs
from actlab.findings import fmt_interval


def ensemble_dynamics(path: Path) -> dict:
    """Per seed, the ``dynamics`` summary section; and their aggregate over the seeds."""
    per_seed = {}
    for replica in replica_dirs(path):
        run = open_run(replica)
        if run.dynamics is None:
            raise SystemExit(f"{replica} holds no per-sample trajectories (recorded before schema 4); record it again")
        per_seed[replica.name] = {"dynamics": sample_dynamics_summary(sample_dynamics(run.dynamics))}
    return {"per_seed": per_seed, "over_seeds": aggregate_summaries(per_seed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ensembles", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    found = {path.name: ensemble_dynamics(path) for path in args.ensembles}
    args.out.write_text(json.dumps(found, indent=1, default=float) + "\n")

    def cell(value: dict) -> str:
        return fmt_interval(value["median"], value["low"], value["high"]) if value else "n/a"

    print("| model | seeds | ROC AUC (AUM ranking) | precision at noise rate | learned epoch, clean (median) | "
          "memorised epoch, noisy (median) | clean learned | noisy memorised |")
    print("|---|---|---|---|---|---|---|---|")
    for name, result in found.items():
        over = result["over_seeds"]["dynamics"]
        ranking, groups = over["mislabel_ranking"], over["groups"]
        print(f"| {name} | {len(result['per_seed'])} | {cell(ranking['auc'])} | {cell(ranking['precision'])} | "
              f"{cell(groups['clean']['learned_epoch_median'])} | {cell(groups['noisy']['learned_epoch_median'])} | "
              f"{cell(groups['clean']['learned_fraction'])} | {cell(groups['noisy']['learned_fraction'])} |")


if __name__ == "__main__":
    main()
