"""Runs in an object store: record, open, analyse and compare through a real S3 API server (moto) on localhost.

The server is moto's ``ThreadedMotoServer`` on 127.0.0.1 and a free port; actlab reaches it through s3fs
with the endpoint from the environment (``AWS_ENDPOINT_URL``), as a user would. Nothing is mocked on the
client side.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket

import numpy as np
import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from cli_runner import run_cli  # noqa: E402

from actlab.analysis import load_results, open_run  # noqa: E402
from actlab.errors import OutputError, StoreError  # noqa: E402
from actlab.store import METRICS, STATUS_CREATING, RunWriter  # noqa: E402

BUCKET = "actlab-test"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free localhost port with one bucket; the environment points s3fs at it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(BUCKET)
    try:
        yield fs
    finally:
        server.stop()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def runs(s3, tmp_path_factory):
    """The same tiny run (same seed, CPU) recorded to s3://BUCKET/runs/tiny and to a local folder."""
    torch = pytest.importorskip("torch")
    from actlab.record import RecordConfig, record

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    config = RecordConfig(
        dataset="synthetic", synthetic="train=120,test=40,classes=4,shape=2x4x4,seed=1", model="mlp3", width=16,
        epochs=3, lr=1e-2, batch_size=32, record_epochs="0,1,3", probe_clean=24, probe_noisy=12, probe_test=16,
        checkpoint_every=0, progress=False, device="cpu",
    )
    url = f"s3://{BUCKET}/runs/tiny"
    local = tmp_path_factory.mktemp("local") / "tiny-local"
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            assert record(config.replace(out=url)) == url
            record(config.replace(out=str(local)))
    finally:
        torch.set_num_threads(before)
    return url, local


def test_s3_run_reads_lazily_and_equals_the_local_run(s3, runs):
    import dask.array as da

    url, local = runs
    assert s3.exists(f"{BUCKET}/runs/tiny/checkpoint.pt")  # the checkpoint sits next to the store
    remote, here = open_run(url), open_run(local)
    assert remote.path == url and remote.attrs["status"] == "complete"
    np.testing.assert_array_equal(remote.epochs, [0, 1, 3])
    for name in METRICS:
        if name != "wall_time":
            np.testing.assert_array_equal(remote.metrics[name].values, here.metrics[name].values)
    np.testing.assert_array_equal(remote.probes["image"].values, here.probes["image"].values)
    for layer in here.layer_names:
        lazy = remote.layer(layer, "pre")
        assert isinstance(lazy.data, da.Array)
        np.testing.assert_array_equal(lazy.values, here.layer(layer, "pre").values)
    # and against the stored bytes, read independently of actlab
    import zarr

    raw = zarr.open_array(f"s3://{BUCKET}/runs/tiny/store.zarr/layers/hidden1/preact", mode="r")
    np.testing.assert_array_equal(remote.layer("hidden1").values, np.maximum(raw[...], 0))


def test_analyze_s3_run_next_to_it_and_to_a_local_folder(s3, runs, tmp_path):
    url, local = runs
    code, _, err = run_cli("analyze", url, "--no-progress", "--format", "png")
    assert code == 0, err
    listed = {p.rsplit("/", 1)[-1] for p in s3.ls(f"{BUCKET}/runs/tiny/analysis", refresh=True)}
    assert {".actlab.json", "report.html", "summary.json", "results.zarr", "figures"} <= listed
    code, _, err = run_cli("analyze", url, "--no-progress", "--format", "png", "--out", tmp_path / "out")
    assert code == 0, err
    code, _, err = run_cli("analyze", local, "--no-progress", "--format", "png")
    assert code == 0, err

    def numbers(summary: dict) -> dict:  # everything but the run's own path
        assert summary.pop("run") in (url, str(local))
        return summary

    expected = numbers(json.loads((local / "analysis" / "summary.json").read_text()))
    assert numbers(json.loads(s3.cat_file(f"{BUCKET}/runs/tiny/analysis/summary.json"))) == expected
    assert numbers(json.loads((tmp_path / "out" / "summary.json").read_text())) == expected
    on_s3, here = load_results(f"{url}/analysis/results.zarr"), load_results(local / "analysis" / "results.zarr")
    for node in here.subtree:
        for name, variable in node.to_dataset(inherit=False).data_vars.items():
            if name == "wall_time":  # the one metric two recordings do not share
                continue
            if variable.dtype.kind not in "fc":
                np.testing.assert_array_equal(on_s3[node.path][name].values, variable.values, err_msg=f"{node.path}/{name}")
                continue
            scale = float(np.max(np.abs(variable.values), initial=0.0, where=~np.isnan(variable.values)))
            np.testing.assert_allclose(on_s3[node.path][name].values, variable.values, rtol=1e-9, atol=1e-9 * scale,
                                       err_msg=f"{node.path}/{name}")  # moments summed in completion order

    # an analysis prefix that holds foreign objects is refused, nothing is written
    s3.pipe_file(f"{BUCKET}/elsewhere/notes.txt", b"mine")
    code, _, err = run_cli("analyze", url, "--no-progress", "--out", f"s3://{BUCKET}/elsewhere")
    assert code == 2 and err.count("\n") == 1 and "objects actlab did not write" in err
    assert s3.find(f"{BUCKET}/elsewhere") == [f"{BUCKET}/elsewhere/notes.txt"]


