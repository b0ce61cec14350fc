"""Recording: models, activation capture, the trainer, the background writer and the stored run."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from fixtures_store import interrupted_in_epoch
from torch import nn

from actlab.digest import with_digest
from actlab.errors import ConfigError, StoreError, WriteError
from actlab.record import ActivationCapture, BackgroundWriter, make_mlp, record, resume
from actlab.record.models import count_parameters, mlp_layer_specs
from actlab.record.trainer import Trainer
from actlab.store import CHECKPOINT_FILENAME, METRICS, open_store, store_path

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_record_import_forms():
    import actlab
    import actlab.record as subpackage

    assert callable(actlab.record) and callable(subpackage)
    assert subpackage.record is record


# -- models and capture -------------------------------------------------------------------------


@pytest.mark.parametrize("name, hidden", [("mlp3", 2), ("mlp5", 4), ("mlp7", 6)])
def test_mlp_structure_and_parameter_count(name, hidden):
    model = make_mlp(name, 12, 3, 5)
    specs = mlp_layer_specs(model)
    assert [s.name for s in specs] == [f"hidden{k}" for k in range(1, hidden + 1)] + ["output"]
    assert [s.activation for s in specs] == ["relu"] * hidden + ["identity"]
    assert count_parameters(model) == (12 * 5 + 5) + (hidden - 1) * (5 * 5 + 5) + (5 * 3 + 3)
    relus = [m for m in model if isinstance(m, nn.ReLU)]
    assert len(relus) == hidden
    assert model(torch.zeros(2, 3, 2, 2)).shape == (2, 3)


def test_mlp_per_layer_widths():
    model = make_mlp("mlp5", 4, 2, [7, 6, 5, 4])
    assert [(s.fan_in, s.width, s.module) for s in mlp_layer_specs(model)] == [
        (4, 7, "linear1"), (7, 6, "linear2"), (6, 5, "linear3"), (5, 4, "linear4"), (4, 2, "output")]
    with pytest.raises(ConfigError):
        make_mlp("mlp5", 4, 2, [7, 6])


def test_capture_on_any_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))

        def forward(self, x):
            return self.head(torch.tanh(self.conv(x)))

    torch.manual_seed(0)
    net = Net().train()
    x = torch.randn(10, 1, 4, 4)
    out = ActivationCapture(net, {"conv": "conv", "logits": "head.1"}).collect(x, batch_size=3)
    assert net.training  # mode restored
    with torch.no_grad():
        maps = net.conv(x).numpy()
        np.testing.assert_allclose(out["conv"], maps, rtol=1e-6)  # (sample, channel, y, x) kept whole by default
        np.testing.assert_allclose(out["logits"], net(x).numpy(), rtol=1e-6)
    reduced = ActivationCapture(net, {"conv": "conv"}).collect(x, batch_size=4, reduce={"conv": "mean"})["conv"]
    np.testing.assert_allclose(reduced, maps.reshape(10, 2, -1).mean(axis=2), rtol=1e-5)
    largest = ActivationCapture(net, {"conv": "conv"}).collect(x, reduce={"conv": "max"})["conv"]
    np.testing.assert_array_equal(largest, maps.reshape(10, 2, -1).max(axis=2))
    assert not net.conv._forward_hooks  # hooks removed
    half = ActivationCapture(net, {"logits": "head.1"}).collect(x, dtype="float16")
    assert half["logits"].dtype == np.float16
    with pytest.raises(ConfigError, match="no submodules"):
        ActivationCapture(net, {"x": "body.0"})


def test_trainer_epoch_is_seeded_and_matches_manual_loop(tiny_record_config):
    from actlab.record.data import prepare_data

    data = prepare_data(tiny_record_config)

    def trained(seed):
        torch.manual_seed(seed)
        model = make_mlp("mlp3", 32, 4, 16)
        trainer = Trainer(model, data, torch.device("cpu"), batch_size=32, lr=1e-2, seed=seed)
        trainer.train_epoch()
        return model, trainer

    model, trainer = trained(0)
    # the same epoch by hand: seeded permutation, index slicing, Adam
    torch.manual_seed(0)
    manual = make_mlp("mlp3", 32, 4, 16)
    opt = torch.optim.Adam(manual.parameters(), lr=1e-2)
    order = torch.randperm(200, generator=torch.Generator().manual_seed(0))
    x, y = trainer.x_train, trainer.y_train
    for start in range(0, 200, 32):
        idx = order[start:start + 32]
        opt.zero_grad()
        nn.functional.cross_entropy(manual(x[idx]), y[idx]).backward()
        opt.step()
    for a, b in zip(model.parameters(), manual.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other, _ = trained(1)
    assert not torch.equal(next(model.parameters()), next(other.parameters()))

    metrics = trainer.evaluate()
    with torch.no_grad():
        logits = manual(x)
    noisy = torch.as_tensor(data.noisy.is_noisy)
    ce = nn.functional.cross_entropy(logits, y, reduction="none").double()
    true_ce = nn.functional.cross_entropy(logits, trainer.y_train_original, reduction="none").double()
    assert metrics["train_clean_loss"] == pytest.approx(float(ce[~noisy].mean()), rel=1e-6)
    assert metrics["train_noisy_loss"] == pytest.approx(float(ce[noisy].mean()), rel=1e-6)
    assert metrics["train_noisy_true_loss"] == pytest.approx(float(true_ce[noisy].mean()), rel=1e-6)
    hit = (logits.argmax(1) == y).double()
    assert metrics["train_noisy_acc"] == pytest.approx(float(hit[noisy].mean()))


# -- background writer ---------------------------------------------------------------------------


def test_background_writer_order_and_errors():
    seen = []
    writer = BackgroundWriter(maxsize=1)
    for k in range(5):
        writer.submit(seen.append, k)
    writer.flush()
    assert seen == list(range(5))
    assert threading.current_thread().name != "actlab-store-writer"

    def fail():
        raise OSError("disk full")

    writer.submit(fail)
    writer.submit(seen.append, 99)  # skipped after the failure
    with pytest.raises(WriteError, match="disk full"):
        writer.flush()
    assert 99 not in seen
    # the first error stops the writer for good: it is raised again and no later task runs
    with pytest.raises(WriteError, match="disk full"):
        writer.submit(seen.append, 100)
    with pytest.raises(WriteError, match="disk full"):
        writer.close()
    assert 100 not in seen and 99 not in seen


# -- recorded runs ----------------------------------------------------------------------------------


def _arrays(run_dir):
    view = open_store(run_dir)
    metrics = {name: view.metrics[name].values for name in METRICS if name != "wall_time"}
    layers = {name: {"preact": ds["preact"].values} for name, ds in view.layers.items()}
    layers["parameters"] = {name: array.values for name, array in view.parameters.data_vars.items()}
    layers["dynamics"] = {name: array.values for name, array in view.dynamics.data_vars.items()}
    return view, metrics, layers


def _assert_same_run(a, b):
    _, metrics_a, layers_a = _arrays(a)
    _, metrics_b, layers_b = _arrays(b)
    for name in metrics_a:
        np.testing.assert_array_equal(metrics_a[name], metrics_b[name], err_msg=name)
    for name in layers_a:
        for var in layers_a[name]:
            np.testing.assert_array_equal(layers_a[name][var], layers_b[name][var], err_msg=f"{name}/{var}")


def test_record_writes_the_store_schema(tiny_record_config):
    run_dir = record(tiny_record_config)
    view = open_store(run_dir)
    assert view.attrs["status"] == "complete"
    assert view.metrics.sizes["epoch"] == 7 and list(view.metrics["epoch"].values) == list(range(7))
    assert set(view.metrics.data_vars) == set(METRICS)
    assert np.all(np.diff(view.metrics["wall_time"].values) > 0)
    assert view.layer_names == ["hidden1", "hidden2", "output"]
    assert list(view.epochs) == list(range(7))
    assert view.layers["hidden1"]["preact"].shape == (7, 90, 16)
    assert view.parameters["linear1.weight"].shape == (7, 16, 32)
    assert list(view.parameters.data_vars) == [f"{m}.{p}" for m in ("linear1", "linear2", "output") for p in ("weight", "bias")]
    assert view.layers["output"]["preact"].shape == (7, 90, 4)
    assert list(view.probes["group"].values) == ["clean"] * 40 + ["noisy"] * 20 + ["test"] * 30
    assert view.probes["is_noisy"].values[40:60].all() and not view.probes["is_noisy"].values[:40].any()
    assert np.all(view.probes["label"].values[40:60] != view.probes["original_label"].values[40:60])
    config, dataset = view.attrs["config"], view.attrs["dataset"]
    assert config["seed"] == 0 and config["model"] == "mlp3" and config["resolved"]["parameters"] == 32 * 16 + 16 + 16 * 16 + 16 + 16 * 4 + 4
    assert {"python", "torch", "numpy", "actlab", "git_commit"} <= set(config["environment"])
    assert dataset["class_names"] == ["class0", "class1", "class2", "class3"] and dataset["n_noisy"] == 60
    assert (run_dir / CHECKPOINT_FILENAME).is_file()
    tree = xr.open_datatree(store_path(run_dir), engine="zarr", consolidated=False)
    assert tree["layers/hidden2/preact"].dims == ("epoch", "sample", "unit")
    assert tree["probes/image"].dtype == np.uint8
    # training did something: the clean training loss fell
    assert view.metrics["train_clean_loss"][-1] < view.metrics["train_clean_loss"][0]


def test_stored_preacts_equal_numpy_recomputation(tiny_record_config):
    config = tiny_record_config.replace(probe_clean=None, probe_noisy=None, probe_test=None)  # all samples
    run_dir = record(config)
    view = open_store(run_dir)
    norm = view.attrs["dataset"]["normalization"]
    images = view.probes["image"].values.astype(np.float64) / 255.0
    x = ((images - np.array(norm["mean"])[:, None, None]) / np.array(norm["std"])[:, None, None]).reshape(len(images), -1)
    for slot, epoch in enumerate(view.epochs):
        h = x
        for name in view.layer_names:
            layer = view.layers[name]
            w = view.parameters[f"{layer.attrs['module']}.weight"].values[slot]
            b = view.parameters[f"{layer.attrs['module']}.bias"].values[slot]
            pre = h @ w.T.astype(np.float64) + b
            np.testing.assert_allclose(layer["preact"].values[slot], pre, rtol=1e-4, atol=1e-5, err_msg=f"{name} epoch {epoch}")
            h = np.maximum(pre, 0) if layer.attrs["activation"] == "relu" else pre
        # every probe group holds its whole population here, so the stored metrics follow from the logits
        logp = h - h.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        group, label, original = (view.probes[k].values for k in ("group", "label", "original_label"))
        loss = -logp[np.arange(len(h)), label]
        true_loss = -logp[np.arange(len(h)), original]
        metrics = view.metrics.sel(epoch=epoch)
        assert float(metrics["train_clean_loss"]) == pytest.approx(loss[group == "clean"].mean(), rel=1e-4)
        assert float(metrics["train_noisy_loss"]) == pytest.approx(loss[group == "noisy"].mean(), rel=1e-4)
        assert float(metrics["train_noisy_true_loss"]) == pytest.approx(true_loss[group == "noisy"].mean(), rel=1e-4)
        assert float(metrics["test_loss"]) == pytest.approx(loss[group == "test"].mean(), rel=1e-4)
        assert float(metrics["test_acc"]) == pytest.approx((h.argmax(1) == label)[group == "test"].mean())
        # every training sample's trajectory, matched to the probes by dataset index
        train = group != "test"
        at = view.dynamics.sel(epoch=epoch)
        order = np.argsort(view.probes["dataset_index"].values[train])
        stored_order = np.argsort(at["dataset_index"].values)
        assert len(stored_order) == len(order)
        logits, y, y0 = h[train][order], label[train][order], original[train][order]
        others = np.where(np.arange(logits.shape[1]) == y[:, None], -np.inf, logits).max(1)
        expected = {"loss": loss[train][order], "margin": logits[np.arange(len(y)), y] - others,
                    "correct": logits.argmax(1) == y, "correct_original": logits.argmax(1) == y0}
        for name, values in expected.items():
            found = at[name].values[stored_order]
            if found.dtype == bool:
                np.testing.assert_array_equal(found, values, err_msg=f"{name} epoch {epoch}")
            else:
                assert found.dtype == np.float16
                np.testing.assert_allclose(found, values, rtol=2e-3, atol=2e-3, err_msg=f"{name} epoch {epoch}")


def test_same_seed_same_run(tiny_record_config, tmp_path):
    a = record(tiny_record_config)
    b = record(tiny_record_config, out=str(tmp_path / "again"))
    _assert_same_run(a, b)
    c = record(tiny_record_config, out=str(tmp_path / "seed1"), seed=1)
    assert not np.array_equal(_arrays(a)[1]["test_loss"], _arrays(c)[1]["test_loss"])


def test_float16_storage(tiny_record_config):
    run_dir = record(tiny_record_config, dtype="float16", record_epochs="0,6")
    view = open_store(run_dir)
    assert view.layers["output"]["preact"].dtype == np.float16 and list(view.epochs) == [0, 6]
    assert view.parameters["output.weight"].dtype == np.float32
    # the trajectories cover every epoch, recorded or not, and every training sample
    assert list(view.dynamics["epoch"].values) == list(range(7)) and view.dynamics.sizes["train_sample"] == 200
    assert view.dynamics["loss"].dtype == np.float16 and view.dynamics["correct"].dtype == bool
    np.testing.assert_allclose(view.dynamics["loss"].values[:, view.dynamics["is_noisy"].values].astype(float).mean(axis=1),
                               view.metrics["train_noisy_loss"].values, rtol=2e-3)
    np.testing.assert_allclose(view.dynamics["correct_original"].values[:, view.dynamics["is_noisy"].values].mean(axis=1),
                               view.metrics["train_noisy_true_acc"].values)


def test_resume_from_checkpoint_in_process(tiny_record_config, tmp_path):
    config = tiny_record_config.replace(record_epochs="0,1,2,4,6", checkpoint_every=3)
    reference = record(config, out=str(tmp_path / "reference"))

    run_dir = tmp_path / "interrupted"
    with interrupted_in_epoch(5), pytest.raises(KeyboardInterrupt):
        record(config, out=str(run_dir))
    view = open_store(run_dir)
    assert view.attrs["status"] == "recording"
    assert list(view.metrics["epoch"].values) == [0, 1, 2, 3, 4] and list(view.epochs) == [0, 1, 2, 4]
    # the checkpoint follows the cadence (epoch 3); recorded epoch 4 is committed ahead of it and is
    # rewritten, identically, by the resumed run
    assert torch.load(run_dir / CHECKPOINT_FILENAME, weights_only=True)["epoch"] == 3
    resume(run_dir)
    assert open_store(run_dir).attrs["status"] == "complete"
    _assert_same_run(reference, run_dir)
    resume(run_dir)  # complete: nothing to do


def test_resume_without_checkpoint_restarts(tiny_record_config):
    run_dir = record(tiny_record_config, epochs=2, record_epochs="0,2")
    (run_dir / CHECKPOINT_FILENAME).unlink()
    zarr_json = store_path(run_dir) / "zarr.json"
    meta = json.loads(zarr_json.read_text())
    meta["attributes"] = with_digest({**meta["attributes"], "status": "recording"})  # as if interrupted
    zarr_json.write_text(json.dumps(meta))
    before = _arrays(run_dir)
    resume(run_dir)
    after = _arrays(run_dir)
    for name in before[1]:
        np.testing.assert_array_equal(before[1][name], after[1][name])


def test_checkpoint_epochs_follow_the_cadence(tiny_record_config):
    from actlab.record.loop import checkpoint_epochs

    assert checkpoint_epochs(tiny_record_config.replace(epochs=7, checkpoint_every=3)) == [0, 3, 6, 7]
    assert checkpoint_epochs(tiny_record_config.replace(record_epochs="0,1,4", checkpoint_every=0)) == [0, 1, 4, 6]


def _denormal_survives() -> bool:
    """Whether a denormal float survives arithmetic on this thread (False while flushed to zero)."""
    return bool((torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() != 0.0)


@pytest.mark.parametrize("flush", [True, False])
def test_denormals_are_flushed_while_training_on_cpu_only_when_asked(tiny_record_config, monkeypatch, flush):
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    assert _denormal_survives()
    seen = []
    train_epoch = Trainer.train_epoch

    def watched(self):
        seen.append(_denormal_survives())
        return train_epoch(self)

    monkeypatch.setattr(Trainer, "train_epoch", watched)
    record(tiny_record_config.replace(flush_denormal=flush))
    assert seen == [not flush] * tiny_record_config.epochs
    assert _denormal_survives()  # the process is left as it was
    assert open_store(tiny_record_config.run_dir).attrs["config"]["flush_denormal"] is flush


# -- trust nothing read back (issue 16): the checkpoint's digest, "complete" means complete ------------------------


def _interrupted(run_dir) -> None:
    """Set the root status back to recording, as a run killed before its end leaves it (with a matching digest)."""
    root = zarr.open_group(store_path(run_dir), mode="r+")
    root.attrs.put(with_digest({**root.attrs, "status": "recording"}))


def _roll_back(run_dir, slot: int) -> None:
    """Uncommit one recorded epoch in the commit array (its CRC32C stays valid): as a lost commit would leave it."""
    commit = zarr.open_array(store_path(run_dir) / "layers" / "epoch", mode="r+").with_config({"write_empty_chunks": True})
    values = commit[...]
    values[slot] = -1
    commit[...] = values


def test_a_damaged_checkpoint_is_one_line_and_is_not_loaded(tiny_record_config, capsys, monkeypatch):
    from actlab.cli import main

    run_dir = record(tiny_record_config, epochs=2, record_epochs="0,2")
    _interrupted(run_dir)
    checkpoint = run_dir / CHECKPOINT_FILENAME
    raw = bytearray(checkpoint.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    checkpoint.write_bytes(bytes(raw))
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("a damaged checkpoint was loaded"))
    capsys.readouterr()
    assert main(["record", "--resume", str(run_dir)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"actlab: error: checkpoint {checkpoint} fails its SHA-256 check")
    assert "restart from epoch 0 with --resume" in lines[0] and "--overwrite" in lines[0]


def test_the_checkpoint_digest_accepts_the_checkpoint_it_replaces_and_nothing_else(tiny_record_config):
    """The digest file is written before the checkpoint's rename: a kill between the two leaves the previous
    checkpoint, which its ``previous_sha256`` still accepts."""
    import hashlib

    from actlab.record.trainer import checkpoint_digest_path, load_checkpoint

    run_dir = record(tiny_record_config, epochs=2, record_epochs="0,2")
    checkpoint = run_dir / CHECKPOINT_FILENAME
    digest_file = checkpoint_digest_path(checkpoint)
    digests = json.loads(digest_file.read_text())
    assert digests["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest() != digests["previous_sha256"]
    assert load_checkpoint(checkpoint)["epoch"] == 2
    digest_file.write_text(json.dumps({"sha256": "0" * 64, "previous_sha256": digests["sha256"]}))  # the kill's window
    assert load_checkpoint(checkpoint)["epoch"] == 2
    digest_file.write_text(json.dumps({"sha256": "0" * 64, "previous_sha256": "1" * 64}))
    with pytest.raises(StoreError, match="fails its SHA-256 check"):
        load_checkpoint(checkpoint)
    digest_file.unlink()
    with pytest.raises(StoreError, match="has no readable digest file"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("status", ["recording", "complete"])
def test_resume_falls_back_to_epoch_0_when_the_checkpoint_is_ahead_of_the_store(tiny_record_config, capsys, status):
    """Issue 16: with a commit rolled back behind the checkpoint, --resume went on from the checkpoint and marked the
    run complete with the epoch missing for good; a "complete" run with a missing epoch said nothing to resume."""
    reference = record(tiny_record_config, epochs=3, record_epochs="every:1", out=str(tiny_record_config.run_dir) + "-ref")
    run_dir = record(tiny_record_config, epochs=3, record_epochs="every:1")
    _roll_back(run_dir, 1)
    if status == "recording":
        _interrupted(run_dir)
    else:
        with pytest.raises(StoreError, match="root attr status is 'complete' but the commit arrays hold 4 of 4 metric "
                                             "epochs and 3 of 4 recorded epochs"):
            open_store(run_dir)
    capsys.readouterr()
    resume(run_dir)
    err = capsys.readouterr().err
    assert (f"checkpoint {run_dir / CHECKPOINT_FILENAME} (after epoch 3) is ahead of {run_dir}, which lacks committed "
            "epochs 1; restarting from epoch 0") in err
    assert open_store(run_dir).attrs["status"] == "complete"
    _assert_same_run(run_dir, reference)


def test_a_run_is_marked_complete_only_when_every_scheduled_epoch_reads_back_committed(tmp_path):
    from fixtures_store import planted_run

    from actlab.store import RunWriter

    run_dir = planted_run(tmp_path / "run", commit_epochs=[0, 10, 30]).run_dir
    writer = RunWriter.open(run_dir)
    with pytest.raises(StoreError, match=r"lacks committed epochs after training \(metrics \[\], recorded \[20, 40, 50\]\), "
                                         "so it is not marked complete"):
        writer.mark_complete()
    assert open_store(run_dir).attrs["status"] == "recording"
