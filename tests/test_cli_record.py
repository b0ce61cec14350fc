"""``actlab record`` on the command line: flags, TOML configs, one-line errors, kill -9 and --resume."""

from __future__ import annotations

import json

import pytest
from fixtures_store import assert_same_recording, kill_recording, resume_in_child

from actlab.cli import main
from actlab.store import open_store, store_path

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = ["--dataset", "synthetic", "--synthetic", "train=200,test=60,classes=4,shape=2x4x4,seed=1", "--model", "mlp3",
        "--width", "16", "--epochs", "4", "--lr", "0.01", "--batch-size", "32", "--probe-clean", "40",
        "--probe-noisy", "20", "--probe-test", "30", "--no-progress", "--device", "cpu"]


def run_cli(argv):
    """Exit code of ``actlab`` (argparse usage errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def assert_one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error:" in err, err
    for needle in needles:
        assert needle in err, err


def test_help_documents_defaults(capsys):
    assert run_cli(["record", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # undo line wrapping
    for text in ["default: mlp7", "default: 512", "default: 0.3", "default: 0.0001", "default: 128", "default: 300",
                 "default: log:40", "default: 1000", "default: float32", "default: 10", "default: channel",
                 "default: other", "default: cifar10", "ACTLAB_DATA", "examples:", "--resume runs/mlp7"]:
        assert text in out, text


def test_record_via_cli_and_toml_config(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('epochs = 3\nrecord-epochs = "0,3"\nseed = 5\nmodel = "mlp5"\n')
    out = tmp_path / "run"
    assert run_cli(["record", *TINY, "--config", str(config), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    view = open_store(out)
    config_attrs = view.attrs["config"]
    assert config_attrs["seed"] == 5 and config_attrs["model"] == "mlp3"  # flag beats file
    assert config_attrs["epochs"] == 4  # TINY's --epochs beats the file
    assert list(view.epochs) == [0, 3] and view.metrics.sizes["epoch"] == 5


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--model", "mlp9"], ["mlp9"]),
        (["--dataset", "mnist"], ["mnist"]),
        (["--record-epochs", "log:x"], ["every:K", "log:N"]),
        (["--record-epochs", "0,2,9"], ["outside 0..4"]),
        (["--probe-test", "61"], ["probe-test 61", "60"]),
        (["--width", "8,8,8"], ["2 hidden layers"]),
        (["--noise", "1.5"], ["noise"]),
        (["--dataset", "cifar10", "--data-dir", "NODATA", "--no-download"], ["--data-dir", "ACTLAB_DATA"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, needles):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert run_cli(["record", *TINY, *argv, "--out", str(out)]) == 2
    assert_one_line_error(capsys, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_toml_key(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('modle = "mlp3"\n')
    assert run_cli(["record", *TINY, "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert_one_line_error(capsys, "unknown keys", "modle")
    assert not (tmp_path / "run").exists()


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert run_cli(["record", *TINY, "--out", str(blocker / "run")]) == 2
    assert_one_line_error(capsys, "--out")
    assert blocker.read_text() == "not a folder"


def test_existing_run_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["record", *TINY, "--epochs", "1", "--record-epochs", "0,1", "--out", str(out)]
    assert run_cli(args) == 0
    first = open_store(out).attrs["created"]
    capsys.readouterr()
    assert run_cli(args) == 2
    assert_one_line_error(capsys, "already holds a run", "--overwrite", "--resume")
    assert open_store(out).attrs["created"] == first
    assert run_cli([*args, "--overwrite", "--seed", "1"]) == 0
    assert open_store(out).attrs["config"]["seed"] == 1


def test_resume_errors(tmp_path, capsys):
    assert run_cli(["record", "--resume", str(tmp_path / "missing")]) == 2
    assert_one_line_error(capsys, "missing")
    out = tmp_path / "run"
    assert run_cli(["record", *TINY, "--epochs", "1", "--record-epochs", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert run_cli(["record", "--resume", str(out), "--epochs", "9"]) == 2
    assert_one_line_error(capsys, "--epochs")
    zarr_json = store_path(out) / "zarr.json"
    meta = json.loads(zarr_json.read_text())
    meta["attributes"]["schema_version"] = 99
    zarr_json.write_text(json.dumps(meta))
    assert run_cli(["record", "--resume", str(out)]) == 2
    assert_one_line_error(capsys, "schema version 99")


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    argv = [*TINY, "--epochs", "40", "--record-epochs", "every:3", "--checkpoint-every", "2"]
    reference = tmp_path / "reference"
    assert main(["record", *argv, "--out", str(reference)]) == 0

    run_dir = tmp_path / "killed"
    kill_recording(argv, run_dir, watched=run_dir, committed=8)

    view = open_store(run_dir)  # still opens, shows what was committed
    assert view.attrs["status"] == "recording"
    committed = list(view.metrics["epoch"].values)
    assert 8 <= len(committed) < 41 and committed == list(range(len(committed)))
    assert all(e % 3 == 0 for e in view.epochs)

    assert "resuming after epoch" in resume_in_child(run_dir)

    resumed, uninterrupted = open_store(run_dir), open_store(reference)
    assert resumed.attrs["status"] == "complete"
    assert list(uninterrupted.epochs) == list(range(0, 40, 3)) + [40]
    assert_same_recording(resumed, uninterrupted)
