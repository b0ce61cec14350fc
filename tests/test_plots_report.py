"""Figures (actlab.plots) and the HTML report machinery (actlab.report) on a planted-signal run."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from fixtures_store import LAYERS, RECORD_EPOCHS, cached_results, post
from matplotlib.figure import Figure

from actlab import findings, plots, report, workflow
from actlab.errors import ConfigError
from actlab.store import METRICS, open_store


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """(planted, results, summary) of the planted run (results shared with the analysis tests; do not modify)."""
    from actlab.analysis import summary

    planted, results = cached_results(tmp_path_factory)
    return planted, results, summary(results)


def _lines(ax):
    """Data lines of an axes (not the vertical phase markers)."""
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 2]


def test_plot_metrics_draws_the_stored_curves_with_phases(analysed):
    planted, _, _ = analysed
    metrics = open_store(planted.run_dir).metrics
    phases = {"first_minimum": 13, "peak": 25, "second_minimum": None, "memorisation": 40}
    fig = plots.plot_metrics(metrics, phases=phases, log_x=True)
    assert isinstance(fig, Figure)
    ax_test, ax_train, ax_acc = fig.axes[:3]
    epochs = sorted(planted.metrics)
    # the test loss alone on its own axis; the training losses (noisy vs original label can grow tenfold) beside it
    (test,) = _lines(ax_test)
    assert test.get_label() == plots.CURVES["test"]["label"]
    assert {line.get_label() for line in _lines(ax_train)} == {s["label"] for k, s in plots.CURVES.items() if k != "test"}
    np.testing.assert_allclose(test.get_xdata(), epochs)
    np.testing.assert_allclose(test.get_ydata(), [planted.metrics[e]["test_loss"] for e in epochs])
    acc = {line.get_label(): line for line in _lines(ax_acc)}[plots.CURVES["train_noisy"]["label"]]
    np.testing.assert_allclose(acc.get_ydata(), [100 * planted.metrics[e]["train_noisy_acc"] for e in epochs])
    for ax in (ax_test, ax_train, ax_acc):  # every panel marks the phases; None phases are skipped
        assert sorted(line.get_xdata()[0] for line in ax.get_lines() if len(line.get_xdata()) == 2) == [13, 25, 40]
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "test-loss minimum (epoch 13)" in legend and "noisy labels memorised (epoch 40)" in legend
    assert ax_test.get_xscale() == "symlog" and "log" in ax_test.get_xlabel()
    assert -0.5 < ax_test.get_xlim()[0] <= 0  # epoch 0 at the left edge, no empty decade before it
    assert "nats" in ax_test.get_ylabel() and "nats" in ax_train.get_ylabel() and "%" in ax_acc.get_ylabel()


def test_plot_metrics_rejects_what_is_not_metrics(analysed):
    planted, _, _ = analysed
    metrics = open_store(planted.run_dir).metrics
    with pytest.raises(ValueError, match="lack"):
        plots.plot_metrics(metrics.drop_vars("test_loss"))
    assert set(METRICS) <= set(metrics.data_vars)


def test_phases_from_results_match_the_curves_node(analysed):
    _, results, summary = analysed
    phases = plots.phases_from_results(results)
    dd = summary["double_descent"]
    assert dd["present"]
    assert (phases["first_minimum"], phases["peak"], phases["second_minimum"]) == (dd["first_min_epoch"], dd["peak_epoch"], dd["second_min_epoch"])
    # planted: noisy train accuracy (epoch - 20) / 20 first reaches 0.99 at epoch 40
    assert phases["memorisation"] == 40 == summary["phases"]["noisy_fitted_epoch"]


def test_separation_figures_show_both_groupings_with_the_stored_numbers(analysed):
    planted, results, _ = analysed
    heat = plots.plot_separation_heatmap(results)
    titles = [ax.get_title() for ax in heat.axes[:2]]
    assert "ORIGINAL" in titles[0] and "ASSIGNED" in titles[1]
    # the heatmap shows the cosine minus the layer's noise floor (cosine of two random halves of the clean probes)
    floor = results["separation"]["cos_clean_halves_mean"].transpose("layer", "epoch").values
    images = [np.ma.filled(ax.get_images()[0].get_array(), np.nan) for ax in heat.axes if ax.get_images()]
    # independent: hidden3 clean and noisy means are orthogonal by construction, hidden1 noisy-by-original = clean
    for image in images:
        assert image.shape == (len(LAYERS), len(RECORD_EPOCHS))
        assert np.allclose(image[2] + floor[2], 0.0, atol=0.02)
    by_original = images[0] + floor
    assert np.all(by_original[0] > 0.99)
    assert heat.axes[0].get_images()[0].norm.vcenter == 0.0  # white = on the floor
    # hand-computed cosine of hidden2 at the last epoch, noisy grouped by original label
    x = post(planted, RECORD_EPOCHS[-1], "hidden2")
    group, original = planted.probes.group, planted.probes.original_label
    cosines = []
    for c in range(4):
        a = x[(group == 0) & (original == c)].mean(0)
        b = x[(group == 1) & (original == c)].mean(0)
        cosines.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert by_original[1, -1] == pytest.approx(np.mean(cosines), abs=1e-5)

    lines = plots.plot_separation_lines(results, log_x=True)
    assert "ORIGINAL" in lines.axes[0].get_title() and "ASSIGNED" in lines.axes[1].get_title()
    hidden2 = {line.get_label(): line for line in lines.axes[0].get_lines()}["hidden2"]
    np.testing.assert_allclose(hidden2.get_xdata(), RECORD_EPOCHS)
    assert hidden2.get_ydata()[-1] == pytest.approx(np.mean(cosines) - floor[1, -1], abs=1e-5)


def test_pca_axis_labels_state_the_explained_variance(analysed):
    from sklearn.decomposition import PCA

    planted, results, _ = analysed
    fig = plots.plot_pca_trajectories(results)
    pooled = np.concatenate([post(planted, e, "hidden3") for e in RECORD_EPOCHS])
    ratio = PCA(n_components=2).fit(pooled).explained_variance_ratio_
    ax = fig.axes[2]
    assert ax.get_title() == "hidden3"
    assert ax.get_xlabel() == f"PC1 ({100 * ratio[0]:.1f}% of variance)"
    assert ax.get_ylabel() == f"PC2 ({100 * ratio[1]:.1f}% of variance)"
    assert "trajectories" in fig.get_suptitle()


def test_large_activation_and_explanation_figures(analysed):
    planted, results, summary = analysed
    fig = plots.plot_large_activation(results)
    ax_mag, _, ax_loss = fig.axes[:3]
    line = [l for l in ax_mag.get_lines() if l.get_label().startswith("hidden1")][0]
    assert line.get_label() == "hidden1 unit 3 (dominant)"
    # independent: mean |post-activation| of the planted unit at every recorded epoch
    expected = [np.abs(post(planted, e, "hidden1")[:, 3]).mean() for e in RECORD_EPOCHS]
    np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-5)
    assert ax_mag.get_yscale() == "log"
    magnitudes = np.concatenate([l.get_ydata() for l in ax_mag.get_lines() if len(l.get_xdata()) > 2])
    assert ax_mag.get_ylim()[0] >= magnitudes.max() / 1e4 / 1.5 * (1 - 1e-9)  # at most 4 decades shown
    test_loss = [l for l in ax_loss.get_lines() if l.get_label() == "test loss"][0]
    assert np.argmin(test_loss.get_ydata()[:20]) == np.argmin([planted.metrics[e]["test_loss"] for e in range(20)])

    explanation = plots.plot_explanation(results)
    ax_r2 = explanation.axes[0]
    tallest = max(ax_r2.patches, key=lambda p: p.get_height())
    assert tallest.get_height() == pytest.approx(summary["large_activation"]["input_r2"])
    labels = [t.get_text() for t in explanation.legends[0].get_texts()]
    assert labels[0] == "from input image" and "from assigned label" in labels


def test_path_attribution_figure_shows_planted_split(analysed):
    planted, results, _ = analysed
    fig = plots.plot_path_attribution(results)
    correct = {l.get_label(): l for l in fig.axes[0].get_lines()}["hidden3"]
    wrong = {l.get_label(): l for l in fig.axes[1].get_lines()}["hidden3"]
    # planted: in hidden3, correct test probes sit on clean units, wrong ones on noisy units
    np.testing.assert_allclose(correct.get_ydata(), 100.0)
    np.testing.assert_allclose(wrong.get_ydata(), 0.0)
    assert f"n = {int(planted.wrong_test.sum())}" in fig.axes[1].get_title()


def test_report_html_is_self_contained(tmp_path, analysed):
    _, results, summary = analysed
    fig = plots.plot_path_attribution(results)
    png = report.figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.Report(
        title="A <test> report",
        findings=[findings.Finding("double descent", "yes & more", "detail")],
        figures=[report.ReportFigure("paths", "Paths", "caption", png)],
        failures={"analysis pca": "ValueError: no <samples>"},
        config={"model": "planted"},
        provenance={"run": "runs/x"},
    )
    path = report.write_report(tmp_path / "out" / "report.html", page)
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert base64.b64encode(png).decode() in text
    assert "A &lt;test&gt; report" in text and "yes &amp; more" in text and "no &lt;samples&gt;" in text
    assert not re.search(r"<script|<link|src=\"http|href=\"http|url\(", text, re.I)
    assert "Analyses that could not run" in text
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.html"]  # no temporary file left


def test_save_figure_and_formats(tmp_path):
    fig, axes = plots.new_figure()
    axes[0, 0].plot([0, 1], [1, 0])
    paths = report.save_figure(fig, tmp_path, "line", workflow.parse_formats("svg, png"))
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert paths["svg"].read_text().lstrip().startswith(("<?xml", "<svg"))
    assert workflow.parse_formats(["png", "png"]) == ("png",)
    for bad in ("pdf", "", "png,jpg"):
        with pytest.raises(ConfigError, match="figure formats"):
            workflow.parse_formats(bad)


def test_log_axis_choice_follows_the_record_schedule():
    assert workflow._use_log_x([0, 1, 2, 4, 8, 16, 32, 64, 128])
    assert not workflow._use_log_x([0, 10, 20, 30, 40, 50])


def test_plot_metrics_shades_each_run_of_unstable_epochs(analysed):
    planted, _, _ = analysed
    metrics = open_store(planted.run_dir).metrics
    epochs = metrics["epoch"].values
    flags = np.zeros(len(epochs), bool)
    flags[[3, 4, 9]] = True  # two runs: epochs[3..4] and epochs[9]
    unstable = metrics["test_loss"].copy(data=flags)
    fig = plots.plot_metrics(metrics, unstable=unstable)
    for ax in fig.axes[:3]:
        extents = sorted((p.get_x(), p.get_x() + p.get_width()) for p in ax.patches)
        assert extents == [(epochs[2], epochs[4]), (epochs[8], epochs[9])]
        assert not ax.texts  # named in the legend, never written over the data
    assert f"{plots.INSTABILITY_LABEL}: epochs {epochs[3]}, {epochs[9]}" in [text.get_text() for text in fig.legends[0].get_texts()]
    clean = plots.plot_metrics(metrics, unstable=unstable.copy(data=np.zeros(len(epochs), bool)))
    assert not clean.axes[0].patches


def test_series_styles_stay_distinct_past_the_colour_cycle():
    styles = [plots.series_style(i) for i in range(len(plots.CYCLE) * len(plots.LINESTYLES))]
    pairs = {(style["color"], str(style["linestyle"])) for style in styles}
    assert len(pairs) == len(styles)
    assert styles[0]["color"] == styles[len(plots.CYCLE)]["color"]  # the colour repeats, the line style does not


def _keep_layers(results, layers):
    """``results`` of a shallower network: every node restricted to ``layers``."""
    return results.map_over_datasets(lambda ds: ds.sel(layer=layers) if "layer" in ds.dims else ds)


def test_compare_separation_styles_each_layer_by_its_name(analysed):
    _, results, _ = analysed
    fig = plots.plot_compare_separation({"deep": results, "shallow": _keep_layers(results, ["hidden1", "output"])})
    # columns are runs; rows: by original label (hidden layers, output), by assigned label (hidden layers, output)
    deep, shallow = ({line.get_label(): line for ax in fig.axes[column::2] for line in ax.get_lines()
                      if not line.get_label().startswith("_")} for column in (0, 1))
    assert list(shallow) == ["hidden1", "output"]  # the true names, not positions
    for name in ("hidden1", "output"):
        assert deep[name].get_color() == shallow[name].get_color()
        assert deep[name].get_linestyle() == shallow[name].get_linestyle()
    assert shallow["output"].get_color() == plots.OUTPUT_STYLE["color"] != deep["hidden2"].get_color()
    assert plots.layer_style("hidden5", 0) == plots.series_style(4)
    assert {l.get_label() for l in fig.axes[0].get_lines()} >= {"hidden1", "hidden2", "hidden3"} and \
        "output" not in {l.get_label() for l in fig.axes[0].get_lines()}  # the output layer does not squash the others


def test_phases_and_instabilities_are_marked_on_every_curve_figure_and_named_in_its_legend(analysed):
    planted, results, _ = analysed
    metrics = open_store(planted.run_dir).metrics
    unstable = metrics["test_loss"].copy(data=np.isin(metrics["epoch"].values, [20, 21]))
    phases = plots.phases_from_results(results)
    assert phases["clean_learned"] == float(results["curves"]["clean_learned_epoch"]) and 10 <= phases["clean_learned"] <= 12
    figures = [plots.plot_metrics(metrics, phases=phases, unstable=unstable, log_x=True),
               plots.plot_curves(results), plots.plot_large_activation(results)]
    for fig in figures:
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert f"test-loss minimum (epoch {phases['first_minimum']:g})" in legend
        assert f"clean samples learned (epoch {phases['clean_learned']:g})" in legend
        for ax in fig.axes:  # every axes of these figures is over epochs
            marked = {line.get_xdata()[0] for line in ax.get_lines() if len(line.get_xdata()) == 2}
            assert {phases["first_minimum"], phases["clean_learned"], phases["memorisation"]} <= marked
            assert not [t for t in ax.texts if t.get_rotation() == 90]  # no labels piled above the axes
    assert "training instability (train accuracy drop): epoch 20" in [t.get_text() for t in figures[0].legends[0].get_texts()]


def test_report_says_each_rule_once_and_links_every_row_to_it(analysed):
    from html.parser import HTMLParser

    from actlab.abstract import abstract_sentences, finding_rows

    _, _, summary = analysed
    found = findings.findings_from_summary(summary)
    html = report.Report(title="planted", findings=found).to_html()
    for name, rule in findings.rules().items():
        rendered = report.markdown(rule)
        assert html.count(str(rendered)) == 1, name  # said once, in "How to read this report"
        assert f'id="rule-{name}"' in html
    # every finding that repeated a rule now links to it instead; nothing shows raw Markdown
    repeated = [f for f in found if any(rule in f.detail for rule in findings.rules().values())]
    assert repeated
    for finding in repeated:
        detail, names = findings.said_rules(finding.detail)
        assert names and not any(findings.rules()[n] in detail for n in names)
    links = set(re.findall(r'href="#(rule-\w+|detail-\d+)"', html))
    targets = set(re.findall(r'id="(rule-\w+|detail-\d+)"', html))
    assert links and links <= targets

    class Text(HTMLParser):
        chunks: list = []

        def handle_data(self, data):
            self.chunks.append(data)

    parser = Text()
    parser.feed(html.split("<body>")[1])
    assert not re.search(r"\*[a-z][^*]*\*", " ".join(parser.chunks))
    assert str(report.markdown("*a* <b>x</b>")) == "<em>a</em> &lt;b&gt;x&lt;/b&gt;"
    # the summary: one sentence per topic, in the order of the table, every verdict said
    rows = finding_rows(found)
    sentences = abstract_sentences(rows)
    assert 4 <= len(sentences) <= 8 and sentences[0].startswith("Training — double descent (test loss): ")
    for row in rows:
        for verdict in filter(None, row.verdict.split("; ")):
            assert f"*{verdict}*" in " ".join(sentences)
    takeaways = workflow.figure_takeaways(found)  # each figure's one sentence, from the findings it shows
    assert takeaways["curves"].startswith("Training — double descent (test loss): ") and "*yes*" in takeaways["curves"]
    assert "*input*" in takeaways["explanation"] and set(takeaways) <= {name for name, *_ in workflow.FIGURES}
    explained = {row.name: row for row in rows}["large activation explained by"]
    assert explained.verdict == summary["large_activation"]["explained_by"] and explained.rules == ["explanation_words"]


def test_split_verdict_takes_the_rule_words_out_of_a_value():
    split = findings.split_verdict
    assert split("yes: 13 -> 25 -> 40", ["descent_words"]) == ("13 -> 25 -> 40", "yes")
    assert split("hidden3, epoch 40: cos 0.1 (noisy by original), not below its noise floor", ["floor_words"]) == (
        "hidden3, epoch 40: cos 0.1 (noisy by original)", "not below its noise floor")
    assert split("clean path: 90% of correct vs 10% of wrong; beyond its null, shrunk since initialisation",
                 ["excess_words", "gain_words"]) == ("clean path: 90% of correct vs 10% of wrong",
                                                     "beyond its null; shrunk since initialisation")
    assert split("epoch 12", []) == ("epoch 12", "")


def test_terminal_tables_fit_100_columns_and_wide_tables_split_by_topic():
    header = findings.COMPARE_HEADER
    rows = [[f"run{i}", "5", *(f"cell {j} " * 6 for j in range(len(header) - 2))] for i in range(3)]
    parts = findings.topic_tables(header, rows)
    assert [title for title, _, _ in parts] == ["Test curves", "Phases and separation", "Large activation", "Path attribution"]
    assert sorted(c for _, h, _ in parts for c in h[2:]) == sorted(header[2:])  # every column once
    assert all(h[:2] == ["run", "seeds"] and r[0][:2] == ["run0", "5"] for _, h, r in parts)
    for _, h, r in parts:
        text = findings.text_table(h, r)
        assert max(map(len, text.splitlines())) <= 100
        # wrapped cells keep every word, in order
        assert " ".join(text.split()).count("cell") == sum(" ".join(row).count("cell") for row in [h, *r])
