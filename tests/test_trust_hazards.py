"""Trust nothing read from disk (issue 16): markers, stores, saved results and paths steer no delete, resume or report
before they are checked.

One table-driven test sends each case of :data:`CASES` through :func:`actlab.cli.main` in a working folder built for
it from one tiny recorded (and analysed) run, a second run and a two-seed ensemble, then changed as the case says (a
marker edited, a file planted). Each case asserts its exit code, one ``actlab: error:`` line naming the problem, and a
snapshot of the whole folder (type, size, mtime_ns and inode of every path, hidden files included, links not followed)
equal before and after: nothing deleted, replaced, imported or left behind, inside another run least of all.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from fixtures_store import changes, snapshot

from actlab.cli import main
from actlab.digest import DIGEST_KEY, with_digest
from actlab.errors import OUT_OF_MEMORY, WriteError
from actlab.files import MARKER_FILENAME, is_leftover, remove_leftovers
from actlab.record.claim import write_errors

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = ["--dataset", "synthetic", "--synthetic", "train=100,test=40,classes=4,shape=1x4x4", "--model", "mlp3",
        "--width", "8", "--epochs", "1", "--record-epochs", "0,1", "--probe-clean", "8", "--probe-noisy", "8",
        "--probe-test", "8", "--no-progress", "--device", "cpu"]
"""A valid, seconds-long recording."""


# -- how a case changes the working folder ---------------------------------------------------------------------


def edit_json(path: Path, change) -> None:
    """``change`` the JSON document at ``path``; a digest it carries (a marker's, or a group's attributes') is
    recomputed, so that the changed content, not its digest, is what actlab must refuse."""
    data = json.loads(path.read_text())
    change(data)
    if DIGEST_KEY in data:
        data = with_digest(data)
    if isinstance(data.get("attributes"), dict) and DIGEST_KEY in data["attributes"]:
        data["attributes"] = with_digest(data["attributes"])
    path.write_text(json.dumps(data))


def replicas_are(*names: str):
    def setup(folder: Path) -> None:
        edit_json(folder / "ens" / MARKER_FILENAME, lambda m: m.update(replicas=[n.replace("{PWD}", str(folder)) for n in names]))
    return setup


def seeds_are(seeds):
    def setup(folder: Path) -> None:
        edit_json(folder / "ens" / MARKER_FILENAME, lambda m: m.update(seeds=seeds))
    return setup


def replica_linked(folder: Path) -> None:
    shutil.rmtree(folder / "ens" / "seed1")
    (folder / "ens" / "seed1").symlink_to(folder / "victim")


def factory_store(folder: Path) -> None:
    """The run ``run`` made to name the factory ``os:system`` with a shell command, interrupted, no checkpoint."""
    def change(root):
        root["attributes"]["config"].update(model="os:system", model_args={"command": "touch pwned"}, width=8)
        root["attributes"]["status"] = "recording"
    edit_json(folder / "run" / "store.zarr" / "zarr.json", change)
    (folder / "run" / "checkpoint.pt").unlink(missing_ok=True)


def copied_marker(folder: Path) -> None:
    """A user folder that a stale run marker was copied into, beside the user's own store.zarr and checkpoint.pt."""
    user = folder / "user"
    (user / "store.zarr").mkdir(parents=True)
    (user / "store.zarr" / "data.bin").write_bytes(b"the user's data\n")
    (user / "checkpoint.pt").write_bytes(b"the user's checkpoint\n")
    shutil.copy2(folder / "run" / MARKER_FILENAME, user / MARKER_FILENAME)


def marker_of_another_run(folder: Path) -> None:
    """``run``'s marker names the run id of ``other`` (a marker copied beside another run's store)."""
    other_id = json.loads((folder / "other" / MARKER_FILENAME).read_text())["run_id"]
    edit_json(folder / "run" / MARKER_FILENAME, lambda m: m.update(run_id=other_id))


def linked_into_other(folder: Path) -> None:
    (folder / "into_other").symlink_to(folder / "other" / "store.zarr")


def damaged_layer_group(how: str):
    def setup(folder: Path) -> None:
        path = folder / "run" / "store.zarr" / "layers" / "hidden1" / "zarr.json"
        if how == "truncated":
            path.write_bytes(path.read_bytes()[:20])
        elif how == "garbage":
            path.write_text('{"zarr_format": 3, "node_type": "banana"}')
        else:
            path.unlink()
    return setup


def huge_width(folder: Path) -> None:
    """``run`` declares (root attrs and array metadata agreeing) a first hidden layer 2**28 units wide."""
    width = 2**28
    store = folder / "run" / "store.zarr"

    def root(data):
        for layer in data["attributes"]["layers"]:
            if layer["name"] == "hidden1":
                layer.update(width=width, shape=[width])

    def array(data):
        data["shape"][-1] = width
        data["chunk_grid"]["configuration"]["chunk_shape"][-1] = width
        for codec in data["codecs"]:
            if codec["name"] == "sharding_indexed":
                codec["configuration"]["chunk_shape"][-1] = width

    edit_json(store / "zarr.json", root)
    edit_json(store / "layers" / "hidden1" / "preact" / "zarr.json", array)


def mount_point(monkeypatch, folder: Path) -> None:
    (folder / "mnt").mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda path: os.fspath(path) == str(folder / "mnt") or real(path))


