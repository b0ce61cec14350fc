"""Render docs/beyond.md from the committed outputs of examples/beyond_seeds.py under docs/beyond/.

Every number and every word of an answer on the page comes from the files next to this script:
``<model>_seed<S>.json`` (one seed's probes, CKA along training and interventions), ``<model>_between.json``
(the CKA between seeds) and ``probes_null.txt`` (the null simulation of the probe test,
benchmarks/sim_probes_null.py) and ``rules_null.txt`` (that of the rewind and ablation rules, :func:`simulate`). The prose is the Jinja2 template ``beyond.md.j2``; the numbers are read by the
small functions below, and the words of each answer by the rules below, one function per word, each stating its
test, its null and its family.

    python docs/beyond/render.py              # rewrite docs/beyond.md
    python docs/beyond/render.py --check      # exit 1 when the committed page differs from its data
    python docs/beyond/render.py --simulate   # measure the rules' false-positive rates first (rules_null.txt)

tests/test_beyond_page.py re-renders the page, checks its numbers against an independent reading of the JSON
files, and measures the false-positive rate of each rule in simulation.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from scipy.stats import binom, binomtest

from actlab.analysis.inference import LEVEL, benjamini_hochberg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PAGE = ROOT / "docs" / "beyond.md"
TEMPLATE = "beyond.md.j2"
MODELS = ("mlp7", "mlp5", "mlp3")
SHARE_NEEDED = 0.8
"""A layer is called decodable (or not shown decodable) when the probe test says so in at least this share of the
seeds (4 of 5), as the claims of docs/reproduction.md."""
N_DRAWS = 20
"""Draws of matched random units per ablation (``n_null`` of examples/beyond_seeds.py): a seed's p-value is a
multiple of 1 / (N_DRAWS + 1)."""
MEASURES = {"clean": "clean probes", "noisy_assigned": "noisy probes, assigned label",
            "noisy_original": "noisy probes, original label", "test": "test probes"}

# -- the committed outputs ---------------------------------------------------------------------------------------


def read_model(data: Path, model: str) -> dict[str, Any]:
    """Each seed's numbers (in seed order) and the CKA between seeds of ``model`` under ``data``."""
    paths = sorted(data.glob(f"{model}_seed*.json"), key=lambda p: int(p.stem.rsplit("seed", 1)[1]))
    if not paths:
        raise SystemExit(f"render: no {model}_seed*.json under {data}; run examples/beyond_seeds.py first")
    between = data / f"{model}_between.json"
    return {"name": model, "seeds": [json.loads(p.read_text()) for p in paths],
            "between": json.loads(between.read_text()) if between.exists() else {}}


def null_simulation(data: Path) -> dict[str, str]:
    """The numbers of ``probes_null.txt``: the probe test's per-test and per-family false-positive rates."""
    text = (data / "probes_null.txt").read_text()
    numbers = dict(zip(("families", "layers", "epochs"), re.search(r"(\d+) families of (\d+) layers x (\d+) epochs",
                                                                    text).groups()))
    for key, label in (("test", "per-test rejection rate"), ("family", "families with a false")):
        rate, error = re.search(re.escape(label) + r"[^:]*: ([\d.]+) \(standard error ([\d.]+)", text).groups()
        numbers[f"{key}_rate"], numbers[f"{key}_error"] = rate, error
    numbers["tests"] = re.search(r"(\d+) tests", text).group(1)
    numbers["permutations"] = re.search(r"(\d+) permutations", text).group(1)
    return numbers


def cell(values: Sequence[float | None], spec: str = ".2f") -> str:
    """``median [low, high]`` over the seeds (None left out); ``n/a`` when none."""
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if values.size == 0:
        return "n/a"
    return f"{np.median(values):{spec}} [{values.min():{spec}}, {values.max():{spec}}]"


