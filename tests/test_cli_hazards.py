"""Nothing lost: bad input and hazardous outputs through the real ``actlab`` command line.

One table-driven test sends each case of :data:`CASES` through :func:`actlab.cli.main`, in a working
folder (the current directory, the same tree before every case) that holds copies of a real (recorded
and analysed) run, a second run, a run store without actlab's marker, a comparison folder, a folder of
the user's files, a plain file, symbolic links to a run and to a folder, and config files. For every
case it asserts exit code 2, at most two lines of output (one ``actlab: error:`` line), an unchanged
tree (every path with its type, size and ``mtime_ns``, hidden files included, symbolic links not
followed), and that every flag a refusal suggests (``--resume RUN``, ``--overwrite``) works there.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from fixtures_store import changes, snapshot

from actlab.cli import main
from actlab.errors import OutputError, StoreError
from actlab.files import (
    FOLDER_LOCK_FILENAME,
    HOLDER_SUFFIX,
    marker_kind,
    write_marker,
)
from actlab.record.claim import check_run_output
from actlab.store import read_attrs

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = ["--dataset", "synthetic", "--synthetic", "train=200,test=100,classes=4,shape=1x4x4", "--model", "mlp3",
        "--width", "8", "--epochs", "3", "--record-epochs", "0,1,3", "--probe-clean", "20", "--probe-noisy", "20",
        "--probe-test", "20", "--no-progress", "--device", "cpu"]
"""A valid, seconds-long recording; each record case changes one thing."""

HUGE_INT = str(10**30)

TOML_FILES = {
    "lr_fast.toml": 'lr = "fast"\n',
    "out_5.toml": "out = 5\n",
    "width_float.toml": "width = 1.5\n",
    "download_no.toml": 'download = "no"\n',
    "unknown_key.toml": "learning_rate = 0.1\n",
    "invalid.toml": "lr = = 0.1\n[[\n",
    "epochs_float.toml": "epochs = 2.5\n",
    "noise_text.toml": 'noise = "high"\n',
    "seed_bool.toml": "seed = true\n",
    "betas_one.toml": "betas = [0.9]\n",
    "record_epochs_range.toml": 'record_epochs = [0, 99]\nepochs = 3\n',
}


def case(case_id: str, *argv: str):
    """One row of the table: ``actlab ARGV`` run in the case folder (``{PWD}`` becomes its absolute path)."""
    return pytest.param(list(argv), id=case_id)


def record(case_id: str, *flags: str):
    """A record case: the valid tiny recording into the new folder ``new`` with ``flags`` added."""
    return case(case_id, "record", *TINY, "--out", "new", *flags)


def numeric(flag: str, *, zero: bool, integer: bool):
    """Rows for one numeric flag: 0 (where invalid), negative, nan, inf, huge and a non-number."""
    name = flag.lstrip("-")
    rows = [record(f"{name}-zero", flag, "0")] if zero else []
    rows += [
        record(f"{name}-negative", flag, "-1"),
        record(f"{name}-nan", flag, "nan"),
        record(f"{name}-inf", flag, "inf"),
        record(f"{name}-huge", flag, HUGE_INT if integer else "1e30"),
        record(f"{name}-text", flag, "fast"),
    ]
    return rows


CASES = [
    # -- numeric flags of record ------------------------------------------------------------------------
    *numeric("--epochs", zero=True, integer=True),
    *numeric("--batch-size", zero=True, integer=True),
    *numeric("--lr", zero=True, integer=False),
    *numeric("--weight-decay", zero=False, integer=False),
    *numeric("--noise", zero=False, integer=False),
    record("noise-one", "--noise", "1"),
    *numeric("--seed", zero=False, integer=True),
    *numeric("--train-size", zero=True, integer=True),
    *numeric("--test-size", zero=True, integer=True),
    *numeric("--probe-clean", zero=False, integer=True),
    *numeric("--probe-noisy", zero=False, integer=True),
    *numeric("--probe-test", zero=False, integer=True),
    *numeric("--checkpoint-every", zero=False, integer=True),
    *numeric("--eval-batch-size", zero=True, integer=True),
    *numeric("--width", zero=True, integer=True),
    record("width-too-many", "--width", "8,8,8"),
    record("betas-negative", "--betas=-0.1,0.9"),
    record("betas-nan", "--betas", "nan,0.9"),
    record("betas-inf", "--betas", "0.9,inf"),
    record("betas-huge", "--betas", "1e30,0.9"),
    record("betas-text", "--betas", "fast,slow"),
    record("betas-one", "--betas", "0.9"),
    # -- choices and schedules --------------------------------------------------------------------------
    record("model-mlp9", "--model", "mlp9"),
    record("dataset-foo", "--dataset", "foo"),
    record("dtype-int8", "--dtype", "int8"),
    record("device-tpu", "--device", "tpu"),
    record("noise-mode-foo", "--noise-mode", "foo"),
    record("normalize-foo", "--normalize", "foo"),
    record("record-epochs-log1", "--record-epochs", "log:1"),
    record("record-epochs-every0", "--record-epochs", "every:0"),
    record("record-epochs-malformed", "--record-epochs", "5,x"),
    record("record-epochs-out-of-range", "--record-epochs", "0,9"),
    record("record-epochs-negative", "--record-epochs=-1,2"),
    record("record-epochs-empty", "--record-epochs", ","),
    record("synthetic-malformed", "--synthetic", "train=abc"),
    record("synthetic-one-class", "--synthetic", "classes=1"),
    record("unknown-flag", "--learning-rate", "0.1"),
    # -- TOML config files ------------------------------------------------------------------------------
    record("toml-lr-text", "--config", "cfg/lr_fast.toml"),
    record("toml-out-number", "--config", "cfg/out_5.toml"),
    record("toml-width-float", "--config", "cfg/width_float.toml"),
    record("toml-download-text", "--config", "cfg/download_no.toml"),
    record("toml-unknown-key", "--config", "cfg/unknown_key.toml"),
    record("toml-invalid", "--config", "cfg/invalid.toml"),
    record("toml-missing", "--config", "cfg/missing.toml"),
    record("toml-folder", "--config", "cfg"),
    record("toml-epochs-float", "--config", "cfg/epochs_float.toml"),
    record("toml-noise-text", "--config", "cfg/noise_text.toml"),
    record("toml-seed-bool", "--config", "cfg/seed_bool.toml"),
    record("toml-betas-one", "--config", "cfg/betas_one.toml"),
    record("toml-record-epochs-range", "--config", "cfg/record_epochs_range.toml"),
    # -- record --out -----------------------------------------------------------------------------------
    case("record-out-dot", "record", *TINY, "--out", "."),
    case("record-out-pwd", "record", *TINY, "--out", "{PWD}"),
    case("record-out-root", "record", *TINY, "--out", "/"),
    case("record-out-file", "record", *TINY, "--out", "file.txt"),
    case("record-out-below-file", "record", *TINY, "--out", "file.txt/run"),
    case("record-out-link-to-run", "record", *TINY, "--out", "link_run"),
    case("record-out-link-to-folder", "record", *TINY, "--out", "link_dir"),
    case("record-out-run", "record", *TINY, "--out", "run"),
    case("record-out-run-analysis", "record", *TINY, "--out", "run/analysis"),
    case("record-out-run-store", "record", *TINY, "--out", "run/store.zarr"),
    case("record-out-new-folder-inside-run", "record", *TINY, "--out", "run/newsub"),
    case("record-out-user-folder", "record", *TINY, "--out", "user"),
    case("record-out-comparison", "record", *TINY, "--out", "cmp"),
    case("record-out-unmarked-run", "record", *TINY, "--out", "oldrun"),
    case("record-overwrite-dot", "record", *TINY, "--out", ".", "--overwrite"),
    case("record-overwrite-pwd", "record", *TINY, "--out", "{PWD}", "--overwrite"),
    case("record-overwrite-root", "record", *TINY, "--out", "/", "--overwrite"),
    case("record-overwrite-file", "record", *TINY, "--out", "file.txt", "--overwrite"),
    case("record-overwrite-user-folder", "record", *TINY, "--out", "user", "--overwrite"),
    case("record-overwrite-link-to-run", "record", *TINY, "--out", "link_run", "--overwrite"),
    case("record-overwrite-link-to-folder", "record", *TINY, "--out", "link_dir", "--overwrite"),
    case("record-overwrite-run-analysis", "record", *TINY, "--out", "run/analysis", "--overwrite"),
    case("record-overwrite-run-store", "record", *TINY, "--out", "run/store.zarr", "--overwrite"),
    case("record-overwrite-comparison", "record", *TINY, "--out", "cmp", "--overwrite"),
    case("record-overwrite-unmarked-run", "record", *TINY, "--out", "oldrun", "--overwrite"),
    # -- record --resume --------------------------------------------------------------------------------
    case("resume-dot", "record", "--resume", "."),
    case("resume-root", "record", "--resume", "/"),
    case("resume-file", "record", "--resume", "file.txt"),
    case("resume-link-to-folder", "record", "--resume", "link_dir"),
    case("resume-run-analysis", "record", "--resume", "run/analysis"),
    case("resume-run-store", "record", "--resume", "run/store.zarr"),
    case("resume-user-folder", "record", "--resume", "user"),
    case("resume-comparison", "record", "--resume", "cmp"),
    case("resume-missing", "record", "--resume", "missing"),
    case("resume-with-epochs", "record", "--resume", "run", "--epochs", "9"),
    case("resume-with-config", "record", "--resume", "run", "--config", "cfg/unknown_key.toml"),
    case("resume-with-overwrite", "record", "--resume", "run", "--overwrite"),
    case("resume-with-out", "record", "--resume", "run", "--out", "new"),
    # -- analyze RUN ------------------------------------------------------------------------------------
    case("analyze-run-dot", "analyze", ".", "--no-progress"),
    case("analyze-run-root", "analyze", "/", "--no-progress"),
    case("analyze-run-file", "analyze", "file.txt", "--no-progress"),
    case("analyze-run-link-to-folder", "analyze", "link_dir", "--no-progress"),
    case("analyze-run-analysis", "analyze", "run/analysis", "--no-progress"),
    case("analyze-run-store", "analyze", "run/store.zarr", "--no-progress"),
    case("analyze-run-user-folder", "analyze", "user", "--no-progress"),
    case("analyze-run-comparison", "analyze", "cmp", "--no-progress"),
    case("analyze-run-missing", "analyze", "missing", "--no-progress"),
    case("analyze-format-gif", "analyze", "run", "--format", "gif", "--no-progress"),
    case("analyze-format-empty", "analyze", "run", "--format", ",", "--no-progress"),
    # -- analyze --out ----------------------------------------------------------------------------------
    case("analyze-out-dot", "analyze", "run", "--out", ".", "--no-progress"),
    case("analyze-out-pwd", "analyze", "run", "--out", "{PWD}", "--no-progress"),
    case("analyze-out-root", "analyze", "run", "--out", "/", "--no-progress"),
    case("analyze-out-file", "analyze", "run", "--out", "file.txt", "--no-progress"),
    case("analyze-out-below-file", "analyze", "run", "--out", "file.txt/analysis", "--no-progress"),
    case("analyze-out-link-to-run", "analyze", "run", "--out", "link_run", "--no-progress"),
    case("analyze-out-link-to-folder", "analyze", "run", "--out", "link_dir", "--no-progress"),
    case("analyze-out-input-run", "analyze", "run", "--out", "run", "--no-progress"),
    case("analyze-out-run-store", "analyze", "run", "--out", "run/store.zarr", "--no-progress"),
    case("analyze-out-inside-run", "analyze", "run", "--out", "run/figures", "--no-progress"),
    case("analyze-out-user-folder", "analyze", "run", "--out", "user", "--no-progress"),
    case("analyze-out-other-run", "analyze", "run", "--out", "other", "--no-progress"),
    case("analyze-out-comparison", "analyze", "run", "--out", "cmp", "--no-progress"),
    case("analyze-link-out-inside-run", "analyze", "link_run", "--out", "run/figures", "--no-progress"),
    # -- compare RUNS -----------------------------------------------------------------------------------
    case("compare-run-dot", "compare", "run", ".", "--no-progress"),
    case("compare-run-root", "compare", "run", "/", "--no-progress"),
    case("compare-run-file", "compare", "run", "file.txt", "--no-progress"),
    case("compare-run-link-to-folder", "compare", "run", "link_dir", "--no-progress"),
    case("compare-run-analysis", "compare", "run", "run/analysis", "--no-progress"),
    case("compare-run-user-folder", "compare", "run", "user", "--no-progress"),
    case("compare-run-missing", "compare", "run", "missing", "--no-progress"),
    case("compare-same-run-twice", "compare", "run", "run", "--no-progress"),
    case("compare-same-run-trailing-slash", "compare", "run", "run/", "--no-progress"),
    case("compare-same-run-absolute", "compare", "run", "{PWD}/run", "--no-progress"),
    case("compare-same-run-via-link", "compare", "run", "link_run", "--no-progress"),
    case("compare-format-gif", "compare", "run", "other", "--format", "gif", "--no-progress"),
    # -- compare --out ----------------------------------------------------------------------------------
    case("compare-out-dot", "compare", "run", "other", "--out", ".", "--no-progress"),
    case("compare-out-pwd", "compare", "run", "other", "--out", "{PWD}", "--no-progress"),
    case("compare-out-root", "compare", "run", "other", "--out", "/", "--no-progress"),
    case("compare-out-file", "compare", "run", "other", "--out", "file.txt", "--no-progress"),
    case("compare-out-link-to-run", "compare", "run", "other", "--out", "link_run", "--no-progress"),
    case("compare-out-link-to-folder", "compare", "run", "other", "--out", "link_dir", "--no-progress"),
    case("compare-out-input-run", "compare", "run", "other", "--out", "other", "--no-progress"),
    case("compare-out-run-analysis", "compare", "run", "other", "--out", "run/analysis", "--no-progress"),
    case("compare-out-run-store", "compare", "run", "other", "--out", "run/store.zarr", "--no-progress"),
    case("compare-out-inside-run", "compare", "run", "other", "--out", "other/compare", "--no-progress"),
    case("compare-out-user-folder", "compare", "run", "other", "--out", "user", "--no-progress"),
    case("compare-out-other-run", "compare", "run", "--out", "other", "--no-progress"),
    case("compare-out-other-run-analysis", "compare", "run", "--out", "other/analysis", "--no-progress"),
    case("compare-out-unmarked-run", "compare", "run", "--out", "oldrun", "--no-progress"),
]


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory) -> Path:
    """One tiny real run, recorded and analysed once for the module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path_factory.mktemp("hazard-source") / "run"
        assert main(["record", *TINY, "--out", str(run)]) == 0
        assert main(["analyze", str(run), "--no-progress", "--format", "png"]) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def build_case_folder(folder: Path, run: Path) -> None:
    """Fill ``folder`` with what a user's working folder might hold around the run ``run``."""
    folder.mkdir()
    shutil.copytree(run, folder / "run", symlinks=True)
    shutil.copytree(run, folder / "other", symlinks=True)
    shutil.copytree(run / "store.zarr", folder / "oldrun" / "store.zarr", symlinks=True)
    (folder / "cmp").mkdir()
    write_marker(folder / "cmp", "comparison")
    (folder / "cmp" / "report.html").write_text("<html>an earlier comparison</html>\n")
    (folder / "user").mkdir()
    (folder / "user" / "notes.txt").write_text("the user's notes\n")
    (folder / "user" / ".hidden").write_text("a hidden file\n")
    (folder / "file.txt").write_text("a plain file\n")
    (folder / "link_run").symlink_to("run")
    (folder / "link_dir").symlink_to("user")
    (folder / "cfg").mkdir()
    for name, text in TOML_FILES.items():
        (folder / "cfg" / name).write_text(text)
    (folder / ".dotfile").write_text("hidden in the working folder\n")


