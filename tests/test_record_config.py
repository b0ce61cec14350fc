"""Settings of a recording run: schedules, widths, the synthetic spec, validation and TOML files."""

from __future__ import annotations

import numpy as np
import pytest

from actlab.errors import ConfigError
from actlab.record.config import RecordConfig, load_toml, log_epochs, parse_schedule, parse_synthetic, parse_widths


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
    from pathlib import Path

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