def same(values: Sequence[float], spec: str = ".0f") -> str:
    """The value every seed shares, else :func:`cell` of them."""
    return f"{values[0]:{spec}}" if len(set(values)) == 1 else cell(values, spec)


def count(flags: Sequence[bool | None]) -> str:
    """``k of n``: the seeds where a flag holds (None left out)."""
    flags = [bool(f) for f in flags if f is not None]
    return f"{sum(flags)} of {len(flags)}"


# -- the rules: one per word of an answer ------------------------------------------------------------------------


def needed(n: int) -> int:
    """Seeds needed for a majority verdict: ``ceil(SHARE_NEEDED * n)``."""
    return int(np.ceil(SHARE_NEEDED * n - 1e-9))


def decodable_words(flags: Sequence[bool]) -> str:
    """**decodable** when the probe test rejects in at least :data:`SHARE_NEEDED` of the seeds; **not shown
    decodable** when it does not reject in that share; else **mixed**. The test of one seed: label-permutation
    test of the probe's accuracy on the noisy probes' original label (one-sided, above chance), Benjamini-Hochberg
    at 5% within the layer x recorded epoch family of the run."""
    n, k = len(flags), sum(bool(f) for f in flags)
    if k >= needed(n):
        return "decodable"
    if n - k >= needed(n):
        return "not shown decodable"
    return "mixed"


def lost_from(layers: Sequence[str], words: Mapping[str, str]) -> str | None:
    """The first layer from which every deeper layer is **not shown decodable** (:func:`decodable_words`); none
    when the last layer is not."""
    first = None
    for layer in reversed(layers):
        if words[layer] != "not shown decodable":
            break
        first = layer
    return first


def settle_order_words(settled: Sequence[Mapping[str, float]], layers: Sequence[str]) -> tuple[str, int]:
    """**bottom-up** when, in at least :data:`SHARE_NEEDED` of the seeds, no layer settles before the layer below
    it (settled: :func:`actlab.analysis.similarity.settled_epoch`, the first recorded epoch from which its CKA with
    its final state stays >= 0.95; a description, not a test); else **not bottom-up**. Also the count of such
    seeds."""
    ordered = sum(all(s[a] <= s[b] for a, b in zip(layers, layers[1:])) for s in settled)
    return ("bottom-up" if ordered >= needed(len(settled)) else "not bottom-up"), ordered


def sign_test_p(differences: Sequence[float], alternative: str) -> float:
    """Exact one-sided sign test over the seeds: p = P(Binomial(m, 1/2) >= k), m the seeds with a non-zero
    difference, k those in the tested direction; 1 when m = 0. Null: each seed's
    difference is as likely positive as negative."""
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    k = int((d > 0).sum() if alternative == "greater" else (d < 0).sum())
    return float(binomtest(k, d.size, 0.5, alternative="greater").pvalue)


def rewind_words(q_value: float, word: str) -> str:
    """**raises test accuracy** (accuracy on all evaluated test images, raised) or **undoes memorisation**
    (accuracy on the noisy probes' assigned label, lowered) when the sign test over the seeds (`sign_test_p`)
    rejects after Benjamini-Hochberg at 5% within its family: the rewinds of one model (last 1, 2, 3 layers), for
    one measure; else **not shown**."""
    return word if q_value <= LEVEL else "not shown"


def ablation_p(p_values: Sequence[float], n_draws: int = N_DRAWS) -> float:
    """Over the n seeds, p = P(Binomial(n, 1 / (d + 1)) >= k), k the seeds where the large unit's accuracy is below
    all d matched random draws (its p-value at the floor 1 / (d + 1)). Null: the large unit is
    exchangeable with its matched draws, so each seed is at the floor with probability at most 1 / (d + 1)."""
    floor = 1 / (n_draws + 1)
    p = np.asarray(p_values, dtype=float)
    steps = p * (n_draws + 1)
    if not np.allclose(steps, np.round(steps)):
        raise SystemExit(f"render: ablation p-values {p.tolist()} are not multiples of 1/{n_draws + 1}; "
                         "check N_DRAWS against examples/beyond_seeds.py")
    k = int((p <= floor + 1e-9).sum())
    return float(binom.sf(k - 1, len(p), floor))


