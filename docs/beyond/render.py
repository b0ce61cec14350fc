"""The tables of docs/beyond.md, generated from the per-seed JSON files examples/beyond_seeds.py wrote.

Each number is the median over the seeds with the range over them, ``median [low, high]``.

    python examples/beyond_table.py docs/beyond mlp3 mlp5 mlp7 > docs/beyond/tables.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def cell(values, spec: str = ".2f") -> str:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if values.size == 0:
        return "n/a"
    return f"{np.median(values):{spec}} [{values.min():{spec}}, {values.max():{spec}}]"


def count(flags) -> str:
    flags = [bool(f) for f in flags if f is not None]
    return f"{sum(flags)} of {len(flags)}"


def tables(folder: Path, model: str) -> str:
    seeds = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{model}_seed*.json"))]
    if not seeds:
        return ""
    layers = seeds[0]["layers"]
    out = [f"### {model} ({len(seeds)} seeds)", ""]
    out.append(f"Phase epochs (recorded): " + "; ".join(
        f"{phase} {cell([s['phases'][phase] for s in seeds], '.0f')}" for phase in seeds[0]["phases"]) + ".")
    out += ["", "Linear probes trained on clean probes, scored on the noisy probes (accuracy; chance; seeds where "
            "the original label is *decodable*, BH q <= 0.05 in the layer x epoch family):", "",
            "| layer | phase | original label | chance | decodable (seeds) | assigned label | held-out clean | test |",
            "|---|---|---|---|---|---|---|---|"]
    for phase in ("test_loss_min", "noisy_memorised", "last"):
        for layer in layers:
            at = [s["probes"]["at_phases"][phase][layer] for s in seeds if phase in s["probes"]["at_phases"]]
            if not at:
                continue
            out.append(f"| {layer} | {phase} | {cell([a['noisy_original']['accuracy'] for a in at])} | "
                       f"{cell([a['noisy_original']['chance'] for a in at])} | "
                       f"{count([a['noisy_original']['decodable'] for a in at])} | "
                       f"{cell([a['noisy_assigned']['accuracy'] for a in at])} | {cell([a['clean']['accuracy'] for a in at])} | "
                       f"{cell([a['test']['accuracy'] for a in at])} |")
    out += ["", "Debiased linear CKA to the final state: epoch from which it stays >= 0.95 (settled epoch):", "",
            "| " + " | ".join(layers) + " |", "|" + "---|" * len(layers),
            "| " + " | ".join(cell([s["similarity"]["settled_epoch"][layer] for s in seeds], ".0f") for layer in layers) + " |"]
    measures = seeds[0]["interventions"]["measures"]
    out += ["", f"Interventions at the last epoch ({cell([s['interventions']['epoch'] for s in seeds], '.0f')}), accuracy "
            "on the stored probes:", "", "| intervention | " + " | ".join(measures) + " |", "|---|" + "---|" * len(measures)]
    out.append("| none | " + " | ".join(cell([s["interventions"]["baseline"][m] for s in seeds]) for m in range(len(measures))) + " |")
    for k in range(len(seeds[0]["interventions"]["rewind"])):
        names = [list(s["interventions"]["rewind"])[k] for s in seeds]
        label = names[0].split("@")[0]
        out.append(f"| rewind {label} to the test-loss minimum | " + " | ".join(
            cell([s["interventions"]["rewind"][n][m] for s, n in zip(seeds, names)]) for m in range(len(measures))) + " |")
    for layer in seeds[0]["interventions"]["ablate"]:
        ablate = [s["interventions"]["ablate"][layer] for s in seeds]
        out.append(f"| ablate {layer}'s large unit | " + " | ".join(
            f"{cell([a['accuracy'][m] for a in ablate])}; null {cell([a['null_mean'][m] for a in ablate])}; "
            f"p <= 0.05 in {count([a['p_value'][m] <= 0.05 for a in ablate])}" for m in range(len(measures))) + " |")
    if all("interventions_test_set" in s for s in seeds):
        test = [s["interventions_test_set"] for s in seeds]
        names = [list(t["rewind"]) for t in test]
        out += ["", f"The same rewinds on all {cell([t['n_test'] for t in test], '.0f')} evaluated test images "
                "(accuracy):", "", "| none | " + " | ".join(f"rewind {n.split('@')[0]}" for n in names[0]) + " |",
                "|---|" + "---|" * len(names[0]),
                f"| {cell([t['baseline'] for t in test], '.3f')} | " + " | ".join(
                    cell([t["rewind"][n[k]] for t, n in zip(test, names)], ".3f") for k in range(len(names[0]))) + " |", ""]
    out += ["", "Large unit's mean |activation| / random units matched to it (median count): " + "; ".join(
        f"{layer} {cell([s['interventions']['ablate'][layer]['mean_abs'] for s in seeds])} / "
        f"{cell([s['interventions']['ablate'][layer]['null_n_units_median'] for s in seeds], '.0f')}"
        for layer in seeds[0]["interventions"]["ablate"]) + ".", ""]
    between = folder / f"{model}_between.json"
    if between.exists():
        pairs = json.loads(between.read_text())
        out += [f"Debiased linear CKA of each layer between seed {next(iter(pairs)).split('-')[0]} and each other seed at "
                "the last epoch (same probes):", "", "| " + " | ".join(layers) + " |", "|" + "---|" * len(layers),
                "| " + " | ".join(cell([p["cka_same"][layer] for p in pairs.values()]) for layer in layers) + " |", ""]
    return "\n".join(out)


def main() -> None:
    folder = Path(sys.argv[1])
    print("\n".join(tables(folder, model) for model in sys.argv[2:]))


if __name__ == "__main__":
    main()