def test_compare_s3_run_with_local_run(runs, tmp_path):
    url, local = runs
    code, _, err = run_cli("compare", url, local, "--no-progress", "--format", "png", "--out", tmp_path / "cmp")
    assert code == 0, err
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert list(summary) == ["tiny", "tiny-local"]
    assert summary["tiny"].pop("run") == url and summary["tiny-local"].pop("run") == str(local)
    assert summary["tiny"] == summary["tiny-local"]  # identical runs, one read from S3


def test_record_to_url_refuses_overwrite_and_an_existing_run(runs):
    url, _ = runs
    common = ("record", "--dataset", "synthetic", "--model", "mlp3", "--epochs", "1", "--device", "cpu")
    code, _, err = run_cli(*common, "--out", url)
    assert code == 2 and err.count("\n") == 1 and "already holds a run" in err and "--resume" in err
    code, _, err = run_cli(*common, "--out", f"s3://{BUCKET}/runs/new", "--overwrite")
    assert code == 2 and err.count("\n") == 1 and "--overwrite is not available for a URL" in err


def test_a_store_left_creating_is_refused(s3, monkeypatch):
    """A recorder that dies while allocating leaves status 'creating'; readers, writers and record refuse it."""
    from fixtures_store import (
        LAYERS,
        N_CLASSES,
        RECORD_EPOCHS,
        planted_probes,
        planted_subsets,
    )

    from actlab import store
    from actlab.record.claim import check_run_output

    probes, _ = planted_probes(np.random.default_rng(0), n_clean=8, n_noisy=4, n_test=8)
    created = []
    real = store.writer._create

    def dying(*args, **kwargs):
        if len(created) == 5:
            raise KeyboardInterrupt
        created.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(store.writer, "_create", dying)
    monkeypatch.setattr(store.writer, "_delete_keys", lambda *args: None)  # killed, it deletes nothing
    url = f"s3://{BUCKET}/runs/crashed"
    with pytest.raises(KeyboardInterrupt):
        RunWriter.create(url, config={}, dataset={"class_names": [str(i) for i in range(N_CLASSES)]}, layers=LAYERS,
                         probes=probes, subsets=planted_subsets(probes), record_epochs=RECORD_EPOCHS, n_epochs=60)
    root = json.loads(s3.cat_file(f"{BUCKET}/runs/crashed/store.zarr/zarr.json"))
    assert root["attributes"]["status"] == STATUS_CREATING
    from actlab.record import resume

    for attempt in (lambda: open_run(url), lambda: RunWriter.open(url), lambda: resume(url)):
        with pytest.raises(StoreError, match="status is 'creating'") as info:
            attempt()
        assert "\n" not in str(info.value)
    with pytest.raises(OutputError, match="already holds a run"):
        check_run_output(url, overwrite=False)


def test_a_failed_allocation_deletes_only_the_objects_it_wrote(s3, monkeypatch):
    """Issue 16: a recorder that failed before its first commit removed the whole prefix, and with it the objects of
    a second recorder that passed the same empty-prefix check at the same moment."""
    from fixtures_store import LAYERS, N_CLASSES, RECORD_EPOCHS, planted_probes, planted_subsets

    from actlab import store

    probes, _ = planted_probes(np.random.default_rng(0), n_clean=8, n_noisy=4, n_test=8)
    prefix = f"{BUCKET}/runs/racing"
    created = []
    real = store.writer._create

    def racing(*args, **kwargs):
        if len(created) == 5:  # meanwhile another recorder wrote under the same prefix
            s3.pipe_file(f"{prefix}/store.zarr/probes/other-recorder", b"theirs")
            raise OSError("the endpoint went away")
        created.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(store.writer, "_create", racing)
    with pytest.raises(OSError, match="went away"):
        RunWriter.create(f"s3://{prefix}", config={}, dataset={"class_names": [str(i) for i in range(N_CLASSES)]},
                         layers=LAYERS, probes=probes, subsets=planted_subsets(probes), record_epochs=RECORD_EPOCHS,
                         n_epochs=60)
    s3.invalidate_cache()
    assert s3.find(prefix) == [f"{prefix}/store.zarr/probes/other-recorder"]


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_damaged_shard_on_s3_is_one_line_naming_the_array(s3, runs, damage):
    url, _ = runs
    copy = f"{BUCKET}/runs/damaged-{damage}"
    s3.copy(f"{BUCKET}/runs/tiny/store.zarr", f"{copy}/store.zarr", recursive=True)
    shard = f"{copy}/store.zarr/layers/hidden2/preact/c/1/0/0"
    if damage == "delete":
        s3.rm_file(shard)
    else:
        s3.pipe_file(shard, s3.cat_file(shard)[:40])
    with pytest.raises(StoreError) as info:
        open_run(f"s3://{copy}")
    message = str(info.value)
    assert "\n" not in message
    assert "array layers/hidden2/preact (layer hidden2 epoch 1)" in message
    assert ("lacks chunk" if damage == "delete" else "truncated") in message