def ablation_words(q_value: float) -> str:
    """**matters more** when the test of :func:`ablation_p` rejects after Benjamini-Hochberg at 5% within its
    family (every hidden layer x measure x model); else **no difference shown**."""
    return "matters more" if q_value <= LEVEL else "no difference shown"


def rewind_null_rate(n_families: int, seed: int = 0, n_seeds: int = 5, n_rewinds: int = 3) -> float:
    """Share of families of ``n_rewinds`` rewinds where :func:`rewind_words` says its word at least once, under the
    null: each seed's change is symmetric about 0 (normal, with a scale drawn per rewind), and the rewinds of a
    seed share a common shift (positively dependent tests, as rewinds of the same seed's model are)."""
    rng = np.random.default_rng(seed)
    changes = rng.standard_normal((n_families, n_rewinds, n_seeds)) * rng.uniform(0.001, 0.05, (n_families, n_rewinds, 1))
    changes += 0.3 * rng.standard_normal((n_families, 1, n_seeds)) * np.abs(changes).mean(axis=(1, 2), keepdims=True)
    said = sum(any(rewind_words(q, "raises test accuracy") != "not shown"
                   for q in benjamini_hochberg([sign_test_p(d, "greater") for d in family])) for family in changes)
    return said / n_families


def ablation_null_rate(n_families: int, seed: int = 1, n_cells: int = 48, n_seeds: int = 5,
                       n_draws: int = N_DRAWS, n_probes: int = 200) -> float:
    """Share of families of ``n_cells`` layer x measure cells where :func:`ablation_words` says "matters more" at
    least once, under the null: the large unit's accuracy on ``n_probes`` probes is one more draw of its matched
    random units (binomial, at rates with the page's ties: 0, 0.005, 0.25, 0.99, 1); each seed's p-value as
    :func:`actlab.record.intervene.intervene` computes it."""
    rng = np.random.default_rng(seed)
    rates = rng.choice([0.0, 0.005, 0.25, 0.99, 1.0], size=(n_families, n_cells, 1, 1))
    accuracy = rng.binomial(n_probes, rates, size=(n_families, n_cells, n_seeds, n_draws + 1)) / n_probes
    large, draws = accuracy[..., 0], accuracy[..., 1:]
    p_values = (1 + np.sum(draws <= large[..., None] + 1e-12, axis=-1)) / (1 + n_draws)
    said = sum(any(ablation_words(q) == "matters more" for q in benjamini_hochberg([ablation_p(c) for c in family]))
               for family in p_values)
    return said / n_families


def simulate(path: Path, n_families: int = 20000, n_cells: int = 48) -> None:
    """Write the false-positive rates of the rewind and ablation rules (:func:`rewind_null_rate`,
    :func:`ablation_null_rate` with ``n_cells`` cells, the page's family) over ``n_families`` families to ``path``
    (``rules_null.txt``, read by the page)."""
    lines = [f"null simulation of the words of docs/beyond.md, {n_families} families each (docs/beyond/render.py "
             "--simulate)"]
    for name, tests, rate in (("rewind", 3, rewind_null_rate(n_families)),
                              ("ablation", n_cells, ablation_null_rate(n_families, n_cells=n_cells))):
        error = np.sqrt(rate * (1 - rate) / n_families)
        lines.append(f"{name} ({tests} tests a family): families with a false verdict {rate:.4f} (standard error "
                     f"{error:.4f}; nominal at most {LEVEL:g})")
    path.write_text("\n".join(lines) + "\n")


