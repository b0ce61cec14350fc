"""docs/store-format.md is a contract: a store written from it alone, with plain zarr calls, is analysed correctly.

Nothing here uses actlab.store's writer. The store holds planted signals: hidden1 unit 2 carries a huge
activation driven by the input image, clean and noisy probes share their class means in hidden1 but sit on
separate units in hidden2, and the test loss has an epoch-wise double descent.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from fixtures_store import planted_run
from zarr.codecs import Crc32cCodec, ZstdCodec

import actlab
from actlab.analysis import analyze, summary
from actlab.cli import main

N_CLASSES, N_EPOCHS, RECORD_EPOCHS = 4, 60, [0, 15, 30, 45, 60]
N_CLEAN, N_NOISY, N_TEST = 150, 75, 75  # 300 probes, chunks of 128 in shards of 512: the last inner chunk lies beyond the array
SHAPE = (3, 4, 4)
LAYERS = [  # name, width, fan_in, activation
    ("hidden1", 8, 48, "relu"),
    ("hidden2", 16, 8, "relu"),
    ("output", N_CLASSES, 16, "identity"),
]
CONV = ("conv0", 4, 3, 2, 2)  # an unreduced conv layer before the others: name, channels, fan_in, y, x
LARGE_UNIT = 2
CODECS = [ZstdCodec(level=3), Crc32cCodec()]  # any compression, then crc32c


def _array(group: zarr.Group, name: str, values: np.ndarray | None, *, dims: tuple[str, ...], dtype: str,
           shape: tuple[int, ...] | None = None, chunks: tuple[int, ...] | None = None,
           shards: tuple[int, ...] | None = None, fill_value=0) -> zarr.Array:
    shape = values.shape if shape is None else shape
    array = group.create_array(name, shape=shape, chunks=chunks or shape, shards=shards, dtype=dtype,
                               fill_value=fill_value, dimension_names=dims, compressors=CODECS,
                               config={"write_empty_chunks": True})
    if values is not None:
        array[...] = values.astype(dtype)
    return array


def digested(attrs: dict) -> dict:
    """``attrs`` with ``actlab_digest``, as docs/store-format.md (Digests) specifies it."""
    canonical = json.dumps(attrs, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    return {**attrs, "actlab_digest": "sha256:" + hashlib.sha256(canonical).hexdigest()}


def _shard_digest(shard: bytes, n_chunks: int) -> bytes:
    """A shard's digest as docs/store-format.md (Digests) says: the SHA-256 of its index (the last 16 n + 4 bytes)
    followed by the last 4 bytes of each inner chunk present (offset not 2**64 - 1), in index order."""
    index = shard[len(shard) - 16 * n_chunks - 4:]
    tails = b"".join(shard[offset + nbytes - 4:offset + nbytes]
                     for offset, nbytes in np.frombuffer(index[:-4], "<u8").reshape(n_chunks, 2).tolist()
                     if offset != 2**64 - 1)
    return hashlib.sha256(index + tails).digest()


def dd_test_loss(epochs: np.ndarray) -> np.ndarray:
    """Minimum near 12, peak at 25, lower again after 40."""
    e = epochs.astype(float)
    return 1.5 * np.exp(-e / 4) + 0.8 + 0.5 * np.exp(-(((e - 25) / 7) ** 2)) - 0.25 / (1 + np.exp(-(e - 35) / 4))


def write_store(run_dir: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a schema-5 run store following docs/store-format.md; returns the probe metadata written."""
    rng = np.random.default_rng(seed)
    n = N_CLEAN + N_NOISY + N_TEST
    # data: a full training set of 1000, 800 used (in a shuffled training order), 20 % of them noisy
    train_index = rng.permutation(1000)[:800]
    original = train_index % N_CLASSES
    noisy = np.zeros(800, bool)
    noisy[rng.choice(800, 160, replace=False)] = True
    assigned = np.where(noisy, (original + rng.integers(1, N_CLASSES, 800)) % N_CLASSES, original)
    test_index = np.arange(0, 500, 2)  # 250 of a full test set of 500 evaluated
    test_label = test_index % N_CLASSES
    clean_pos = rng.choice(np.flatnonzero(~noisy), N_CLEAN, replace=False)
    noisy_pos = rng.choice(np.flatnonzero(noisy), N_NOISY, replace=False)
    test_pos = rng.choice(len(test_index), N_TEST, replace=False)
    probes = {
        "sample": np.arange(n),
        "group": np.repeat([0, 1, 2], [N_CLEAN, N_NOISY, N_TEST]),  # codes into groups = clean, noisy, test
        "dataset_index": np.concatenate([train_index[clean_pos], train_index[noisy_pos], test_index[test_pos]]),
        "label": np.concatenate([assigned[clean_pos], assigned[noisy_pos], test_label[test_pos]]),
        "original_label": np.concatenate([original[clean_pos], original[noisy_pos], test_label[test_pos]]),
        "is_noisy": np.repeat([False, True, False], [N_CLEAN, N_NOISY, N_TEST]),
    }
    amplitude = rng.uniform(0, 1, n)
    pattern = rng.choice([-1.0, 1.0], size=SHAPE)
    images = np.clip(np.round(128 + 100 * (amplitude[:, None, None, None] - 0.5) * pattern
                              + 3 * rng.standard_normal((n, *SHAPE))), 0, 255)

    root = zarr.open_group(run_dir / "store.zarr", mode="w", zarr_format=3)
    root.attrs.update(digested({
        "schema_version": 5, "status": "complete", "dynamics": True, "user_metrics": ["lr"], "n_epochs": N_EPOCHS, "record_epochs": RECORD_EPOCHS,
        "groups": ["clean", "noisy", "test"], "created": "2025-01-01T00:00:00+00:00", "config": {"writer": "contract test"},
        "layers": [{"name": CONV[0], "width": CONV[1], "fan_in": CONV[2], "activation": "relu", "module": "stem",
                    "kind": "conv", "reduce": "none", "shape": list(CONV[1:2] + CONV[3:])}]
                  + [{"name": name, "width": w, "fan_in": f, "activation": a, "module": f"net.{i}", "kind": "dense",
                      "reduce": "none", "shape": [w]} for i, (name, w, f, a) in enumerate(LAYERS)],
        "parameters": [{"name": f"net.{i}.{kind}", "shape": [w, f] if kind == "weight" else [w], "dtype": "float32"}
                       for i, (_, w, f, _) in enumerate(LAYERS) for kind in ("weight", "bias")],
        "dataset": {"name": "planted", "class_names": ["a", "b", "c", "d"],
                    "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3, "formula": "(pixel / 255 - mean[channel]) / std[channel]"}},
    }))

    metrics = root.create_group("metrics", attributes=digested({}))
    epochs = np.arange(N_EPOCHS + 1)
    loss = dd_test_loss(epochs)
    clean_acc = 0.95 * np.minimum(1.0, epochs / 10)
    noisy_acc = np.clip((epochs - 20) / 20, 0, 1)
    values = {"train_clean_loss": 1 - clean_acc, "train_clean_acc": clean_acc, "train_noisy_loss": 1 - noisy_acc,
              "train_noisy_acc": noisy_acc, "train_noisy_true_loss": 1 + noisy_acc, "train_noisy_true_acc": 0.5 - noisy_acc / 2,
              "test_loss": loss, "test_acc": np.clip(1.3 - loss / 2, 0, 1), "wall_time": epochs.astype(float)}
    for name, curve in values.items():
        _array(metrics, name, curve, dims=("epoch",), dtype="float64", fill_value=np.nan)
    _array(metrics, "lr", 0.1 * 0.5 ** (epochs // 20), dims=("epoch",), dtype="float64", fill_value=np.nan)
    _array(metrics, "epoch", epochs, dims=("epoch",), dtype="int32", fill_value=-1)  # commit: written last

    # every training sample's trajectory: noisy samples are fitted (margin > 0) from epoch 30 on, clean from epoch 5
    dynamics = root.create_group("dynamics", attributes=digested({}))
    fitted = epochs[:, None] >= np.where(noisy, 30, 5)
    margin = np.where(fitted, 1.0, -1.0) * rng.uniform(0.5, 1.5, (N_EPOCHS + 1, 800))
    for name, values_, dtype in (("loss", np.log1p(np.exp(-margin)), "float16"), ("margin", margin, "float16"),
                                 ("correct", fitted, "bool"), ("correct_original", fitted & ~noisy, "bool")):
        _array(dynamics, name, values_, dims=("epoch", "train_sample"), dtype=dtype, chunks=(1, 800), shards=(1, 800))
    _array(dynamics, "epoch", epochs, dims=("epoch",), dtype="int32", fill_value=-1)  # commit: written last

    group = root.create_group("probes", attributes=digested({}))
    for name, dtype in (("sample", "int64"), ("group", "int8"), ("dataset_index", "int64"), ("label", "int16"),
                        ("original_label", "int16"), ("is_noisy", "bool")):
        _array(group, name, probes[name], dims=("sample",), dtype=dtype)
    _array(group, "image", images, dims=("sample", "channel", "height", "width"), dtype="uint8", chunks=(128, *SHAPE))
    training = root.create_group("training", attributes=digested({}))
    for name, values_, dtype in (("dataset_index", train_index, "int64"), ("label", assigned, "int16"),
                                 ("original_label", original, "int16"), ("is_noisy", noisy, "bool")):
        _array(training, name, values_, dims=("train_sample",), dtype=dtype)
    evaluation = root.create_group("evaluation", attributes=digested({}))
    _array(evaluation, "dataset_index", test_index, dims=("test_sample",), dtype="int64")
    _array(evaluation, "label", test_label, dims=("test_sample",), dtype="int16")

    layers = root.create_group("layers", attributes=digested({}))
    commit = _array(layers, "epoch", None, shape=(len(RECORD_EPOCHS),), dims=("epoch",), dtype="int32", fill_value=-1)
    commit[...] = np.full(len(RECORD_EPOCHS), -1)
    n_shards = 1 + 3 * len(LAYERS)  # conv0, then hidden1, hidden2, output (root attr layers), then the 6 parameters
    shard_digest = _array(layers, "shard_digest", np.zeros((len(RECORD_EPOCHS), n_shards, 32)), chunks=(1, n_shards, 32),
                          dims=("epoch", "shard", "digest_byte"), dtype="uint8")
    arrays = {}
    r = len(RECORD_EPOCHS)
    parameters = root.create_group("parameters", attributes=digested({}))
    labels = _array(parameters, "epoch", np.full(r, -1), dims=("epoch",), dtype="int32", fill_value=-1)
    conv_shape = CONV[1:2] + CONV[3:]
    conv = _array(layers.create_group(CONV[0], attributes=digested({"note": "any attributes, with their digest"})), "preact", None, shape=(r, n, *conv_shape), chunks=(1, 128, *conv_shape),
                  shards=(1, 512, *conv_shape), dims=("epoch", "sample", "channel", "y", "x"), dtype="float32",
                  fill_value=np.nan)
    for i, (name, width, fan_in, _) in enumerate(LAYERS):
        node = layers.create_group(name, attributes=digested({}))
        arrays[name] = (
            _array(node, "preact", None, shape=(r, n, width), chunks=(1, 128, width), shards=(1, 512, width),
                   dims=("epoch", "sample", "unit"), dtype="float32", fill_value=np.nan),
            _array(parameters, f"net.{i}.weight", None, shape=(r, width, fan_in), chunks=(1, width, fan_in),
                   shards=(1, width, fan_in), dims=("epoch", f"net.{i}.weight[0]", f"net.{i}.weight[1]"), dtype="float32",
                   fill_value=np.nan),
            _array(parameters, f"net.{i}.bias", None, shape=(r, width), chunks=(1, width), shards=(1, width),
                   dims=("epoch", f"net.{i}.bias[0]"), dtype="float32", fill_value=np.nan),
        )
    group_of = probes["group"]
    centres = rng.uniform(0.5, 1.5, (N_CLASSES, 8))
    for slot, (epoch, scale) in enumerate(zip(RECORD_EPOCHS, [0.01, 0.1, 1.0, 1.0, 1.0])):
        hidden1 = centres[probes["original_label"]] + 0.05 * rng.standard_normal((n, 8))
        hidden1[:, LARGE_UNIT] = 50 * scale * amplitude
        hidden2 = -0.5 + 0.02 * rng.standard_normal((n, 16))
        units = 2 * probes["label"] + np.where(group_of == 1, 8, 0)  # noisy probes on memorisation units 8..15
        hidden2[np.arange(n), units] = 2.0
        hidden2[np.arange(n), units + 1] = 2.0
        output = 0.1 * rng.standard_normal((n, N_CLASSES))
        output[np.arange(n), probes["label"]] += 3.0
        conv[slot] = rng.standard_normal((n, *conv_shape)).astype(np.float32)
        for name, values_ in (("hidden1", hidden1), ("hidden2", hidden2), ("output", output)):
            preact, weight, bias = arrays[name]
            preact[slot] = values_.astype(np.float32)
            weight[slot] = rng.standard_normal(weight.shape[1:]).astype(np.float32)
            bias[slot] = np.zeros(bias.shape[1:], np.float32)
        keys = ([f"layers/{CONV[0]}/preact/c/{slot}/0/0/0/0"] + [f"layers/{name}/preact/c/{slot}/0/0" for name, *_ in LAYERS]
                + [f"parameters/net.{i}.{kind}/c/{slot}/0" + ("/0" if kind == "weight" else "")
                   for i in range(len(LAYERS)) for kind in ("weight", "bias")])
        inner = [512 // 128] * (1 + len(LAYERS)) + [1] * (2 * len(LAYERS))  # inner chunks per shard, as keys
        shard_digest[slot] = np.stack([np.frombuffer(_shard_digest((run_dir / "store.zarr" / key).read_bytes(), n_chunks),
                                                     np.uint8)
                                       for key, n_chunks in zip(keys, inner)])  # the shards' digests, before the commit
        slots = commit[...]
        slots[slot] = epoch
        labels[...] = slots  # the parameters' epoch, before the commit
        commit[...] = slots  # the commit, after the data and its digests
    return {**probes, "amplitude": amplitude}


@pytest.fixture(scope="module")
def contract_run(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    run_dir = tmp_path_factory.mktemp("contract") / "run"
    return run_dir, write_store(run_dir)


def test_the_reader_reads_what_was_written(contract_run):
    run_dir, probes = contract_run
    run = actlab.open_run(run_dir)
    np.testing.assert_array_equal(run.epochs, RECORD_EPOCHS)
    np.testing.assert_array_equal(run.metrics["epoch"], np.arange(N_EPOCHS + 1))
    np.testing.assert_allclose(run.metrics["test_loss"], dd_test_loss(np.arange(N_EPOCHS + 1)))
    np.testing.assert_array_equal(run.probes["group"].values, np.asarray(["clean", "noisy", "test"])[probes["group"]])
    np.testing.assert_array_equal(run.probes["label"].values, probes["label"])
    assert run.n_classes == N_CLASSES and run.training.sizes["train_sample"] == 800
    assert run.evaluation.sizes["test_sample"] == 250
    hidden1 = run.layer("hidden1").sel(epoch=60).values
    maps = zarr.open_array(run_dir / "store.zarr" / "layers" / "conv0" / "preact", mode="r")[RECORD_EPOCHS.index(60)]
    np.testing.assert_allclose(run.layer("conv0").sel(epoch=60).values, np.maximum(maps, 0).mean(axis=(2, 3)), rtol=1e-6)
    assert run.layer("conv0").dims == ("epoch", "sample", "unit") and run.layer("conv0").sizes["unit"] == CONV[1]
    np.testing.assert_allclose(hidden1[:, LARGE_UNIT], 50 * probes["amplitude"], rtol=1e-6)
    assert run.layer("output").attrs["activation"] == "identity"
    assert np.all(run.layer("hidden2").values >= 0)  # relu applied by the reader
    np.testing.assert_allclose(run.metrics["lr"].values[[0, 19, 20, 60]], [0.1, 0.1, 0.05, 0.0125])
    assert run.dynamics.sizes == {"epoch": N_EPOCHS + 1, "train_sample": 800}
    np.testing.assert_array_equal(run.dynamics["is_noisy"].values, run.training["is_noisy"].values)
    assert run.dynamics.attrs["source"] == "evaluation"  # the group attribute source is optional: absent, it means this


def test_analysis_finds_the_planted_signals(contract_run):
    run_dir, _ = contract_run
    found = summary(analyze(run_dir, progress=False, n_permutations=99))  # BH over the input and 3 output tests needs p <= 1/(n+1) to give q <= 0.05 at 4 tests: n >= 79
    assert found["errors"] == {}
    dd = found["double_descent"]
    assert dd["present"] is True and 20 <= dd["peak_epoch"] <= 30
    large = found["large_activation"]
    assert (large["layer"], large["unit"], large["dominant"], large["explained_by"]) == ("hidden1", LARGE_UNIT, True, "input")
    assert large["input_r2"] > 0.8
    groups = found["dynamics"]["groups"]
    assert (groups["clean"]["learned_epoch_median"], groups["noisy"]["learned_epoch_median"]) == (5, 30)
    assert found["dynamics"]["mislabel_ranking"]["auc"] == 1.0
    separation = found["separation"]
    assert separation["layer"] == "hidden2" and separation["cosine"] < 0.2
    assert separation["last_epoch"]["hidden1"]["noisy_by_original"] > 0.9


def test_cli_analyzes_the_store(contract_run, tmp_path):
    run_dir, _ = contract_run
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["analyze", str(run_dir), "--no-progress", "--format", "svg", "--out", str(tmp_path / "analysis")])
    assert code == 0, err.getvalue()
    written = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert written["double_descent"]["present"] is True
    assert (written["large_activation"]["layer"], written["large_activation"]["unit"]) == ("hidden1", LARGE_UNIT)


def test_recorded_store_holds_the_training_subset_and_its_metrics_check_out(tiny_record_config, torch_one_thread):
    """A real recording stores the subsets of PreparedData; the last epoch's accuracies follow from the store alone."""
    from actlab.record import record
    from actlab.record.data import load_dataset, normalize_images, prepare_data

    config = tiny_record_config.replace(train_size=150, test_size=40, noise=0.2)
    run_dir = record(config)
    data = prepare_data(config)
    run = actlab.open_run(run_dir)
    np.testing.assert_array_equal(run.training["dataset_index"], data.train_index)
    np.testing.assert_array_equal(run.training["label"], data.noisy.labels)
    np.testing.assert_array_equal(run.training["original_label"], data.noisy.original_labels)
    np.testing.assert_array_equal(run.training["is_noisy"], data.noisy.is_noisy)
    np.testing.assert_array_equal(run.evaluation["dataset_index"], data.test_index)
    np.testing.assert_array_equal(run.evaluation["label"], data.dataset.test_labels)

    full = load_dataset("synthetic", synthetic=run.attrs["config"]["synthetic"])
    norm = run.attrs["dataset"]["normalization"]
    view = actlab.store.open_store(run_dir)

    def accuracy(images: np.ndarray, labels: np.ndarray) -> float:
        x = normalize_images(images, np.asarray(norm["mean"]), np.asarray(norm["std"])).reshape(len(images), -1)
        for name in run.layer_names:
            params = view.parameters.sel(epoch=run.epochs[-1])
            module = run.layer_specs[name]["module"]
            weight, bias = params[f"{module}.weight"].values, params[f"{module}.bias"].values
            x = x.astype(np.float64) @ weight.T.astype(np.float64) + bias
            x = np.maximum(x, 0) if run.is_relu(name) else x
        return float(np.mean(np.argmax(x, axis=1) == labels))

    last = run.metrics.sel(epoch=run.epochs[-1])
    clean = ~run.training["is_noisy"].values
    train_images = full.train_images[run.training["dataset_index"].values]
    assert accuracy(train_images[clean], run.training["label"].values[clean]) == pytest.approx(float(last["train_clean_acc"]))
    assert accuracy(train_images[~clean], run.training["label"].values[~clean]) == pytest.approx(float(last["train_noisy_acc"]))
    assert accuracy(full.test_images[run.evaluation["dataset_index"].values],
                    run.evaluation["label"].values) == pytest.approx(float(last["test_acc"]))


def test_the_writer_commits_the_shard_digests_this_page_defines(tmp_path, monkeypatch):
    """RunWriter's ``layers/shard_digest`` rows are the digests of the shard files as written, computed here from the
    document alone (``_shard_digest``), for every committed slot and every digested array (layer shards of 5 inner
    chunks here); uncommitted rows are zeros."""
    monkeypatch.setattr("actlab.store.writer.SAMPLE_CHUNK", 64)  # 260 probes: 5 inner chunks per layer shard
    run_dir = planted_run(tmp_path / "run", commit_epochs=[0, 20]).run_dir
    root = zarr.open_group(run_dir / "store.zarr", mode="r")
    digests = root["layers/shard_digest"][...]
    assert root["layers/hidden1/preact"].shards[1] // root["layers/hidden1/preact"].chunks[1] == 5
    for k, path in enumerate(root["layers/shard_digest"].attrs["shards"]):
        array = root[path]
        n_chunks = int(np.prod([s // c for s, c in zip(array.shards, array.chunks)]))
        for slot, epoch in enumerate(root.attrs["record_epochs"]):
            key = "/".join(["c", str(slot)] + ["0"] * (array.ndim - 1))
            expected = (_shard_digest((run_dir / "store.zarr" / path / key).read_bytes(), n_chunks)
                        if epoch in (0, 20) else bytes(32))
            assert digests[slot, k].tobytes() == expected, (path, epoch)
