"""Noisy probes memorised early against late: separation and path split of each half, against a loop written here,
on planted activations whose late-memorised probes separate more (the right answer) or not (no finding; the
false-positive rate of the permutation test measured in simulation)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from fixtures_store import planted_run

from actlab.analysis import memorisation, open_run
from actlab.analysis.dynamics import sample_dynamics
from actlab.findings import findings_from_summary, memorised_words, rule_of

N_CLASSES = 4
N_UNITS = 24


def planted_activations(rng: np.random.Generator, *, weight_early: float, weight_late: float, n_epochs: int = 2,
                        n_clean: int = 30, n_noisy: int = 120, n_test: int = 80) -> tuple[xr.DataArray, xr.DataArray,
                                                                                              xr.DataArray]:
    """Activations (epoch, sample, unit) of clean, noisy and test probes, the noisy probes' memorisation epochs and
    the predictions. A noisy probe of original label o and assigned label a sits at ``w mu_o + (1 - w) mu_a`` plus
    noise, ``w`` = ``weight_late`` when it is memorised after the median epoch, else ``weight_early``: the smaller
    the weight, the further it is from the clean mean of its original class (the more it separates)."""
    means = rng.uniform(0, 1, (N_CLASSES, N_UNITS)) ** 4 * 3
    clean_label = np.repeat(np.arange(N_CLASSES), n_clean)
    original = rng.integers(0, N_CLASSES, n_noisy)
    assigned = (original + rng.integers(1, N_CLASSES, n_noisy)) % N_CLASSES
    epoch_memorised = rng.permutation(np.arange(n_noisy) % 40 + 1).astype(float)
    epoch_memorised[:6] = np.nan  # never memorised
    late = epoch_memorised > np.nanmedian(epoch_memorised)
    weight = np.where(late, weight_late, weight_early)[:, None]
    test_label = rng.integers(0, N_CLASSES, n_test)
    group = np.array(["clean"] * len(clean_label) + ["noisy"] * n_noisy + ["test"] * n_test, dtype=object)
    label = np.concatenate([clean_label, assigned, test_label])
    original_label = np.concatenate([clean_label, original, test_label])
    n = len(group)
    blocks, predicted = [], []
    for _ in range(n_epochs):
        x = np.concatenate([means[clean_label], weight * means[original] + (1 - weight) * means[assigned],
                            means[test_label]]) + rng.normal(0, 0.6, (n, N_UNITS))
        blocks.append(np.maximum(x, 0))
        predicted.append(np.where(rng.uniform(size=n) < 0.7, label, (label + 1) % N_CLASSES))
    coords = {"sample": np.arange(n), "group": ("sample", group), "label": ("sample", label),
              "original_label": ("sample", original_label), "is_noisy": ("sample", group == "noisy"),
              "dataset_index": ("sample", np.arange(n))}
    act = xr.DataArray(np.stack(blocks).astype(np.float32), dims=("epoch", "sample", "unit"),
                       coords={"epoch": np.arange(n_epochs) * 10, **coords}, name="hidden")
    memorised = xr.DataArray(np.concatenate([np.full(len(clean_label), np.nan), epoch_memorised,
                                             np.full(n_test, np.nan)]), dims="sample", coords={"sample": np.arange(n)})
    pred = xr.DataArray(np.stack(predicted), dims=("epoch", "sample"),
                        coords={"epoch": act["epoch"].values, "sample": np.arange(n)})
    return act, memorised, pred


def by_loop(x: np.ndarray, group, label, original, predicted, late_of: dict[int, bool]) -> tuple[float, ...]:
    """Cosine early, cosine late, split early, split late of one block, by explicit loops over classes and probes."""
    def cos(a, b):
        return float(a @ b / np.sqrt((a @ a) * (b @ b)))

    clean_mean = {c: x[(group == "clean") & (label == c)].mean(axis=0) for c in range(N_CLASSES)}
    cosines = {False: [], True: []}
    for c in range(N_CLASSES):
        members = {h: [i for i, is_late in late_of.items() if is_late == h and original[i] == c] for h in (False, True)}
        if members[False] and members[True]:
            for h in (False, True):
                cosines[h].append(cos(clean_mean[c], x[members[h]].mean(axis=0)))
    splits = {}
    for h in (False, True):
        shares = {True: [], False: []}
        for i in np.flatnonzero(group == "test"):
            p = predicted[i]
            noisy = [j for j, is_late in late_of.items() if is_late == h and label[j] == p]
            if not noisy:
                continue
            shares[bool(p == label[i])].append(cos(x[i], clean_mean[p]) >= cos(x[i], x[noisy].mean(axis=0)))
        splits[h] = np.mean(shares[True]) - np.mean(shares[False])
    return np.mean(cosines[False]), np.mean(cosines[True]), splits[False], splits[True]


def test_halves_follow_the_stated_rule_and_the_dataset_index():
    epochs = np.array([np.nan, 3.0, 5.0, 5.0, 9.0, np.nan, 12.0])
    memorised, late, median = memorisation.late_halves(epochs)
    assert median == 5.0 and list(memorised) == [1, 2, 3, 4, 6]
    assert list(late) == [False, False, False, True, True]  # at the median: early
    probes = xr.Dataset(coords={"sample": np.arange(4), "group": ("sample", ["clean", "noisy", "noisy", "test"]),
                                "dataset_index": ("sample", [7, 3, 9, 3])})
    learned = xr.DataArray([1.0, 4.0, np.nan, 2.0], dims="train_sample",
                           coords={"dataset_index": ("train_sample", [9, 3, 5, 7])})
    found = memorisation.probe_memorised_epochs(probes, learned).values
    np.testing.assert_array_equal(found, [np.nan, 4.0, 1.0, np.nan])
    with pytest.raises(ValueError, match="not among the training samples"):
        memorisation.probe_memorised_epochs(probes.assign_coords(dataset_index=("sample", [7, 3, 11, 3])), learned)


def test_late_memorised_probes_built_to_separate_more_are_found_and_match_a_loop():
    act, memorised, predicted = planted_activations(np.random.default_rng(0), weight_early=0.9, weight_late=0.2)
    found = act.actlab.memorisation_split(memorised, predicted, n_permutations=99)
    epochs = memorised.values[np.isfinite(memorised.values)]
    assert found.attrs["n_late"] == np.sum(epochs > np.median(epochs)) and found.attrs["n_early"] + found.attrs["n_late"] == 114
    group, label, original = (act[name].values for name in ("group", "label", "original_label"))
    index, late, _ = memorisation.late_halves(memorised.values)
    for e in range(act.sizes["epoch"]):
        x = act.isel(epoch=e).values.astype(np.float64)
        expected = by_loop(x, group, label, original, predicted.isel(epoch=e).values, dict(zip(index, late)))
        got = found.isel(epoch=e)
        np.testing.assert_allclose([float(got[name]) for name in ("cos_early", "cos_late", "split_early", "split_late")],
                                   expected, rtol=1e-9)
        # the null: the documented relabellings, each recomputed by the loop (the first 5)
        rng = np.random.default_rng(memorisation.SEED)
        for k in range(5):
            relabelled = by_loop(x, group, label, original, predicted.isel(epoch=e).values,
                                 dict(zip(index, rng.permutation(late))))
            np.testing.assert_allclose(float(got["separation_null"][k]), relabelled[0] - relabelled[1], rtol=1e-9)
            np.testing.assert_allclose(float(got["split_null"][k]), relabelled[3] - relabelled[2], rtol=1e-9)
        null = got["separation_null"].values
        excess = float(got["separation_difference"]) - null.mean()
        assert float(got["separation_excess"]) == pytest.approx(excess, rel=1e-12)
        assert float(got["separation_p_value"]) == (1 + np.sum(np.abs(null - null.mean()) >= abs(excess))) / 100
    assert (found["separation_difference"] > 0.05).all()  # late further from the clean means
    assert (found["separation_p_value"] == 0.01).all()  # at the floor 1/(99+1)
    results = found.expand_dims(layer=["hidden"])
    summary = memorisation.memorisation_summary(results)
    row = summary["by_layer"]["hidden"]
    assert row["separation_rejects"] and row["separation_direction"] == "late"
    assert summary["families"]["memorised_separation"]["size"] == 2
    words = [f for f in findings_from_summary({"memorisation": summary}) if f.name.startswith("noisy probes memorised")]
    assert words and "late-memorised probes separate more" in words[0].value and "p ≤ 1/(99+1)" in words[0].detail


def test_no_difference_planted_gives_no_finding_and_the_test_keeps_its_level():
    """The false-positive rate of p <= 0.05 in 200 null simulations (one epoch each) is inside 1-10 %."""
    rng = np.random.default_rng(1)
    p_values = {"separation": [], "split": []}
    for _ in range(200):
        act, memorised, predicted = planted_activations(rng, weight_early=0.5, weight_late=0.5, n_epochs=1,
                                                        n_clean=10, n_noisy=60, n_test=40)
        found = memorisation.memorisation_split(act, memorised, predicted, n_permutations=99,
                                                seed=int(rng.integers(1 << 30)))
        for statistic in p_values:
            p_values[statistic].append(float(found[f"{statistic}_p_value"][0]))
    for statistic, values in p_values.items():
        rate = np.mean(np.asarray(values) <= 0.05)
        assert 0.01 <= rate <= 0.10, (statistic, rate)


def test_a_run_joins_its_trajectories_to_its_probes(tmp_path):
    """The planted store's activations do not depend on when a noisy label is memorised: a null store end to end."""
    planted = planted_run(tmp_path / "run", dynamics=True)
    run = open_run(planted.run_dir)
    learned = sample_dynamics(run.dynamics, n_permutations=9)["learned_epoch"]
    found = memorisation.memorisation_analysis(run, learned, n_permutations=49)
    assert list(found["layer"].values) == run.layer_names and list(found["epoch"].values) == list(run.epochs)
    noisy = run.probes["group"].values == "noisy"
    by_index = dict(zip(run.training["dataset_index"].values, planted.dynamics.learned))
    expected = np.array([by_index[i] for i in run.probes["dataset_index"].values[noisy]])
    assert found.attrs["n_early"] + found.attrs["n_late"] == np.isfinite(expected).sum()
    assert found.attrs["median_epoch"] == np.median(expected[np.isfinite(expected)])
    summary = memorisation.memorisation_summary(found)
    assert summary["families"]["memorised_separation"]["size"] == np.isfinite(found["separation_p_value"].values).sum()
    assert not any(row["separation_rejects"] for row in summary["by_layer"].values())


