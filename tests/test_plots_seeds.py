"""Figures of ensembles (replicas of one run, several seeds), null baselines and many-run comparisons."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fixtures_store import cached_results
from matplotlib.collections import PolyCollection

from actlab import plots

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """Results of planted runs of three seeds (replicas of one ensemble; shared, do not modify)."""
    return [cached_results(tmp_path_factory, seed=seed)[1] for seed in SEEDS]


def _band_limits(collection: PolyCollection, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edge of a fill_between band over ``n`` x values (its polygon's vertices)."""
    vertices = collection.get_paths()[0].vertices
    return vertices[1:n + 1, 1], vertices[n + 2:2 * n + 2, 1][::-1]


def test_replica_stack_adds_a_seed_dim_and_refuses_other_epochs(ensemble):
    stack = plots.replica_stack(ensemble, "separation", "cos_clean_halves_mean")
    assert stack.dims[0] == "seed" and stack.sizes["seed"] == len(SEEDS)
    np.testing.assert_array_equal(stack.isel(seed=1).values, ensemble[1]["separation"]["cos_clean_halves_mean"].values)
    assert plots.replica_stack(ensemble[0], "separation", "cos_clean_halves_mean").sizes["seed"] == 1
    shorter = ensemble[1].map_over_datasets(lambda ds: ds.isel(epoch=slice(1, None)) if "epoch" in ds.dims else ds)
    with pytest.raises(ValueError, match="share their epochs"):
        plots.replica_stack([ensemble[0], shorter], "separation", "cos_clean_halves_mean")


def test_separation_lines_of_an_ensemble_draw_the_distance_to_the_floor_with_its_min_max_band(ensemble):
    fig = plots.plot_separation_lines(ensemble)
    ax = fig.axes[0]
    # independent: each seed's cosine minus its own floor (two random halves of the clean probes), then over seeds
    values = np.stack([(r["separation"]["cos_clean_noisy_by_original_mean"] - r["separation"]["cos_clean_halves_mean"])
                       .sel(layer="hidden2").values for r in ensemble])
    line = {l.get_label(): l for l in ax.get_lines()}["hidden2"]
    np.testing.assert_allclose(line.get_ydata(), np.median(values, axis=0))
    bands = [c for c in ax.collections if isinstance(c, PolyCollection) and np.allclose(c.get_facecolor()[0][:3], _rgb(line.get_color()))]
    low, high = _band_limits(bands[0], values.shape[1])
    np.testing.assert_allclose(low, values.min(0))
    np.testing.assert_allclose(high, values.max(0))
    assert max(band.get_zorder() for band in bands) < min(l.get_zorder() for l in ax.get_lines() if not l.get_label().startswith("_"))
    assert f"{plots.band_note(len(SEEDS))}" in fig.get_suptitle()
    # the floor is the dashed line at 0; the output layer has a row of its own, so the hidden layers set their own range
    assert [l.get_ydata()[0] for l in ax.get_lines() if l.get_linestyle() == "--" and l.get_label().startswith("_")] == [0.0]
    hidden_rows = {l.get_label() for l in ax.get_lines() if not l.get_label().startswith("_")}
    output_rows = {l.get_label() for l in fig.axes[2].get_lines() if not l.get_label().startswith("_")}
    assert hidden_rows == {"hidden1", "hidden2", "hidden3"} and output_rows == {"output"}


