"""Linear probes, CKA along training and offline interventions on the seed-study ensembles (docs/beyond.md).

For every seed of each ensemble recorded by examples/reproduce_seeds.sh, on a private copy of its store:

- linear probes (actlab.analysis.probes, 999 permutations, BH within layer x epoch) read at the test-loss
  minimum, at noisy-label memorisation and at the last epoch;
- debiased linear CKA of every layer to its final state (actlab.analysis.similarity) and the settling epoch;
- interventions at the last epoch (actlab.record.intervene): the last one, two and three layers rewound to
  the recorded epoch nearest the epoch of the lowest test loss, and the large unit of each hidden layer ablated against
  20 draws of matched random units.

Writes ``OUT/<model>_seed<S>.json`` per seed (the raw numbers docs/beyond.md reads). With ``--between``,
instead: debiased linear CKA between the first seed and each other seed, layer by layer at the last epoch
(actlab.analysis.similarity.similarity_between_runs; the seeds share their probes), in ``OUT/<model>_between.json``.

    python examples/beyond_seeds.py --runs runs/seeds --out docs/beyond --work /tmp/beyond mlp3 mlp5 mlp7
    python examples/beyond_seeds.py --between --runs runs/seeds --out docs/beyond --work /tmp/beyond2 mlp3 mlp5 mlp7

With ``--test-set``, instead: the rewinds of each seed's JSON again, scored on every evaluated test image of the run
(the data loaded again from $ACTLAB_DATA), added to the JSON as ``interventions_test_set``.

    ACTLAB_DATA=/data python examples/beyond_seeds.py --test-set --runs runs/seeds --out docs/beyond --work /tmp/b3 mlp3

``python docs/beyond/render.py`` then regenerates docs/beyond.md from the JSON files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import xarray as xr

from actlab.analysis import open_run
from actlab.analysis.curves import learning_curves
from actlab.analysis.pipeline import phase_epochs
from actlab.analysis.probes import linear_probes
from actlab.analysis.similarity import similarity_along_training, similarity_between_runs
from actlab.record.intervene import Rewind, intervene


def _clean(value):
    value = np.asarray(value).item() if np.ndim(value) == 0 else value
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def seed_numbers(run_dir: Path) -> dict:
    run = open_run(run_dir)
    phases = phase_epochs(xr.DataTree.from_dict({"/curves": learning_curves(run.metrics)}), run.epochs)
    loss = run.metrics["test_loss"]  # the minimum itself (the double-descent detector names one only with a descent)
    lowest = int(loss["epoch"].values[int(np.nanargmin(loss.values))])
    phases = {"test_loss_min": int(run.epochs[np.argmin(np.abs(run.epochs - lowest))]), **phases}
    started = time.perf_counter()
    # every recorded epoch, as docs/beyond.md was computed (BH over the layer x recorded epoch family): the phase
    # epochs read below are then probed whatever they are
    probes = linear_probes(run, n_permutations=999, probe_epochs=None)
    probes_s = time.perf_counter() - started
    started = time.perf_counter()
    similarity = similarity_along_training(run, pair_epochs=4)
    cka_s = time.perf_counter() - started
    layers = list(run.layer_names)
    rewinds = [Rewind(tuple(layers[-k:]), phases["test_loss_min"]) for k in range(1, min(3, len(layers)) + 1)]
    started = time.perf_counter()
    iv = intervene(run_dir, rewind=rewinds, n_null=20)
    intervene_s = time.perf_counter() - started
    targets = [str(t) for t in probes["target"].values]
    return {
        "run": str(run_dir), "epochs": [int(e) for e in run.epochs], "phases": phases, "layers": layers,
        "test_loss_min_epoch": lowest,
        "seconds": {"probes": probes_s, "cka": cka_s, "interventions": intervene_s},
        "probes": {
            "n_permutations": int(probes.attrs["n_permutations"]), "fdr_level": float(probes.attrs["fdr_level"]),
            "at_phases": {phase: {layer: {target: {key: _clean(probes[var].sel(layer=layer, epoch=epoch, target=target).values)
                                                   for key, var in (("accuracy", "accuracy"), ("low", "accuracy_low"),
                                                                    ("high", "accuracy_high"), ("chance", "chance"),
                                                                    ("p_value", "p_value"), ("q_value", "q_value"),
                                                                    ("decodable", "decodable"))}
                                          for target in targets}
                                  for layer in layers}
                          for phase, epoch in phases.items()},
        },
        "similarity": {
            "settled_epoch": {layer: _clean(similarity["settled_epoch"].sel(layer=layer).values) for layer in layers},
            "cka_to_final": {layer: [_clean(v) for v in similarity["cka_to_final"].sel(layer=layer).values] for layer in layers},
            "n_samples": int(similarity.attrs["n_samples"]),
        },
        "interventions": {
            "epoch": int(iv.attrs["epoch"]), "measures": [str(m) for m in iv["measure"].values],
            "baseline": [float(v) for v in iv["baseline_accuracy"].values],
            "rewind": {str(r): [float(v) for v in iv["rewind_accuracy"].sel(rewind=r).values] for r in iv["rewind"].values},
            "ablate": {str(layer): {
                "unit": int(iv["ablated_unit"].sel(layer=layer)), "mean_abs": float(iv["ablated_mean_abs"].sel(layer=layer)),
                "accuracy": [float(v) for v in iv["ablate_accuracy"].sel(layer=layer).values],
                "null_mean": [float(v) for v in iv["null_accuracy"].sel(layer=layer).mean("draw").values],
                "null_low": [float(v) for v in iv["null_accuracy"].sel(layer=layer).min("draw").values],
                "null_high": [float(v) for v in iv["null_accuracy"].sel(layer=layer).max("draw").values],
                "null_n_units_median": float(np.median(iv["null_n_units"].sel(layer=layer).values)),
                "p_value": [float(v) for v in iv["ablate_p_value"].sel(layer=layer).values],
            } for layer in iv["layer"].values},
        },
    }


def rewinds_on_test_set(run_dir: Path, numbers: dict) -> dict:
    """Baseline and rewind accuracies of ``numbers``' rewinds on every evaluated test image of the run."""
    rewinds = [Rewind.parse(text) for text in numbers["interventions"]["rewind"]]
    ds = intervene(run_dir, rewind=rewinds, ablate=False, test_set=True)
    at = ds.sel(measure="test_set")
    return {"n_test": int(len(open_run(run_dir).evaluation["label"])), "baseline": float(at["baseline_accuracy"]),
            "rewind": {str(r): float(at["rewind_accuracy"].sel(rewind=r)) for r in ds["rewind"].values}}