def test_a_store_whose_late_memorised_probes_separate_gives_the_right_answer(tmp_path):
    """hidden1 of this store puts the noisy probes memorised after the median at their assigned class (fixtures_store);
    from epoch 30 on its large unit (10 x scale x a random amplitude) dominates every cosine, so the separation shows
    at epochs 0-20."""
    planted = planted_run(tmp_path / "run", dynamics=True, late_apart=True)
    run = open_run(planted.run_dir)
    learned = run.dynamics["correct"].actlab.learned_epoch()
    found = memorisation.memorisation_analysis(run, learned, n_permutations=199).sel(epoch=[0, 10, 20])
    summary = memorisation.memorisation_summary(found)
    hidden1 = summary["by_layer"]["hidden1"]
    assert hidden1["separation_direction"] == "late" and hidden1["separation_epochs_rejected"] == 3
    assert hidden1["cos_early"] > 0.98 > hidden1["cos_late"]
    assert not any(row["separation_epochs_rejected"] for layer, row in summary["by_layer"].items() if layer != "hidden1")
    # a direct NumPy computation of the cosines at epoch 20, from the stored activations and the dynamics
    x = run.layer("hidden1").sel(epoch=20).values.astype(np.float64)
    group, label, original = (run.probes[name].values for name in ("group", "label", "original_label"))
    epochs = dict(zip(run.training["dataset_index"].values, learned.values))
    memorised = np.array([epochs[i] if g == "noisy" else np.nan for g, i in zip(group, run.probes["dataset_index"].values)])
    late = memorised > np.nanmedian(memorised)
    for half, name in ((np.isfinite(memorised) & ~late, "cos_early"), (late, "cos_late")):
        cosines = []
        for c in range(run.n_classes):
            a, b = x[(group == "clean") & (label == c)].mean(axis=0), x[half & (original == c)].mean(axis=0)
            cosines.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert hidden1[name] == pytest.approx(np.mean(cosines), rel=1e-9)
    rows = findings_from_summary({"memorisation": summary})
    assert rows[0].value.startswith("separation: late-memorised probes separate more")