def rules_null(data: Path) -> dict[str, str]:
    """The numbers of ``rules_null.txt`` (:func:`simulate`)."""
    text = (data / "rules_null.txt").read_text()
    numbers = {"families": re.search(r"(\d+) families each", text).group(1)}
    for name in ("rewind", "ablation"):
        numbers[f"{name}_tests"], numbers[f"{name}_rate"], numbers[f"{name}_error"] = re.search(
            name + r" \((\d+) tests a family\): families with a false verdict ([\d.]+) \(standard error ([\d.]+)",
            text).groups()
    return numbers


RULES = {"decodable": decodable_words, "lost_from": lost_from, "settle_order": settle_order_words,
         "sign_test": sign_test_p, "restores": rewind_words, "ablation_test": ablation_p, "matters_more": ablation_words}

# -- the numbers of the page -------------------------------------------------------------------------------------


def probe_rows(seeds: Sequence[Mapping[str, Any]], phase: str) -> list[dict[str, Any]]:
    """Per layer at ``phase``: accuracies on the noisy probes' original label, chance, decodable seeds, words."""
    rows = []
    for layer in seeds[0]["layers"]:
        at = [s["probes"]["at_phases"][phase][layer] for s in seeds if phase in s["probes"]["at_phases"]]
        flags = [a["noisy_original"]["decodable"] for a in at]
        rows.append({"layer": layer, "accuracy": cell([a["noisy_original"]["accuracy"] for a in at]),
                     "chance": same([round(a["noisy_original"]["chance"], 6) for a in at], ".2f"),
                     "count": count(flags),
                     "assigned": cell([a["noisy_assigned"]["accuracy"] for a in at]),
                     "words": decodable_words(flags)})
    return rows