def disk_full(monkeypatch, folder: Path) -> None:
    """Writing the report fails as on a full disk; the analysis itself is the run's saved one (the write is tested)."""
    from actlab.analysis import load_results

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("actlab.workflow.write_report", full)
    monkeypatch.setattr("actlab.analysis.pipeline.write_results", full)  # an analysis's first write
    monkeypatch.setattr("actlab.analysis.analyze", lambda run, **kwargs: load_results(folder / "run" / "analysis" / "results.zarr"))


def row(case_id: str, argv: list[str], code: int, message: str, setup=None, patch=None):
    """One case: ``actlab ARGV`` after ``setup(folder)`` (and ``patch(monkeypatch, folder)``), its exit code and a
    regular expression its one error line matches."""
    return pytest.param(argv, code, message, setup, patch, id=case_id)


DEEP = '{"a":' * 5000 + "1" + "}" * 5000
RECORD_ENS = ["record", *TINY, "--seeds", "0-1", "--out", "ens"]

CASES = [
    # 1. paths come from the code: replica folders are seed<S> of the marker's seeds, never a path it holds
    row("ensemble-replica-parent-path-analyze", ["analyze", "ens", "--no-progress"], 2, "lists the replicas",
        replicas_are("../victim", "seed1")),
    row("ensemble-replica-parent-path-overwrite", [*RECORD_ENS, "--overwrite"], 2, "lists the replicas",
        replicas_are("../victim", "seed1")),
    row("ensemble-replica-absolute-path-overwrite", [*RECORD_ENS, "--overwrite"], 2, "lists the replicas",
        replicas_are("{PWD}/victim", "seed1")),
    row("ensemble-seeds-not-integers-analyze", ["analyze", "ens", "--no-progress"], 2, "lists the seeds",
        seeds_are(["../victim"])),
    row("ensemble-seeds-not-integers-resume", ["record", "--resume", "ens"], 2, "lists the seeds",
        seeds_are([0, 0])),
    row("ensemble-replica-symlink-analyze", ["analyze", "ens", "--no-progress"], 2, "is a symbolic link", replica_linked),
    row("ensemble-replica-symlink-overwrite", [*RECORD_ENS, "--overwrite"], 2, "is a symbolic link", replica_linked),
    # 2. resume imports no factory the store names unless the user names it
    row("resume-factory-named-by-store", ["record", "--resume", "run"], 2, "recorded from the factory os:system",
        factory_store),
    row("resume-factory-other-than-stored", ["record", "--resume", "run", "--model", "collections:OrderedDict"], 2,
        "not collections:OrderedDict", factory_store),
    # 3. an analysis output lies only in its own run's analysis/, never inside another run, a store or a replica
    row("analyze-out-other-run-analysis", ["analyze", "run", "--out", "other/analysis", "--no-progress"], 2,
        "lies inside the actlab run"),
    row("analyze-out-inside-other-store", ["analyze", "run", "--out", "other/store.zarr/foo", "--no-progress"], 2,
        "lies inside the Zarr store"),
    row("analyze-out-inside-replica", ["analyze", "run", "--out", "ens/seed0/mine", "--no-progress"], 2,
        "lies inside the actlab run"),
    row("compare-out-inside-replica", ["compare", "run", "other", "--out", "ens/seed0/cmp", "--no-progress"], 2,
        "lies inside the actlab run"),
    row("compare-out-inside-ensemble", ["compare", "run", "other", "--out", "ens/cmp", "--no-progress"], 2,
        "lies inside the actlab ensemble"),
    row("analyze-out-link-then-parent", ["analyze", "run", "--out", "into_other/../x", "--no-progress"], 2,
        "goes up", linked_into_other),
    # 7. --overwrite replaces only a run whose store is the one its marker names
    row("record-copied-marker-in-user-folder", ["record", *TINY, "--out", "user"], 2, "does not open as one", copied_marker),
    row("overwrite-copied-marker-in-user-folder", ["record", *TINY, "--out", "user", "--overwrite"], 2,
        "does not open as one", copied_marker),
    row("overwrite-marker-of-another-run", ["record", *TINY, "--out", "run", "--overwrite"], 2, "its store holds the run",
        marker_of_another_run),
    # 9. one line and a documented exit code
    row("model-args-nested-5000-deep", ["record", *TINY, "--model", "pkg.mod:make", "--model-args", DEEP, "--out", "new"],
        2, "nested too deeply"),
    row("model-args-5000-digit-integer", ["record", *TINY, "--model", "pkg.mod:make", "--model-args",
                                          '{"a": ' + "9" * 5000 + "}", "--out", "new"], 2, "too many digits"),
    row("layer-group-json-truncated", ["analyze", "run", "--no-progress"], 2, "group layers/hidden1 cannot be opened",
        damaged_layer_group("truncated")),
    row("layer-group-json-not-a-group", ["analyze", "run", "--no-progress"], 2, "group layers/hidden1 cannot be opened",
        damaged_layer_group("garbage")),
    row("layer-group-json-missing", ["analyze", "run", "--no-progress"], 2, "group layers/hidden1 cannot be opened",
        damaged_layer_group("missing")),
    row("store-declares-width-2-28", ["analyze", "run", "--no-progress", "--format", "png"], OUT_OF_MEMORY, "out of memory",
        huge_width),
    row("analyze-out-mount-point", ["analyze", "run", "--out", "mnt", "--no-progress"], 2, "is a mount point",
        patch=mount_point),
    row("analyze-disk-full", ["analyze", "run", "--no-progress", "--format", "png"], 3, "No space left on device",
        patch=disk_full),
    row("compare-disk-full", ["compare", "run", "other", "--out", "cmp", "--no-progress", "--format", "png"], 3,
        "No space left on device", patch=disk_full),
]


# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """A tiny run (analysed), a second run of another seed and a two-seed ensemble, recorded once for the module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trust-sources")
    try:
        assert main(["record", *TINY, "--out", str(root / "run")]) == 0
        assert main(["analyze", str(root / "run"), "--no-progress", "--format", "png"]) == 0
        assert main(["record", *TINY, "--seed", "1", "--out", str(root / "other")]) == 0
        assert main(["record", *TINY, "--seeds", "0-1", "--out", str(root / "ens")]) == 0
    finally:
        torch.set_num_threads(threads)
    return root


def build(folder: Path, sources: Path, *, ensemble: bool = True) -> None:
    """The working folder: the two runs, a user folder, and with ``ensemble`` the ensemble and a copy of the second run
    as the ``victim`` of its marker."""
    folder.mkdir()
    for name in ("run", "other", "ens") if ensemble else ("run", "other"):
        shutil.copytree(sources / name, folder / name, symlinks=True)
    if ensemble:
        shutil.copytree(sources / "other", folder / "victim", symlinks=True)
    (folder / "user").mkdir()
    (folder / "user" / "notes.txt").write_text("the user's notes\n")


# -- the table --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, code, message, setup, patch", CASES)
def test_refused_in_one_line_and_nothing_changed(argv, code, message, setup, patch, sources, tmp_path, monkeypatch,
                                                 capsys):
    folder = tmp_path / "work"
    build(folder, sources, ensemble=any("ens" in arg for arg in argv))
    if setup is not None:
        setup(folder)
    if patch is not None:
        patch(monkeypatch, folder)
    monkeypatch.chdir(folder)
    before = snapshot(folder, inodes=True)
    capsys.readouterr()
    found = main([arg.replace("{PWD}", str(folder)) for arg in argv])
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert found == code, f"exit code {found}; output: {lines}"
    errors = [line for line in lines if line.startswith("actlab: error: ")]
    assert len(errors) == 1 and len(lines) <= 2, f"not one 'actlab: error:' line: {lines}"
    assert re.search(message, errors[0]), errors[0]
    assert "--overwrite" not in errors[0] or "--overwrite" in argv, f"suggests a flag that would delete: {errors[0]}"
    after = snapshot(folder, inodes=True)
    changed = changes(before, after)
    if code == 3:  # a failed write keeps its lock file (never deleted) and changes the mtime of the folder it staged in
        changed = [c for c in changed if not (c.startswith("+ ") and c.endswith(".lock"))
                   and not (c.startswith("~ ") and before[c[2:]][:2] + before[c[2:]][3:] == after[c[2:]][:2] + after[c[2:]][3:]
                            and stat.S_ISDIR(after[c[2:]][0]))]
    assert changed == [], f"the tree changed: {changed}"
    assert not (folder / "pwned").exists()