def test_words_follow_the_decision():
    assert memorised_words("late", "separation") == "late-memorised probes separate more"
    assert memorised_words("early", "separation") == "early-memorised probes separate more"
    assert memorised_words("none", "separation") == "no early/late difference"
    assert memorised_words(None, "split") == "n/a (not tested)"
    assert memorised_words("late", "split") == "larger path split with the late-memorised signal"
    seeds = {"value": "late", "counts": {"late": 4, "none": 1}, "n": 5}
    assert memorised_words(seeds, "separation") == "late-memorised probes separate more (4/5 seeds)"
    assert memorisation.memorised_direction(True, -0.1) == "early" and memorisation.memorised_direction(False, 0.3) == "none"
    # the test is about the null's centre: a difference that its unequal halves explain is no finding
    found = memorisation.permutation_test(0.3, np.array([0.25, 0.3, 0.35, 0.3]))
    assert found["excess"] == pytest.approx(0.0) and found["p_value"] == 1.0
    assert np.isnan(memorisation.permutation_test(np.nan, np.zeros(3))["p_value"])  # undefined: not tested
    assert "two-sided" in rule_of(memorised_words)


def test_analyze_extra_memorisation_reaches_summary_report_and_terminal(tmp_path):
    from cli_runner import run_cli

    planted = planted_run(tmp_path / "run", dynamics=True, late_apart=True)
    code, out, err = run_cli("analyze", planted.run_dir, "--no-progress", "--format", "png", "--extra", "memorisation")
    assert code == 0, err
    analysis = planted.run_dir / "analysis"
    found = json.loads((analysis / "summary.json").read_text())["memorisation"]
    assert list(found["by_layer"]) == ["hidden1", "hidden2", "hidden3", "output"]
    assert found["families"]["memorised_separation"]["size"] == 4 * 6
    assert found["by_layer"]["hidden1"]["separation_epochs_rejected"] >= 3  # epochs 0-20 (see the store test)
    assert "noisy probes memorised early vs late, hidden1" in (analysis / "report.html").read_text()
    assert "noisy probes memorised early vs" in out  # the terminal table wraps the name


