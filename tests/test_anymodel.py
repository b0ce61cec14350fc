"""Recording any model: factories, instances, your own data, conv layers, cnn5 and resnet18k, augmentation."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import zarr
from torch import nn
from fixtures_store import assert_same_recording, interrupted_in_epoch

import actlab
from actlab.analysis import analyze, summary
from actlab.cli import main
from actlab.digest import with_digest
from actlab.errors import ConfigError
from actlab.record import RecordConfig, record, resume
from actlab.record.models import layer_specs, make_cnn5
from actlab.record.trainer import crop_flip
from actlab.store import open_store, read_attrs

SYNTHETIC = "train=96,test=40,classes=4,shape=3x8x8,seed=1"


@pytest.fixture
def conv_config(tmp_path, torch_one_thread) -> RecordConfig:
    return RecordConfig(dataset="synthetic", synthetic=SYNTHETIC, model="cnn5", width=2, epochs=3, lr=1e-2,
                        batch_size=32, record_epochs="every:1", probe_clean=16, probe_noisy=8, probe_test=12,
                        noise=0.25, checkpoint_every=0, out=str(tmp_path / "run"), progress=False, device="cpu")


def _normalised_probes(view) -> torch.Tensor:
    norm = view.attrs["dataset"]["normalization"]
    images = view.probes["image"].values.astype(np.float32) / 255.0
    mean, std = (np.asarray(norm[k], np.float32)[:, None, None] for k in ("mean", "std"))
    return torch.from_numpy((images - mean) / std)


def test_cnn5_channel_means_equal_the_mean_of_the_full_maps(conv_config):
    run_dir = record(conv_config)
    view = open_store(run_dir)
    assert view.layer_names == ["relu1", "relu2", "relu3", "relu4", "output"]
    assert [view.attrs["layers"][i]["kind"] for i in range(5)] == ["conv"] * 4 + ["dense"]
    assert view.layers["relu3"]["preact"].dims == ("epoch", "sample", "unit") and view.layers["relu3"]["preact"].shape[2] == 8
    # independently: rebuild the CNN from the stored parameters and take the full maps of each ReLU
    net = make_cnn5(3, 4, 2).eval()
    x = _normalised_probes(view)
    for slot, epoch in enumerate(view.epochs):
        net.load_state_dict({name: torch.as_tensor(view.parameters[name].values[slot]) for name in view.parameters.data_vars})
        maps, h = {}, x
        with torch.no_grad():
            for name, module in net.named_children():
                h = module(h)
                maps[name] = h
        for k in range(1, 5):
            expected = maps[f"relu{k}"].numpy().mean(axis=(2, 3))
            np.testing.assert_allclose(view.layers[f"relu{k}"]["preact"].values[slot], expected, rtol=1e-4, atol=1e-6,
                                       err_msg=f"relu{k} epoch {epoch}")
        np.testing.assert_allclose(view.layers["output"]["preact"].values[slot], maps["output"].numpy(), rtol=1e-4, atol=1e-5)


def test_resnet18k_unreduced_every_analysis_runs(conv_config):
    run_dir = record(conv_config, model="resnet18k", conv_reduce="none", augment="crop-flip", epochs=2)
    view = open_store(run_dir)
    assert len(view.layer_names) == 18 and view.layer_names[-1] == "output"
    first = view.layers["layer1.0.relu1"]["preact"]
    assert first.dims == ("epoch", "sample", "channel", "y", "x") and first.shape == (3, 36, 2, 8, 8)
    assert view.layers["layer4.1.relu2"]["preact"].shape[2:] == (16, 1, 1)
    assert "layer1.0.bn1.running_mean" in view.parameters and "output.weight" in view.parameters
    run = actlab.open_run(run_dir)
    np.testing.assert_allclose(run.layer("layer1.0.relu1").values, first.values.mean(axis=(3, 4)), rtol=1e-5, atol=1e-7)
    result = summary(analyze(run, progress=False))
    assert result["errors"] == {}


def test_factory_model_through_python_and_cli(conv_config, tmp_path):
    args = {"width": 3, "classes": 4}
    run_dir = record(conv_config, model="anymodel_nets:make_net", model_args=args, out=str(tmp_path / "py"))
    view = open_store(run_dir)
    assert view.layer_names == ["features.1.gelu", "head.2.relu", "head.3.linear"]  # GELU, ReLU, the last Linear
    assert view.attrs["config"]["model"] == "anymodel_nets:make_net" and view.attrs["config"]["model_args"] == args
    assert view.layers["features.1.gelu"]["preact"].shape == (4, 36, 3)
    cli_dir = tmp_path / "cli"
    assert main(["record", "--dataset", "synthetic", "--synthetic", SYNTHETIC, "--model", "anymodel_nets:make_net",
                 "--model-args", '{"width": 3, "classes": 4}', "--epochs", "3", "--lr", "0.01", "--batch-size", "32",
                 "--record-epochs", "every:1", "--probe-clean", "16", "--probe-noisy", "8", "--probe-test", "12",
                 "--noise", "0.25", "--checkpoint-every", "0", "--device", "cpu", "--no-progress",
                 "--layers", "features.0,head.3", "--out", str(cli_dir)]) == 0
    cli = open_store(cli_dir)
    assert cli.layer_names == ["features.0.conv2d", "head.3.linear"] and cli.attrs["layers"][0]["reduce"] == "mean"
    assert [layer["module"] for layer in cli.attrs["layers"]] == ["features.0", "head.3"]
    # the same model and data: the GELU of the Python run is the GELU of the CLI run's conv output
    np.testing.assert_array_equal(cli.layers["head.3.linear"]["preact"].values, view.layers["head.3.linear"]["preact"].values)


def test_resumed_factory_run_is_bit_identical(conv_config, tmp_path):
    config = conv_config.replace(model="anymodel_nets:make_net", model_args={"width": 3}, epochs=4, checkpoint_every=2,
                                 augment="crop-flip")
    reference = open_store(record(config, out=str(tmp_path / "reference")))
    with interrupted_in_epoch(4), pytest.raises(KeyboardInterrupt):
        record(config, out=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="recorded from the factory anymodel_nets:make_net, which resuming imports"):
        resume(tmp_path / "run")  # the factory the store names is imported only when the user names it again
    with pytest.raises(ConfigError, match="not anymodel_nets:TinyNet"):
        resume(tmp_path / "run", model="anymodel_nets:TinyNet")
    resume(tmp_path / "run", model="anymodel_nets:make_net")
    resumed = open_store(tmp_path / "run")
    assert resumed.attrs["status"] == "complete"
    store = tmp_path / "run" / "store.zarr" / "zarr.json"
    before = store.stat().st_mtime_ns
    resume(tmp_path / "run")  # complete: nothing is written (and nothing imported)
    assert store.stat().st_mtime_ns == before
    assert_same_recording(resumed, reference)


def test_instance_and_own_data(conv_config, tmp_path, capsys):
    from anymodel_nets import TinyNet

    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 3, 6, 6)).astype(np.float32)
    y = np.arange(80) % 4
    x[:, 0] += y[:, None, None]  # a learnable signal
    train, test = (torch.from_numpy(x[:60]), torch.from_numpy(y[:60])), (torch.from_numpy(x[60:]), torch.from_numpy(y[60:]))
    run_dir = record(conv_config, model=TinyNet(), train=train, test=test, probe_clean=None, probe_noisy=None,
                     probe_test=None, normalize="none", out=str(tmp_path / "own"))
    assert "cannot rebuild" in capsys.readouterr().err
    view = open_store(run_dir)
    assert view.attrs["config"]["model"] == "instance" and view.attrs["dataset"]["name"] == "custom"
    assert view.probes["image"].dtype == np.float32
    np.testing.assert_array_equal(np.sort(view.training["dataset_index"].values), np.arange(60))
    index = view.probes["dataset_index"].values[:4]
    np.testing.assert_array_equal(view.probes["image"].values[:4], x[index])  # the float inputs, as given
    root = zarr.open_group(tmp_path / "own" / "store.zarr", mode="r+")
    root.attrs.put(with_digest({**root.attrs, "status": "recording"}))  # as if interrupted
    with pytest.raises(ConfigError, match="cannot rebuild"):
        resume(run_dir)
    assert read_attrs(run_dir)["config"]["resolved"]["model_class"] == "anymodel_nets.TinyNet"


@pytest.mark.parametrize("spec, args, message", [
    ("no_such_module_xyz:make", None, "cannot be imported"),
    ("anymodel_nets:missing", None, "has no attribute 'missing'"),
    ("anymodel_nets:NOT_CALLABLE", None, "not callable"),
    ("anymodel_nets:not_a_module", None, "not a torch.nn.Module"),
    ("anymodel_nets:make_net", '{"depth": 3}', "failed when called"),
    ("anymodel_nets:make_net", "{width: 3}", "not valid JSON"),
    ("anymodel_nets:make_net", "[3]", "not a JSON object"),
    ("mlp3", '{"width": 3}', "apply to a factory model"),
    ("nets.py", None, "unknown model"),
])
def test_factory_errors_are_one_line(conv_config, spec, args, message):
    with pytest.raises(ConfigError, match=message) as info:
        record(conv_config, model=spec, model_args=args)
    assert "\n" not in str(info.value) and "; " in str(info.value)


@pytest.mark.parametrize("changes, message", [
    ({"layers": "features.9"}, "not submodules"),
    ({"layers": "pool,pool"}, "malformed"),
    ({"conv_reduce": "median"}, "unknown conv-reduce"),
    ({"augment": "mixup"}, "unknown augment"),
    ({"seeds": "0-1", "seed": 0, "model": "cnn5"}, "MLP ensembles"),
])
def test_layer_and_option_errors(conv_config, changes, message):
    with pytest.raises(ConfigError, match=message):
        record(conv_config.replace(model="anymodel_nets:make_net"), **changes)


def test_crop_flip_matches_an_independent_loop():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 2, 6, 7)).astype(np.float32)
    fill = np.asarray([-1.5, 2.0], np.float32)
    offsets = rng.integers(0, 9, (5, 2))
    flips = np.asarray([True, False, True, False, True])
    out = crop_flip(torch.from_numpy(x), torch.from_numpy(fill), torch.from_numpy(offsets), torch.from_numpy(flips)).numpy()
    for i in range(5):
        padded = np.broadcast_to(fill[:, None, None], (2, 14, 15)).copy()
        padded[:, 4:10, 4:11] = x[i]
        crop = padded[:, offsets[i, 0]:offsets[i, 0] + 6, offsets[i, 1]:offsets[i, 1] + 7]
        np.testing.assert_array_equal(out[i], crop[:, :, ::-1] if flips[i] else crop)


def test_factory_in_the_current_folder_imports_as_python_m_finds_it(conv_config, tmp_path, monkeypatch):
    (tmp_path / "yourmod_h19.py").write_text("from anymodel_nets import make_net\n\ndef make(width=3):\n"
                                             "    return make_net(width=width)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "yourmod_h19", raising=False)
    path_before = list(sys.path)
    try:
        view = open_store(record(conv_config, model="yourmod_h19:make", epochs=1, out=str(tmp_path / "run")))
    finally:
        sys.modules.pop("yourmod_h19", None)
    assert view.attrs["config"]["model"] == "yourmod_h19:make" and view.layer_names[-1] == "head.3.linear"
    assert sys.path == path_before  # the current folder was on sys.path for the import only
    with pytest.raises(ConfigError, match="current folder or on PYTHONPATH"):
        record(conv_config, model="no_such_mod_h19:make", out=str(tmp_path / "other"))


def test_vectors_reach_a_model_that_takes_vectors(conv_config, tmp_path, capsys):
    rng = np.random.default_rng(1)
    y = np.arange(90) % 3
    x = (rng.standard_normal((90, 6)) * [1, 2, 3, 4, 5, 6] + 10 * np.eye(3)[y] @ np.ones((3, 6))).astype(np.float32)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    run_dir = record(conv_config, model=net, train=(x[:60], y[:60]), test=(x[60:], y[60:]), probe_clean=None,
                     probe_noisy=None, probe_test=None, noise=0.2, out=str(tmp_path / "vectors"))
    assert "layers auto records 2 of the 3 modules" in capsys.readouterr().err
    view = open_store(run_dir)
    assert view.layer_names == ["1.relu", "2.linear"] and view.probes["image"].shape[1:] == (6, 1, 1)
    # independently: per-feature standardisation over the training x, then the stored weights
    mean, std = x[:60].mean(axis=0), x[:60].std(axis=0)
    np.testing.assert_allclose(view.attrs["dataset"]["normalization"]["mean"], mean, rtol=1e-5)
    inputs = (view.probes["image"].values[:, :, 0, 0] - mean) / std
    for slot in range(len(view.epochs)):
        w0, b0, w2, b2 = (view.parameters[name].values[slot] for name in ("0.weight", "0.bias", "2.weight", "2.bias"))
        hidden = np.maximum(inputs @ w0.T + b0, 0)
        np.testing.assert_allclose(view.layers["1.relu"]["preact"].values[slot], hidden, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(view.layers["2.linear"]["preact"].values[slot], hidden @ w2.T + b2, rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="differ in kind"):
        record(conv_config, model=net, train=(x[:60], y[:60]), test=(x[60:, :, None, None], y[60:]))


class _SharedReluBlock(nn.Module):
    """torchvision's BasicBlock pattern: one ReLU module called twice."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.conv2, self.relu = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.conv2(self.relu(self.conv1(x))))


