"""Blocks read in ranges of samples give the statistics and the results of blocks read at once."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fixtures_store import cached_planted, cached_results
from threadpoolctl import threadpool_info, threadpool_limits
from test_analysis_kernels import hand_cosine

from actlab.analysis import analyze, blocks, chunked, open_run, pipeline
from actlab.analysis.assembly import Statistics
from actlab.analysis.run import sample_layout
from actlab.errors import ConfigError


def shuffled_block(seed=5, n_classes=3, per_group=(40, 18, 22), units=12):
    """Post-ReLU activations with class structure, probe groups interleaved (test probes not consecutive)."""
    rng = np.random.default_rng(seed)
    group = rng.permutation(np.repeat(np.array(["clean", "noisy", "test"]), per_group))
    original = rng.integers(0, n_classes, len(group))
    label = original.copy()
    noisy = group == "noisy"
    label[noisy] = (original[noisy] + rng.integers(1, n_classes, noisy.sum())) % n_classes
    x = np.maximum(rng.standard_normal((len(group), units)) + 2 * rng.standard_normal((n_classes, units))[label], 0)
    return x.astype(np.float32), blocks.grouping_codes(group, label, original), np.flatnonzero(group == "test"), n_classes


def assert_same_stats(found: blocks.BlockStats, expected: blocks.BlockStats) -> None:
    for name in ("sums", "half_sums", "mean_abs", "max_abs", "path_cosines", "floor_null"):
        np.testing.assert_allclose(getattr(found, name), getattr(expected, name), rtol=1e-5, atol=1e-6, err_msg=name)
    for name in ("top_units", "predicted", "null_clean_path"):
        np.testing.assert_array_equal(getattr(found, name), getattr(expected, name), err_msg=name)
    np.testing.assert_allclose(found.top_values, expected.top_values, rtol=1e-6, err_msg="top_values")
    assert found.moments.n == expected.moments.n
    np.testing.assert_allclose(found.moments.mean, expected.moments.mean, rtol=1e-6)
    np.testing.assert_allclose(found.moments.scatter, expected.moments.scatter, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("budget, relevant", [(10**9, False), (2000, False), (10**9, True)])
def test_chunked_statistics_equal_those_of_the_whole_block(budget, relevant):
    """Every floor permutation in one pass, or in batches of a few; the path null at every class, or at each
    test probe's relevant class."""
    x, codes, test, n_classes = shuffled_block()
    plan = blocks.BlockPlan(codes=codes, n_classes=n_classes, test_index=test, n_top=4, seed=1, null_permutations=30,
                            floor_permutations=40)
    ranges = chunked.sample_ranges(len(x), 4 * x.shape[1], 16, 4 * x.shape[1] * 37)
    assert ranges == ((0, 32), (32, 64), (64, 80))  # whole inner chunks of 16 samples, 37 samples' worth at most
    reads = []

    def read(start, stop):
        reads.append((start, stop))
        return x[start:stop].copy()

    classes = np.random.default_rng(2).integers(0, n_classes, len(test)) if relevant else None
    flags = dict(keep_top_values=True, predictions=True, moments=True, null=True, relevant=classes)
    found = chunked.chunked_statistics(read, ranges, plan, sums_budget=budget, **flags)
    expected = blocks.block_statistics(x, plan, **flags)
    assert_same_stats(found, expected)
    assert expected.null_clean_path.shape == (30, len(test)) + (() if relevant else (n_classes,))
    # the first pass takes the batches whose sums fit the budget together: both groupings' single batch at 10**9,
    # one batch of 6 permutations (1,728 bytes) at 2,000
    floor_passes = 2 * len(chunked._batches(40, n_classes, x.shape[1], budget)) - (2 if budget == 10**9 else 1)
    assert len(reads) == len(ranges) * (2 + floor_passes)  # the second pass reads every range for the top values
    assert len(reads) > 2 * len(ranges) if budget == 2000 else len(reads) == 2 * len(ranges)