def test_a_run_without_trajectories_skips_the_joined_analysis_in_one_line():
    from actlab.workflow import with_memorisation

    results = xr.DataTree(xr.Dataset(attrs={"skipped": {"dynamics": "no trajectories"}}))
    summary = with_memorisation({"skipped": {"dynamics": "no trajectories"}, "errors": {}}, None, results)
    assert summary["skipped"] == {"dynamics": "no trajectories", "memorisation": "no trajectories"}
    assert "memorisation" not in summary and summary["errors"] == {}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Three runs compared with ``--extra memorisation``: ``apart`` (late-memorised probes separate in hidden1) and
    ``null`` analysed first with ``actlab analyze --extra memorisation`` (the single-run answer; compare reuses their
    saved analyses), and ``plain`` without per-sample trajectories."""
    from cli_runner import run_cli

    root = tmp_path_factory.mktemp("compare")
    planted = {"apart": planted_run(root / "apart", dynamics=True, late_apart=True),
               "null": planted_run(root / "null", dynamics=True, seed=1),
               "plain": planted_run(root / "plain", seed=2)}
    single = {}
    for name in ("apart", "null"):
        code, _, err = run_cli("analyze", planted[name].run_dir, "--no-progress", "--format", "png", "--extra",
                               "memorisation")
        assert code == 0, err
        single[name] = json.loads((planted[name].run_dir / "analysis" / "summary.json").read_text())
    code, out, err = run_cli("compare", *(planted[name].run_dir for name in planted), "--out", root / "out",
                             "--no-progress", "--no-cka", "--format", "png", "--extra", "memorisation")
    assert code == 0, err
    return {"planted": planted, "single": single, "out": root / "out", "stdout": out, "stderr": err}


def test_compare_tables_give_each_runs_own_joined_analysis(compared):
    """Every row of the comparison's two tables is the run's own ``analyze --extra memorisation`` at that layer: the
    same numbers and the words of its finding; the early/late counts are those of the planted learned epochs."""
    from actlab.workflow import COMPARE_MEMORISATION_HEADER, compare_memorisation_tables

    summary = json.loads((compared["out"] / "summary.json").read_text())
    tables = {title: rows for title, header, rows in
              [(t, h, r) for t, h, r in _report_tables(compared) if h == COMPARE_MEMORISATION_HEADER]}
    assert len(tables) == 2 and "memorisation" not in summary["plain"]
    for (title, rows), statistic in zip(tables.items(), ("separation", "split")):
        assert {row[0] for row in rows} == {"apart", "null"}, title
        for row in rows:
            name, layer = row[0], row[2]
            own = compared["single"][name]["memorisation"]
            assert summary[name]["memorisation"] == own  # the same analysis, not a recomputation that differs
            at = own["by_layer"][layer]
            words = {f.name: f.value for f in findings_from_summary(compared["single"][name])}
            separation, split = words[f"noisy probes memorised early vs late, {layer}"].split("; path split: ")
            assert row[7] == {"separation": separation.removeprefix("separation: "), "split": split}[statistic]
            assert row[6] == f"{at[f'{statistic}_epochs_rejected']} of {at[f'{statistic}_epochs_tested']}"
            assert row[4].startswith(f"{at[f'{statistic}_difference']:.3g} (")
            # the halves by hand: the planted learned epoch of each noisy probe, split at their median
            planted = compared["planted"][name]
            noisy = planted.probes.group == 1
            epochs = planted.dynamics.learned[np.flatnonzero(noisy)]
            epochs = epochs[np.isfinite(epochs)]
            late = int((epochs > np.median(epochs)).sum())
            assert row[3] == f"{len(epochs) - late} / {late}"
    apart = {row[2]: row for row in tables[next(iter(tables))] if row[0] == "apart"}
    assert int(apart["hidden1"][6].split()[0]) >= 3  # epochs 0-20 reject (the store test above)
    assert "plain: memorisation skipped:" in compared["stderr"]
    # a row whose test rejects: the apart store at epochs 0-20, where its hidden1 separates (the store test above)
    run = open_run(compared["planted"]["apart"].run_dir)
    found = memorisation.memorisation_analysis(run, run.dynamics["correct"].actlab.learned_epoch(), n_permutations=99)
    early = {"memorisation": memorisation.memorisation_summary(found.sel(epoch=[0, 10, 20]))}
    words = {f.name: f.value for f in findings_from_summary(early)}["noisy probes memorised early vs late, hidden1"]
    separation, split = ({row[2]: row[7] for row in rows}["hidden1"] for _, _, rows in compare_memorisation_tables(
        {"apart": early}))
    assert separation == "late-memorised probes separate more" and words == f"separation: {separation}; path split: {split}"


def _report_tables(compared) -> list:
    """The comparison's memorisation tables, built from the summary.json it wrote; each title printed and in the
    report, with every row's cells in the report."""
    from actlab.workflow import compare_memorisation_tables

    summary = json.loads((compared["out"] / "summary.json").read_text())
    tables = compare_memorisation_tables(summary)
    report = (compared["out"] / "report.html").read_text()
    for title, _, rows in tables:
        assert title in compared["stdout"] and title in report
        for row in rows:
            assert all(f">{cell}<" in report for cell in row[2:]), row
    return tables