TINY_ARGS = ("--dataset", "synthetic", "--synthetic", "train=120,test=40,classes=4,shape=2x4x4,seed=1", "--model", "mlp3",
             "--width", "16", "--epochs", "3", "--lr", "1e-2", "--batch-size", "32", "--record-epochs", "0,1,3",
             "--probe-clean", "24", "--probe-noisy", "12", "--probe-test", "16", "--no-progress", "--device", "cpu")
"""The ``runs`` fixture's settings as ``actlab record`` flags (without ``--checkpoint-every``)."""


@contextlib.contextmanager
def one_thread():
    """Torch on one thread while the block runs, as in the ``runs`` fixture."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def assert_same_run(view, reference) -> None:
    """Two opened runs hold the same recording: every metric but wall_time, the epochs, every layer's activations."""
    for name in METRICS:
        if name != "wall_time":
            np.testing.assert_array_equal(view.metrics[name].values, reference.metrics[name].values, err_msg=name)
    np.testing.assert_array_equal(view.epochs, reference.epochs)
    assert view.layer_names == reference.layer_names
    for layer in reference.layer_names:
        np.testing.assert_array_equal(view.layer(layer, "pre").values, reference.layer(layer, "pre").values,
                                      err_msg=layer)


def test_cli_record_to_url_equals_the_python_api_run(s3, runs):
    """``actlab record --out s3://...`` writes the run the Python API writes with the same settings."""
    url, _ = runs
    new = f"s3://{BUCKET}/runs/cli"
    with one_thread():
        code, out, err = run_cli("record", *TINY_ARGS, "--checkpoint-every", "0", "--out", new)
    assert code == 0, err
    assert out.strip() == new
    assert s3.exists(f"{BUCKET}/runs/cli/checkpoint.pt") and s3.exists(f"{BUCKET}/runs/cli/store.zarr/zarr.json")
    remote, reference = open_run(new), open_run(url)
    assert remote.path == new and remote.attrs["status"] == "complete"
    np.testing.assert_array_equal(remote.epochs, [0, 1, 3])
    np.testing.assert_array_equal(remote.metrics["epoch"].values, [0, 1, 2, 3])
    assert_same_run(remote, reference)
    np.testing.assert_array_equal(remote.probes["image"].values, reference.probes["image"].values)


def test_cli_resume_of_an_interrupted_url_run_is_bit_identical(s3, runs):
    """A run on S3 interrupted in epoch 2 is finished by ``actlab record --resume URL``, bit for bit; a second
    ``--resume`` says it is complete and writes nothing."""
    torch = pytest.importorskip("torch")
    from fixtures_store import assert_same_recording, interrupted_in_epoch

    from actlab.store import open_store

    url, _ = runs
    run = f"s3://{BUCKET}/runs/resumed"
    with one_thread(), interrupted_in_epoch(2):
        code, _, err = run_cli("record", *TINY_ARGS, "--checkpoint-every", "1", "--out", run)
    assert code == 130 and "interrupted" in err, err
    interrupted = open_store(run)
    assert interrupted.attrs["status"] == "recording"
    assert list(interrupted.metrics["epoch"].values) == [0, 1] and list(interrupted.epochs) == [0, 1]
    with s3.open(f"{BUCKET}/runs/resumed/checkpoint.pt", "rb") as f:
        assert torch.load(io.BytesIO(f.read()), weights_only=True)["epoch"] == 1

    with one_thread():
        code, out, err = run_cli("record", "--resume", run, "--no-progress")
    assert code == 0, err
    assert out.strip() == run and "resuming after epoch 1" in err
    resumed = open_store(run)
    assert resumed.attrs["status"] == "complete"
    np.testing.assert_array_equal(resumed.epochs, [0, 1, 3])
    assert_same_recording(resumed, open_store(url))  # the fixture's uninterrupted run (--checkpoint-every 0), parameters too

    def objects() -> dict:
        return {path: (info["ETag"], info["LastModified"])
                for path, info in s3.find(f"{BUCKET}/runs/resumed", detail=True, refresh=True).items()}

    before = objects()
    code, out, err = run_cli("record", "--resume", run, "--no-progress")
    assert code == 0, err
    assert out.strip() == run and "is already complete; nothing to resume" in err
    assert objects() == before  # nothing written