@pytest.mark.parametrize("shuffled", [True, False])  # the probe groups as index arrays, and as slices
def test_group_sums_of_ranges_from_the_plans_segments_add_up_to_the_block(shuffled):
    """A range's group sums take the plan's segments restricted to it (``Segment.within``: a view of a slice's
    columns, none for a group without samples there); the ranges add up to the whole block's sums."""
    x, codes, test, n_classes = shuffled_block()
    if not shuffled:
        order = np.argsort(np.argmax(codes >= 0, axis=0) + 10 * (codes < 0).all(axis=0), kind="stable")
        x, codes = x[order], codes[:, order]
        test = np.flatnonzero(np.isin(order, test))
    plan = blocks.BlockPlan(codes=codes, n_classes=n_classes, test_index=test, n_top=2)
    assert all(isinstance(segment.samples, slice) != shuffled for segment in plan.segments)
    expected = blocks.group_sums(x, plan.all_codes, n_classes)
    found = np.zeros_like(expected)
    for start, stop in ((0, 7), (7, 40), (40, 41), (41, 80)):
        parts = [part for segment in plan.segments if (part := segment.within(start, stop)) is not None]
        assert 0 < len(parts) <= len(plan.segments)
        found += blocks.group_sums(x[start:stop], plan.all_codes[:, start:stop], n_classes, parts)
    np.testing.assert_allclose(found, expected, rtol=1e-6, atol=1e-5)
    first = plan.segments[0]
    assert first.within(80, 90) is None


@pytest.mark.parametrize("noisy_in_class_1", [True, False])
def test_chunked_floor_null_equals_the_cosine_of_permuted_means_by_hand(noisy_in_class_1):
    """Each range's noisy sums in float32, added up in float64; a class without noisy probes is NaN."""
    x, codes, test, n_classes = shuffled_block(seed=8)
    if not noisy_in_class_1:
        for grouping in blocks.FLOOR_GROUPINGS:
            codes[blocks.GROUPINGS.index(grouping), codes[blocks.GROUPINGS.index(grouping)] == 1] = -1
    plan = blocks.BlockPlan(codes=codes, n_classes=n_classes, test_index=test, n_top=2, null_permutations=3,
                            floor_permutations=7)
    found = chunked.chunked_statistics(lambda start, stop: x[start:stop].copy(), ((0, 25), (25, 50), (50, 80)), plan,
                                       keep_top_values=False, predictions=False, moments=False, null=True, sums_budget=500)
    x64 = x.astype(np.float64)
    expected = np.array([[[hand_cosine(x64[clean == c].mean(axis=0), x64[noisy == c].mean(axis=0))
                           if (noisy == c).any() else np.nan
                           for c in range(n_classes)] for clean, noisy in members.unpack()] for members in plan.floor_members])
    np.testing.assert_allclose(found.floor_null, expected, rtol=1e-6, atol=1e-7)
    assert np.isnan(found.floor_null[:, :, 1]).all() != noisy_in_class_1 and np.isfinite(found.floor_null[:, :, [0, 2]]).all()
    assert found.moments is None and found.top_values is None and found.predicted is None


def test_only_ranges_with_test_probes_are_read_twice_without_top_values():
    x, codes, _, n_classes = shuffled_block()
    test = np.arange(70, 80)
    codes[:, test] = -1
    codes[blocks.GROUPINGS.index("test"), test] = 0
    plan = blocks.BlockPlan(codes=codes, n_classes=n_classes, test_index=test, n_top=2)
    reads = []
    chunked.chunked_statistics(lambda start, stop: reads.append(start) or x[start:stop].copy(), ((0, 40), (40, 64), (64, 80)),
                               plan, keep_top_values=False, predictions=False)
    assert reads == [0, 40, 64, 64]


def test_sample_ranges_and_the_block_budget(monkeypatch):
    assert chunked.sample_ranges(1000, 40, 128, 40_000) is None  # the block fits: read at once
    assert chunked.sample_ranges(1000, 40, 128, 39_999) == ((0, 896), (896, 1000))  # 999 samples fit: 7 chunks
    assert chunked.sample_ranges(10, 40, 128, 100) == ((0, 2), (2, 4), (4, 6), (6, 8), (8, 10))  # below one chunk
    assert chunked.block_bytes() == chunked.BLOCK_BYTES
    monkeypatch.setenv(chunked.BLOCK_BYTES_VARIABLE, "4096")
    assert chunked.block_bytes() == 4096 and chunked.block_bytes(100) == 100
    for bad in ("-1", "lots", "0"):
        monkeypatch.setenv(chunked.BLOCK_BYTES_VARIABLE, bad)
        with pytest.raises(ConfigError, match=chunked.BLOCK_BYTES_VARIABLE):
            chunked.block_bytes()
    with pytest.raises(ConfigError, match="block_bytes"):
        chunked.block_bytes(0)


