"""The permutation kernels of a block (path null, noise floor) against float64 computations by hand."""

from __future__ import annotations

import numpy as np
import pytest

from actlab.analysis import blocks


def random_block(seed=3, n_classes=4, per_group=(24, 10, 12), units=16):
    """Post-ReLU activations with class structure, a zero and a NaN test sample, and codes for them."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.array(["clean", "noisy", "test"]), per_group)
    original = rng.integers(0, n_classes, len(group))
    label = original.copy()
    noisy = group == "noisy"
    label[noisy] = (original[noisy] + rng.integers(1, n_classes, noisy.sum())) % n_classes
    centres = rng.standard_normal((n_classes, units))
    x = np.maximum(rng.standard_normal((len(group), units)) + centres[label], 0).astype(np.float32)
    test = np.flatnonzero(group == "test")
    x[test[0]] = 0.0
    x[test[1], -1] = np.nan
    return x, blocks.grouping_codes(group, label, original), test, n_classes


def hand_cosine(a, b):
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return a @ b / norm if norm > 0 else np.nan


@pytest.mark.parametrize("units", [16, 5])  # wider than every class's pool (7 to 10 probes: its Gram) and narrower
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])  # products in the block's precision
def test_permuted_cosines_equal_the_cosine_of_permuted_means_by_hand(units, dtype, rtol):
    x, codes, _, n_classes = random_block(units=units)
    x64 = x.astype(np.float64)
    for noisy in blocks.FLOOR_GROUPINGS:
        members = blocks.null_memberships(codes, n_classes, 30, seed=2, noisy=noisy)
        found = blocks.permuted_cosines(x.astype(dtype), members, n_classes)
        expected = np.array([[hand_cosine(x64[clean == c].mean(axis=0), x64[other == c].mean(axis=0))
                              for c in range(n_classes)] for clean, other in members])
        np.testing.assert_allclose(found, expected, rtol=rtol, atol=rtol / 10)
        assert np.isfinite(found).all()


@pytest.mark.parametrize("case", ["generic", "zero row", "repeated rows"])
def test_pool_quadratic_forms_equal_the_sums_by_hand(case):
    """S.S, S.N and N.N of a pool from its Gram matrix against the permuted sums N = i X formed explicitly in
    float64, also where the Gram matrix is singular (a zero row, repeated rows)."""
    rng = np.random.default_rng(7)
    block = np.maximum(rng.standard_normal((40, 64)) + 2.0, 0)
    if case == "zero row":
        block[11] = 0.0
    elif case == "repeated rows":
        block[20:30] = block[:10]
    indicator = np.zeros((25, 40))
    for row in indicator:
        row[rng.choice(40, 13, replace=False)] = 1.0
    total_total, total_noisy, noisy_noisy = blocks._pool_quadratic_forms(block, indicator)
    total, noisy = block.sum(axis=0), indicator @ block
    np.testing.assert_allclose(total_total, total @ total, rtol=1e-12)
    np.testing.assert_allclose(total_noisy, noisy @ total, rtol=1e-12)
    np.testing.assert_allclose(noisy_noisy, np.einsum("pu,pu->p", noisy, noisy), rtol=1e-10)


def test_permuted_cosines_are_nan_for_a_zero_class_and_a_class_without_noisy_probes():
    x, codes, _, n_classes = random_block()
    clean = codes[blocks.GROUPINGS.index("clean")]
    other = codes[blocks.GROUPINGS.index("noisy_by_original")]
    x[(clean == 1) | (other == 1)] = 0.0  # class 1: every pooled activation is zero
    codes[blocks.GROUPINGS.index("noisy_by_original"), other == 2] = -1  # class 2: no noisy probe
    found = blocks.permuted_cosines(x, blocks.null_memberships(codes, n_classes, 5, noisy="noisy_by_original"), n_classes)
    assert np.isnan(found[:, [1, 2]]).all() and np.isfinite(found[:, [0, 3]]).all()


def test_null_clean_paths_equal_the_cosine_comparison_by_hand():
    x, codes, test, n_classes = random_block()
    plan = blocks.BlockPlan(codes=codes, n_classes=n_classes, test_index=test, n_top=1, seed=4, null_permutations=25)
    found = blocks.null_clean_paths(x, plan)
    x64 = x.astype(np.float64)
    expected = np.full(found.shape, -1, dtype=np.int8)
    for p, (clean, noisy) in enumerate(plan.null_members):
        for c in range(n_classes):
            clean_mean, noisy_mean = x64[clean == c].mean(axis=0), x64[noisy == c].mean(axis=0)
            for k, sample in enumerate(x64[test]):
                to_clean, to_noisy = hand_cosine(sample, clean_mean), hand_cosine(sample, noisy_mean)
                if np.isfinite(to_clean) and np.isfinite(to_noisy):
                    expected[p, k, c] = to_clean >= to_noisy
    np.testing.assert_array_equal(found, expected)
    assert (found[:, :2] == -1).all() and set(np.unique(found[:, 2:])) == {0, 1}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_null_paths_at_the_relevant_classes_are_the_paths_of_every_class_picked(dtype):
    """Told each test sample's relevant class, null_paths computes that class's margins only: the same entries as
    the paths of every class read at those classes (undefined ones included), in the block's precision."""
    rng = np.random.default_rng(3)
    n_permutations, n_classes, n_units = 17, 5, 24
    test = rng.standard_normal((40, n_units)).astype(dtype)
    test[3] = 0  # undefined: a zero test sample
    directions = rng.standard_normal((n_permutations, n_classes, n_units)).astype(dtype)
    defined = rng.uniform(size=(n_permutations, n_classes)) > 0.2
    relevant = rng.integers(0, n_classes - 1, len(test))  # class 4 is nobody's
    every = blocks.null_paths(test, directions, defined)
    found = blocks.null_paths(test, directions, defined, relevant)
    assert found.shape == (n_permutations, len(test)) and found.dtype == np.int8
    np.testing.assert_array_equal(found, np.take_along_axis(every, relevant[None, :, None], axis=2)[..., 0])
    assert set(np.unique(found)) == {-1, 0, 1} and (found[:, 3] == -1).all()
    for wrong in (relevant[:-1], np.where(relevant == 0, n_classes, relevant), relevant - 1):
        with pytest.raises(ValueError, match="relevant must hold a class in \\[0, 5\\) for each of the 40 test samples"):
            blocks.null_paths(test, directions, defined, wrong)