@pytest.fixture(scope="module")
def shared_folder(recorded_run, tmp_path_factory) -> dict:
    """The case folder and its snapshot as built (copying ~2,000 files per case would cost minutes here)."""
    folder = tmp_path_factory.mktemp("hazard-cases") / "work"
    build_case_folder(folder, recorded_run)
    return {"folder": folder, "snapshot": snapshot(folder), "run": recorded_run}


@pytest.fixture
def case_folder(shared_folder, monkeypatch, capsys) -> Path:
    """A working folder as fresh as a new copy, made the current directory.

    The folder is shared by the cases but restored whenever the previous case left it different from
    its snapshot as built (any path, type, size or mtime_ns): new top-level entries are removed, and
    anything else rebuilds it from the recorded run, so every case starts from the same tree.
    """
    folder, built = shared_folder["folder"], shared_folder["snapshot"]
    now = snapshot(folder)
    new_tops = {path.split(os.sep)[0] for path in now.keys() - built.keys()}
    if now != built and built.keys() <= now.keys() and not new_tops & built.keys() \
            and all(now[path] == built[path] for path in built.keys() - {"."}):
        for path in new_tops:  # only new top-level entries: remove them, put back the folder's mtime
            shutil.rmtree(folder / path) if now[path][0] == stat.S_IFDIR else (folder / path).unlink()
        os.utime(folder, ns=(os.stat(folder).st_atime_ns, built["."][2]))
        now = snapshot(folder)
    if now != built:
        shutil.rmtree(folder)
        build_case_folder(folder, shared_folder["run"])
        shared_folder["snapshot"] = snapshot(folder)
    monkeypatch.chdir(folder)
    capsys.readouterr()
    return folder