def pass_statistics(run, budget, relevant=None):
    """The :class:`~actlab.analysis.assembly.Statistics` of the fused pass over ``run`` with block budget ``budget``."""
    plan = pipeline.block_plan(run, null_permutations=19, floor_permutations=29)
    stats = Statistics(run, plan)
    every = np.arange(len(run.epochs))
    pipeline._stream_blocks(stats, "post", every, every[[0, -1]], lambda name: None, scheduler=None, max_workers=2,
                            progress=False, extras={}, budget=budget, relevant=relevant)
    return stats


@pytest.mark.parametrize("budget", [10**9, 800])
def test_the_pass_computes_the_hidden_layers_path_null_at_the_predicted_classes_only(tmp_path_factory, budget):
    """Told the relevant classes are the predicted ones, the pass gives each hidden layer's null block the output
    layer's predictions at its epoch: its null paths are those of every class read at them; the output layer's own
    null blocks keep every class."""
    run = open_run(cached_planted(tmp_path_factory).run_dir)
    every, told = pass_statistics(run, budget), pass_statistics(run, budget, relevant="predicted")
    np.testing.assert_array_equal(told.predicted, every.predicted)
    test = told.plan.test_index
    for layer in run.layer_names:
        for index, packed in told.null_clean_path[layer].items():
            found, expected = packed.unpack(), every.null_clean_path[layer][index].unpack()
            if layer == run.layer_names[-1]:
                np.testing.assert_array_equal(found, expected)
                continue
            classes = told.predicted[index, test]
            assert found.shape == expected.shape[:2] and len(np.unique(classes)) > 1
            np.testing.assert_array_equal(found, np.take_along_axis(expected, classes[None, :, None], axis=2)[..., 0])


