"""Render docs/reproduction.md from the committed outputs under docs/reproduction/.

Every number and every verdict of the page comes from the files next to this script (``seeds/``:
the ``summary.json`` of each ensemble and of each seed, each seed's metrics CSV, the ``actlab compare``
table; ``gpu/``: the full-scale run) and from the settings written in examples/reproduce_seeds.sh.
The prose is the Jinja2 template ``reproduction.md.j2``; the numbers are read by the small accessor
functions below, one per quantity, so that a change of the summary format is a change of one accessor.

    python docs/reproduction/render.py            # rewrite docs/reproduction.md
    python docs/reproduction/render.py --check    # exit 1 when the committed page differs from its data

It lives here, beside the data it reads and the page it writes, rather than in ``benchmarks/`` (which
measures the tool) or in the package (which must not know this study); tests/test_reproduction_page.py
re-renders the page and fails when a number on it differs from its source.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import xarray as xr

from actlab.analysis import curves, large_activation
from actlab.analysis.curves import best_and_final_test
from actlab.analysis.inference import LEVEL
from actlab.analysis.seeds import interval
from actlab.findings import center, fmt, fmt_epoch, fmt_percent

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PAGE = ROOT / "docs" / "reproduction.md"
TEMPLATE = "reproduction.md.j2"
SCRIPT = ROOT / "examples" / "reproduce_seeds.sh"
MODELS = ("mlp7", "mlp5", "mlp3")
MEMORISATION_FILENAME = "memorisation.json"
"""examples/seed_memorisation.py's output in the data folder (its section is left out where it is missing)."""
SHARE_NEEDED = 0.8
"""A claim's direction must hold in at least this share of the seeds (4 of 5) to be called reproduced or contradicted."""
HALF_WIDTH_WANTED = 0.05
"""Claim 5: the half-width of a seed's excess interval that would decide it, for the sample size the page gives."""

# -- the committed outputs ---------------------------------------------------------------------------------------


def read_model(data: Path, model: str) -> dict[str, Any]:
    """The ensemble summary, each seed's summary and each seed's metrics of ``model`` under ``data`` (seeds/)."""
    ensemble = json.loads((data / f"{model}_summary.json").read_text())
    seeds = {seed: json.loads((data / f"{model}_{seed}_summary.json").read_text()) for seed in ensemble["seeds"]}
    metrics = {seed: pd.read_csv(data / f"{model}_{seed}_metrics.csv", index_col="epoch") for seed in ensemble["seeds"]}
    return {"name": model, "ensemble": ensemble, "seeds": seeds, "metrics": metrics}


def script_settings(script: Path) -> dict[str, str]:
    """The flags of the ``actlab record`` line of examples/reproduce_seeds.sh, with the script's defaults filled in."""
    text = script.read_text().replace("\\\n", " ")
    defaults = dict(re.findall(r"^(\w+)=\$\{\w+:-([^}]*)\}", text, flags=re.M))
    line = next(line for line in text.splitlines() if "$ACTLAB record" in line)
    words = [re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), w) for w in shlex.split(line)]
    return {words[i][2:]: words[i + 1] for i in range(len(words) - 1) if words[i].startswith("--")}


def compare_rows(data: Path) -> dict[str, dict[str, str]]:
    """The rows (run -> column -> cell) of the committed ``actlab compare`` table."""
    lines = [line for line in (data / "compare_table.md").read_text().splitlines() if line.startswith("|")]

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]

    header = cells(lines[0])
    return {row[0]: dict(zip(header, row)) for row in map(cells, lines[2:])}


# -- accessors: one per quantity read from a summary (adapt these when the summary format changes) ------------------


def dd_present(summary: Mapping[str, Any], curve: str = "test_loss") -> bool:
    """Whether one seed's double-descent detector found double descent in ``curve``."""
    dd = summary["double_descent"]
    return bool((dd if curve == "test_loss" else dd[curve])["present"])


def clean_learned(summary: Mapping[str, Any]) -> tuple[bool, int | None]:
    """One seed's clean samples learned (the high-plateau criterion) and the epoch; summaries from before the
    criterion carry only the epoch."""
    phases = summary["phases"]
    epoch = phases["clean_learned_epoch"]
    return bool(phases.get("clean_learned", epoch is not None)), epoch


