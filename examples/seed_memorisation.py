"""Are the noisy samples memorised last the ones whose probes separate most? The joined analysis
(``actlab.analysis.memorisation``) of ensembles (one per model), over their seeds.

    python examples/seed_memorisation.py runs/seeds/mlp7 [runs/seeds/mlp5 ...] \\
        --out docs/reproduction/seeds/memorisation.json --csv docs/reproduction/seeds/memorisation.csv

For every replica: the learned epoch of every training sample from its trajectories, the noisy probes split at the
median memorisation epoch, and at every layer and recorded epoch the separation and path split of each half with the
permutation null (``memorisation_analysis``), Benjamini-Hochberg within each family (``memorisation_summary``).
``--out`` gets each replica's summary and the median with its interval over the seeds
(``actlab.analysis.seeds.aggregate_summaries``); ``--csv`` every (model, seed, layer, epoch) row. Nothing is written
into the runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from actlab.analysis import open_run
from actlab.analysis.dynamics import learned_epoch
from actlab.analysis.memorisation import memorisation_analysis, memorisation_summary
from actlab.analysis.seeds import aggregate_summaries
from actlab.files import replica_dirs
from actlab.findings import fmt

CSV_COLUMNS = ("cos_early", "cos_late", "separation_difference", "separation_excess", "separation_p_value",
               "split_early", "split_late", "split_difference", "split_excess", "split_p_value")
"""Per (layer, epoch) values written to ``--csv``."""


def ensemble_memorisation(path: Path) -> tuple[dict, pd.DataFrame]:
    """Per seed, the ``memorisation`` summary and every (layer, epoch) row; and the summaries' aggregate over seeds."""
    per_seed, tables = {}, []
    for replica in replica_dirs(path):
        run = open_run(replica)
        if run.dynamics is None:
            raise SystemExit(f"{replica} holds no per-sample trajectories (recorded before schema 4); record it again")
        learned = learned_epoch(run.dynamics["correct"]).assign_coords(
            dataset_index=("train_sample", run.dynamics["dataset_index"].values))
        found = memorisation_analysis(run, learned)
        per_seed[replica.name] = {"memorisation": memorisation_summary(found)}
        table = found[list(CSV_COLUMNS)].to_dataframe().reset_index()[["layer", "epoch", *CSV_COLUMNS]]
        tables.append(table.assign(model=path.name, seed=replica.name))
        print(f"{path.name}/{replica.name}: {found.attrs['n_early']} early, {found.attrs['n_late']} late", flush=True)
    return {"per_seed": per_seed, "over_seeds": aggregate_summaries(per_seed)}, pd.concat(tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ensembles", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--csv", type=Path, required=True)
    args = parser.parse_args()
    found, tables = {}, []
    for path in args.ensembles:
        found[path.name], table = ensemble_memorisation(path)
        tables.append(table)
    args.out.write_text(json.dumps(found, indent=1, default=float) + "\n")
    columns = ["model", "seed", "layer", "epoch", *CSV_COLUMNS]
    pd.concat(tables)[columns].to_csv(args.csv, index=False, float_format="%.5g")
    print("| model | layer | cosine early | cosine late | difference (early - late) | separation: late more | "
          "path split difference (late - early) |")
    print("|---|---|---|---|---|---|---|")
    for name, result in found.items():
        for layer, row in result["over_seeds"]["memorisation"]["by_layer"].items():
            print(f"| {name} | {layer} | {fmt(row['cos_early'])} | {fmt(row['cos_late'])} | "
                  f"{fmt(row['separation_difference'])} | {fmt(row['separation_direction'])} | {fmt(row['split_difference'])} |")


if __name__ == "__main__":
    main()