def test_the_pass_over_a_store_read_in_ranges_gathers_the_statistics_of_the_pass_read_at_once(tmp_path_factory):
    run = open_run(cached_planted(tmp_path_factory).run_dir)
    # 260 probes in one inner chunk; 800 bytes hold 12 samples of a 16-unit layer, 25 of the 8-unit one
    assert [chunked.sample_ranges(*sample_layout(run.path, name), 800)[:2] for name in run.layer_names] == [
        ((0, 12), (12, 24)), ((0, 25), (25, 50)), ((0, 12), (12, 24)), ((0, 50), (50, 100))]
    whole, split = pass_statistics(run, 10**9), pass_statistics(run, 800)
    for layer in run.layer_names:
        for name in ("sums", "half_sums", "mean_abs", "max_abs", "path_cosines"):
            expected = getattr(whole, name)[layer]
            np.testing.assert_allclose(getattr(split, name)[layer], expected, rtol=1e-6,
                                       atol=1e-6 * np.abs(expected).max(), err_msg=f"{layer} {name}")
        for name in ("null_clean_path", "floor_null"):
            expected, found = getattr(whole, name)[layer], getattr(split, name)[layer]
            assert sorted(found) == sorted(expected) == [0, len(run.epochs) - 1]
            for index in expected:
                if name == "null_clean_path":  # kept packed until the layer is assembled
                    np.testing.assert_array_equal(found[index].unpack(), expected[index].unpack(), err_msg=layer)
                else:
                    np.testing.assert_allclose(found[index], expected[index], rtol=1e-6, atol=1e-7, err_msg=f"{layer} {name}")
        moments, expected = split.moments[layer], whole.moments[layer]
        assert moments.n == expected.n == len(run.epochs) * run.n_samples
        np.testing.assert_allclose(moments.mean, expected.mean, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(moments.scatter, expected.scatter, rtol=1e-5, atol=1e-6 * np.abs(expected.scatter).max())
        np.testing.assert_array_equal(split.last_top_units[layer], whole.last_top_units[layer])
        np.testing.assert_array_equal(split.last_top_values[layer], whole.last_top_values[layer])
    np.testing.assert_array_equal(split.predicted, whole.predicted)


def test_analysis_of_a_store_read_in_ranges_equals_the_analysis_read_at_once(tmp_path_factory):
    planted, whole = cached_results(tmp_path_factory)
    split = analyze(planted.run_dir, progress=False, n_permutations=99, block_bytes=800)
    assert split.attrs["errors"] == {} and whole.attrs["errors"] == {}
    cosines = whole["paths"].to_dataset()
    # a test probe as near its clean as its noisy class mean (1e-6) may take either path, and the split with it
    ties = np.abs(cosines["cos_clean"] - cosines["cos_noisy"]).values < 1e-6
    for node in whole.subtree:
        expected, found = node.to_dataset(inherit=False), split[node.path].to_dataset(inherit=False)
        assert set(found.variables) == set(expected.variables), node.path
        for name, var in expected.variables.items():
            if name in ("components", "trajectory"):
                continue  # eigenvectors of equal eigenvalues: any basis of their span (the moments are compared above)
            if node.path == "/paths" and ties.any() and var.dims[:2] == ("layer", "epoch") and name not in ("cos_clean", "cos_noisy"):
                keep = ~ties.any(axis=tuple(range(2, ties.ndim)))  # (layer, epoch) cells without a tie
                var, got = var.values[keep], found[name].values[keep]
            else:
                var, got = var.values, found[name].values
            if var.dtype.kind in "fc":  # float32 products: rounding relative to the array's largest value
                scale = np.nanmax(np.abs(var), initial=0.0)
                np.testing.assert_allclose(got, var, rtol=1e-5, atol=1e-6 * max(scale, 1.0), err_msg=f"{node.path}/{name}")
            else:
                np.testing.assert_array_equal(got, var, err_msg=f"{node.path}/{name}")


def test_blocks_read_in_ranges_are_reduced_one_at_a_time_when_two_footprints_exceed_the_workers_budget(
        tmp_path_factory, monkeypatch):
    run = open_run(cached_planted(tmp_path_factory).run_dir)
    reduce, running, most = chunked.chunked_statistics, [0], [0]

    def counted(*args, **kwargs):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.01)  # long enough for the other worker to start a block if it may
        try:
            return reduce(*args, **kwargs)
        finally:
            running[0] -= 1

    monkeypatch.setattr(chunked, "chunked_statistics", counted)
    # a range of 800 bytes; each block's footprint holds at least the floor null's 64 MiB, far above 2 x 800 bytes
    stats = pass_statistics(run, 800)
    assert most[0] == 1 and all(stats.is_complete(name) for name in run.layer_names)
    most[0] = 0
    pass_statistics(run, 10**9)  # no block read in ranges
    assert most[0] == 0


def test_image_features_beyond_the_block_budget_are_made_before_the_pass(tmp_path_factory, monkeypatch):
    from actlab.analysis import large_activation

    run = open_run(cached_planted(tmp_path_factory).run_dir)
    order = []
    features, stream = large_activation.image_features, pipeline._stream_blocks

    def blas_threads():
        return [api["num_threads"] for api in threadpool_info() if api["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        two = blas_threads()
    assert two  # NumPy's BLAS is seen

    def made(*args, **kwargs):
        assert blas_threads() == two  # the two workers' cores: nothing else runs (the pass's blocks take 1 each)
        found = features(*args, **kwargs)
        order.append("features made")
        return found

    monkeypatch.setattr(large_activation, "image_features", made)
    monkeypatch.setattr(pipeline, "_stream_blocks", lambda *args, **kwargs: order.append("pass") or stream(*args, **kwargs))
    assert 4 * run.probes["image"].size > 800
    assert analyze(run, progress=False, n_permutations=9, block_bytes=800, max_workers=2).attrs["errors"] == {}
    assert order == ["features made", "pass"]
    order.clear()

    def failing(*args, **kwargs):
        raise RuntimeError("no features")

    monkeypatch.setattr(large_activation, "image_features", failing)  # fails the large-activation analysis only
    errors = analyze(run, progress=False, n_permutations=9, block_bytes=800).attrs["errors"]
    assert errors == {"large_activation": "RuntimeError: no features"}
