"""Nothing lost: kills and full disks at chosen write calls, one writer per run, leftovers, umask.

Crashing runs are forked from a warm process (``tests/crashing_actlab.py``) with a fault hook; resumes
run in this process. Every finished run must equal an uninterrupted reference run bit for bit.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import crashing_actlab
import numpy as np
import pytest
from fixtures_store import assert_same_recording

from actlab.cli import main
from actlab.store import METRICS, open_store, store_path

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ARGS = ["--dataset", "synthetic", "--synthetic", "train=200,test=100,classes=4,shape=1x4x4", "--model", "mlp3",
        "--width", "8", "--epochs", "12", "--record-epochs", "every:3", "--checkpoint-every", "2",
        "--probe-clean", "20", "--probe-noisy", "20", "--probe-test", "20", "--no-progress", "--device", "cpu"]

# Call numbers of this configuration (ACTLAB_TEST_CRASH_LOG shows them): replace 1 holder file, 2 run marker;
# put 1-157 allocate the staged store, replace 77 renames it into place; put 167 commits epoch 0's metrics;
# put 199-209 write recorded epoch 3 (208 its shard digests, 209 its commit); checkpoint 1-7 at epochs 0, 2, ..., 12,
# each after its digest file; complete 1 the end, whose one root-metadata write is replace 237.
KILLS = [
    "replace:1",    # the writer lock's holder file: before anything else
    "replace:2",    # the run marker
    "put:1",        # the first write of the staged store
    "put:70",       # mid-allocation
    "replace:77",   # the staged store, complete, about to be renamed into place
    "put:167",      # the first commit of metrics
    "put:203",      # mid-epoch: recorded epoch 3 half written
    "replace:133",  # recorded epoch 3 written with its digests, its commit about to land
    "checkpoint:1",  # the first checkpoint, half written (its digest file already in place)
    "checkpoint:4",  # a later checkpoint, half written
    "complete:1",   # the final commit
    "replace:237",  # inside the final commit: the root metadata saying complete written, its temporary file not renamed
]
ENOSPC = ["replace:1", "put:1", "put:203", "replace:125", "checkpoint:3", "complete:1"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = crashing_actlab.Server(tmp_path_factory.mktemp("forks"), env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    yield srv
    srv.close()


_references: dict[int, Path] = {}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs by seed (computed on first use)."""
    root = tmp_path_factory.mktemp("reference")

    def get(seed: int = 0) -> Path:
        run = root / f"seed{seed}"
        if not run.exists():
            assert main(["record", *ARGS, "--seed", str(seed), "--out", str(run)]) == 0
        return run

    return get


# -- checks -----------------------------------------------------------------------------------------------


def assert_committed_prefix(run: Path, ref: Path) -> None:
    """The store opens and what it shows as committed equals the reference's values."""
    view, full = open_store(run), open_store(ref)
    assert view.attrs["status"] in ("recording", "complete")
    epochs = view.metrics["epoch"].values
    for name in METRICS:
        if name != "wall_time":
            np.testing.assert_array_equal(view.metrics[name].values, full.metrics[name].sel(epoch=epochs).values)
    assert set(view.epochs) <= set(full.epochs)
    for layer in full.layer_names:
        np.testing.assert_array_equal(view.layers[layer]["preact"].values,
                                      full.layers[layer]["preact"].sel(epoch=view.epochs).values)
    for name in full.parameters.data_vars:
        np.testing.assert_array_equal(view.parameters[name].values, full.parameters[name].sel(epoch=view.epochs).values)
    for name in full.dynamics.data_vars:  # every committed epoch of the trajectories, as the full run wrote it
        np.testing.assert_array_equal(view.dynamics[name].values,
                                      full.dynamics[name].sel(epoch=view.dynamics["epoch"].values).values)


def assert_same_run(run: Path, ref: Path) -> None:
    """Complete, and bit-identical to the reference (metrics but wall_time, every layer's arrays, probes)."""
    view, full = open_store(run), open_store(ref)
    assert view.attrs["status"] == "complete"
    assert view.attrs["config"]["seed"] == full.attrs["config"]["seed"]
    assert list(view.metrics["epoch"].values) == list(range(13))
    assert list(full.epochs) == [0, 3, 6, 9, 12]
    for name in ("dataset_index", "label", "is_noisy"):
        np.testing.assert_array_equal(view.probes[name].values, full.probes[name].values)
    np.testing.assert_array_equal(view.probes["image"].values, full.probes["image"].values)
    assert_same_recording(view, full)


def leftovers(run: Path) -> list[str]:
    """Temporary files and staging folders in the run folder (recursively) or beside it."""
    found = [p for p in run.parent.iterdir() if p.name.endswith((".partial", ".swap"))]
    if run.is_dir():
        found += [Path(root) / name for root, dirs, files in os.walk(run) for name in dirs + files
                  if name.endswith((".partial", ".swap")) or name.startswith(".checkpoint.pt.")]
    return sorted(str(p) for p in found)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("actlab: error:")]


