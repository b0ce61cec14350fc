"""``actlab analyze`` and ``actlab compare`` end to end on planted-signal runs."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import zarr
from cli_runner import run_cli
from fixtures_store import planted_run

from actlab import workflow
from actlab.cli import main
from actlab.digest import with_digest
from actlab.errors import StoreError
from actlab.files import MARKER_FILENAME
from actlab.store import ANALYSIS_DIRNAME, STORE_DIRNAME, store_path


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory):
    """A planted run (with trajectories) after ``actlab analyze RUN --no-progress``: (planted, exit code, stdout,
    stderr)."""
    planted = planted_run(tmp_path_factory.mktemp("cli") / "planted", dynamics=True)
    code, out, err = run_cli("analyze", planted.run_dir, "--no-progress")
    return planted, code, out, err


def test_analyze_writes_every_promised_artefact(analysed_run):
    planted, code, out, err = analysed_run
    assert code == 0, err
    analysis = planted.run_dir / ANALYSIS_DIRNAME
    names = [name for name, *_ in workflow.FIGURES]
    for name in names:
        assert (analysis / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (analysis / "figures" / f"{name}.svg").read_text()[:2000]
    html = (analysis / "report.html").read_text()
    for name in names:  # the embedded image is exactly the PNG written beside it
        assert base64.b64encode((analysis / "figures" / f"{name}.png").read_bytes()).decode() in html
    assert 'id="findings"' in html and "How to read this report" in html and "Analyses that could not run" not in html
    assert "Sample dynamics" in html and "area under the margin" in html and "skipped" not in err
    rows = (analysis / "samples.csv").read_text().splitlines()  # every training sample, lowest area under the margin first
    assert rows[0].startswith("train_sample,dataset_index") and len(rows) == 1 + len(planted.dynamics.learned)
    leftovers = [p.name for p in planted.run_dir.iterdir() if p.name.endswith((".partial", ".replaced", ".swap"))]
    assert not leftovers  # no staging folders or temporary files left
    assert f"report: {analysis / 'report.html'}" in out


def test_summary_json_matches_results_and_hand_computation(analysed_run):
    from actlab.analysis import load_results, summary

    planted, code, out, _ = analysed_run
    analysis = planted.run_dir / ANALYSIS_DIRNAME
    written = json.loads((analysis / "summary.json").read_text())
    results = load_results(analysis / "results.zarr")
    assert written == summary(results)
    assert set(results.children) == {"curves", "separation", "pca", "large_activation", "paths", "dynamics"}

    # by hand: the double-descent epochs on the stored test loss smoothed by a centred 5-epoch rolling mean
    epochs = sorted(planted.metrics)
    loss = pd.Series([planted.metrics[e]["test_loss"] for e in epochs], index=epochs)
    smooth = loss.rolling(5, center=True, min_periods=1).mean()
    dd = written["double_descent"]
    assert dd["present"] is True
    peak = dd["peak_epoch"]
    assert 20 <= peak <= 30  # planted bump at 25
    assert dd["first_min_epoch"] == int(smooth.loc[:peak].idxmin())
    assert dd["second_min_epoch"] == int(smooth.loc[peak:].idxmin())
    assert dd["peak"] == pytest.approx(smooth.loc[peak])
    assert written["phases"]["noisy_fitted_epoch"] == int(np.argmax([planted.metrics[e]["train_noisy_acc"] >= 0.99 for e in epochs]))
    assert written["large_activation"]["layer"] == "hidden1" and written["large_activation"]["unit"] == 3

    # the terminal summary and table show the same numbers, no line wider than 100 columns
    row = next(line for line in out.splitlines() if line.startswith("double descent (test loss)"))
    assert f"{dd['first_min_epoch']} -> {peak} -> {dd['second_min_epoch']}" in row and row.split()[-1] == "yes"
    assert out.startswith("Training — double descent (test loss): ") and max(map(len, out.splitlines())) <= 100
    assert "hidden1 unit 3" in out and "path attribution, hidden3" in out


def _one_line_error(code: int, out: str, err: str, match: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("actlab: error: "), err
    assert match in lines[0]


def test_not_a_run_and_bad_options_are_one_line_errors(tmp_path):
    _one_line_error(*run_cli("analyze", tmp_path, "--no-progress"), "not an actlab run")
    assert not (tmp_path / ANALYSIS_DIRNAME).exists()
    code, _, err = run_cli("analyze", tmp_path, "--format", "pdf")
    _one_line_error(code, "", err, "figure formats")


def test_other_schema_version_is_refused(tmp_path):
    planted = planted_run(tmp_path / "run", commit_epochs=[0])
    root = zarr.open_group(store_path(planted.run_dir), mode="r+", zarr_format=3)
    root.attrs["schema_version"] = 99
    _one_line_error(*run_cli("analyze", planted.run_dir, "--no-progress"), "schema version 99")
    assert not (planted.run_dir / ANALYSIS_DIRNAME).exists()


def test_corrupted_and_missing_chunks_are_refused_and_leave_nothing(tmp_path):
    planted = planted_run(tmp_path / "run", commit_epochs=[0, 10])
    shard = planted.run_dir / STORE_DIRNAME / "layers" / "hidden2" / "preact" / "c" / "1" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    _one_line_error(*run_cli("analyze", planted.run_dir, "--no-progress"), "hidden2")
    assert sorted(p.name for p in planted.run_dir.iterdir()) == [MARKER_FILENAME, STORE_DIRNAME]
    shard.unlink()
    _one_line_error(*run_cli("analyze", planted.run_dir, "--no-progress"), "hidden2")
    assert sorted(p.name for p in planted.run_dir.iterdir()) == [MARKER_FILENAME, STORE_DIRNAME]


def test_run_without_recorded_epochs_is_refused(tmp_path):
    planted = planted_run(tmp_path / "run", commit_epochs=[])
    _one_line_error(*run_cli("analyze", planted.run_dir, "--no-progress"), "epoch")


def test_failed_analysis_is_reported_and_the_rest_still_runs(tmp_path, monkeypatch):
    from actlab.analysis import assembly

    def broken(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(assembly.PCAAssembly, "layer", broken)
    planted = planted_run(tmp_path / "run", empty_noisy_class=2)
    analysis = tmp_path / "elsewhere"
    code, out, err = run_cli("analyze", planted.run_dir, "--no-progress", "--format", "svg", "--out", analysis)
    assert code == 0, err
    assert "warning: analysis pca failed: RuntimeError: planted failure" in err
    assert not (planted.run_dir / ANALYSIS_DIRNAME).exists()  # --out respected
    html = (analysis / "report.html").read_text()
    assert "Analyses that could not run" in html and "planted failure" in html
    assert "Notes" in html and "class 2" in html  # no noisy probe has original label 2
    figures = sorted(p.name for p in (analysis / "figures").iterdir())  # --format svg: SVG only
    # the planted run stores no trajectories: the sample dynamics are skipped, in one line
    assert figures == sorted(f"{name}.svg" for name, node, *_ in workflow.FIGURES if node not in ("pca", "dynamics"))
    assert err.count("note: dynamics skipped: the store holds no per-sample trajectories") == 1
    assert html.count("data:image/png;base64,") == len(figures)  # the report still embeds PNGs
    summary = json.loads((analysis / "summary.json").read_text())
    assert summary["errors"] == {"pca": "RuntimeError: planted failure"}
    assert summary["double_descent"]["present"] is True and "double descent (test loss)" in out


def test_compare_reuses_saved_analyses_and_computes_the_others(analysed_run, tmp_path):
    planted, *_ = analysed_run
    other = planted_run(tmp_path / "monotone", double_descent=False, seed=1)
    out_dir = tmp_path / "compare"
    code, out, err = run_cli("compare", planted.run_dir, other.run_dir, "--out", out_dir, "--no-progress", "--format", "png")
    assert code == 0, err
    summaries = json.loads((out_dir / "summary.json").read_text())
    assert list(summaries) == ["planted", "monotone"]
    assert summaries["planted"]["double_descent"]["present"] is True
    assert summaries["monotone"]["double_descent"]["present"] is False
    saved = json.loads((planted.run_dir / ANALYSIS_DIRNAME / "summary.json").read_text())
    assert summaries["planted"] == saved
    assert not (other.run_dir / ANALYSIS_DIRNAME).exists()  # compare does not write into runs
    html = (out_dir / "report.html").read_text()
    assert "reused saved analyses</b> planted" in html
    for name in ("compare_test_loss", "compare_separation", "compare_dynamics"):  # dynamics: the planted run's
        assert base64.b64encode((out_dir / "figures" / f"{name}.png").read_bytes()).decode() in html
    ranking = summaries["planted"]["dynamics"]["mislabel_ranking"]
    assert "Sample dynamics: learned (clean) and memorised (noisy) epochs, per run" in out and "monotone" not in out.split(
        "Sample dynamics: mislabel ranking")[1]  # a run without trajectories has no row
    assert f"<td>planted</td><td>1</td><td>{ranking['auc']:.3g}</td>" in html.replace("\n", "").replace(" ", "")
    lines = out.splitlines()
    assert max(map(len, lines)) <= 100  # the wide table is split by topic
    lines = lines[lines.index("Test curves") + 1:lines.index("Phases and separation")]
    table = [line.split("  ")[0] for line in lines]
    assert table[0] == "run" and "planted" in table and "monotone" in table
    rows = {line.split()[0]: line for line in lines[2:] if line.split() and line.split()[0] in ("planted", "monotone")}
    assert rows["planted"].split()[1:3] == ["1", "yes:"] and rows["monotone"].split()[1:3] == ["1", "no"]
    markdown = (out_dir / "table.md").read_text().splitlines()
    cells = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in markdown]
    header, rule, by_run = cells[0], cells[1], {row[0]: dict(zip(cells[0], row)) for row in cells[2:]}
    assert header == workflow.COMPARE_HEADER and set(rule) == {"---"} and list(by_run) == ["planted", "monotone"]
    dd = summaries["planted"]["double_descent"]
    assert by_run["planted"]["double descent (test loss)"] == (
        f"yes: {dd['first_min_epoch']} -> {dd['peak_epoch']} -> {dd['second_min_epoch']}")
    assert by_run["planted"]["test loss min / peak / end"] == (
        f"{dd['first_min']:.3g}@{dd['first_min_epoch']} / {dd['peak']:.3g}@{dd['peak_epoch']} / {dd['final']:.3g}")
    assert by_run["monotone"]["double descent (test loss)"] == "no"
    assert by_run["monotone"]["noisy memorised"] == str(summaries["monotone"]["phases"]["noisy_fitted_epoch"])
    # other probes (another seed): no CKA between the runs, one line on the terminal and in the report
    assert err.count("note: monotone: no CKA with planted: CKA between runs needs the same probes") == 1
    assert "no CKA with planted" in html and "cka_between_runs" not in html


def test_compare_gives_the_cka_between_runs_on_the_same_probes(analysed_run, tmp_path):
    from actlab.analysis.similarity import linear_cka

    planted, *_ = analysed_run
    copy = tmp_path / "copy"
    shutil.copytree(planted.run_dir, copy)  # the same recording: CKA 1 at every layer and epoch
    out_dir = tmp_path / "compare"
    code, out, err = run_cli("compare", planted.run_dir, copy, "--out", out_dir, "--no-progress", "--format", "png")
    assert code == 0, err
    html = (out_dir / "report.html").read_text()
    assert base64.b64encode((out_dir / "figures" / "cka_between_runs.png").read_bytes()).decode() in html
    lines = out.splitlines()
    table = lines[lines.index(workflow.CKA_BETWEEN_TITLE) + 1:]
    rows = {line.split()[2]: line.split() for line in table if line.startswith("copy ")}
    assert list(rows) == ["hidden1", "hidden2", "hidden3", "output"]
    n = len(planted.probes.group)
    for layer, row in rows.items():
        first = planted.preacts[0][layer].astype(np.float64)
        first = first if layer == "output" else np.maximum(first, 0)
        assert row[:2] == ["copy", "planted"] and row[3:5] == ["0-50", "(6)"] and row[-1] == str(n)
        assert float(row[5]) == pytest.approx(linear_cka(first, first), abs=1e-3) and float(row[6]) == pytest.approx(1.0)
    code, out, err = run_cli("compare", planted.run_dir, copy, "--out", tmp_path / "no-cka", "--no-progress", "--no-cka",
                             "--format", "png")
    assert code == 0 and workflow.CKA_BETWEEN_TITLE not in out
    assert not (tmp_path / "no-cka" / "figures" / "cka_between_runs.png").exists()


def test_compare_recomputes_stale_saved_analyses(analysed_run, tmp_path):
    from actlab.analysis import open_run

    planted, *_ = analysed_run
    copy = tmp_path / "planted"
    shutil.copytree(planted.run_dir, copy)
    assert workflow.saved_results(open_run(copy)) is not None
    slots = zarr.open_array(store_path(copy) / "layers" / "epoch", mode="r+")
    values = slots[...]
    values[-1] = -1  # the run now shows one recorded epoch fewer than the saved analysis
    slots[...] = values
    with pytest.raises(StoreError, match="root attr status is 'complete' but"):  # as a complete run it is damaged
        open_run(copy)
    root = zarr.open_group(store_path(copy), mode="r+")
    root.attrs.put(with_digest({**root.attrs, "status": "recording"}))  # as a run still recording, it is not
    assert workflow.saved_results(open_run(copy)) is None


def test_compare_recomputes_analyses_of_an_older_revision(analysed_run, tmp_path):
    from actlab.analysis import open_run
    from actlab.analysis.pipeline import ANALYSIS_REVISION

    planted, *_ = analysed_run
    copy = tmp_path / "planted"
    shutil.copytree(planted.run_dir, copy)
    results = zarr.open_group(copy / ANALYSIS_DIRNAME / workflow.RESULTS_DIRNAME, mode="r+")
    assert results.attrs["analysis_revision"] == ANALYSIS_REVISION
    assert workflow.saved_results(open_run(copy)) is not None
    results.attrs["analysis_revision"] = ANALYSIS_REVISION - 1
    assert workflow.saved_results(open_run(copy)) is None


def test_help_teaches():
    for command, words in (("analyze", ["examples:", "report.html", "summary.json", "--scheduler"]),
                           ("compare", ["examples:", "runs/compare", "reused"])):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        for word in words:
            assert word in out.getvalue()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    assert "30% label noise" in out.getvalue() and "%%" not in out.getvalue()


def test_scheduler_without_distributed_is_a_one_line_error(analysed_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed: importing it raises ImportError
    planted, *_ = analysed_run
    args = ("analyze", planted.run_dir, "--out", tmp_path / "x", "--scheduler", "tcp://127.0.0.1:1", "--no-progress")
    _one_line_error(*run_cli(*args), "distributed")
    assert not (tmp_path / "x").exists()
