"""Every figure that ``analyze`` and ``compare`` draw keeps its text readable: no two visible texts overlap, none
leaves the figure.

The figures are drawn for one run, an ensemble of three seeds, a comparison of 2 and of 6 runs, and for runs
whose layers are named like an MLP of seven hidden layers and like ``cnn5`` (``relu1``...). Each visible text
artist's window extent comes from the Agg renderer after the figure is drawn.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr
from fixtures_store import cached_results
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from actlab import plots, workflow

DPI = 60
"""Figures are drawn at a low resolution (text extents scale with it; layout is in inches)."""


def visible_texts(fig: Figure, renderer) -> list[tuple[Text, object]]:
    """(text, window extent) of every non-empty text the renderer draws: titles, labels, ticks in view, legends."""
    hidden_ticks = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = max(high - low, 1e-12)
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not low - 1e-6 * span <= tick.get_loc() <= high + 1e-6 * span or not tick.get_visible():
                    hidden_ticks.update((id(tick.label1), id(tick.label2)))
    found = []
    for text in fig.findobj(Text):
        if id(text) in hidden_ticks or not text.get_text().strip() or not _shown(text):
            continue
        found.append((text, text.get_window_extent(renderer)))
    return found


def _shown(artist) -> bool:
    """The artist and every parent up to the figure are visible (an axes switched off hides its texts)."""
    if not artist.get_visible():
        return False
    axes = getattr(artist, "axes", None)
    if axes is not None and (not axes.get_visible() or not axes.axison and artist in axes.get_xticklabels() + axes.get_yticklabels()):
        return False
    return True


def text_problems(fig: Figure, dpi: float = DPI) -> tuple[list[tuple[str, str]], list[str]]:
    """Pairs of visible texts that overlap, and texts that leave the figure (at least one pixel)."""
    fig.set_dpi(dpi)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    texts = visible_texts(fig, renderer)
    page = fig.bbox
    outside = [text.get_text() for text, box in texts
               if box.x0 < page.x0 - 1 or box.y0 < page.y0 - 1 or box.x1 > page.x1 + 1 or box.y1 > page.y1 + 1]
    overlapping = []
    for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
        width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        if width > 1 and height > 1:
            overlapping.append((a.get_text(), b.get_text()))
    return overlapping, outside


def _reshaped(results, layers: list[str], take: list[int]):
    """``results`` of a network with layers ``layers``, each a copy of the planted layer at position ``take``."""
    def reshape(ds):
        if "layer" not in ds.dims:
            return ds
        return ds.isel(layer=take).assign_coords(layer=layers)

    tree = results.map_over_datasets(reshape)
    tree.attrs = {**results.attrs, "layers": layers}
    return tree


MLP7_LAYERS = [f"hidden{k}" for k in range(1, 8)] + ["output"]
CNN5_LAYERS = ["relu1", "relu2", "relu3", "relu4", "output"]
LONG_RECORD = tuple(range(0, 61, 4))
"""16 recorded epochs: heatmap columns as narrow as a real run's."""


@pytest.fixture(scope="module")
def drawn_cases(tmp_path_factory):
    """Name -> results of each case (planted runs, analysed once per session); ``mlp7`` has 16 recorded epochs."""
    single = cached_results(tmp_path_factory)[1]
    long = cached_results(tmp_path_factory, record_epochs=LONG_RECORD)[1]
    seeds = [cached_results(tmp_path_factory, seed=seed)[1] for seed in (0, 1, 2)]
    return {
        "run": single,
        "ensemble": seeds,
        "mlp7": _reshaped(long, MLP7_LAYERS, [0, 1, 2, 0, 1, 2, 2, 3]),
        "cnn5": _reshaped(single, CNN5_LAYERS, [0, 1, 2, 2, 3]),
    }


def figures_of_every_case(cases) -> dict[str, Figure]:
    """``case/figure`` -> the figure, for every figure of ``analyze`` (per case) and of ``compare`` (2 and 6 runs)."""
    figures = {}
    for case, results in cases.items():
        drawn, failures = workflow.draw_figures(results, log_x=case == "ensemble")
        assert not failures, failures
        figures.update({f"{case}/{name}": fig for name, _, _, fig in drawn})
    two = {"run": cases["run"], "ensemble": cases["ensemble"]}
    six = {f"run-{k}": cases["run"] if k % 2 else cases["mlp7"] for k in range(6)}
    for label, runs in (("compare2", two), ("compare6", six)):
        figures[f"{label}/compare_test_loss"] = plots.plot_compare_test_loss(runs)
        figures[f"{label}/compare_separation"] = plots.plot_compare_separation(runs)
        names = list(runs)
        figures[f"{label}/cka_between_runs"] = plots.plot_cka_between_runs(
            {name: cka_map(runs[name]) for name in names[1:]}, reference=names[0])
    return figures


def cka_map(results) -> xr.Dataset:
    """A CKA-between-runs map (:func:`actlab.workflow.cka_between_runs`) on the layers and epochs of ``results``."""
    separation = (results[0] if isinstance(results, list) else results)["separation"]
    layers, epochs = separation["layer"].values, separation["epoch"].values
    values = np.linspace(0.0, 1.0, len(epochs) * len(layers)).reshape(len(epochs), len(layers))
    return xr.Dataset({"cka_same": (("epoch", "layer"), values)}, coords={"epoch": epochs, "layer": layers})


def text_problem_counts(cases) -> dict[str, tuple[int, int]]:
    """``case/figure`` -> (overlapping pairs, texts leaving the figure), for docs/benchmarks/figure_text.txt."""
    return {name: tuple(map(len, text_problems(fig))) for name, fig in figures_of_every_case(cases).items()}


def test_no_figure_has_overlapping_or_cut_text(drawn_cases):
    problems = {}
    for name, fig in figures_of_every_case(drawn_cases).items():
        overlapping, outside = text_problems(fig)
        if overlapping or outside:
            problems[name] = {"overlapping pairs": overlapping[:5], "n overlapping": len(overlapping), "outside": outside[:5]}
    assert not problems, problems


def test_a_thousand_epochs_on_a_log_axis_keep_their_tick_labels_apart():
    import xarray as xr

    from actlab.store import METRICS

    epochs = np.arange(1001)
    metrics = xr.Dataset({name: ("epoch", np.linspace(0.1, 1.0, len(epochs))) for name in METRICS}, coords={"epoch": epochs})
    fig = plots.plot_metrics(metrics, phases={"first_minimum": 6, "clean_learned": 55, "memorisation": 133}, log_x=True)
    assert text_problems(fig) == ([], [])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][-2:] == ["300", "1000"]


def test_the_check_finds_planted_overlaps():
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.text(0.5, 0.5, "first label")
    ax.text(0.52, 0.5, "second label")
    ax.text(0.95, 0.1, "runs off the right edge of the figure")
    ax.set_xlim(0, 1)
    overlapping, outside = text_problems(fig)
    assert ("first label", "second label") in overlapping
    assert outside == ["runs off the right edge of the figure"]
    assert len(overlapping) == 1  # the third label sits apart from both
    clear = Figure(figsize=(3, 2))
    clear.subplots().set_title("alone")
    assert text_problems(clear) == ([], [])
