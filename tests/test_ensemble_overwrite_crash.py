"""``actlab record --seeds ... --overwrite`` killed at each rename that changes what an ensemble folder shows: opening
and analysing the folder then gives the replicas of one recording, or is refused in one line (exit code 2); never
replicas of two recordings, and ``--resume`` finishes a refused one."""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from pathlib import Path

import pytest
from cli_runner import run_cli

import actlab.files
import actlab.record.ensemble
from actlab.errors import StoreError
from actlab.location import location
from actlab.record import RecordConfig, record
from actlab.store import open_store
from actlab.workflow import ensemble_replicas

pytestmark = pytest.mark.slow

SEEDS = [0, 1]
OLD_LR, NEW_LR = 0.01, 0.02
KILLED = 137


def settings(folder: Path, lr: float) -> RecordConfig:
    """A tiny ensemble (1 epoch, every epoch recorded) into ``folder`` trained with ``lr``."""
    return RecordConfig(dataset="synthetic", synthetic="train=200,test=100,classes=4,shape=1x4x4", model="mlp3",
                        width=8, lr=lr, batch_size=32, probe_clean=20, probe_noisy=20, probe_test=20, epochs=1,
                        record_epochs="every:1", progress=False, device="cpu", out=str(folder))


def visible(destination: str | os.PathLike) -> bool:
    """Whether a rename to ``destination`` changes what the folder shows: not one inside a staging folder
    (``*.partial``) that is built before it is swapped in."""
    return not any(part.endswith(actlab.files.PARTIAL_SUFFIX) for part in Path(destination).parent.parts)


def overwrite_in_child(folder: Path, *, kill_at: int | None, native_exchange: bool,
                       count_file: Path | None = None) -> int:
    """Fork a child that records a new ensemble over ``folder`` with ``--overwrite``; it dies (``os._exit(137)``, no
    clean-up) at its ``kill_at``-th visible rename (``os.replace``, ``os.rename``, and the atomic exchange of a store,
    or the three renames it falls back to without ``native_exchange``). ``count_file`` receives the number of visible
    renames made before training starts (the replacement is then done). Returns the child's exit code."""
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    code = 70
    try:
        import torch

        torch.set_num_threads(1)
        count = 0
        real_replace, real_rename, real_exchange = os.replace, os.rename, actlab.files._renameat2_exchange
        announce = actlab.record.ensemble._announce

        def counted(call):
            def wrapper(source, destination, *args, **kwargs):
                nonlocal count
                if visible(destination):
                    count += 1
                    if count == kill_at:
                        os._exit(KILLED)
                return call(source, destination, *args, **kwargs)
            return wrapper

        def announced(*args, **kwargs):
            if count_file is not None:
                count_file.write_text(str(count))
            return announce(*args, **kwargs)

        os.replace, os.rename = counted(real_replace), counted(real_rename)
        actlab.files._renameat2_exchange = counted(real_exchange) if native_exchange else (lambda first, second: False)
        actlab.record.ensemble._announce = announced
        record(settings(folder, NEW_LR), seeds=SEEDS, overwrite=True)
        code = 0
    except BaseException:
        traceback.print_exc(file=sys.stderr)
    finally:
        os._exit(code)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def recordings(folder: Path) -> tuple[str | None, dict[str, tuple[str | None, float | None]]]:
    """Read independently of actlab's reader: the ensemble id of the folder's marker, and per replica the ensemble id
    and learning rate its store's root attributes (``store.zarr/zarr.json``) record (None where there is no store)."""
    marker = read_json(folder / ".actlab.json") or {}
    found = {}
    for seed in SEEDS:
        attrs = (read_json(folder / f"seed{seed}" / "store.zarr" / "zarr.json") or {}).get("attributes", {})
        config = attrs.get("config", {})
        found[f"seed{seed}"] = (config.get("resolved", {}).get("ensemble", {}).get("id"), config.get("lr"))
    return marker.get("ensemble_id"), found


