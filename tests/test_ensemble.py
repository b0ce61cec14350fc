"""Many seeds at once: an ensemble's replicas equal the single runs of their seeds, resume after kill -9, one writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_store import assert_same_recording, kill_recording, resume_in_child

import actlab
from actlab.cli import main
from actlab.errors import ConfigError, OutputError
from actlab.files import FOLDER_LOCK_FILENAME, marker_kind, replica_dirs, writer_lock
from actlab.record import RecordConfig, record, resume
from actlab.record.config import parse_seeds
from actlab.store import CHECKPOINT_DIGEST_FILENAME, CHECKPOINT_FILENAME, METRICS, open_store

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = ["--dataset", "synthetic", "--synthetic", "train=200,test=100,classes=4,shape=1x4x4", "--model", "mlp3",
        "--width", "8", "--lr", "0.01", "--batch-size", "32", "--probe-clean", "20", "--probe-noisy", "20",
        "--probe-test", "20", "--no-progress", "--device", "cpu"]


@pytest.fixture
def tiny(tmp_path) -> RecordConfig:
    """The settings of TINY as a RecordConfig: 1 epoch, every epoch recorded."""
    return RecordConfig(dataset="synthetic", synthetic="train=200,test=100,classes=4,shape=1x4x4", model="mlp3",
                        width=8, lr=1e-2, batch_size=32, probe_clean=20, probe_noisy=20, probe_test=20, epochs=1,
                        record_epochs="every:1", progress=False, device="cpu", out=str(tmp_path / "ensemble"))


def _same_probes(a, b) -> None:
    for name in ("dataset_index", "label", "original_label", "is_noisy"):
        np.testing.assert_array_equal(a.probes[name].values, b.probes[name].values, err_msg=name)


def test_replicas_equal_single_runs_of_their_seeds(tiny, tmp_path):
    ensemble = record(tiny, seeds=[4, 1, 2])
    assert marker_kind(ensemble) == "ensemble"
    assert json.loads((ensemble / ".actlab.json").read_text())["replicas"] == ["seed4", "seed1", "seed2"]
    assert replica_dirs(ensemble) == [ensemble / "seed4", ensemble / "seed1", ensemble / "seed2"]
    for seed in (1, 2):  # both with the data of seed 4, the first
        assert actlab.open_run(ensemble / f"seed{seed}").layer_names == ["hidden1", "hidden2", "output"]
        single_dir = record(tiny, seed=seed, data_seed=4, out=str(tmp_path / f"single{seed}"))
        assert replica_dirs(single_dir) == []
        single = open_store(single_dir)
        view = open_store(ensemble / f"seed{seed}")
        config = view.attrs["config"]
        assert (config["seed"], config["data_seed"], config["seeds"]) == (seed, 4, None)
        assert config["resolved"]["ensemble"]["seeds"] == [4, 1, 2]
        assert config["resolved"]["ensemble"]["replica"] == f"seed{seed}"
        assert view.attrs["status"] == "complete" and list(view.epochs) == [0, 1]
        _same_probes(view, single)
        assert list(view.parameters.data_vars) == list(single.parameters.data_vars)
        for name in view.parameters.data_vars:  # (a) the initialisation, bit for bit
            np.testing.assert_array_equal(view.parameters[name].sel(epoch=0).values,
                                          single.parameters[name].sel(epoch=0).values, err_msg=name)
        for metric in METRICS:  # (b) one epoch later: the same batches, float rounding apart
            if metric != "wall_time":
                np.testing.assert_allclose(view.metrics[metric].values, single.metrics[metric].values, rtol=1e-5,
                                           err_msg=metric)
        for name in view.layer_names:
            np.testing.assert_allclose(view.layers[name]["preact"].values, single.layers[name]["preact"].values,
                                       rtol=1e-4, atol=1e-5, err_msg=f"{name}/preact")
        for name in view.parameters.data_vars:
            np.testing.assert_allclose(view.parameters[name].values, single.parameters[name].values,
                                       rtol=1e-4, atol=1e-5, err_msg=name)
        for name in ("loss", "margin"):  # float16: its rounding apart
            np.testing.assert_allclose(view.dynamics[name].values.astype(float), single.dynamics[name].values.astype(float),
                                       rtol=2e-3, atol=2e-3, err_msg=f"dynamics/{name}")
        np.testing.assert_array_equal(view.dynamics["correct_original"].values[0], single.dynamics["correct_original"].values[0])
    losses = [open_store(path).metrics["test_loss"].values[-1] for path in replica_dirs(ensemble)]
    assert len(set(losses)) == 3  # three different initialisations


def test_noise_per_seed_draws_each_replicas_data_from_its_seed(tiny, tmp_path):
    ensemble = record(tiny, seeds=[0, 3], noise_per_seed=True, record_epochs="0")
    views = [open_store(path) for path in replica_dirs(ensemble)]
    assert [v.attrs["config"]["data_seed"] for v in views] == [0, 3]
    assert not np.array_equal(views[0].probes["dataset_index"].values, views[1].probes["dataset_index"].values)
    single = open_store(record(tiny, seed=3, record_epochs="0", out=str(tmp_path / "single3")))
    _same_probes(views[1], single)
    np.testing.assert_allclose(views[1].metrics["test_loss"].values, single.metrics["test_loss"].values, rtol=1e-5)
    shared = open_store(record(tiny, seeds=[0, 3], record_epochs="0", out=str(tmp_path / "shared")) / "seed3")
    _same_probes(shared, views[0])


def test_one_writer_and_output_refusals(tiny, tmp_path):
    ensemble = record(tiny, seeds=[0, 1], record_epochs="0")
    with pytest.raises(OutputError, match="already holds an ensemble"):
        record(tiny, seeds=[0, 1])
    with pytest.raises(OutputError, match="holds an actlab ensemble folder"):
        record(tiny)
    with pytest.raises(ConfigError, match="is a replica of the ensemble"):
        resume(ensemble / "seed1")
    for busy in (ensemble, ensemble / "seed1"):  # another process writes the ensemble, or one of its replicas
        with writer_lock(busy / FOLDER_LOCK_FILENAME, "test"), pytest.raises(OutputError, match="being written by process"):
            record(tiny, seeds=[0, 1], overwrite=True)
    assert marker_kind(ensemble) == "ensemble" and (ensemble / CHECKPOINT_FILENAME).is_file()  # refused: nothing touched
    assert open_store(ensemble / "seed1").attrs["status"] == "complete"
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="files actlab did not write"):
        record(tiny, seeds=[0, 1], out=str(tmp_path / "foreign"))
    replaced = record(tiny, seeds=[2], overwrite=True, record_epochs="0")  # old replicas go, the new one comes
    assert sorted(p.name for p in replaced.iterdir() if not p.name.startswith(".")) == [CHECKPOINT_FILENAME, CHECKPOINT_DIGEST_FILENAME, "seed2"]


def test_kill_9_then_resume_matches_uninterrupted_ensemble(tmp_path):
    argv = [*TINY, "--seeds", "0-2", "--epochs", "40", "--record-epochs", "every:3", "--checkpoint-every", "2"]
    reference = tmp_path / "reference"
    assert main(["record", *argv, "--out", str(reference)]) == 0

    run_dir = tmp_path / "killed"
    kill_recording(argv, run_dir, watched=run_dir / "seed2", committed=8)
    assert open_store(run_dir / "seed0").attrs["status"] == "recording"
    assert "resuming after epoch" in resume_in_child(run_dir)

    for seed in range(3):  # bit for bit: the CPU, one thread, the same sequence of operations
        resumed, uninterrupted = open_store(run_dir / f"seed{seed}"), open_store(reference / f"seed{seed}")
        assert resumed.attrs["status"] == "complete"
        assert list(uninterrupted.epochs) == list(range(0, 40, 3)) + [40]
        assert_same_recording(resumed, uninterrupted)


@pytest.mark.parametrize(("spec", "expected"), [("0-3", (0, 1, 2, 3)), ("0,1,5", (0, 1, 5)), ("0-2,8", (0, 1, 2, 8)),
                                                ([3, 1], (3, 1))])
def test_seed_lists(spec, expected):
    assert parse_seeds(spec) == expected
    assert RecordConfig(seeds=spec).seeds == expected
    assert RecordConfig.from_dict(RecordConfig(seeds=spec).to_dict()).seeds == expected


@pytest.mark.parametrize(("settings", "needle"), [
    ({"seeds": "3-1"}, "malformed"), ({"seeds": "a,b"}, "malformed"), ({"seeds": ""}, "names no seed"),
    ({"seeds": [0, 0]}, "repeats a seed"), ({"seeds": [-1]}, "outside 0..4294967295"), ({"seeds": [0.5]}, "list of integers"),
    ({"seeds": [0, 1], "seed": 2}, "exclude each other"), ({"data_seed": -1}, "data-seed -1 is not an integer from 0"),
    ({"noise_per_seed": True}, "ensembles only"), ({"seeds": [0, 1], "noise_per_seed": True, "data_seed": 0}, "drop one"),
])
def test_bad_ensemble_settings_are_one_line_errors(settings, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        RecordConfig(**settings)
    assert "\n" not in str(info.value)


def test_cli_refuses_seed_with_seeds(tmp_path, capsys):
    assert main(["record", *TINY, "--seed", "0", "--seeds", "0-1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--seed and --seeds exclude each other" in err
    assert not (tmp_path / "run").exists()


def test_analyze_and_compare_an_ensemble_give_findings_over_seeds(tiny, tmp_path, capsys):
    import json

    from actlab.analysis.seeds import aggregate_summaries

    ensemble = record(tiny, seeds=[0, 1, 2], epochs=4, record_epochs="every:1")
    single = record(tiny, seed=0, epochs=4, record_epochs="every:1", out=str(tmp_path / "single"))
    assert main(["analyze", str(ensemble), "--no-progress", "--format", "png"]) == 0
    out = capsys.readouterr().out
    written = json.loads((ensemble / "analysis" / "summary.json").read_text())
    per_seed = {f"seed{s}": json.loads((ensemble / f"seed{s}" / "analysis" / "summary.json").read_text()) for s in (0, 1, 2)}
    assert written == json.loads(json.dumps(aggregate_summaries(per_seed)))  # the seeds' own summaries, condensed
    assert written["n_seeds"] == 3 and written["seeds"] == ["seed0", "seed1", "seed2"]
    assert out.startswith("Values are medians over 3 seeds")
    html = (ensemble / "analysis" / "report.html").read_text()
    assert "Each seed: test curves" in html and "Values are medians over 3 seeds" in html and "(3 seeds)" in html and "could not run" not in html
    assert (ensemble / "analysis" / "figures" / "curves.png").read_bytes()[:4] == b"\x89PNG"  # drawn with bands
    assert main(["compare", str(ensemble), str(single), "--out", str(tmp_path / "cmp"), "--no-progress"]) == 0
    table = (tmp_path / "cmp" / "table.md").read_text().splitlines()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table[2:]}
    assert rows["ensemble"][1] == "3" and rows["single"][1] == "1"
    assert "could not run" not in (tmp_path / "cmp" / "report.html").read_text()
    compared = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert compared["ensemble"] == written