class BasicBlock(_SharedReluBlock):
    pass


class _Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.block = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(8 * 5, 3)

    def forward(self, x):
        return self.head(self.block(self.embed(x)).flatten(1))


class _FunctionalMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


@pytest.mark.parametrize("model, sample_shape, expected, why", [
    (lambda: _Transformer(), (1, 5, 4), ["block", "head"], "block (TransformerEncoderLayer block"),
    (lambda: nn.Sequential(nn.Conv2d(2, 4, 3), BasicBlock(4), BasicBlock(4), nn.Flatten(), nn.Linear(4 * 36, 3)),
     (1, 2, 8, 8), ["1.basicblock", "2.basicblock", "4.linear"], "2.basicblock (BasicBlock block"),
    (lambda: _FunctionalMLP(), (1, 6), ["fc1", "fc2", "fc3"], "fc2 (Linear, the model has no activation module)"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3)), (1, 6),
     ["2.gelu", "3.linear"], "3.linear (the last module)"),
])
def test_layers_auto_finds_the_blocks_and_says_why(model, sample_shape, expected, why, capsys):
    torch.manual_seed(0)
    specs = layer_specs(model(), torch.randn(sample_shape), "auto", "mean")
    assert [spec.name for spec in specs] == expected
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and f"layers auto records {len(expected)} of the" in line and why in line, line