def noisy_fitted(summary: Mapping[str, Any]) -> int | None:
    """The epoch one seed's noisy labels are fitted (99 % train accuracy on their assigned labels)."""
    return summary["phases"]["noisy_fitted_epoch"]


def depth_slope(summary: Mapping[str, Any], phase: str, grouping: str = "noisy_by_original") -> Any:
    """Slope of the clean-noisy cosine with depth at ``phase`` (one seed, or an interval over seeds)."""
    trend = summary["separation"]["at_phases"].get(phase, {}).get("depth_trend", {}).get(grouping)
    return None if trend is None else trend["slope"]


def trend_decision(summary: Mapping[str, Any], phase: str, grouping: str = "noisy_by_original") -> int:
    """One seed's depth trend at ``phase``: +1 when the cosine falls with depth (more separation deeper), -1 when it
    rises, 0 when the test decides neither. Summaries with the calibrated tests: the test of the slope's change since
    the first recorded epoch (``direction``, Benjamini-Hochberg in family depth_trend); earlier ones: the seed's
    bootstrap interval of the slope over classes below / above 0."""
    trend = summary["separation"]["at_phases"].get(phase, {}).get("depth_trend", {}).get(grouping)
    if trend is None:
        return 0
    if "direction" in trend:
        return {"decrease": 1, "increase": -1}.get(trend["direction"], 0)
    low, high = trend["low"], trend["high"]
    return 0 if low is None or high is None else 1 if high < 0 else -1 if low > 0 else 0


def layer_cosines(summary: Mapping[str, Any], phase: str, grouping: str = "noisy_by_original") -> dict[str, dict[str, Any]]:
    """Layer -> cosine, noise floor, cosine at the first recorded epoch, and (one seed) whether it is below its floor:
    the floor test's decision (``<grouping>_below_floor``) in summaries with the calibrated tests, else the cosine
    lying below the clean-halves floor (``noise_floor``)."""
    by_layer = summary["separation"]["at_phases"].get(phase, {}).get("by_layer", {})
    out = {}
    for layer, v in by_layer.items():
        floor = v.get(f"{grouping}_floor", v.get("noise_floor"))
        below = v.get(f"{grouping}_below_floor")
        if below is None and f"{grouping}_below_floor" not in v and isinstance(floor, float):
            below = v[grouping] is not None and v[grouping] < floor
        out[layer] = {"cosine": v[grouping], "floor": floor, "epoch0": v[f"{grouping}_epoch0"], "below": below}
    return out


def phase_epoch(summary: Mapping[str, Any], phase: str, key: str = "phase_epoch") -> Any:
    """The epoch of a training phase (``phase_epoch``) or the recorded epoch it is read at (``recorded_epoch``)."""
    return summary["phase_epochs"].get(phase, {}).get(key)


