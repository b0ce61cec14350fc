"""``actlab analyze --extra probes,cka``: the optional analyses in results.zarr, summary.json, findings and errors."""

from __future__ import annotations

import base64
import itertools
import json
import re

import numpy as np
import pytest
from cli_runner import run_cli
from fixtures_store import cached_planted, planted_run

from actlab.analysis import load_results, summary
from actlab.analysis import probes
from actlab.analysis.probes import linear_probes
from actlab.analysis.pipeline import analyze
from actlab.analysis.run import open_run
from actlab.analysis.similarity import similarity_along_training
from actlab.findings import decodability_words, settled_words
from actlab.store import ANALYSIS_DIRNAME


@pytest.fixture(scope="module")
def analysed_with_extras(tmp_path_factory):
    planted = planted_run(tmp_path_factory.mktemp("extras") / "planted")
    code, out, err = run_cli("analyze", planted.run_dir, "--no-progress", "--format", "png", "--extra", "probes,cka")
    return planted, code, out, err


def findings_column(out: str, index: int) -> str:
    """Column ``index`` of the terminal's findings table, its cells' wrapped lines joined again by spaces."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["finding"]) + 1
    spans = [m.span() for m in re.finditer(r"-+", lines[start])]
    body = itertools.takewhile(str.strip, lines[start + 1:])
    return " ".join(part for part in (line[slice(*spans[index])].strip() for line in body) if part)


def test_extras_reach_results_summary_and_findings(analysed_with_extras):
    planted, code, out, err = analysed_with_extras
    assert code == 0, err
    analysis = planted.run_dir / ANALYSIS_DIRNAME
    results = load_results(analysis / "results.zarr")
    assert {"probes", "similarity"} <= set(results.children)
    assert results.attrs["parameters"]["extras"] == ["probes", "cka"]
    assert results["probes"].attrs["n_permutations"] == 999
    written = json.loads((analysis / "summary.json").read_text())
    assert written == summary(results)
    # the node is what linear_probes computes on its own, with the pass's seed and its own 999 permutations
    alone = linear_probes(open_run(planted.run_dir))
    np.testing.assert_array_equal(results["probes"]["accuracy"].values, alone["accuracy"].values)
    np.testing.assert_array_equal(results["probes"]["p_value"].values, alone["p_value"].values)
    # the pass feeds CKA blocks in the order they complete; on its own it reads the final states first
    alone = similarity_along_training(open_run(planted.run_dir))
    for name in ("cka_to_final", "cka", "settled_epoch"):
        np.testing.assert_array_equal(results["similarity"][name].values, alone[name].values, err_msg=name)
    last = written["probes"]["by_layer"]
    assert last["hidden1"]["noisy_original"]["decodable"] is True
    assert last["hidden2"]["noisy_original"]["decodable"] is False
    assert written["similarity"]["settled_epoch"]["hidden2"] == 50
    assert "original label of noisy probes, the last epoch" in findings_column(out, 0)  # the table wraps to 100 columns
    assert "hidden1: decodable; hidden2: not shown decodable" in findings_column(out, 2)  # a verdict per layer
    assert "layers settle" in out and "hidden2 @50" in out
    html = (analysis / "report.html").read_text()
    assert "original label of noisy probes" in html
    for name in ("decodability", "similarity"):  # the figures, embedded in the report as written beside it
        png = (analysis / "figures" / f"{name}.png").read_bytes()
        assert png[:4] == b"\x89PNG" and base64.b64encode(png).decode() in html


def test_ensemble_figures_and_findings_of_extras(analysed_with_extras):
    """Replicas of an ensemble: the figures draw medians over seeds, the findings count the seeds."""
    from actlab.analysis.seeds import aggregate_summaries
    from actlab.findings import findings_from_summary
    from actlab.workflow import draw_figures

    planted, *_ = analysed_with_extras
    results = load_results(planted.run_dir / ANALYSIS_DIRNAME / "results.zarr")
    figures, failures = draw_figures([results, results])
    assert not failures and {"decodability", "similarity"} <= {name for name, *_ in figures}
    one = summary(results)
    rows = {f.name: f.value for f in findings_from_summary(aggregate_summaries({"seed0": one, "seed1": one}))}
    assert rows["original label of noisy probes, the last epoch"].startswith(
        "hidden1: decodable in 2 of 2 seeds; hidden2: decodable in 0 of 2 seeds")


def test_a_failing_extra_stops_only_itself(tmp_path_factory, monkeypatch):
    def fails(self, x):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(probes.ProbePlan, "probe", fails)
    results = analyze(cached_planted(tmp_path_factory).run_dir, progress=False, max_workers=2, extras=["probes", "cka"])
    assert results.attrs["errors"] == {"probes": "RuntimeError: planted failure"}
    assert {"curves", "separation", "pca", "large_activation", "paths", "similarity"} <= set(results.children)
    assert "probes" not in results.children


def test_unknown_extra_is_a_one_line_error(tmp_path):
    planted = planted_run(tmp_path / "run", commit_epochs=[0])
    code, _, err = run_cli("analyze", planted.run_dir, "--no-progress", "--extra", "probes,svcca")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("actlab: error: ") and "svcca" in lines[0], err
    assert not (planted.run_dir / ANALYSIS_DIRNAME).exists()


def test_finding_rules():
    assert decodability_words(True) == "decodable"
    assert decodability_words(False) == "not shown decodable"
    assert decodability_words(None) == "n/a"
    assert decodability_words({"count": 3, "n": 5, "share": 0.6, "low": 0.15, "high": 0.95}) == "decodable in 3 of 5 seeds"
    assert settled_words(20, 0.95) == "settled from epoch 20 (CKA to final >= 0.95)"


def test_ensemble_with_cka_compares_each_seed_with_the_first(analysed_with_extras, tmp_path, monkeypatch):
    """``analyze ENSEMBLE --extra cka``: the seeds' CKA with the first seed, as a figure and a table."""
    import shutil

    from actlab import workflow
    from actlab.report import Report

    planted, *_ = analysed_with_extras
    results = load_results(planted.run_dir / ANALYSIS_DIRNAME / "results.zarr")
    replicas = [tmp_path / "ensemble" / name for name in ("seed0", "seed1")]
    for replica in replicas:  # the same recording twice: CKA 1 at every layer and epoch
        shutil.copytree(planted.run_dir / "store.zarr", replica / "store.zarr")

    def saved(replica, **_):  # each seed's own analysis is tested elsewhere; here its results are given
        return workflow.AnalysisOutput(out_dir=replica, report_path=replica, summary=summary(results),
                                       report=Report(title=replica.name), results=results)

    monkeypatch.setattr(workflow, "analyze_to_dir", saved)
    monkeypatch.setattr(workflow, "draw_figures", lambda *_, **__: ([], {}))  # the seeds' figures: tested above
    output = workflow._analyze_ensemble_to_dir(tmp_path / "ensemble", replicas, tmp_path / "out", formats=["png"],
                                               progress=False, scheduler=None, log_x=None, extras=["cka"])
    title, header, rows = output.report.tables[-1]
    assert title == "Representation similarity between seeds (debiased linear CKA)" and header == workflow.CKA_BETWEEN_HEADER
    assert [row[:4] for row in rows] == [["seed1", "seed0", layer, "0-50 (6)"] for layer in planted.preacts[0]]
    assert all(float(row[4]) == pytest.approx(1.0) and float(row[5]) == pytest.approx(1.0) for row in rows)
    png = (tmp_path / "out" / "figures" / "cka_between_seeds.png").read_bytes()
    assert base64.b64encode(png).decode() in (tmp_path / "out" / "report.html").read_text()