def test_null_memberships_are_the_documented_draw():
    """Permutation by permutation, class by class: ``rng.permutation`` of the class's pool, its first n_clean(c)
    probes clean and the rest noisy, from one ``default_rng(seed)`` (as documented), in int8 for a few classes."""
    x, codes, _, n_classes = random_block(n_classes=5, per_group=(40, 17, 5))
    for noisy in blocks.FLOOR_GROUPINGS:
        clean, other = codes[blocks.GROUPINGS.index("clean")], codes[blocks.GROUPINGS.index(noisy)]
        rng = np.random.default_rng(7)
        expected = np.full((12, 2, len(clean)), -1)
        for p in range(12):
            for c in range(n_classes):
                shuffled = rng.permutation(np.flatnonzero((clean == c) | (other == c)))
                n_clean = np.sum(clean == c)
                expected[p, 0, shuffled[:n_clean]], expected[p, 1, shuffled[n_clean:]] = c, c
        found = blocks.null_memberships(codes, n_classes, 12, seed=7, noisy=noisy)
        assert found.dtype == np.int8
        np.testing.assert_array_equal(found, expected)


def test_packed_floor_memberships_unpack_to_the_draws():
    """The plan keeps the floor memberships a bit per (permutation, probe): unpacked, whole or in batches, they are
    null_memberships' draws; memberships whose pools change between permutations are refused."""
    _, codes, test, n_classes = random_block(n_classes=5, per_group=(40, 17, 5))
    plan = blocks.BlockPlan(codes=codes, n_classes=n_classes, test_index=test, n_top=2, seed=4, floor_permutations=21)
    for grouping, packed in zip(blocks.FLOOR_GROUPINGS, plan.floor_members):
        expected = blocks.null_memberships(codes, n_classes, 21, seed=4, noisy=grouping)
        assert packed.shape == expected.shape and packed.noisy.shape == (21, 8)  # 62 probes in 8 bytes
        np.testing.assert_array_equal(packed.unpack(), expected)
        np.testing.assert_array_equal(packed.unpack(slice(5, 13)), expected[5:13])
        side = packed.noisy_side(slice(5, 13))  # a byte per (permutation, probe): 1 on the noisy side
        assert side.dtype == np.uint8 and side.shape == (8, len(codes[0]))
        np.testing.assert_array_equal(side, expected[5:13, 1] >= 0)
        assert packed.unpack().dtype == expected.dtype
    moved = blocks.null_memberships(codes, n_classes, 2, seed=4)
    moved[1, :, np.flatnonzero(moved[1, 0] >= 0)[0]] = -1  # a clean probe that leaves its pool
    with pytest.raises(ValueError, match="fixed pools"):
        blocks.PackedMemberships.pack(moved)


def test_packed_null_paths_unpack_to_the_block_null():
    """The fused pass keeps each block's null clean paths at two bits per entry: unpacked, they are
    null_clean_paths' int8 array (clean, noisy and undefined entries all present), in a quarter of its bytes."""
    x, codes, test, n_classes = random_block(n_classes=5, per_group=(40, 17, 5))
    plan = blocks.BlockPlan(codes=codes, n_classes=n_classes, test_index=test, n_top=2, seed=4, null_permutations=13)
    x[test[0]] = 0  # an undefined path: a zero test probe
    expected = blocks.null_clean_paths(x, plan)
    assert set(np.unique(expected)) == {-1, 0, 1}
    packed = blocks.PackedPaths.pack(expected)
    found = packed.unpack()
    assert found.dtype == np.int8 and found.shape == expected.shape
    np.testing.assert_array_equal(found, expected)
    assert packed.nbytes <= expected.nbytes // 4 + 2


def test_magnitudes_of_a_block_known_nonnegative_are_those_of_the_general_case():
    """``nonnegative`` (a ReLU's output) skips the minimum: the same numbers bit for bit, NaN included, and equal
    to mean and max of |x| in float64."""
    x, *_ = random_block()
    assert np.isnan(x).any() and not (x < 0).any()
    known = blocks.unit_magnitudes(x, nonnegative=True)
    for got, general in zip(known, blocks.unit_magnitudes(x)):
        np.testing.assert_array_equal(got, general)
    np.testing.assert_allclose(known[0], np.abs(x.astype(np.float64)).mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(known[1], np.abs(x).max(axis=0).astype(np.float64))