# -- outputs and their runs -------------------------------------------------------------------------------------


def test_compare_reuses_saved_results_only_of_the_run_as_it_is(sources, tmp_path, monkeypatch, capsys):
    """Results copied from another run (what 'analyze tA --out tB/analysis' once wrote) are not reused as tB's;
    the run's own are, and the identity they record is the run id and the SHA-256 of the committed state."""
    from actlab.analysis import load_results, open_run
    from actlab.workflow import saved_results

    folder = tmp_path / "work"
    build(folder, sources, ensemble=False)
    shutil.copytree(folder / "run" / "analysis", folder / "other" / "analysis")
    own = load_results(folder / "run" / "analysis" / "results.zarr").attrs
    run = open_run(folder / "run")
    attrs = json.loads((folder / "run" / "store.zarr" / "zarr.json").read_text())["attributes"]
    fixed = {key: value for key, value in attrs.items() if key not in ("status", "completed", "actlab_digest")}
    state = {"attrs": fixed, "metric_epochs": [0, 1], "recorded_epochs": [0, 1]}
    expected = hashlib.sha256(json.dumps(state, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert own["store_digest"] == run.state_digest == expected
    assert own["run_id"] == run.run_id == json.loads((folder / "run" / MARKER_FILENAME).read_text())["run_id"]
    assert saved_results(run) is not None
    assert saved_results(open_run(folder / "other")) is None
    edit_json(folder / "run" / "store.zarr" / "zarr.json", lambda root: root["attributes"]["dataset"].update(name="x"))
    assert saved_results(open_run(folder / "run")) is None  # the committed state changed: the results no longer describe it


def test_overwrite_holds_the_analysis_lock_before_an_analysis_exists(sources, tmp_path, capsys):
    """An analyze of the old run, still computing, holds the analysis lock when it swaps its output in; --overwrite
    takes that lock even while the run has no analysis/ yet, so one of the two is refused and no stale analysis lands."""
    from actlab.files import lock_path, writer_lock

    run = tmp_path / "other"
    shutil.copytree(sources / "other", run, symlinks=True)
    assert not (run / "analysis").exists()
    before = snapshot(run, inodes=True)
    with writer_lock(lock_path(run / "analysis"), "an analyze"):
        assert main(["record", *TINY, "--seed", "8", "--out", str(run), "--overwrite"]) == 2
    assert "analysis folder" in capsys.readouterr().err
    assert [c for c in changes(before, snapshot(run, inodes=True)) if ".lock" not in c and c != "~ ."] == []  # the lock is the test's


def test_leftovers_are_exactly_their_writers():
    """The staging folder of output ``rep.v2`` is not a leftover of output ``rep``; ``rep``'s own are."""
    assert is_leftover(".rep.ab_4cd9z.partial", "rep")
    for name in (".rep.v2.ab_4cd9z.partial", ".rep.ab_4cd9z.swap", ".rep.abc.partial", ".rep.ab_4cd9zz.partial",
                 ".rep.AB_4CD9Z.partial", "rep.ab_4cd9z.partial"):
        assert not is_leftover(name, "rep"), name


def test_remove_leftovers_spares_a_sibling_writer(tmp_path):
    (tmp_path / ".rep.v2.k3j9a_0q.partial").mkdir()
    (tmp_path / ".rep.v2.k3j9a_0q.partial" / "results").write_text("a sibling's output being written\n")
    (tmp_path / ".rep.x1y2z3w4.partial").mkdir()
    before = snapshot(tmp_path / ".rep.v2.k3j9a_0q.partial", inodes=True)
    assert remove_leftovers(tmp_path, "rep") == [tmp_path / ".rep.x1y2z3w4.partial"]
    assert snapshot(tmp_path / ".rep.v2.k3j9a_0q.partial", inodes=True) == before


def test_storage_client_errors_of_a_run_url_are_write_errors(tmp_path):
    """The S3 endpoint gone mid-record (a botocore error) is one line and exit code 3 for a run URL; elsewhere such an
    error is not taken for a failed write."""
    gone = type("EndpointConnectionError", (Exception,), {"__module__": "botocore.exceptions"})
    with pytest.raises(WriteError, match="writing the run s3://bucket/runs/r failed \\(Could not connect"):
        with write_errors("s3://bucket/runs/r"):
            raise gone('Could not connect to the endpoint URL: "http://localhost:5555/bucket"')
    with pytest.raises(gone), write_errors(tmp_path):
        raise gone("a local run")


# -- an ensemble is replaced as one unit ---------------------------------------------------------------------------


def replica_state(ensemble: Path) -> list[tuple[float, str, str]]:
    """(lr, ensemble id, status) in the root attributes of each replica."""
    found = []
    for replica in sorted(ensemble.glob("seed*")):
        attrs = json.loads((replica / "store.zarr" / "zarr.json").read_text())["attributes"]
        found.append((attrs["config"]["lr"], attrs["config"]["resolved"]["ensemble"]["id"], attrs["status"]))
    return found


def test_overwrite_killed_between_replicas_is_finished_by_resume(sources, tmp_path, capsys):
    """kill -9 of an ensemble --overwrite after its first replica was replaced leaves a mix (seed0 new, seed1 old);
    --resume finishes the replacement the marker names: every replica of the new settings, bit for bit the
    uninterrupted recording (issue 16, case 6: before, --resume exited 0 with the mix)."""
    import subprocess
    import sys

    from fixtures_store import ONE_THREAD, assert_same_recording

    from actlab.store import open_store

    ensemble = tmp_path / "ens"
    shutil.copytree(sources / "ens", ensemble, symlinks=True)
    old_id = json.loads((ensemble / MARKER_FILENAME).read_text())["ensemble_id"]
    crash = Path(__file__).parent / "crashing_actlab.py"
    killed = subprocess.run([sys.executable, str(crash), "record", *TINY, "--seeds", "0-1", "--lr", "0.001", "--out",
                             str(ensemble), "--overwrite"], env={**os.environ, **ONE_THREAD, "ACTLAB_TEST_CRASH": "replace:100"},
                            capture_output=True, text=True, timeout=300, check=False)
    assert killed.returncode == -9, killed.stderr
    new_id = json.loads((ensemble / MARKER_FILENAME).read_text())["ensemble_id"]
    assert replica_state(ensemble) == [(0.001, new_id, "recording"), (1e-4, old_id, "complete")]  # the mix
    capsys.readouterr()
    assert main(["analyze", str(ensemble), "--no-progress"]) == 2  # refused, not findings over two recordings
    err = capsys.readouterr().err
    assert err == (f"actlab: error: {ensemble} mixes replicas of two recordings (seed1 of another than its marker "
                   f"names, seed0 of it; a replacement was stopped part-way); finish with "
                   f"'actlab record --resume {ensemble}' or record it again with --overwrite\n")
    assert main(["record", "--resume", str(ensemble), "--no-progress"]) == 0
    assert "recording all of them anew" in capsys.readouterr().err
    assert replica_state(ensemble) == [(0.001, new_id, "complete")] * 2
    reference = tmp_path / "reference"
    assert main(["record", *TINY, "--seeds", "0-1", "--lr", "0.001", "--out", str(reference)]) == 0
    for seed in (0, 1):
        assert_same_recording(open_store(ensemble / f"seed{seed}"), open_store(reference / f"seed{seed}"))


@pytest.mark.parametrize("command", ["resume", "overwrite"])
def test_ensemble_killed_while_marking_is_recovered(command, sources, tmp_path, capsys):
    """An ensemble killed while it wrote its marker (only the lock and the marker's temporary file left) or before its
    replicas had stores (each holding only its marker and lock) is recovered by --overwrite, and by --resume where the
    marker is there to say what to record (before, every command refused it)."""
    ensemble = tmp_path / "ens"
    ensemble.mkdir()
    (ensemble / ".actlab.lock").touch()
    if command == "overwrite":
        (ensemble / "..actlab.json.k3j9a_0q.partial").write_text('{"kind": "ens')
        argv = ["record", *TINY, "--seeds", "0-1", "--out", str(ensemble), "--overwrite"]
    else:
        shutil.copy2(sources / "ens" / MARKER_FILENAME, ensemble / MARKER_FILENAME)
        for seed in (0, 1):
            (ensemble / f"seed{seed}").mkdir()
            (ensemble / f"seed{seed}" / ".actlab.lock").touch()
            (ensemble / f"seed{seed}" / MARKER_FILENAME).write_text(json.dumps({"kind": "run", "run_id": "0" * 32}))
        argv = ["record", "--resume", str(ensemble), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    assert [status for _, _, status in replica_state(ensemble)] == ["complete", "complete"]
    assert not list(ensemble.glob("*.partial"))