def _rgb(color: str) -> tuple[float, ...]:
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def test_one_results_tree_draws_no_band(ensemble):
    for fig in (plots.plot_separation_lines(ensemble[0]), plots.plot_curves(ensemble[0]), plots.plot_path_attribution(ensemble[0])):
        assert not [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
        assert "seeds" not in fig.get_suptitle()


def test_every_single_run_figure_takes_replicas(ensemble):
    for function in (plots.plot_curves, plots.plot_separation_heatmap, plots.plot_separation_lines, plots.plot_pca_trajectories,
                     plots.plot_large_activation, plots.plot_explanation, plots.plot_path_attribution):
        assert str(len(SEEDS)) in function(ensemble).get_suptitle()
    curves = plots.plot_curves(ensemble)
    loss = np.stack([r["curves"]["test_loss"].values for r in ensemble])
    test = {l.get_label(): l for l in curves.axes[0].get_lines()}[plots.CURVES["test"]["label"]]
    np.testing.assert_allclose(test.get_ydata(), np.median(loss, 0))


def test_path_attribution_draws_the_split_null_where_it_exists(ensemble):
    results = ensemble[0]
    fig = plots.plot_path_attribution(results)
    ax_split = [ax for ax in fig.axes if "null" in ax.get_title()][0]
    paths = results["paths"]
    split = {l.get_label(): l for l in ax_split.get_lines()}["hidden1"]
    np.testing.assert_allclose(split.get_ydata(), 100 * (paths["clean_share_correct"] - paths["clean_share_wrong"]).sel(layer="hidden1").values)
    bars = {c.get_label(): c for c in ax_split.containers}["_null hidden1"]
    segments = np.array(bars.lines[2][0].get_segments())
    null_epochs = paths.attrs["null_epochs"]
    np.testing.assert_allclose(segments[:, 0, 0], null_epochs)
    np.testing.assert_allclose(segments[:, 0, 1], 100 * paths["split_null_low"].sel(layer="hidden1", epoch=null_epochs).values)
    np.testing.assert_allclose(segments[:, 1, 1], 100 * paths["split_null_high"].sel(layer="hidden1", epoch=null_epochs).values)


def test_explanation_shows_the_r2_difference_interval_and_the_verdict(ensemble):
    results = ensemble[0]
    large = results["large_activation"]
    fig = plots.plot_explanation(results)
    ax = [ax for ax in fig.axes if "paired-bootstrap" in ax.get_title()][0]
    for x, layer in enumerate(large["layer"].values):
        bar = ax.containers[x]
        (low, high), = [segment[:, 1] for segment in bar.lines[2][0].get_segments()]
        assert (low, high) == pytest.approx((float(large["r2_difference_low"].sel(layer=layer)), float(large["r2_difference_high"].sel(layer=layer))))
        assert ax.texts[x].get_text() == str(large["explained_by"].sel(layer=layer).values)
    assert "rule" in ax.get_xlabel()
    # bars whose permutation p >= 0.05 are hatched, the others are not
    hatched = {round(p.get_x() + p.get_width() / 2, 6): bool(p.get_hatch()) for p in fig.axes[0].patches}
    assert True in hatched.values() and False in hatched.values()
    input_bars = sorted((p for p in fig.axes[0].patches if p.get_facecolor()[:3] == pytest.approx(_rgb(plots.OKABE_ITO["blue"]))),
                        key=lambda p: p.get_x())
    for bar, layer in zip(input_bars, large["layer"].values):
        assert bool(bar.get_hatch()) == (float(large["input_p_value"].sel(layer=layer)) >= 0.05)


def _with_test_loss(results, scale: float, spike_epoch: int | None = None):
    tree = results.copy(deep=True)
    curves = tree["curves"].to_dataset()
    loss = curves["test_loss"] * scale
    if spike_epoch is not None:
        loss = loss.where(curves["epoch"] != spike_epoch, 65.0)
    tree["curves"] = xr.DataTree(curves.assign(test_loss=loss))
    return tree


def test_eleven_runs_become_small_multiples_with_the_spike_cut(ensemble):
    runs = {f"run{i}": _with_test_loss(ensemble[0], 1 + 0.1 * i, 30 if i == 7 else None) for i in range(11)}
    fig = plots.plot_compare_test_loss(runs)
    loss_panels = [ax for ax in fig.axes if ax.get_title().startswith("run")]
    assert [ax.get_title() for ax in loss_panels] == list(runs)
    top = loss_panels[0].get_ylim()[1]
    others = np.concatenate([r["curves"]["test_loss"].values for name, r in runs.items() if name != "run7"])
    assert others.max() <= top < 65.0  # every other value stays visible, the spike is cut
    assert "run7 (up to 65 nats at epoch 30)" in fig.get_suptitle()
    assert all(ax.get_ylim() == loss_panels[0].get_ylim() for ax in loss_panels)
    few = plots.plot_compare_test_loss(dict(list(runs.items())[:3]))
    assert len(few.axes) == 2 and plots.robust_top(np.r_[np.linspace(0.5, 2.3, 200)]) is None


def test_compare_figures_take_ensembles(ensemble):
    fig = plots.plot_compare_test_loss({"ensemble": ensemble, "single": ensemble[0]})
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [f"ensemble ({len(SEEDS)} seeds)", "single"]
    line = [l for l in fig.axes[0].get_lines() if l.get_label() == labels[0]][0]
    np.testing.assert_allclose(line.get_ydata(), np.median(np.stack([r["curves"]["test_loss"].values for r in ensemble]), 0))
    separation = plots.plot_compare_separation({"ensemble": ensemble, "single": ensemble[0]})
    assert any(isinstance(c, PolyCollection) for c in separation.axes[0].collections)