def test_probe_epoch_indices_rule():
    """At most ``probe_epochs``: the kept indices and the rest evenly spaced, first and last included."""
    from actlab.analysis.pca import pca_epoch_indices
    from actlab.analysis.probes import probe_epoch_indices

    chosen = probe_epoch_indices(85, 16, keep=[0, 30, 57, 84])
    assert len(chosen) <= 16 and {0, 30, 57, 84} <= set(chosen.tolist()) and chosen[-1] == 84
    assert set(pca_epoch_indices(85, 12).tolist()) <= set(chosen.tolist())  # 16 - 4 kept, evenly spaced
    np.testing.assert_array_equal(probe_epoch_indices(85, None), np.arange(85))
    np.testing.assert_array_equal(probe_epoch_indices(6, 16, keep=[2]), np.arange(6))
    np.testing.assert_array_equal(probe_epoch_indices(40, 3), [0, 20, 39])
    with pytest.raises(ValueError, match="probe_epochs"):
        probe_epoch_indices(40, 1)


def test_probes_at_a_subset_of_epochs(tmp_path_factory):
    """``probe_epochs=3``: the probes node holds the phase epochs and evenly spaced ones, with the accuracies and
    p-values that probing every epoch gives there (BH runs within the epochs probed); the figure's title and the
    node's attrs name the subset, and the CLI refuses a bad count in one line."""
    from actlab.analysis.curves import learning_curves
    from actlab.analysis.pipeline import null_epoch_indices
    from actlab.analysis.probes import probe_epoch_indices
    from actlab.plots import plot_decodability
    from test_figure_text import text_problems

    planted = cached_planted(tmp_path_factory)
    run = open_run(planted.run_dir)
    results = analyze(run, progress=False, max_workers=2, extras=["probes"], probe_epochs=3)
    phases = null_epoch_indices(run, learning_curves(run.metrics))
    expected = probe_epoch_indices(len(run.epochs), 3, keep=phases)
    assert len(expected) < len(run.epochs)
    node = results["probes"].to_dataset()
    np.testing.assert_array_equal(node["epoch"].values, run.epochs[expected])
    assert node.attrs["every_epoch"] is False and node.attrs["n_recorded_epochs"] == len(run.epochs) and node.attrs["probe_epochs"] == 3
    every = linear_probes(run, probe_epochs=None).isel(epoch=expected)
    for name in ("accuracy", "accuracy_fold", "chance", "p_value"):
        np.testing.assert_array_equal(node[name].values, every[name].values, err_msg=name)
    figure = plot_decodability(results)
    assert f"columns: the {len(expected)} of {len(run.epochs)} recorded epochs probed" in figure.texts[0].get_text()
    assert text_problems(figure) == ([], [])  # the longer title stays inside the figure, apart from the panels
    # an ensemble's seeds share the evenly spaced epochs but each has its own phase epochs: the maps show the
    # epochs every seed was probed at
    other = results.copy()
    other["probes"] = node.isel(epoch=slice(1, None))
    figure = plot_decodability([results, other])
    assert (f"columns: the {len(expected) - 1} of {len(run.epochs)} recorded epochs probed in every seed"
            in figure.texts[0].get_text())
    assert figure.axes[0].images[0].get_array().shape == (len(run.layer_names), len(expected) - 1)
    assert text_problems(figure) == ([], [])
    code, _, err = run_cli("analyze", planted.run_dir, "--no-progress", "--extra", "probes", "--probe-epochs", "1",
                           "--out", str(tmp_path_factory.mktemp("refused") / "out"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--probe-epochs" in err, err
    code, _, err = run_cli("analyze", planted.run_dir, "--no-progress", "--probe-epochs", "all",
                           "--out", str(tmp_path_factory.mktemp("refused") / "out"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "add --extra probes" in err, err
    from actlab.cli.analyze import _probe_epochs

    assert _probe_epochs("all", ["probes"]) is None and _probe_epochs("8", ["probes", "cka"]) == 8