def finish(run: Path, capsys) -> None:
    """Resume the run if it has a store, else record it again into the same folder; both must succeed."""
    capsys.readouterr()
    if store_path(run).exists():
        code = main(["record", "--resume", str(run), "--no-progress"])
    else:
        code = main(["record", *ARGS, "--out", str(run)])
    assert code == 0, capsys.readouterr().err


# -- kills and full disks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("crash", KILLS)
def test_kill_at_write_then_resume_matches_uninterrupted_run(crash, server, reference, tmp_path, capsys):
    run = tmp_path / "run"
    result = server.run(["record", *ARGS, "--out", str(run)], f"{crash}:kill")
    assert result.returncode == -signal.SIGKILL, result.stderr
    if store_path(run).exists():
        assert_committed_prefix(run, reference())
    else:  # nothing half-written that passes for a store
        assert not run.exists() or not (run / "store.zarr").exists()
    finish(run, capsys)
    assert_same_run(run, reference())
    assert leftovers(run) == []


def test_kill_twice_then_resume(server, reference, tmp_path, capsys):
    run = tmp_path / "run"
    assert server.run(["record", *ARGS, "--out", str(run)], "put:203:kill").returncode == -signal.SIGKILL
    resumed = server.run(["record", "--resume", str(run), "--no-progress"], "checkpoint:2:kill")
    assert resumed.returncode == -signal.SIGKILL, resumed.stderr
    assert_committed_prefix(run, reference())
    finish(run, capsys)
    assert_same_run(run, reference())
    assert leftovers(run) == []


@pytest.mark.parametrize("crash", ENOSPC)
def test_full_disk_is_one_line_exit_3_and_resume_finishes(crash, server, reference, tmp_path, capsys):
    run = tmp_path / "run"
    result = server.run(["record", *ARGS, "--out", str(run)], f"{crash}:enospc")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "failed" in lines[0] and "--resume" in lines[0], lines[0]
    if store_path(run).exists():
        assert_committed_prefix(run, reference())
    assert leftovers(run) == []  # a failed write cleans up after itself
    finish(run, capsys)  # space freed: no hook any more
    assert_same_run(run, reference())
    assert leftovers(run) == []


# -- one writer per run -----------------------------------------------------------------------------------