def model_numbers(model: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the page says of one model but the rewind and ablation verdicts (families across models)."""
    seeds = model["seeds"]
    layers = seeds[0]["layers"]
    probes = {phase: probe_rows(seeds, phase) for phase in ("test_loss_min", "noisy_memorised", "last")}
    memorised = {row["layer"]: row["words"] for row in probes["noisy_memorised"]}
    settled = [s["similarity"]["settled_epoch"] for s in seeds]
    order, ordered = settle_order_words(settled, layers)
    between = model["between"]
    return {
        "name": model["name"].upper(), "n": len(seeds), "layers": layers, "epochs": seeds[0]["epochs"],
        "phases": {phase: cell([s["phases"][phase] for s in seeds], ".0f") for phase in seeds[0]["phases"]},
        "probes": probes, "lost_from": lost_from(layers, memorised),
        "settled": [(layer, cell([s[layer] for s in settled], ".0f")) for layer in layers],
        "settle_order": order, "ordered_seeds": ordered,
        "cka_samples": {s["similarity"]["n_samples"] for s in seeds}.pop(),
        "between": [(layer, cell([p["cka_same"][layer] for p in between.values()])) for layer in layers] if between
        else [], "between_pairs": len(between),
        "between_reference": next(iter(between)).split("-")[0] if between else None,
        "last_epoch": same([s["interventions"]["epoch"] for s in seeds]),
    }


def rewind_numbers(models: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per model, per rewind (last 1, 2, 3 layers): accuracies before and after, sign tests, q-values and words."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, model in models.items():
        seeds = model["seeds"]
        measures = seeds[0]["interventions"]["measures"]
        assigned = measures.index("noisy_assigned")
        rows[name] = []
        for k in range(len(seeds[0]["interventions"]["rewind"])):
            names = [list(s["interventions"]["rewind"])[k] for s in seeds]
            after = [s["interventions"]["rewind"][n] for s, n in zip(seeds, names)]
            memo = [a[assigned] - s["interventions"]["baseline"][assigned] for a, s in zip(after, seeds)]
            row = {"layers": names[0].split("@")[0], "epoch": same([int(n.split("@")[1]) for n in names]),
                   "assigned": cell([a[assigned] for a in after]),
                   "assigned_before": cell([s["interventions"]["baseline"][assigned] for s in seeds]),
                   "probes": {m: cell([a[i] for a in after]) for i, m in enumerate(measures)},
                   "memo_p": sign_test_p(memo, "less"), "memo_down": sum(d < 0 for d in memo)}
            test = [s.get("interventions_test_set") for s in seeds]
            if all(test):
                change = [t["rewind"][n] - t["baseline"] for t, n in zip(test, names)]
                row.update(test_before=cell([t["baseline"] for t in test], ".3f"),
                           test_after=cell([t["rewind"][n] for t, n in zip(test, names)], ".3f"),
                           test_change=cell(change, "+.3f"), test_up=sum(d > 0 for d in change),
                           test_p=sign_test_p(change, "greater"), n_test=same([t["n_test"] for t in test]))
            rows[name].append(row)
        for key, word in (("memo", "undoes memorisation"), ("test", "raises test accuracy")):
            family = [row for row in rows[name] if f"{key}_p" in row]
            for row, q in zip(family, benjamini_hochberg([row[f"{key}_p"] for row in family])):
                row[f"{key}_q"], row[f"{key}_words"] = q, rewind_words(q, word)
    return rows


def ablation_numbers(models: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per model, per hidden layer and measure: the large unit's accuracy, its matched null, seeds at the floor,
    the combined p-value, its q-value and words."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, model in models.items():
        seeds = model["seeds"]
        measures = seeds[0]["interventions"]["measures"]
        rows[name] = []
        for layer in seeds[0]["interventions"]["ablate"]:
            ablate = [s["interventions"]["ablate"][layer] for s in seeds]
            for i, measure in enumerate(measures):
                p_values = [a["p_value"][i] for a in ablate]
                rows[name].append({
                    "layer": layer, "measure": MEASURES[measure], "accuracy": cell([a["accuracy"][i] for a in ablate]),
                    "null": cell([a["null_mean"][i] for a in ablate]),
                    "at_floor": sum(p <= 1 / (N_DRAWS + 1) + 1e-9 for p in p_values), "p": ablation_p(p_values),
                    "mean_abs": cell([a["mean_abs"] for a in ablate]),
                    "units": cell([a["null_n_units_median"] for a in ablate], ".0f")})
    family = [row for model in rows.values() for row in model]
    for row, q in zip(family, benjamini_hochberg([row["p"] for row in family])):
        row["q"], row["words"] = q, ablation_words(q)
    return rows


def tables(model: Mapping[str, Any]) -> str:
    """The full tables of one model (every layer and phase), in Markdown."""
    seeds = model["seeds"]
    layers = seeds[0]["layers"]
    out = [f"### {model['name'].upper()} ({len(seeds)} seeds)", "",
           "Linear probes trained on clean probes, scored on the noisy probes (accuracy; chance; seeds where "
           "the original label is decodable, BH q <= 0.05 in the layer x epoch family):", "",
           "| layer | phase | original label | chance | decodable (seeds) | assigned label | held-out clean | test |",
           "|---|---|---|---|---|---|---|---|"]
    for phase in ("test_loss_min", "noisy_memorised", "last"):
        for layer in layers:
            at = [s["probes"]["at_phases"][phase][layer] for s in seeds if phase in s["probes"]["at_phases"]]
            if at:
                out.append(f"| {layer} | {phase} | {cell([a['noisy_original']['accuracy'] for a in at])} | "
                           f"{cell([a['noisy_original']['chance'] for a in at])} | "
                           f"{count([a['noisy_original']['decodable'] for a in at])} | "
                           f"{cell([a['noisy_assigned']['accuracy'] for a in at])} | "
                           f"{cell([a['clean']['accuracy'] for a in at])} | {cell([a['test']['accuracy'] for a in at])} |")
    measures = seeds[0]["interventions"]["measures"]
    out += ["", f"Interventions at the last epoch ({cell([s['interventions']['epoch'] for s in seeds], '.0f')}), "
            "accuracy on the stored probes:", "", "| intervention | " + " | ".join(measures) + " |",
            "|---|" + "---|" * len(measures),
            "| none | " + " | ".join(cell([s["interventions"]["baseline"][m] for s in seeds])
                                    for m in range(len(measures))) + " |"]
    for k in range(len(seeds[0]["interventions"]["rewind"])):
        names = [list(s["interventions"]["rewind"])[k] for s in seeds]
        out.append(f"| rewind {names[0].split('@')[0]} to the test-loss minimum | " + " | ".join(
            cell([s["interventions"]["rewind"][n][m] for s, n in zip(seeds, names)]) for m in range(len(measures))) + " |")
    for layer in seeds[0]["interventions"]["ablate"]:
        ablate = [s["interventions"]["ablate"][layer] for s in seeds]
        out.append(f"| ablate {layer}'s large unit | " + " | ".join(
            f"{cell([a['accuracy'][m] for a in ablate])}; null {cell([a['null_mean'][m] for a in ablate])}"
            for m in range(len(measures))) + " |")
    return "\n".join(out) + "\n"


def rule_text(rule: Any) -> str:
    """A rule's docstring as one Markdown paragraph (its reST roles as code spans)."""
    text = " ".join((rule.__doc__ or "").split()).replace("``", "`")
    return re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text).replace("`SHARE_NEEDED`", f"{SHARE_NEEDED:.0%}")


