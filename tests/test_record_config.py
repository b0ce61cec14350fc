"""Settings of a recording run: schedules, widths, the synthetic spec, validation and TOML files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from actlab.errors import ConfigError
from actlab.record.config import (
    RecordConfig,
    load_toml,
    log_epochs,
    parse_schedule,
    parse_synthetic,
    parse_widths,
)


def test_schedule_explicit_list():
    assert parse_schedule("10, 0,5,1,5", 20) == [0, 1, 5, 10]
    assert parse_schedule([3, 1], 5) == [1, 3]


def test_schedule_every():
    assert parse_schedule("every:4", 10) == [0, 4, 8, 10]
    assert parse_schedule("every:5", 10) == [0, 5, 10]
    assert parse_schedule("EVERY:1", 3) == [0, 1, 2, 3]


def test_schedule_log_properties():
    for n, last in [(40, 300), (10, 1000), (5, 5), (2, 7), (30, 31)]:
        epochs = parse_schedule(f"log:{n}", last)
        assert len(epochs) == n and len(set(epochs)) == n
        assert epochs[0] == 0 and epochs[-1] == last and epochs == sorted(epochs)
    assert parse_schedule("log:50", 10) == list(range(11))  # more points than epochs: every epoch
    # dense early, geometric late: gaps never shrink much, and the ratio of late epochs approaches the geometric one
    epochs = np.array(log_epochs(40, 300))
    assert epochs[:10].tolist() == list(range(10))
    ratios = epochs[-5:] / epochs[-6:-1]
    assert np.all((ratios > 1.08) & (ratios < 1.18))


@pytest.mark.parametrize("spec", ["log:x", "every:", "every:0", "log:1", "sometimes", "1,two", "", "fib:3"])
def test_schedule_malformed(spec):
    with pytest.raises(ConfigError, match="every:K"):
        parse_schedule(spec, 10)


def test_schedule_beyond_epochs():
    with pytest.raises(ConfigError, match="outside 0..10"):
        parse_schedule("0,5,11", 10)
    with pytest.raises(ConfigError, match="outside"):
        parse_schedule("-1,5", 10)


def test_widths():
    assert parse_widths(64, 3) == (64, 64, 64)
    assert parse_widths("8,16", 2) == (8, 16)
    assert parse_widths("32", 4) == (32,) * 4
    with pytest.raises(ConfigError, match="2 hidden layers"):
        parse_widths("8,16,32", 2)
    with pytest.raises(ConfigError):
        parse_widths("8,x", 2)


def test_synthetic_spec():
    spec = parse_synthetic("train=50,classes=5,shape=1x2x3")
    assert spec == {"train": 50, "test": 500, "classes": 5, "shape": [1, 2, 3], "seed": 0}
    with pytest.raises(ConfigError, match="unknown keys"):
        parse_synthetic("trian=5")
    with pytest.raises(ConfigError):
        parse_synthetic("shape=3x3")


def test_config_defaults_and_validation():
    config = RecordConfig()
    assert (config.model, config.width, config.noise, config.lr, config.batch_size, config.epochs) == (
        "mlp7", (512,) * 6, 0.3, 1e-4, 128, 300)
    assert config.schedule == log_epochs(40, 300)
    assert str(config.run_dir) == "runs/mlp7"
    assert str(RecordConfig(dataset="digits", model="mlp3").run_dir) == "runs/mlp3-digits"
    for bad in [dict(model="mlp4"), dict(dataset="mnist"), dict(noise=1.0), dict(epochs=0), dict(record_epochs="0,400"),
                dict(device="tpu"), dict(dtype="int8"), dict(betas="0.9"), dict(probe_test=-1), dict(lr=0.0)]:
        with pytest.raises(ConfigError):
            RecordConfig(**bad)


def test_config_round_trip_through_dict():
    config = RecordConfig(model="mlp5", width="8,8,4,4", record_epochs=(0, 2, 3), epochs=3, dataset="synthetic")
    again = RecordConfig.from_dict(config.to_dict())
    assert again == config
    with pytest.raises(ConfigError, match="unknown keys"):
        RecordConfig.from_dict({"modle": "mlp3"})
    assert RecordConfig.from_dict({"model": "mlp3", "environment": {}}, strict=False).model == "mlp3"


def test_example_config_is_valid():
    example = Path(__file__).resolve().parents[1] / "examples" / "record_config.toml"
    config = RecordConfig.from_dict(load_toml(example), where=str(example))
    assert config.model == "mlp7" and config.record_epochs == "log:40" and config.probe_test == 1000


def test_load_toml(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "mlp3"\nrecord-epochs = "every:2"\nwidth = [4, 8]\n')
    assert load_toml(path) == {"model": "mlp3", "record_epochs": "every:2", "width": [4, 8]}
    path.write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")


# -- strict validation of every setting -------------------------------------------------------

NAN, INF = float("nan"), float("inf")
BAD_SETTINGS = [
    ("lr", NAN), ("lr", INF), ("lr", -INF), ("lr", 0.0), ("lr", -1e-3), ("lr", "fast"), ("lr", True),
    ("noise", NAN), ("noise", INF), ("noise", 1.0), ("noise", -0.1), ("noise", "0.3"),
    ("weight_decay", NAN), ("weight_decay", INF), ("weight_decay", -1e-4), ("weight_decay", None),
    ("betas", (0.9, NAN)), ("betas", (INF, 0.9)), ("betas", "0.9,nan"), ("betas", (True, 0.9)), ("betas", (0.9, 1.0)),
    ("betas", 0.9), ("betas", (0.9, 0.99, 0.999)),
    ("width", 1.5), ("width", True), ("width", 0), ("width", -3), ("width", "a,b"), ("width", [4, 8.5]), ("width", 2**16 + 1),
    ("width", None),
    ("out", 5), ("out", ""), ("out", "  "), ("out", b"runs"), ("data_dir", 5), ("data_dir", ""), ("data_dir", ["data"]),
    ("record_epochs", 5), ("record_epochs", [1.5, 2]), ("record_epochs", [True]), ("record_epochs", {"a": 1}),
    ("record_epochs", ["0", "1"]),
    ("synthetic", 5), ("synthetic", ["train=5"]), ("synthetic", {"train": 1.5}), ("synthetic", {"train": True}),
    ("synthetic", {"classes": NAN}), ("synthetic", {"shape": [3, 8]}), ("synthetic", {"shape": 5}),
    ("synthetic", {"shape": "3x0x8"}), ("synthetic", "test=3"), ("synthetic", "seed=-1"), ("synthetic", "train=10**9"),
    ("model", ["mlp3"]), ("dataset", None), ("device", 0), ("dtype", True), ("noise_mode", "pairs"), ("normalize", 1),
]
for _name in ("download", "overwrite", "progress", "cuda_graphs", "flush_denormal"):
    BAD_SETTINGS += [(_name, "no"), (_name, "false"), (_name, 0), (_name, 1), (_name, None)]
for _name, _high in (("epochs", 1_000_000), ("checkpoint_every", 1_000_000), ("batch_size", 2**24),
                     ("eval_batch_size", 2**24), ("seed", 2**32 - 1)):
    BAD_SETTINGS += [(_name, 3.0), (_name, 2.5), (_name, True), (_name, "3"), (_name, NAN), (_name, -1), (_name, _high + 1),
                     (_name, None)]
for _name in ("train_size", "test_size", "probe_clean", "probe_noisy", "probe_test"):
    BAD_SETTINGS += [(_name, 3.0), (_name, True), (_name, "3"), (_name, NAN), (_name, INF), (_name, -1)]


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_every_setting_is_checked_with_a_one_line_message(name, value):
    with pytest.raises(ConfigError) as info:
        RecordConfig(**({"dataset": "synthetic"} if name == "synthetic" else {}), **{name: value})
    message = str(info.value)
    assert "\n" not in message and "; " in message, message
    assert name.replace("_", "-") in message, message  # the flag spelling
    if name != "synthetic":
        assert repr(value) in message, message


@pytest.mark.parametrize(("name", "value"), [("epochs", 0), ("batch_size", 0), ("eval_batch_size", 0), ("train_size", 0),
                                             ("test_size", 0), ("seed", -5), ("checkpoint_every", -1)])
def test_integer_messages_state_the_range(name, value):
    with pytest.raises(ConfigError, match=rf"^{name.replace('_', '-')} {value} is not an integer (from|>=) "):
        RecordConfig(**{name: value})


def test_upper_bounds_are_accepted_and_numbers_normalised():
    config = RecordConfig(epochs=1_000_000, batch_size=2**24, eval_batch_size=2**24, seed=np.int64(2**32 - 1),
                          checkpoint_every=0, lr=np.float32(0.5), noise=0, weight_decay=1, width=2**16, betas=[0, 0.5],
                          out=Path("runs") / "x", data_dir=Path("data"), train_size=np.int32(7), record_epochs=[0, 3])
    assert type(config.seed) is int and type(config.lr) is float and type(config.noise) is float
    assert type(config.weight_decay) is float and type(config.train_size) is int and config.betas == (0.0, 0.5)
    assert config.out == str(Path("runs") / "x") and config.data_dir == "data"
    json.dumps(config.to_dict())  # JSON-ready, no numpy scalars or paths left


@pytest.mark.parametrize(("text", "flag", "shown"), [
    ('lr = "fast"', "lr", "'fast'"), ("lr = nan", "lr", "nan"), ("lr = -inf", "lr", "-inf"), ("out = 5", "out", "5"),
    ("width = 1.5", "width", "1.5"), ("width = true", "width", "True"), ("width = 0", "width", "0"),
    ("width = -3", "width", "-3"), ('width = "a,b"', "width", "'a,b'"), ('download = "no"', "download", "'no'"),
    ("noise = nan", "noise", "nan"), ("noise = 1.0", "noise", "1.0"), ("betas = [0.9, nan]", "betas", "nan"),
    ("weight_decay = -1.0", "weight-decay", "-1.0"), ("epochs = 3.0", "epochs", "3.0"), ("batch-size = true", "batch-size", "True"),
    ('seed = "1"', "seed", "'1'"), ("train_size = 1e3", "train-size", "1000.0"), ("probe_noisy = -2", "probe-noisy", "-2"),
    ("record_epochs = 5", "record-epochs", "5"), ("record_epochs = [0.5]", "record-epochs", "0.5"),
    ("synthetic = 5", "synthetic", "5"), ('data_dir = ""', "data-dir", "''"), ("cuda_graphs = 1", "cuda-graphs", "1"),
])
def test_toml_values_are_checked(tmp_path, text, flag, shown):
    path = tmp_path / "run.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        RecordConfig.from_dict(load_toml(path), where=str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(flag) and shown in message, message


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-0.01"])
def test_cli_rejects_bad_lr_in_one_line(capsys, value):
    from actlab.cli import main

    assert main(["record", "--dataset", "synthetic", f"--lr={value}", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("actlab: error: lr ") and value.lstrip("-") in err, err


def test_cli_rejects_bad_toml_values_in_one_line(tmp_path, capsys):
    from actlab.cli import main

    path = tmp_path / "run.toml"
    path.write_text('download = "no"\n')
    assert main(["record", "--config", str(path), "--dataset", "synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "download 'no' is not a boolean" in err, err


# -- models at their own default widths ----------------------------------------------------------------


@pytest.mark.parametrize("model", ["mlp3", "mlp5", "mlp7"])
def test_every_model_works_at_its_defaults(model):
    n_hidden = {"mlp3": 2, "mlp5": 4, "mlp7": 6}[model]
    built = [RecordConfig().replace(model=model), RecordConfig(model=model), RecordConfig.from_dict({"model": model}),
             RecordConfig(model="mlp5").replace(model=model)]
    for config in built:
        assert config.width == (512,) * n_hidden
        assert RecordConfig.from_dict(config.to_dict()) == config
        assert RecordConfig.from_dict(config.to_dict(), strict=False).replace(device="cpu").width == config.width  # resume
    assert RecordConfig(width=64).replace(model=model).width == (64,) * n_hidden  # a shared width follows the model


def test_replace_keeps_distinct_widths_and_checks_them_against_the_new_model():
    config = RecordConfig(model="mlp3", width=[8, 16])
    assert config.replace(seed=1).width == (8, 16)
    with pytest.raises(ConfigError, match="width lists 2 values but the model has 4 hidden layers"):
        config.replace(model="mlp5")
    assert config.replace(model="mlp5", width=32).width == (32,) * 4


def test_record_api_with_another_model_at_defaults(tmp_path, torch_one_thread):
    import actlab
    from actlab.store import open_store

    run = actlab.record(model="mlp3", dataset="digits", out=str(tmp_path / "run"), epochs=1, record_epochs="0,1",
                        train_size=200, test_size=50, device="cpu", progress=False)
    config = open_store(run).attrs["config"]
    assert config["model"] == "mlp3" and config["width"] == [512, 512]