def test_two_writers_started_together_one_wins(server, reference, tmp_path):
    run = tmp_path / "run"
    started = server.start((["record", *ARGS, "--seed", "0", "--out", str(run)], None),
                           (["record", *ARGS, "--seed", "1", "--out", str(run)], None))
    results = started.wait()
    assert sorted(r.returncode for r in results) == [0, 2], [r.stderr for r in results]
    winner, seed = next((r, seed) for r, seed in zip(results, (0, 1)) if r.returncode == 0)
    loser = next(r for r in results if r.returncode == 2)
    lines = loser.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("actlab: error:"), loser.stderr
    assert f"process {winner.pid}" in lines[0], lines[0]
    assert open_store(run).attrs["config"]["seed"] == seed
    assert_same_run(run, reference(seed))
    assert leftovers(run) == []


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_run_being_recorded_refuses_resume_and_overwrite_until_its_writer_dies(server, reference, tmp_path, capsys):
    run = tmp_path / "run"
    started = server.start((["record", *ARGS, "--out", str(run)], "complete:1:stall"))  # holds the lock until killed
    pid = started.pids[0]
    try:
        wait_for(lambda: (store_path(run) / "zarr.json").is_file() and (run / ".actlab.lock.holder").is_file())
        capsys.readouterr()
        assert main(["record", "--resume", str(run), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("actlab: error:") and f"process {pid}" in err, err
        assert main(["record", *ARGS, "--out", str(run), "--overwrite"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("actlab: error:") and f"process {pid}" in err, err
        assert main(["record", *ARGS, "--out", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"process {pid}" in err, err
        assert store_path(run).is_dir()  # the refused commands touched nothing
    finally:
        os.kill(pid, signal.SIGKILL)
    assert started.wait()[0].returncode == -signal.SIGKILL
    finish(run, capsys)  # the dead writer's lock does not block
    assert_same_run(run, reference())
    assert leftovers(run) == []


# -- leftovers --------------------------------------------------------------------------------------------


def test_resume_removes_what_killed_writers_left(server, reference, tmp_path, capsys):
    run = tmp_path / "run"
    assert server.run(["record", *ARGS, "--out", str(run)], "checkpoint:4:kill").returncode == -signal.SIGKILL
    assert list(run.glob(".checkpoint.pt.*.partial"))  # the half-written checkpoint of the killed write
    planted = [
        store_path(run) / "layers" / "hidden1" / "preact" / "c" / "1" / "0" / f"0.{'ab' * 16}.partial",
        store_path(run) / "metrics" / "test_acc" / "c" / f"0.{'cd' * 16}.partial",
        run / ".store.zarr.x1y2z3w4.partial" / "zarr.json",
        run / ".checkpoint.pt.q1w2e3r4.partial",
        run / "..actlab.json.r4t5y6u7.partial",
        run / "..actlab.lock.holder.u7i8o9p0.partial",
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    finish(run, capsys)
    assert not any(path.exists() for path in planted)
    assert not (run / ".store.zarr.x1y2z3w4.partial").exists()
    assert leftovers(run) == []
    assert_same_run(run, reference())


@pytest.fixture(scope="module")
def analyzed(server, reference, tmp_path_factory):
    """Runs recorded and analysed under umask 022 and 077; the 022 run had a staging folder planted first."""
    root = tmp_path_factory.mktemp("umask")
    runs = {mask: root / f"run{mask:03o}" for mask in (0o022, 0o077)}
    started = server.start(*({"argv": ["record", *ARGS, "--out", str(run)], "umask": mask} for mask, run in runs.items()))
    assert [r.returncode for r in started.wait()] == [0, 0]
    orphan = runs[0o022] / ".analysis.k3j4h5l6.partial"
    orphan.mkdir()
    (orphan / "marker.txt").write_text("left by a killed analyze\n")
    started = server.start(*({"argv": ["analyze", str(run), "--no-progress", "--format", "png"], "umask": mask}
                             for mask, run in runs.items()))
    results = started.wait(timeout=180)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    return runs, orphan


def test_analyze_removes_a_killed_analyze_staging_folder(analyzed):
    runs, orphan = analyzed
    assert not orphan.exists()
    assert (runs[0o022] / "analysis" / "report.html").is_file()
    assert leftovers(runs[0o022]) == []


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_outputs_follow_the_umask(analyzed, mask):
    run = analyzed[0][mask]
    paths = [run, *run.rglob("*")]
    assert store_path(run) in paths and run / "analysis" / "report.html" in paths and run / "checkpoint.pt" in paths
    wrong = []
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        if mode != expected:
            wrong.append(f"{path.relative_to(run.parent)} {mode:o} != {expected:o}")
    assert wrong == []


# -- durability: data reaches the disk before the commit that makes it visible ---------------------------------------

_WRITE_ONE_EPOCH = """
import sys
import numpy as np
import zarr
from actlab.store import RunWriter, store_path
writer = RunWriter.open(sys.argv[1])
n = zarr.open_array(store_path(sys.argv[1]) / "probes" / "sample", mode="r").shape[0]
rng = np.random.default_rng(0)
preacts = {spec["name"]: rng.standard_normal((n, *spec["shape"])).astype(np.float32) for spec in writer.attrs["layers"]}
params = {spec["name"]: rng.standard_normal(spec["shape"]).astype(spec["dtype"]) for spec in writer.attrs["parameters"]}
writer.write_epoch(10, preacts, params)
"""


def test_shards_and_their_digests_are_fsynced_before_the_commit(tmp_path):
    """strace one recorded epoch: every shard file, the digest row, their folders and the folders that gained new ones
    are fsynced after their rename and before the rename that lands the commit (layers/epoch), fsynced after it."""
    import re
    import shutil
    import subprocess
    import sys

    from fixtures_store import LAYERS, PARAMETERS, planted_run

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    run = planted_run(tmp_path / "run", commit_epochs=[0]).run_dir
    log = tmp_path / "strace.log"
    done = subprocess.run(["strace", "-f", "-y", "-qq", "-e", "trace=fsync,rename,renameat,renameat2", "-o", str(log),
                           sys.executable, "-c", _WRITE_ONE_EPOCH, str(run)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    store = str(store_path(run).resolve())
    events = []  # (call, path) in the order the calls started
    for line in log.read_text().splitlines():
        if match := re.search(r"fsync\(\d+<([^>]*)>", line):
            events.append(("fsync", match.group(1)))
        elif match := re.search(r"rename(?:at2?)?\((?:[^,]*, )?\"[^\"]*\", (?:[^,]*, )?\"([^\"]*)\"", line):
            events.append(("rename", os.path.abspath(match.group(1))))
    commit = f"{store}/layers/epoch/c/0"
    landed = events.index(("rename", commit))
    slot = 1  # epoch 10
    written = ([f"{store}/layers/{layer.name}/preact/c/{slot}/0/0" for layer in LAYERS]
               + [f"{store}/parameters/{p.name}/c/{slot}/0" + ("/0" if len(p.shape) == 2 else "") for p in PARAMETERS]
               + [f"{store}/layers/shard_digest/c/{slot}/0/0"])
    for path in written:
        renamed = events.index(("rename", path))
        assert renamed < events.index(("fsync", path)) < landed, path
        # its folder, and for a shard the chunk folder that gained the slot's new folder (the digest row existed)
        new_slot = "shard_digest" not in path
        for folder in (os.path.dirname(path), *([path[: path.index(f"/c/{slot}/")] + "/c"] if new_slot else [])):
            assert ("fsync", folder) in events[renamed:landed], folder
    assert ("fsync", commit) in events[landed:]