def context(data: Path = HERE) -> dict[str, Any]:
    """The numbers, words and verdicts of the page."""
    raw = {name: read_model(data, name) for name in MODELS}
    models = {name: model_numbers(model) for name, model in raw.items()}
    n = {m["n"] for m in models.values()}
    if len(n) != 1:
        raise SystemExit(f"render: the models have {sorted(n)} seeds; run examples/beyond_seeds.py for every seed")
    n = n.pop()
    return {
        "models": models, "n": n, "k": needed(n), "share_needed": f"{SHARE_NEEDED:.0%}", "level": f"{LEVEL:g}",
        "coverage": f"{100 * (1 - 2 / 2 ** n):.4g}%", "null": null_simulation(data), "rules_null": rules_null(data),
        "rewinds": rewind_numbers(raw), "ablations": ablation_numbers(raw), "n_draws": N_DRAWS,
        "floor": f"{1 / (N_DRAWS + 1):.3f}", "measures": MEASURES,
        "tables": {name: tables(model) for name, model in raw.items()},
        "rules": {name: rule_text(rule) for name, rule in RULES.items()},
    }


def render(**paths: Path) -> str:
    """The page, rendered from :func:`context` with the template beside this script."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["p"] = lambda p: f"{p:.3g}"
    return env.get_template(TEMPLATE).render(**context(**paths))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the page instead of writing it")
    parser.add_argument("--data", type=Path, default=HERE, help="the outputs of beyond_seeds.py (default: %(default)s)")
    parser.add_argument("--page", type=Path, default=PAGE, help="the page to write or check (default: %(default)s)")
    parser.add_argument("--simulate", action="store_true",
                        help="first measure the false-positive rates of the rewind and ablation words in simulation, "
                             "into DATA/rules_null.txt (a few minutes)")
    args = parser.parse_args(argv)
    if args.simulate:
        simulate(args.data / "rules_null.txt",
                 n_cells=sum(len(rows) for rows in ablation_numbers({m: read_model(args.data, m) for m in MODELS}).values()))
    page = render(data=args.data)
    if args.check:
        committed = args.page.read_text()
        if committed != page:
            sys.stdout.writelines(difflib.unified_diff(committed.splitlines(True), page.splitlines(True),
                                                       f"{args.page} (committed)", f"{args.page} (rendered)"))
            return 1
        return 0
    args.page.write_text(page)
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
