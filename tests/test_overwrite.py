"""``--overwrite`` replaces a run or an ensemble only once the new stores are in place: a refused or failed
replacement leaves the previous output as it was, byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from actlab import store
from actlab.analysis import analyze, open_run
from actlab.errors import OutputError, StoreError, WriteError
from actlab.files import (
    FOLDER_LOCK_FILENAME,
    lock_path,
    marker_kind,
    staged_dir,
    writer_lock,
)
from actlab.record import api, record
from actlab.store import (
    ANALYSIS_DIRNAME,
    CHECKPOINT_DIGEST_FILENAME,
    CHECKPOINT_FILENAME,
    STORE_DIRNAME,
    open_store,
)
from actlab.workflow import analyze_to_dir


def contents(root: Path, *, untouched: bool = True) -> dict[str, tuple]:
    """SHA-256 of every file under ``root`` by relative path, lock files (which a lock attempt creates) left out;
    with ``untouched`` also its inode and modification time, so that a file rewritten with the same bytes differs."""
    def entry(path: Path) -> tuple:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return (digest, path.stat().st_ino, path.stat().st_mtime_ns) if untouched else (digest,)

    return {str(path.relative_to(root)): entry(path) for path in sorted(root.rglob("*"))
            if path.is_file() and ".lock" not in path.name}


def with_analysis(run_dir: Path) -> Path:
    """Give ``run_dir`` an analysis folder, written as ``actlab analyze`` writes one (staged, marked, swapped in)."""
    own = run_dir / ANALYSIS_DIRNAME
    with staged_dir(own, "analysis", inputs=[run_dir], allowed_inside=[own]) as built:
        (built / "summary.json").write_text('{"findings": "kept"}\n')
    return run_dir


@pytest.fixture
def recorded(tiny_record_config) -> tuple:
    """A tiny complete run with a checkpoint and an analysis folder, and its settings."""
    config = tiny_record_config.replace(epochs=2, checkpoint_every=1)
    return with_analysis(record(config)), config


def test_overwrite_refused_while_the_analysis_is_written_changes_nothing(recorded):
    run_dir, config = recorded
    before = contents(run_dir)
    assert {STORE_DIRNAME, CHECKPOINT_FILENAME, ANALYSIS_DIRNAME} <= {name.split("/")[0] for name in before}
    with writer_lock(lock_path(run_dir / ANALYSIS_DIRNAME), "an analyze"), \
            pytest.raises(OutputError, match=f"analysis folder {run_dir / ANALYSIS_DIRNAME} is being written by process"):
        record(config, overwrite=True)
    assert contents(run_dir) == before


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_overwrite_failing_before_the_new_store_is_in_changes_nothing(recorded, monkeypatch, failure):
    run_dir, config = recorded
    before = contents(run_dir)

    def allocate_fails(*args, **kwargs):
        raise failure

    monkeypatch.setattr(store.writer, "_allocate", allocate_fails)
    with pytest.raises(WriteError if isinstance(failure, OSError) else KeyboardInterrupt):
        record(config, overwrite=True)
    assert contents(run_dir) == before
    assert open_store(run_dir).attrs["status"] == "complete"


def test_overwrite_failing_after_the_new_store_is_in_leaves_a_reusable_folder(recorded, monkeypatch):
    run_dir, config = recorded

    def evaluate_fails(self):
        raise RuntimeError("diverged")

    monkeypatch.setattr(api.ModelEpochs, "evaluate", evaluate_fails)
    with pytest.raises(RuntimeError, match="diverged"):
        record(config, overwrite=True)
    # the old run was replaced (as asked), the new one undone before its first commit: only the marker is left
    assert sorted(contents(run_dir)) == [".actlab.json"] and marker_kind(run_dir) == "run"
    monkeypatch.undo()
    assert open_store(record(config)).attrs["status"] == "complete"  # the folder takes a new run without --overwrite


def test_overwrite_replaces_the_store_then_drops_the_old_checkpoint_and_analysis(recorded):
    run_dir, config = recorded
    old_id = open_store(run_dir).attrs["config"]["resolved"]["run_id"]
    record(config.replace(checkpoint_every=0, record_epochs="0"), overwrite=True)
    assert open_store(run_dir).attrs["config"]["resolved"]["run_id"] != old_id
    assert not (run_dir / ANALYSIS_DIRNAME).exists()
    assert api.load_checkpoint(run_dir / CHECKPOINT_FILENAME)["run_id"] != old_id  # the new run's own checkpoint


def test_ensemble_overwrite_refused_or_failing_before_its_replicas_are_in_changes_nothing(tiny_record_config, monkeypatch):
    config = tiny_record_config.replace(epochs=1, checkpoint_every=1)
    ensemble = with_analysis(record(config, seeds=[0, 1, 2]))  # findings over the seeds 0, 1, 2
    with_analysis(ensemble / "seed2")  # a replica the new ensemble (seeds 0, 1) drops
    before = contents(ensemble)
    bytes_before = contents(ensemble, untouched=False)
    for busy in (lock_path(ensemble / ANALYSIS_DIRNAME), lock_path(ensemble / "seed2" / ANALYSIS_DIRNAME),
                 ensemble / "seed2" / FOLDER_LOCK_FILENAME):
        with writer_lock(busy, "test"), pytest.raises(OutputError, match="is being written by process"):
            record(config, seeds=[0, 1], overwrite=True)
        assert contents(ensemble) == before

    def allocate_fails(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.writer, "_allocate", allocate_fails)
    with pytest.raises(WriteError):
        record(config, seeds=[0, 1], overwrite=True)
    assert contents(ensemble, untouched=False) == bytes_before  # the marker of the new ensemble was put back as it was
    monkeypatch.undo()
    record(config, seeds=[0, 1], overwrite=True)
    # the old findings over seeds 0, 1, 2 went with the old ensemble
    assert sorted(p.name for p in ensemble.iterdir() if not p.name.startswith(".")) == [
        CHECKPOINT_FILENAME, CHECKPOINT_DIGEST_FILENAME, "seed0", "seed1"]


def test_analysis_of_a_run_replaced_while_it_is_read_is_refused(recorded):
    run_dir, config = recorded
    run = open_run(run_dir)
    record(config.replace(record_epochs="0"), overwrite=True)  # another recording replaces the store under the reader
    with pytest.raises(StoreError, match="was replaced by another recording while it was read"):
        analyze(run, progress=False)


def test_analysis_output_of_a_run_replaced_before_it_is_written_is_refused(recorded, monkeypatch):
    import actlab.analysis

    run_dir, config = recorded
    summarize = actlab.analysis.summary

    def summary_then_replaced(results):
        found = summarize(results)
        record(config.replace(record_epochs="0"), overwrite=True)
        return found

    monkeypatch.setattr(actlab.analysis, "summary", summary_then_replaced)
    with pytest.raises(StoreError, match="was replaced by another recording while it was read"):
        analyze_to_dir(run_dir, progress=False)
    assert not (run_dir / ANALYSIS_DIRNAME).exists()  # the old run's analysis went with it; no stale one came back


def test_blocks_of_a_run_replaced_after_it_was_opened_are_never_returned(recorded):
    run_dir, config = recorded
    run = open_run(run_dir)
    lazy = run.layer(run.layer_names[0])  # a notebook's lazy array, computed later
    assert run.read_block(run.layer_names[0], 0).shape == (run.n_samples, lazy.sizes["unit"])
    record(config.replace(record_epochs="0"), overwrite=True)
    for read in (lambda: lazy.values, lambda: run.read_block(run.layer_names[0], 0)):
        with pytest.raises(StoreError, match="was replaced by another recording while it was read"):
            read()


def test_a_failed_new_run_removes_the_parents_it_made_only_while_they_hold_nothing_else(tiny_record_config, tmp_path,
                                                                                         monkeypatch):
    config = tiny_record_config.replace(epochs=1)
    parent = tmp_path / "made" / "for"

    def allocate_fails_beside_another_writer(*args, **kwargs):
        (parent / "other").mkdir()  # another process puts its own output into the parent meanwhile
        (parent / "other" / "notes.txt").write_text("theirs")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.writer, "_allocate", allocate_fails_beside_another_writer)
    with pytest.raises(WriteError):
        record(config, out=str(parent / "run"))
    assert not (parent / "run").exists() and (parent / "other" / "notes.txt").read_text() == "theirs"

    monkeypatch.setattr(store.writer, "_allocate", lambda *args, **kwargs: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(WriteError):
        record(config, out=str(tmp_path / "alone" / "run"))
    assert not (tmp_path / "alone").exists()  # nothing else came in: every folder the claim made is gone


def test_an_edited_or_damaged_marker_is_refused_in_one_line_and_never_acted_on(tmp_path, capsys):
    """Issue 16: the markers steer deletes and resumes; one whose content no longer matches its digest (the ensemble
    marker's epochs edited, a flipped bit) is reported, never read."""
    import json

    from actlab.cli import main
    from actlab.files import MARKER_FILENAME, check_output, marker_kind, read_marker, write_marker

    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    write_marker(ensemble, "ensemble", seeds=[0, 1], replicas=["seed0", "seed1"], config={"epochs": 6})
    marker = json.loads((ensemble / MARKER_FILENAME).read_text())
    assert marker["actlab_digest"].startswith("sha256:") and read_marker(ensemble) == marker
    marker["config"]["epochs"] = 3  # edited by hand, digest left as it was
    (ensemble / MARKER_FILENAME).write_text(json.dumps(marker))
    before = sorted(p.name for p in ensemble.iterdir())
    for read in (lambda: read_marker(ensemble), lambda: marker_kind(ensemble),
                 lambda: check_output(ensemble, "ensemble")):
        with pytest.raises(StoreError, match=f"marker {ensemble / MARKER_FILENAME} fails its actlab_digest check"):
            read()
    capsys.readouterr()
    for argv in (["record", "--resume", str(ensemble)], ["analyze", str(ensemble)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("actlab: error: marker ") and "actlab_digest" in err[0]
    assert sorted(p.name for p in ensemble.iterdir()) == before
