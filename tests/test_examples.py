"""The reproduction scripts of examples/ pass settings that `actlab record` accepts, and the ones docs/reproduction.md states.

Each script is run with ``ACTLAB`` pointing at a stand-in that parses every command with actlab's own
parser and validates ``record`` settings into a RecordConfig, then logs them instead of training.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STAND_IN = """
import json, sys
from actlab.cli import build_parser
from actlab.cli.record import config_from_args

args = build_parser().parse_args(sys.argv[1:])
entry = {"command": args.command}
if args.command == "record":
    entry["config"] = config_from_args(args).to_dict()
else:
    entry["runs"] = [str(r) for r in (args.runs if args.command == "compare" else [args.run])]
with open(LOG, "a") as log:
    log.write(json.dumps(entry) + "\\n")
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run_script(tmp_path: Path, script: str, *names: str, **variables: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    log = tmp_path / "commands.jsonl"
    stand_in = tmp_path / "stand_in.py"
    stand_in.write_text(f"LOG = {str(log)!r}\n" + STAND_IN)
    env = {**os.environ, "ACTLAB": f"{sys.executable} {stand_in}", "RUNS": str(tmp_path / "runs"), **variables}
    done = subprocess.run(["bash", str(ROOT / "examples" / script), *names], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, entries


def test_reproduce_cpu_records_analyses_and_compares_the_three_models(tmp_path):
    done, entries = _run_script(tmp_path, "reproduce_cpu.sh")
    assert done.returncode == 0, done.stderr
    records = [e["config"] for e in entries if e["command"] == "record"]
    assert [c["model"] for c in records] == ["mlp7", "mlp5", "mlp3"]
    for config in records:
        assert (config["dataset"], config["train_size"], config["test_size"], config["noise"]) == ("cifar10", 10000, None, 0.3)
        assert (config["lr"], config["batch_size"], config["epochs"], config["record_epochs"]) == (1e-4, 128, 600, "log:40")
        assert list(config["width"]) == [512] * {"mlp7": 6, "mlp5": 4, "mlp3": 2}[config["model"]]
    analyses = [e["runs"][0] for e in entries if e["command"] == "analyze"]
    assert analyses == [str(tmp_path / "runs" / m) for m in ("mlp7", "mlp5", "mlp3")]
    assert entries[-1] == {"command": "compare", "runs": analyses}


def test_dd_search_changes_one_factor_per_setting(tmp_path):
    done, entries = _run_script(tmp_path, "dd_search.sh")
    assert done.returncode == 0, done.stderr
    records = {Path(e["config"]["out"]).name: e["config"] for e in entries if e["command"] == "record"}
    reference = records["reference"]
    assert (reference["model"], reference["train_size"], reference["test_size"], reference["lr"]) == ("mlp7", 2000, 2000, 1e-4)
    changed = {
        name: {key for key in config if config[key] != reference[key]} - {"out", "epochs"}
        for name, config in records.items()
    }
    assert changed == {"reference": set(), "lr1e-3": {"lr"}, "lr1e-5": {"lr"}, "w128": {"width"}, "w1024": {"width"},
                       "b32": {"batch_size"}, "b512": {"batch_size"}, "wd5e-4": {"weight_decay"}, "n5000": {"train_size"},
                       "mlp5-wd5e-4": {"model", "width", "weight_decay"}, "mlp3-wd5e-4": {"model", "width", "weight_decay"}}
    assert entries[-1]["command"] == "compare" and len(entries[-1]["runs"]) == len(records)


def test_dd_search_skips_analysed_settings_and_refuses_unknown_ones(tmp_path):
    summary = tmp_path / "runs" / "w128" / "analysis" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text("{}")
    done, entries = _run_script(tmp_path, "dd_search.sh", "w128", "b512")
    assert done.returncode == 0, done.stderr
    assert [Path(e["config"]["out"]).name for e in entries if e["command"] == "record"] == ["b512"]
    assert not [e for e in entries if e["command"] == "compare"]  # only the full search compares
    done, _ = _run_script(tmp_path, "dd_search.sh", "lr9")
    assert done.returncode == 2 and "unknown setting 'lr9'" in done.stderr


def test_reproduce_gpu_runs_the_full_training_set_on_cuda(tmp_path):
    done, entries = _run_script(tmp_path, "reproduce_gpu.sh", "mlp7")
    assert done.returncode == 0, done.stderr
    (config,) = [e["config"] for e in entries if e["command"] == "record"]
    assert (config["train_size"], config["device"], config["epochs"], config["record_epochs"]) == (None, "cuda", 1000, "log:60")
    assert [e["command"] for e in entries] == ["record", "analyze"]  # one model: nothing to compare


def test_reproduce_seeds_records_each_model_as_one_ensemble_of_five_seeds(tmp_path):
    done, entries = _run_script(tmp_path, "reproduce_seeds.sh")
    assert done.returncode == 0, done.stderr
    records = [e["config"] for e in entries if e["command"] == "record"]
    assert [c["model"] for c in records] == ["mlp7", "mlp5", "mlp3"]
    for config in records:
        assert (config["seeds"], config["noise_per_seed"], config["data_seed"]) == ([0, 1, 2, 3, 4], False, None)
        assert (config["train_size"], config["test_size"], config["noise"], config["epochs"]) == (2000, 2000, 0.3, 150)
        assert (config["lr"], config["batch_size"], config["record_epochs"]) == (1e-4, 128, "log:24")
        assert (config["probe_clean"], config["probe_noisy"], config["probe_test"]) == (200, 200, 200)
    analyses = [e["runs"][0] for e in entries if e["command"] == "analyze"]
    assert analyses == [str(tmp_path / "runs" / m) for m in ("mlp7", "mlp5", "mlp3")]
    assert entries[-1] == {"command": "compare", "runs": analyses}


def test_cnn_double_descent_cpu_and_full_size(tmp_path):
    done, entries = _run_script(tmp_path, "cnn_double_descent.sh")
    assert done.returncode == 0, done.stderr
    (config,) = [e["config"] for e in entries if e["command"] == "record"]
    assert (config["model"], config["width"], config["noise"], config["lr"], config["augment"]) == ("cnn5", [8], 0.2, 1e-4, "crop-flip")
    assert (config["train_size"], config["test_size"], config["epochs"], config["device"]) == (2000, 1000, 40, "cpu")
    assert entries[-1] == {"command": "analyze", "runs": [str(tmp_path / "runs" / "cnn5-k8")]}
    full = tmp_path / "full"
    full.mkdir()
    done, entries = _run_script(full, "cnn_double_descent.sh", FULL="1", MODEL="resnet18k", WIDTH="64")
    assert done.returncode == 0, done.stderr
    (config,) = [e["config"] for e in entries if e["command"] == "record"]
    assert (config["model"], config["width"], config["epochs"], config["record_epochs"]) == ("resnet18k", [64], 1000, "log:40")
    assert (config["train_size"], config["test_size"], config["probe_clean"], config["device"]) == (None, None, 1000, "auto")