# -- helpers ----------------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int | str:
    """Exit code of ``actlab ARGV`` in this process; a traceback's exception type when one escapes."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code
    except Exception as exc:  # a traceback is a defect: report it, do not crash the table
        return f"traceback {type(exc).__name__}: {exc}"


def option(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv``, or None."""
    return argv[argv.index(flag) + 1] if flag in argv else None


def is_run(path: str | Path) -> bool:
    """Whether ``path`` holds a readable run store of this schema version."""
    try:
        read_attrs(path)
    except StoreError:
        return False
    return True


def check_suggestions(argv: list[str], message: str, folder: Path) -> None:
    """Every flag the refusal suggests works here; a refusal about a non-run suggests neither --resume nor --overwrite."""
    out = option(argv, "--out")
    for named in re.findall(r"'actlab record --resume ([^']+)'", message):
        assert marker_kind(named) == "run" and is_run(named), f"suggests --resume {named}, which is not a run: {message}"
        before = snapshot(folder)
        assert run_cli(["record", "--resume", named]) == 0, f"the suggested 'actlab record --resume {named}' fails"
        own = {os.path.normpath(named), os.path.join(os.path.normpath(named), FOLDER_LOCK_FILENAME)}  # resume's writer lock
        changed = [c for c in changes(before, snapshot(folder)) if c[2:] not in own and not c[2:].endswith(HOLDER_SUFFIX)]
        assert changed == [], f"resuming a complete run changed files: {changed}"
    if "--resume" in message and "--resume" not in argv:
        assert re.search(r"'actlab record --resume[ ']", message), f"an unchecked --resume suggestion: {message}"
    if "'actlab record --resume'" in message:
        assert out is not None and is_run(out), f"suggests --resume, but --out {out} holds no readable run: {message}"
    if "--overwrite" in message and "--overwrite" not in argv:
        assert out is not None, message
        try:
            check_run_output(Path(out), overwrite=True)
        except OutputError as exc:
            pytest.fail(f"suggests --overwrite for --out {out}, which --overwrite refuses too ({exc}): {message}")


# -- the table ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", CASES)
def test_refused_with_one_line_and_nothing_changed(argv, case_folder, shared_folder, capsys):
    argv = [arg.replace("{PWD}", str(case_folder)) for arg in argv]
    before = shared_folder["snapshot"]  # case_folder has just checked that the folder matches it
    code = run_cli(argv)
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    after = snapshot(case_folder)
    assert code == 2, f"exit code {code}; output: {lines}"
    assert len(lines) <= 2, f"{len(lines)} lines of output: {lines}"
    errors = [line for line in lines if line.startswith("actlab: error: ")]
    assert len(errors) == 1, f"no single 'actlab: error:' line: {lines}"
    assert changes(before, after) == [], f"the tree changed: {changes(before, after)}"
    check_suggestions(argv, errors[0], case_folder)
