"""Block statistics of a block too large to hold at once, read in ranges of samples.

A (layer, epoch) block holds every probe: 50,000 probes of a 4,096-unit layer are 800 MB. A block larger than
the block budget (:func:`block_bytes`) is read in ranges of whole inner chunks of the store
(:func:`sample_ranges`) and :func:`chunked_statistics` gives the same :class:`~actlab.analysis.blocks.BlockStats`
as :func:`~actlab.analysis.blocks.block_statistics` of the whole block, up to float rounding:

- a first pass over the ranges adds up what combines by sums: class sums of the groupings and halves, sums and
  maxima of |x|, PCA moments (Chan's merge), predictions, the permuted clean sums of the path null (in the
  block's precision, as the whole block's) and the permuted noisy sums of the noise-floor null (each range's
  products in the block's precision, added up in float64, in permutation batches that fit
  :func:`null_sums_bytes`; the first pass takes as many batches as fit it together, at least one, every other
  batch takes one more pass);
- a second pass over the ranges that hold test probes (every range at the epoch whose top-unit values are kept)
  computes what needs the block's class means first: path cosines, the null paths, the top units' values.

Memory does not grow with the probes: a block read in ranges holds one range (the budget), the floor null's sums
(:func:`null_sums_bytes`), the path null's (permutation, class, unit) sums and directions (float32) and, at the
PCA epochs, one range's float32 (unit, unit) products with the block's float64 moments, or without them when the
ranges' moments go straight to the layer's (``moments_sink``, what the fused pass does on local threads).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from actlab.analysis import blocks
from actlab.analysis.blocks import GROUPINGS, PATH_SOURCES, BlockPlan, BlockStats, Moments
from actlab.errors import ConfigError

BLOCK_BYTES_VARIABLE = "ACTLAB_BLOCK_BYTES"
"""Environment variable: the block budget in bytes (``analyze(block_bytes=...)`` wins over it)."""

BLOCK_BYTES = 64 * 2**20
"""Default block budget: activations of one block held at once (64 MiB, about 16,000 probes of a 1,024-unit
layer); larger blocks are read in ranges of samples."""

Ranges = tuple[tuple[int, int], ...]


def block_bytes(value: int | None = None) -> int:
    """The block budget: ``value``, else :data:`BLOCK_BYTES_VARIABLE` from the environment, else :data:`BLOCK_BYTES`.

    Raises
    ------
    ConfigError
        Not a positive integer (the message names where it came from).
    """
    source = "block_bytes"
    if value is None and os.environ.get(BLOCK_BYTES_VARIABLE, "").strip():
        source, value = BLOCK_BYTES_VARIABLE, os.environ[BLOCK_BYTES_VARIABLE].strip()
        try:
            value = int(value)
        except ValueError:
            raise ConfigError(f"{BLOCK_BYTES_VARIABLE} must be a positive integer of bytes; got {value!r}") from None
    if value is None:
        return BLOCK_BYTES
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{source} must be a positive integer of bytes; got {value!r}")
    return int(value)


def null_sums_bytes(budget: int) -> int:
    """Bytes the noise-floor null's permuted sums may take in a block read in ranges: the block budget, at least
    :data:`BLOCK_BYTES` (a permutation batch past the first costs one more pass over the block)."""
    return max(budget, BLOCK_BYTES)


def range_footprint(n_units: int, budget: int, plan: BlockPlan, *, moments: bool, null: bool) -> int:
    """Bytes a block read in ranges holds at most, about: one range, and the (unit, unit) moments (float64, with a
    range's float32 products) and the nulls' sums (:func:`null_sums_bytes`; the path null's float32 sums and
    directions) where they are computed."""
    held = budget + (12 * n_units**2 if moments else 0)
    if null:
        held += null_sums_bytes(budget) + 8 * plan.null_permutations * plan.n_classes * n_units
    return held


def sample_ranges(n_samples: int, sample_bytes: int, sample_chunk: int, budget: int) -> Ranges | None:
    """Ranges of samples to read a block in, or None when the whole block fits ``budget``.

    Each range holds as many whole inner chunks (``sample_chunk`` samples, what a read decodes) as fit the
    budget, at least one; a budget below one inner chunk gives ranges of as many samples as fit, at least one
    (a range then shares its inner chunk with the next, which is decoded for each).

    Returns
    -------
    tuple of (start, stop), covering 0..n_samples in order; or None
    """
    if n_samples * sample_bytes <= budget:
        return None
    fit = max(1, budget // max(sample_bytes, 1))
    step = fit // sample_chunk * sample_chunk if fit >= sample_chunk else fit
    return tuple((start, min(start + step, n_samples)) for start in range(0, n_samples, step))


def _local(index: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Positions in ``start:stop`` of the sorted sample indices ``index`` that fall in it."""
    low, high = np.searchsorted(index, [start, stop])
    return index[low:high] - start


def _pools(members: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Samples of each class's pool of a permutation null (members: (permutation, source, sample))."""
    return [np.flatnonzero((members[0] == c).any(axis=0)) for c in range(n_classes)]


def _batches(n_permutations: int, n_classes: int, n_units: int, budget: int) -> list[slice]:
    """Permutation batches whose float64 (permutation, class, unit) sums fit ``budget``."""
    size = max(1, budget // (8 * n_classes * n_units))
    return [slice(p, min(p + size, n_permutations)) for p in range(0, n_permutations, size)]


class _FloorSums:
    """Permuted noisy sums N and pool sums S of one noise-floor grouping, for a batch of permutations.

    The memberships stay a byte per (permutation, probe): whether the probe is on the noisy side
    (:meth:`~actlab.analysis.blocks.PackedMemberships.noisy_side`); a class's pool is fixed. Each range's noisy sums
    are products in the block's precision, as those of a block read at once (:func:`~actlab.analysis.blocks.
    permuted_cosines`), added up in float64."""

    def __init__(self, members: blocks.PackedMemberships, batch: slice, n_classes: int, n_units: int) -> None:
        self.noisy_side = members.noisy_side(batch)  # (permutation of the batch, sample), 0 or 1
        self.pools = [np.flatnonzero(members.pool_class == c) for c in range(n_classes)]
        # a class is tested where it has clean and noisy probes (every permutation keeps the sides' sizes)
        self.tested = [0 < self.noisy_side[0, pool].sum() < len(pool) if len(self.noisy_side) else False
                       for pool in self.pools]
        self.noisy = np.zeros((len(self.noisy_side), n_classes, n_units))
        self.total = np.zeros((n_classes, n_units))

    def add(self, x: np.ndarray, start: int, stop: int) -> None:
        dtype = np.float32 if x.dtype == np.float32 else np.float64
        for c, pool in enumerate(self.pools):
            rows = _local(pool, start, stop)
            if len(rows):
                block = x[rows].astype(dtype, copy=False)
                self.total[c] += block.sum(axis=0, dtype=np.float64)
                self.noisy[:, c] += self.noisy_side[:, rows + start].astype(dtype) @ block

    def cosines(self) -> np.ndarray:
        """(permutation, class) as :func:`~actlab.analysis.blocks.permuted_cosines`; NaN for a class without
        clean or without noisy probes."""
        out = blocks.clean_noisy_cosine(np.einsum("cu,cu->c", self.total, self.total),
                                        np.einsum("pcu,cu->pc", self.noisy, self.total),
                                        np.einsum("pcu,pcu->pc", self.noisy, self.noisy))
        out[:, ~np.array(self.tested, dtype=bool)] = np.nan
        return out


def _range_moments(x: np.ndarray) -> Moments:
    """The moments of the samples ``x`` as :meth:`Moments.from_block` computes them (float64 mean, float32 products
    of the centred samples), centring ``x`` in place and keeping the products in float32 until they are merged: no
    copy of ``x`` and no float64 (unit, unit) array."""
    mean = x.mean(axis=0, dtype=np.float64)
    centred = (np.subtract(x, mean.astype(np.float32), out=x) if x.dtype == np.float32
               else x.astype(np.float32) - mean.astype(np.float32))
    return Moments(len(x), mean, centred.T @ centred)


def chunked_statistics(read: Callable[[int, int], np.ndarray], ranges: Sequence[tuple[int, int]], plan: BlockPlan,
                       *, keep_top_values: bool, predictions: bool, moments: bool = True, null: bool = False,
                       sums_budget: int = BLOCK_BYTES, moments_sink: Callable[[Moments], None] | None = None,
                       relevant: np.ndarray | None = None, nonnegative: bool = False) -> BlockStats:
    """:func:`~actlab.analysis.blocks.block_statistics` of a block read as ``read(start, stop)`` over ``ranges``.

    Parameters
    ----------
    read : callable
        ``read(start, stop)`` -> ndarray (stop - start, unit), the block's samples ``start:stop``: a new array
        each call, which the statistics overwrite (the PCA moments centre it in place).
    ranges : sequence of (int, int)
        :func:`sample_ranges`, covering every sample in order.
    plan : BlockPlan
    keep_top_values, predictions, moments, null, relevant, nonnegative
        As :func:`~actlab.analysis.blocks.block_statistics`.
    sums_budget : int
        Bytes the float64 sums of the noise-floor null may take (:func:`null_sums_bytes`); more permutations
        take more passes.
    moments_sink : callable, optional
        With ``moments``: called with each range's moments (float32 products) to merge them where they are
        pooled (the layer's moments), instead of merging them into the block's own float64 moments; the
        statistics' ``moments`` are then None. A 4,096-unit block holds no (unit, unit) float64 array of its own.

    Returns
    -------
    BlockStats
    """
    n_classes, n_groupings = plan.n_classes, len(GROUPINGS)
    n_samples = ranges[-1][1]
    floor_work: list[tuple[int, slice]] = []
    path_members = plan.null_members if null and len(plan.test_index) else None
    every = mean_abs = max_abs = None
    merged = Moments(0, np.zeros(0), np.zeros((0, 0))) if moments and moments_sink is None else None
    predicted = np.empty(n_samples, dtype=np.int64) if predictions else None
    clean_sums = pool_sums = floors = None
    for start, stop in ranges:
        x = read(start, stop)
        if every is None:
            n_units = x.shape[1]
            every = np.zeros((len(plan.all_codes), n_classes, n_units))
            mean_abs, max_abs = np.zeros(n_units), np.zeros(n_units)
            if null:
                floor_work = [(g, batch) for g in range(len(plan.floor_members))
                              for batch in _batches(plan.floor_permutations, n_classes, n_units, sums_budget)]
                floors = [[] for _ in plan.floor_members]
            if path_members is not None:
                clean_sums = np.zeros((path_members.shape[0], n_classes, n_units), dtype=x.dtype)  # as the block's
                pool_sums = np.zeros((n_classes, n_units))
                path_pools = _pools(path_members, n_classes)
            sizes = np.cumsum([8 * (batch.stop - batch.start) * n_classes * n_units for _, batch in floor_work])
            n_first = max(1, int(np.searchsorted(sizes, sums_budget, side="right"))) if floor_work else 0
            first_floor = [(g, _FloorSums(plan.floor_members[g], batch, n_classes, n_units))
                           for g, batch in floor_work[:n_first]]  # the batches whose sums fit the budget together
            dtype = x.dtype
        every += blocks.group_sums(x, plan.all_codes[:, start:stop], n_classes,
                                   [part for segment in plan.segments if (part := segment.within(start, stop)) is not None])
        chunk_mean, chunk_max = blocks.unit_magnitudes(x, nonnegative=nonnegative)
        mean_abs += chunk_mean * (stop - start)
        np.maximum(max_abs, chunk_max, out=max_abs)
        if predicted is not None:
            predicted[start:stop] = np.argmax(x, axis=1)
        if clean_sums is not None:
            clean = PATH_SOURCES.index("clean")
            for c, pool in enumerate(path_pools):
                rows = _local(pool, start, stop)
                if len(rows):
                    block = x[rows]
                    clean_sums[:, c] += ((path_members[:, clean, rows + start] == c).astype(block.dtype) @ block)
                    pool_sums[c] += block.sum(axis=0, dtype=np.float64)
        for _, sums in first_floor:
            sums.add(x, start, stop)
        if moments:  # last: centres x in place
            (merged.update if moments_sink is None else moments_sink)(_range_moments(x))
        del x
    for g, sums in first_floor:
        floors[g].append(sums.cosines())
    first_floor.clear()  # not held through the passes below
    for g, batch in floor_work[n_first:]:  # every other permutation batch: one more pass
        sums = _FloorSums(plan.floor_members[g], batch, n_classes, n_units)
        for start, stop in ranges:
            sums.add(read(start, stop), start, stop)
        floors[g].append(sums.cosines())
        del sums  # before the next batch's sums are made

    mean_abs /= n_samples
    top = blocks.top_units(mean_abs, plan.n_top)
    sums = every[:n_groupings]
    test_index = np.asarray(plan.test_index)
    cosines = np.zeros((len(PATH_SOURCES), len(test_index), n_classes), dtype=np.float32)
    null_paths = None
    if clean_sums is not None:
        directions = np.zeros(clean_sums.shape, dtype=dtype)
        defined = np.zeros(clean_sums.shape[:2], dtype=bool)
        for c in range(n_classes):
            if len(path_pools[c]):
                directions[:, c], defined[:, c] = blocks.null_direction(clean_sums[:, c].astype(np.float64), pool_sums[c])
        del clean_sums  # the second pass needs the directions only
        null_paths = np.zeros((path_members.shape[0], len(test_index))
                              + ((n_classes,) if relevant is None else ()), dtype=np.int8)
    top_values = np.zeros((len(top), n_samples), dtype=np.float32) if keep_top_values else None
    done = 0
    for start, stop in ranges:  # second pass: what needs the block's class means or top units
        test = _local(test_index, start, stop)
        if not len(test) and top_values is None:
            continue
        x = read(start, stop)
        if len(test):
            at = slice(done, done + len(test))
            cosines[:, at] = blocks.path_cosines(x, sums, plan.counts, test)
            if null_paths is not None:
                null_paths[:, at] = blocks.null_paths(x[test], directions, defined,
                                                      None if relevant is None else relevant[at])
            done += len(test)
        if top_values is not None:
            top_values[:, start:stop] = np.abs(x[:, top]).T
        del x  # not held while the next range is read
    return BlockStats(
        sums=sums, half_sums=every[n_groupings:], mean_abs=mean_abs, max_abs=max_abs,
        moments=merged, path_cosines=cosines, null_clean_path=null_paths,
        floor_null=np.stack([np.concatenate(parts) for parts in floors]) if null else None,
        top_units=top, top_values=top_values, predicted=predicted)