def between_seeds(runs: Path, work: Path, model: str, seeds: list[str]) -> dict:
    """CKA of each layer of the first seed with the same layer of every other seed, at the last epoch."""
    first = work / f"{model}_seed{seeds[0]}"
    shutil.copytree(runs / model / f"seed{seeds[0]}", first)
    out = {}
    try:
        for seed in seeds[1:]:
            other = work / f"{model}_seed{seed}"
            shutil.copytree(runs / model / f"seed{seed}", other)
            try:
                ds = similarity_between_runs(open_run(first), open_run(other))
            finally:
                shutil.rmtree(other)
            out[f"{seeds[0]}-{seed}"] = {"epoch": int(ds["epoch"].values[-1]), "n_samples": int(ds.attrs["n_samples"]),
                                         "cka_same": {str(layer): float(ds["cka_same"].isel(epoch=-1).sel(layer=layer))
                                                      for layer in ds["layer"].values}}
    finally:
        shutil.rmtree(first)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--runs", default="runs/seeds")
    parser.add_argument("--out", default="docs/beyond")
    parser.add_argument("--work", required=True, help="a new folder for the private copies (each removed after use)")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--between", action="store_true", help="CKA between the first seed and each other seed only")
    parser.add_argument("--test-set", action="store_true", help="the rewinds again on the test set only")
    args = parser.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=False)
    for model in args.models:
        if args.between:
            pairs = between_seeds(Path(args.runs), work, model, args.seeds.split(","))
            (out / f"{model}_between.json").write_text(json.dumps(pairs, indent=1) + "\n")
            print(f"{model}: {pairs}", flush=True)
            continue
        for seed in args.seeds.split(","):
            copy = work / f"{model}_seed{seed}"
            shutil.copytree(Path(args.runs) / model / f"seed{seed}", copy)
            try:
                if args.test_set:
                    numbers = json.loads((out / f"{model}_seed{seed}.json").read_text())
                    numbers["interventions_test_set"] = rewinds_on_test_set(copy, numbers)
                else:
                    numbers = seed_numbers(copy)
            finally:
                shutil.rmtree(copy)
            numbers["run"] = f"{args.runs}/{model}/seed{seed}"
            (out / f"{model}_seed{seed}.json").write_text(json.dumps(numbers, indent=1) + "\n")
            print(f"{model} seed {seed}: {numbers.get('interventions_test_set') or numbers['seconds']}", flush=True)
    work.rmdir()


if __name__ == "__main__":
    main()