def large_unit(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The large-activation section: ``dominant``, ``explained_by``, ``ratio_to_median``, ``r2_difference`` ..."""
    return summary["large_activation"]


def path_layers(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Layer -> path-attribution numbers at the last epoch (split, null, excess with its interval, gain)."""
    return summary["paths"]["by_layer"]


def path_decisions(at: Mapping[str, Any]) -> tuple[bool, int]:
    """One seed's path split in one layer: beyond its null, and its change since initialisation (+1 grown, -1 shrunk,
    0 neither). Summaries with the calibrated tests: the permutation test (``beyond_null``) and the test of the change
    (``gain_direction``), each after Benjamini-Hochberg in its family; earlier ones: the bootstrap interval of the
    excess over the null above 0, and a change beyond half the null's 95 % range."""
    if "beyond_null" in at:
        return bool(at["beyond_null"]), {"increase": 1, "decrease": -1}.get(at.get("gain_direction"), 0)
    if at["excess_low"] is None or at["split_gain"] is None:
        return False, 0
    spread = (at["null_high"] - at["null_low"]) / 2
    return at["excess_low"] > 0, 1 if at["split_gain"] > spread else -1 if at["split_gain"] < -spread else 0


# -- the verdict rule --------------------------------------------------------------------------------------------


def needed(n: int) -> int:
    """Seeds in which a direction must hold: at least :data:`SHARE_NEEDED` of ``n``."""
    return math.ceil(SHARE_NEEDED * n - 1e-9)


def verdict(directions: Sequence[int]) -> str:
    """Rule: *reproduced* when the study's direction (+1) holds in at least 80 % of the seeds, *contradicted* when the
    opposite (-1) does, else *inconclusive* (0: a seed whose tests decide neither way)."""
    k = needed(len(directions))
    if sum(d > 0 for d in directions) >= k:
        return "reproduced"
    if sum(d < 0 for d in directions) >= k:
        return "contradicted"
    return "inconclusive"


def combined(verdicts: Mapping[str, str]) -> str:
    """A claim over models: the common verdict when every model has it, else each model named with its own."""
    kinds = set(verdicts.values())
    if len(kinds) == 1:
        return kinds.pop()
    return "; ".join(f"{kind} in {', '.join(m.upper() for m, v in verdicts.items() if v == kind)}"
                     for kind in ("reproduced", "contradicted", "inconclusive") if kind in kinds)


def claim1_direction(summary: Mapping[str, Any], model: str) -> int:
    """+1: the double-descent detector finds double descent of the test loss in MLP7, or none in MLP5 and MLP3; -1
    otherwise."""
    return 1 if dd_present(summary) == (model == "mlp7") else -1


def claim2_direction(summary: Mapping[str, Any]) -> int:
    """+1: clean samples learned before the noisy labels are fitted; -1: noisy labels fitted first, or clean samples
    never learned while the noisy labels are fitted; 0: neither reached."""
    learned, clean_epoch = clean_learned(summary)
    fitted = noisy_fitted(summary)
    if learned and (fitted is None or clean_epoch < fitted):
        return 1
    return -1 if fitted is not None else 0


def claim3_direction(summary: Mapping[str, Any]) -> int:
    """+1: when the noisy labels are fitted the seed's depth-trend test finds the clean-noisy cosine falling with depth
    (more separation deeper; relative to the first recorded epoch where the summary tests that change, else the slope's
    bootstrap interval), -1: rising, 0: neither (``trend_decision`` in render.py)."""
    return trend_decision(summary, "noisy_memorised")


def claim4_direction(summary: Mapping[str, Any]) -> int:
    """+1: a dominant unit explained by the input; -1: no dominant unit; 0: a dominant unit not explained by the input."""
    large = large_unit(summary)
    if not large["dominant"]:
        return -1
    return 1 if large["explained_by"] == "input" else 0


def claim5_direction(at: Mapping[str, Any]) -> int:
    """One layer of one seed at the last epoch: +1 when the split is beyond its permutation null and has grown since
    initialisation, -1 when it has shrunk since initialisation, else 0 (``path_decisions`` in render.py)."""
    beyond, change = path_decisions(at)
    return 1 if beyond and change > 0 else -1 if change < 0 else 0


def tally(directions: Sequence[int]) -> dict[str, Any]:
    """Seeds for and against a direction, and the verdict of :func:`verdict`."""
    return {"for": sum(d > 0 for d in directions), "against": sum(d < 0 for d in directions), "n": len(directions),
            "verdict": verdict(directions)}


# -- numbers for the page ----------------------------------------------------------------------------------------


def over_seeds(values: Sequence[float | None]) -> dict[str, Any]:
    """Median and distribution-free interval over seeds (:func:`actlab.analysis.seeds.interval`)."""
    return interval([None if v is None else float(v) for v in values])


def best_and_final_values(model: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Best and final test loss and accuracy over seeds, from each seed's metrics CSV."""
    found = [best_and_final_test(xr.Dataset.from_dataframe(frame)) for frame in model["metrics"].values()]
    return {name: over_seeds([float(ds[name]) for ds in found]) for name in found[0].data_vars}


def path_counts(rows: Sequence[Mapping[str, Any]]) -> str:
    """How many seeds find one layer's split beyond its null, grown and shrunk since initialisation."""
    decisions = [path_decisions(at) for at in rows]
    return (f"beyond its null in {sum(beyond for beyond, _ in decisions)} of {len(rows)} seeds, grown since "
            f"initialisation in {sum(c > 0 for _, c in decisions)}, shrunk in {sum(c < 0 for _, c in decisions)}")


def permutation_p_words(p: Mapping[str, Any], floor: Mapping[str, Any], permutations: Mapping[str, Any]) -> str:
    """A permutation p-value over seeds: "p <= 1/(n+1) in every seed" when its largest seed is at the floor, else
    its largest value."""
    n = int(permutations["median"])
    if p["high"] <= floor["median"]:
        return f"p ≤ 1/({n:,}+1) in every seed"
    return f"p ≤ {fmt(p['high'], '.2g')} in every seed ({n:,} permutations)"


def dynamics_numbers(ens: Mapping[str, Any]) -> dict[str, Any] | None:
    """The per-sample dynamics over seeds (the ensemble summary's ``dynamics`` section), formatted; None for runs
    recorded before the store kept every training sample's trajectory."""
    found = ens.get("dynamics")
    if not found:
        return None
    ranking, groups = found["mislabel_ranking"], found["groups"]
    return {
        "auc": fmt(ranking["auc"]), "precision": fmt(ranking["precision"]),
        "noise_rate": fmt_percent(ranking["noise_rate"]["median"]), "null_high": fmt(ranking["null_high"]),
        "p_words": permutation_p_words(ranking["p_value"], ranking["p_floor"], ranking["n_permutations"]),
        **{f"{group}_{key}": fmt(groups[group][key]) for group in ("clean", "noisy")
           for key in ("learned_epoch_q25", "learned_epoch_median", "learned_epoch_q75", "learned_fraction",
                       "forgetting_events_mean", "confidence_mean", "variability_mean")},
    }


def memorised_direction(row: Mapping[str, Any], statistic: str) -> int:
    """One layer of one seed at the last epoch: +1 when the early/late test (of the separation, or of the path split)
    rejects (Benjamini-Hochberg in its family) with the late-memorised half ahead (separating more, or giving the larger path split), -1 with
    the early half ahead, 0 when it does not reject."""
    return {"late": 1, "early": -1}.get(row[f"{statistic}_direction"], 0)


def memorised_answer(directions: Sequence[int]) -> str:
    """Rule: *yes* when the late-memorised half is ahead (+1) in at least 80 % of the seeds, *no, the early half* when
    the early one is (-1), else *not shown* (0: a seed whose test does not reject): the seeds the verdict rule needs."""
    return {"reproduced": "yes", "contradicted": "no, the early half", "inconclusive": "not shown"}[verdict(directions)]


def memorisation_numbers(found: Mapping[str, Any]) -> dict[str, Any]:
    """The early/late memorisation analysis of one model (its entry of ``memorisation.json``), formatted: per layer
    the cosines and path splits of each half with their differences over seeds, and each seed's decision."""
    over, seeds = found["over_seeds"]["memorisation"], [s["memorisation"] for s in found["per_seed"].values()]
    layers = {}
    for layer, row in over["by_layer"].items():
        cells = {key: fmt(row[key]) for key in ("cos_early", "cos_late", "separation_excess", "split_early",
                                                 "split_late", "split_excess")}
        for statistic in ("separation", "split"):
            directions = [memorised_direction(s["by_layer"][layer], statistic) for s in seeds]
            cells[f"{statistic}_seeds"] = {"late": directions.count(1), "early": directions.count(-1),
                                           "none": directions.count(0), "answer": memorised_answer(directions)}
            cells[f"{statistic}_epochs"] = fmt(row[f"{statistic}_epochs_rejected"], ".0f")
        layers[layer] = cells
    differences = {layer: row["separation_excess"] for layer, row in over["by_layer"].items()}
    n_tests, n_permutations = int(center(over["families"]["memorised_separation"]["size"])), int(center(over["n_permutations"]))
    return {"late_further": [layer for layer, d in differences.items() if d["low"] is not None and d["low"] > 0],
            "early_further": [layer for layer, d in differences.items() if d["high"] is not None and d["high"] < 0],
            "rejected": sum(c[f"{statistic}_seeds"][side] for c in layers.values() for statistic in ("separation", "split")
                            for side in ("late", "early")),
            "cells": 2 * len(layers) * len(seeds),
            "floor_needed": math.ceil(n_tests / (n_permutations + 1) / LEVEL - 1e-9),
            "n_early": fmt(over["n_early"], ".0f"), "n_late": fmt(over["n_late"], ".0f"),
            "median_epoch": fmt(over["median_epoch"], ".0f"), "n_tests": n_tests,
            "n_permutations": n_permutations, "rule": center(over["rule"]),
            "epochs_tested": int(center(next(iter(over["by_layer"].values()))["separation_epochs_tested"])),
            "layers": layers}


def model_numbers(model: dict[str, Any], n_test_probes: int) -> dict[str, Any]:
    """Everything the page says of one model, formatted, with the per-claim tallies."""
    ens, seeds, name = model["ensemble"], model["seeds"], model["name"]
    dd, error = ens["double_descent"], ens["double_descent"]["test_error"]
    metrics = list(model["metrics"].values())
    hidden = [layer for layer in path_layers(ens) if layer != "output"]
    per_layer = {layer: tally([claim5_direction(path_layers(s)[layer]) for s in seeds.values()]) for layer in hidden}
    half_widths = [(at["excess_high"] - at["excess_low"]) / 2 for s in seeds.values()
                   for layer, at in path_layers(s).items() if layer != "output" and at["excess_low"] is not None]
    half = float(np.median(half_widths))
    phases = ("test_loss_min", "noisy_memorised", "last")
    k = needed(len(seeds))
    below = {phase: [f"{layer} ({count}/{len(seeds)})" for layer in layer_cosines(ens, phase)
                     if (count := sum(bool(layer_cosines(s, phase).get(layer, {}).get("below")) for s in seeds.values())) >= k]
             for phase in phases}
    trends = {phase: [trend_decision(s, phase) for s in seeds.values()] for phase in phases}
    large = large_unit(ens)
    explained = [large_unit(s)["explained_by"] for s in seeds.values()]
    return {
        "name": name, "label": name.upper(), "n": ens["n_seeds"],
        "wall_time": f"{metrics[0]['wall_time'].iloc[-1]:,.0f}",
        "epochs": int(metrics[0].index[-1]),
        "dd": {"share": dd["present"], "error_share": error["present"],
               "first_min_epoch": fmt_epoch(dd["first_min_epoch"]), "first_min": fmt(dd["first_min"]),
               "peak_epoch": fmt_epoch(dd["peak_epoch"]), "final": fmt(dd["final"]), "n_peak": (dd["peak_epoch"] or {"n": 0})["n"],
               "descent": fmt(dd["descent"]), "error_first_min": fmt(error["first_min"]),
               "error_peak": fmt(error["peak"]), "error_final": fmt(error["final"]), "error_descent": fmt(error["descent"])},
        "test": {key: fmt_percent(v) if "acc" in key and "epoch" not in key else fmt_epoch(v) if "epoch" in key else fmt(v)
                 for key, v in best_and_final_values(model).items()},
        "noisy_true_acc_final": fmt_percent(over_seeds([m["train_noisy_true_acc"].iloc[-1] for m in metrics])),
        "clean_learned_epoch": fmt_epoch(ens["phases"]["clean_learned_epoch"]),
        "noisy_fitted_epoch": fmt_epoch(ens["phases"]["noisy_fitted_epoch"]),
        "slope": {phase: fmt(depth_slope(ens, phase), ".2g") for phase in phases},
        "trend_seeds": {phase: {"falling": d.count(1), "rising": d.count(-1), "neither": d.count(0)}
                        for phase, d in trends.items()},
        "below_floor": below,
        "cosines": {phase: {layer: {key: fmt(values[key]) for key in ("cosine", "floor", "epoch0")}
                            for layer, values in layer_cosines(ens, phase).items()} for phase in phases},
        "phase_epoch": {phase: fmt_epoch(phase_epoch(ens, phase)) for phase in phases},
        "recorded_epoch": {phase: fmt_epoch(phase_epoch(ens, phase, "recorded_epoch")) for phase in phases},
        "large": {"dominant": large["dominant"], "ratio_to_median": fmt(large["ratio_to_median"]),
                  "ratio_to_second": fmt(large["ratio_to_second"]), "r2_difference": fmt(large["r2_difference"], ".2g"),
                  "explained": {w: explained.count(w) for w in ("input", "output", "undecided") if explained.count(w)}},
        "paths": {layer: {"split": fmt(at["split"]), "epoch0": fmt(at["split_epoch0"]), "null_low": fmt(at["null_low"]),
                          "null_high": fmt(at["null_high"]), "excess": fmt(at["excess"]),
                          "gain": fmt(at["split_gain"], ".2g"), "tally": per_layer.get(layer),
                          "seeds": path_counts([path_layers(s)[layer] for s in seeds.values()])}
                  for layer, at in path_layers(ens).items()},
        "dynamics": dynamics_numbers(ens),
        "half_width": fmt(half, ".2g"),
        "probes_needed": f"{math.ceil(n_test_probes * (half / HALF_WIDTH_WANTED) ** 2):,}",
        "claims": {
            1: tally([claim1_direction(s, name) for s in seeds.values()]),
            2: tally([claim2_direction(s) for s in seeds.values()]),
            3: tally([claim3_direction(s) for s in seeds.values()]),
            4: tally([claim4_direction(s) for s in seeds.values()]),
            5: {**max(per_layer.values(), key=lambda t: (t["verdict"] == "reproduced", t["for"])),
                "verdict": ("reproduced" if any(t["verdict"] == "reproduced" for t in per_layer.values()) else
                            "contradicted" if all(t["verdict"] == "contradicted" for t in per_layer.values()) else
                            "inconclusive")},
        },
    }


def gpu_numbers(gpu: Path) -> dict[str, str]:
    """The full-scale MLP7 run: its strongest separation and that layer's cosine at the last epoch."""
    summary = json.loads((gpu / "mlp7_summary.json").read_text())
    sep = summary["separation"]
    return {"layer": sep["layer"], "epoch": str(sep["epoch"]), "cosine": fmt(sep["cosine"]),
            "last": fmt(sep["last_epoch"][sep["layer"]]["noisy_by_original"]), "last_epoch": str(summary["paths"]["epoch"])}


RULES: dict[str, Callable[..., Any]] = {"verdict": verdict, "combined": combined, "claim 1": claim1_direction,
                                        "claim 2": claim2_direction, "claim 3": claim3_direction,
                                        "claim 4": claim4_direction, "claim 5": claim5_direction,
                                        "memorised answer": memorised_answer, "memorised direction": memorised_direction}
"""Each rule's docstring is printed on the page, so the page states the rule that chose each verdict."""


def context(data: Path = HERE / "seeds", gpu: Path = HERE / "gpu", script: Path = SCRIPT) -> dict[str, Any]:
    """The numbers, words and verdicts of the page."""
    settings = script_settings(script)
    models = {name: model_numbers(read_model(data, name), int(settings["probe-test"])) for name in MODELS}
    joined = data / MEMORISATION_FILENAME
    memorised = json.loads(joined.read_text()) if joined.exists() else {}
    for name, model in models.items():
        model["memorisation"] = memorisation_numbers(memorised[name]) if name in memorised else None
    epochs = {m["epochs"] for m in models.values()}
    if epochs != {int(settings["epochs"])}:
        raise SystemExit(f"render: the metrics end at epochs {sorted(epochs)} but {script} records {settings['epochs']} "
                         "epochs; collect the outputs of the script as it is committed (examples/collect_reproduction.sh)")
    n = {m["n"] for m in models.values()}.pop()
    return {
        "settings": settings, "models": models, "n": n, "k": needed(n), "share_needed": f"{SHARE_NEEDED:.0%}",
        "coverage": fmt_percent(interval(list(range(n)))["coverage"]),  # of every interval over n seeds
        "verdicts": {c: combined({m: models[m]["claims"][c]["verdict"] for m in MODELS}) for c in range(1, 6)},
        "rules": {name: " ".join((rule.__doc__ or "").split()) for name, rule in RULES.items()},
        "compare": compare_rows(data), "gpu": gpu_numbers(gpu), "wanted": f"{HALF_WIDTH_WANTED:g}",
        "criteria": {"plateau_points": f"{100 * curves.PLATEAU_TOL:g}", "learned": f"{100 * curves.LEARNED_ACC:g}%",
                     "to_median": f"{large_activation.MIN_RATIO_TO_MEDIAN:g}",
                     "to_second": f"{large_activation.MIN_RATIO_TO_SECOND:g}"},
    }


def render(**paths: Path) -> str:
    """The page, rendered from :func:`context` with the template beside this script."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["thousands"] = lambda text: f"{int(text):,}"
    return env.get_template(TEMPLATE).render(**context(**paths))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the page instead of writing it")
    parser.add_argument("--data", type=Path, default=HERE / "seeds", help="the collected outputs (default: %(default)s)")
    parser.add_argument("--script", type=Path, default=SCRIPT, help="the script that made them (default: %(default)s)")
    parser.add_argument("--page", type=Path, default=PAGE, help="the page to write or check (default: %(default)s)")
    args = parser.parse_args(argv)
    page = render(data=args.data, script=args.script)
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