def test_compare_saves_the_joined_results_and_they_read_back(compared):
    """``results.zarr`` of the comparison holds ``/memorisation/<run>`` for each run with trajectories, equal to
    :func:`memorisation.with_memorisation` of that run's saved analysis, which it leaves unchanged."""
    from actlab.analysis import load_results

    saved = load_results(compared["out"] / "results.zarr")["memorisation"]
    assert saved.attrs["runs"] == ["apart", "null"] and set(saved.children) == {"apart", "null"}  # zarr lists by name
    for name in ("apart", "null"):
        run_dir = compared["planted"][name].run_dir
        results = load_results(run_dir / "analysis" / "results.zarr")
        before = (list(results.children), dict(results.attrs))
        tree = memorisation.with_memorisation(results, open_run(run_dir))
        assert (list(results.children), dict(results.attrs)) == before and "memorisation" in tree.children
        expected = tree["memorisation"].to_dataset(inherit=False)
        got = saved[name].to_dataset(inherit=False)
        assert got.attrs.pop("run") == name
        xr.testing.assert_allclose(got, expected)
        assert set(got.data_vars) == set(expected.data_vars) and got.attrs["n_late"] == expected.attrs["n_late"]


def test_compare_refuses_an_extra_it_does_not_offer(tmp_path):
    from cli_runner import run_cli

    for extra in ("probes", "memorisation,svcca", "memorization"):
        code, out, err = run_cli("compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "out", "--extra", extra)
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and err.startswith("actlab: error: compare --extra names"), err
        assert extra.split(",")[-1] in err
    assert not (tmp_path / "out").exists()


def test_compare_an_ensemble_gives_its_seeds_joined_analysis_as_intervals(compared, tmp_path):
    """An ensemble in ``compare --extra memorisation`` is one run: its rows carry the seeds' intervals and the
    commonest of the seeds' words (each seed's own decision), and results.zarr one child per seed, each equal to
    :func:`memorisation.with_memorisation` of that seed on its own."""
    from actlab.analysis import analyze, load_results
    from actlab.files import write_marker
    from actlab.workflow import COMPARE_MEMORISATION_HEADER, compare_to_dir, memorisation_section

    ensemble = tmp_path / "ens"
    ensemble.mkdir()
    write_marker(ensemble, "ensemble", seeds=[0, 1], replicas=["seed0", "seed1"], config={"model": "planted"})
    for seed in (0, 1):
        planted_run(ensemble / f"seed{seed}", dynamics=True, late_apart=True, seed=seed)
    output = compare_to_dir([ensemble, compared["planted"]["apart"].run_dir], tmp_path / "out", formats=["png"],
                            progress=False, cka=False, memorisation=True)
    own = {}
    for seed in ("seed0", "seed1"):
        run = open_run(ensemble / seed)
        own[seed] = memorisation.with_memorisation(analyze(run, progress=False), run)
    directions = {layer: [memorisation_section({}, tree)["memorisation"]["by_layer"][layer]["separation_direction"]
                          for tree in own.values()] for layer in ("hidden1", "hidden2", "hidden3", "output")}
    rows = [row for title, header, table in output.report.tables if header == COMPARE_MEMORISATION_HEADER
            and "separation" in title for row in table if row[0] == "ens"]
    assert [row[2] for row in rows] == list(directions) and all(row[1] == "2" for row in rows)
    for row in rows:
        found = directions[row[2]]
        top = max(found, key=found.count)
        assert row[7] == memorised_words({"value": top, "counts": {d: found.count(d) for d in found}, "n": 2},
                                         "separation")
        assert "(n=2" in row[4]  # a median over the seeds, with its interval
    saved = load_results(tmp_path / "out" / "results.zarr")["memorisation"]
    assert saved.attrs["runs"] == ["ens", "apart"] and set(saved.children) == {"ens", "apart"}
    assert saved["ens"].attrs["seeds"] == ["seed0", "seed1"]
    for seed, tree in own.items():
        got = saved["ens"][seed].to_dataset(inherit=False)
        assert got.attrs["seed"] == seed and got.attrs["run"] == "ens"
        xr.testing.assert_allclose(got.drop_attrs(), tree["memorisation"].to_dataset(inherit=False).drop_attrs())


def test_compare_figure_draws_each_runs_difference_inside_or_outside_its_null_band(compared):
    """figures/compare_memorisation.png is in the comparison's report; each run's line is its difference at the last
    epoch per layer, its band the null's 2.5-97.5 % points, on the layers of every run in one order."""
    from actlab.analysis import load_results
    from actlab.plots.compare import merged_layers, plot_compare_memorisation

    assert (compared["out"] / "figures" / "compare_memorisation.png").is_file()
    assert "Noisy probes memorised early vs late per run" in (compared["out"] / "report.html").read_text()
    assert merged_layers([["h1", "h2", "output"], ["h1", "h2", "h3", "output"], ["x", "h1"]]) == \
        ["x", "h1", "h2", "h3", "output"]
    saved = load_results(compared["out"] / "results.zarr")["memorisation"]
    trees = {name: xr.DataTree(children={"memorisation": xr.DataTree(saved[name].to_dataset(inherit=False))})
             for name in ("apart", "null")}
    fig = plot_compare_memorisation(trees)
    for ax, statistic in zip(fig.axes, ("separation", "split")):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["hidden1", "hidden2", "hidden3", "output"]
        lines = [line for line in ax.get_lines() if line.get_label() in trees]
        bands = ax.collections
        for line, band, name in zip(lines, bands, trees):
            last = saved[name].to_dataset(inherit=False).isel(epoch=-1)
            np.testing.assert_allclose(line.get_ydata(), last[f"{statistic}_difference"].values)
            ys = band.get_paths()[0].vertices[:, 1]
            np.testing.assert_allclose(sorted(set(np.round(ys, 12))), sorted(set(np.round(np.concatenate(
                [last[f"{statistic}_null_low"].values, last[f"{statistic}_null_high"].values]), 12))))
    from test_figure_text import text_problems

    six = {f"run-{k}": trees["apart"] if k % 2 else [trees["null"], trees["apart"]] for k in range(6)}
    for figure in (fig, plot_compare_memorisation(six)):
        assert text_problems(figure) == ([], [])  # no text overlaps another or leaves the figure