@pytest.fixture(scope="module")
def old_ensemble(tmp_path_factory) -> Path:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return record(settings(tmp_path_factory.mktemp("old") / "ensemble", OLD_LR), seeds=SEEDS)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("native_exchange", [True, False], ids=["renameat2", "three-renames"])
def test_overwrite_killed_at_each_rename_never_mixes_two_recordings(old_ensemble, tmp_path, native_exchange):
    counting = tmp_path / "counting"
    shutil.copytree(old_ensemble, counting)
    count_file = tmp_path / "count"
    assert overwrite_in_child(counting, kill_at=None, native_exchange=native_exchange, count_file=count_file) == 0
    renames = int(count_file.read_text())
    # the marker of the ensemble, then of each replica, and each store's swap: at least 2 + 2 * 3 (+2 each falling back)
    assert renames >= (8 if native_exchange else 12)
    old_id, _ = recordings(old_ensemble)
    new_id, after = recordings(counting)
    assert old_id and new_id and old_id != new_id and set(after.values()) == {(new_id, NEW_LR)}

    outcomes: dict[int, str] = {}
    analysed: dict[str, str] = {}  # ensemble id -> outcome of its full analysis
    refusals: dict[int, str] = {}
    for k in range(1, renames + 2):  # every rename of the replacement, and the first write of training after it
        folder = tmp_path / f"killed{k}"
        shutil.copytree(old_ensemble, folder)
        assert overwrite_in_child(folder, kill_at=k, native_exchange=native_exchange) == KILLED, k
        marker_id, found = recordings(folder)
        one_recording = {ensemble_id for ensemble_id, _ in found.values()} == {marker_id}
        try:
            replicas = ensemble_replicas(location(folder))  # what analyze and compare open an ensemble with
        except StoreError as exc:
            refusal = str(exc)
        else:
            refusal = None
            assert replicas == [folder / f"seed{seed}" for seed in SEEDS]
            # accepted: every replica of the recording the marker names, all trained alike
            assert one_recording and len({lr for _, lr in found.values()}) == 1, (k, found)
            if marker_id in analysed:  # this recording was analysed in full at an earlier crash point
                outcomes[k] = analysed[marker_id]
                continue
        code, _, err = run_cli("analyze", folder, "--no-progress", "--format", "png")
        if code == 0:
            assert refusal is None
            summary = json.loads((folder / "analysis" / "summary.json").read_text())
            assert summary["seeds"] == [f"seed{seed}" for seed in SEEDS]
            outcomes[k] = analysed[marker_id] = "old" if marker_id == old_id else "new"
            continue
        assert code == 2 and err.count("\n") == 1 and err.startswith("actlab: error: "), (k, err)
        assert not (folder / "analysis").exists()
        if refusal is not None:
            assert err == f"actlab: error: {refusal}\n" and not one_recording, (k, found, err)
            assert any(reason in refusal for reason in ("mixes replicas of two recordings", "lacks the stores"))
            assert f"actlab record --resume {folder}" in refusal
            outcomes[k], refusals[k] = "refused", refusal
        else:  # one recording, new, whose replicas have no committed epoch yet: analyze says so
            assert marker_id != old_id and "no committed recorded epoch" in err, (k, found, err)
            outcomes[k] = "unfinished"
    # the crash points that would mix two recordings are there (the marker replaced, then each replica), and refused
    assert outcomes[1] == "old" and refusals and outcomes[max(outcomes)] == "unfinished", outcomes
    assert any("mixes replicas of two recordings" in refusal for refusal in refusals.values())
    if not native_exchange:  # the moment a replica has no store at all (moved aside, the new one not yet in)
        assert any("lacks the stores" in refusal for refusal in refusals.values()), refusals

    # compare refuses the same folder in the same line, and --resume finishes it as its marker says
    first = min(refusals)
    folder = tmp_path / f"killed{first}"
    code, _, err = run_cli("compare", folder, counting, "--out", tmp_path / "cmp", "--no-progress")
    assert (code, err) == (2, f"actlab: error: {refusals[first]}\n") and not (tmp_path / "cmp").exists()
    marker_id, _ = recordings(folder)
    assert run_cli("record", "--resume", folder, "--no-progress")[0] == 0
    assert set(recordings(folder)[1].values()) == {(marker_id, NEW_LR)}
    assert [open_store(replica).attrs["status"] for replica in ensemble_replicas(location(folder))] == ["complete"] * 2


def test_a_marker_without_ensemble_id_is_read_as_before_and_a_damaged_one_is_refused(old_ensemble, tmp_path):
    """A marker written before ensembles had an id (no ``ensemble_id``, no digest) lists its replicas unchecked, as
    before; one whose ``ensemble_id`` is not a string is refused in one line, never compared."""
    folder = tmp_path / "older"
    shutil.copytree(old_ensemble, folder)
    marker = json.loads((folder / ".actlab.json").read_text())
    older = {key: value for key, value in marker.items() if key not in ("ensemble_id", "actlab_digest")}
    (folder / ".actlab.json").write_text(json.dumps(older))
    assert ensemble_replicas(location(folder)) == [folder / f"seed{seed}" for seed in SEEDS]
    (folder / ".actlab.json").write_text(json.dumps({**older, "ensemble_id": 7}))
    code, _, err = run_cli("analyze", folder, "--no-progress")
    assert code == 2 and err == (f"actlab: error: {folder / '.actlab.json'} names the ensemble_id 7, not an id; the "
                                 f"ensemble marker is damaged: record the ensemble again with --out {folder} --overwrite\n")
