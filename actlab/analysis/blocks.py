"""Block kernels: the statistics computed from one (sample, unit) block of one layer at one epoch.

Both the composable per-analysis functions (mapped over the epoch chunks of a
dask-backed DataArray) and the fused pipeline (one read per block) call these
kernels, so the math lives here only once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np
import xarray as xr

GROUPINGS: tuple[str, ...] = ("clean", "noisy_by_original", "noisy_by_assigned", "test")
"""Sample groupings for class means: probe group and which label defines the class."""

GROUPING_LONG_NAMES = {
    "clean": "clean training probes grouped by label",
    "noisy_by_original": "noisy training probes grouped by original (true) label",
    "noisy_by_assigned": "noisy training probes grouped by assigned (noisy) label",
    "test": "test probes grouped by label",
}

PATH_SOURCES: tuple[str, ...] = ("clean", "noisy_by_assigned")
"""Groupings whose class means are the clean and noisy signals of path attribution."""

HALVES: tuple[str, ...] = ("clean_half_a", "clean_half_b")
"""Two random halves of the clean probes of each class (:func:`half_codes`): the separation noise floor."""

SEED = 0
"""Default seed of every random draw of the analyses (halves, permutations, bootstrap resamples)."""

N_BOOTSTRAP = 999
"""Default number of bootstrap resamples of the analyses' intervals."""


def grouping_codes(group: np.ndarray, label: np.ndarray, original_label: np.ndarray) -> np.ndarray:
    """Class code of every sample in every grouping, -1 where the sample is outside the grouping.

    Parameters
    ----------
    group : ndarray of str, shape (sample,)
    label, original_label : ndarray of int, shape (sample,)

    Returns
    -------
    ndarray of int64, shape (grouping, sample)
    """
    group = np.asarray(group).astype(str)
    label = np.asarray(label, dtype=np.int64)
    original = np.asarray(original_label, dtype=np.int64)
    rules = {
        "clean": (group == "clean", label),
        "noisy_by_original": (group == "noisy", original),
        "noisy_by_assigned": (group == "noisy", label),
        "test": (group == "test", label),
    }
    return np.stack([np.where(mask, classes, -1) for mask, classes in (rules[g] for g in GROUPINGS)])


def half_codes(codes: np.ndarray, seed: int = SEED) -> np.ndarray:
    """Class codes of two random halves of the clean probes of each class.

    The clean probes of each class (in increasing class order) are shuffled with one
    ``numpy.random.default_rng(seed)``; the first ``n // 2`` form half a, the next ``n // 2`` half b (an odd
    one out is in neither), so both halves of a class have the same size.

    Parameters
    ----------
    codes : ndarray of int, shape (grouping, sample)
        From :func:`grouping_codes`.

    Returns
    -------
    ndarray of int64, shape (half, sample); -1 outside the half
    """
    clean = np.asarray(codes)[GROUPINGS.index("clean")]
    rng = np.random.default_rng(seed)
    out = np.full((len(HALVES), len(clean)), -1, dtype=np.int64)
    for c in np.unique(clean[clean >= 0]):
        members = rng.permutation(np.flatnonzero(clean == c))
        k = len(members) // 2
        out[0, members[:k]], out[1, members[k: 2 * k]] = c, c
    return out


def null_memberships(codes: np.ndarray, n_classes: int, n_permutations: int, seed: int = SEED,
                     noisy: str = "noisy_by_assigned", out: np.ndarray | None = None) -> np.ndarray:
    """Clean/noisy membership of the training probes permuted within each class (the permutation nulls).

    For each class c the clean probes of class c and the noisy probes of class c in grouping ``noisy`` are
    pooled; each permutation shuffles every pool (one ``numpy.random.default_rng(seed)``; permutation by
    permutation, class by class in increasing order) and gives the first ``n_clean(c)`` probes to ``clean`` and
    the rest to the noisy grouping, so the class sizes of both groups are those of the run. With
    ``noisy="noisy_by_assigned"`` this is the path-attribution null; :data:`FLOOR_GROUPINGS` give the
    separation's noise-floor test (:func:`permuted_cosines`).

    Parameters
    ----------
    codes : ndarray of int, shape (grouping, sample)
        From :func:`grouping_codes`.
    noisy : {"noisy_by_assigned", "noisy_by_original"}
        The grouping pooled with the clean probes.
    out : ndarray of a signed integer dtype, shape (permutation, source, sample), optional
        Filled instead of a new int64 array (a smaller dtype keeps a large probe set's permutations small).

    Returns
    -------
    ndarray of int8 (int64 beyond 127 classes), or ``out``, shape (permutation, source, sample), sources (clean,
    ``noisy``); -1 outside
    """
    clean, other = np.asarray(codes)[GROUPINGS.index("clean")], np.asarray(codes)[GROUPINGS.index(noisy)]
    pools = [(np.flatnonzero((clean == c) | (other == c)), int(np.sum(clean == c))) for c in range(n_classes)]
    # the class of each position of the shuffled pools laid end to end, clean then noisy
    sizes = np.array([[n_clean, len(pool) - n_clean] for pool, n_clean in pools], dtype=np.int64).reshape(-1, 2)
    classes = [np.repeat(np.arange(n_classes), sizes[:, source]) for source in range(2)]
    rng = np.random.default_rng(seed)
    if out is None:
        out = np.empty((n_permutations, 2, len(clean)), dtype=np.int8 if n_classes <= 127 else np.int64)
    out.fill(-1)
    for p in range(n_permutations):
        shuffled = [rng.permutation(pool) for pool, _ in pools]
        out[p, 0, np.concatenate([s[:n_clean] for s, (_, n_clean) in zip(shuffled, pools)])] = classes[0]
        out[p, 1, np.concatenate([s[n_clean:] for s, (_, n_clean) in zip(shuffled, pools)])] = classes[1]
    return out


@dataclass(frozen=True)
class PackedMemberships:
    """:func:`null_memberships` of one grouping at one bit per (permutation, sample).

    Every permutation shuffles the probes within their class's pool, so a probe's class code is the same in every
    permutation (that of its pool) and only its side changes: the class of each probe's pool and whether it is on
    the noisy side, packed eight probes a byte. 999 permutations of 50,000 probes take 6 MB instead of 100 MB.

    Attributes
    ----------
    pool_class : ndarray of int, shape (sample,)
        Class of the probe's pool; -1 for a probe in no pool.
    noisy : ndarray of uint8, shape (permutation, ceil(sample / 8))
        ``numpy.packbits`` along the samples of "on the noisy side" in each permutation.
    """

    pool_class: np.ndarray
    noisy: np.ndarray

    @classmethod
    def pack(cls, members: np.ndarray) -> PackedMemberships:
        """From :func:`null_memberships` output (permutation, source, sample); sources (clean, noisy)."""
        members = np.asarray(members)
        if members.shape[0] == 0:
            return cls(np.full(members.shape[2], -1, dtype=members.dtype), np.zeros((0, (members.shape[2] + 7) // 8),
                                                                                    dtype=np.uint8))
        pool_class = members[0].max(axis=0)
        if not all(np.array_equal(m.max(axis=0), pool_class) for m in members):
            raise ValueError("memberships must permute probes within fixed pools")
        return cls(pool_class, np.packbits(members[:, 1] >= 0, axis=1))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(permutation, source, sample), the shape of the unpacked memberships."""
        return (len(self.noisy), 2, len(self.pool_class))

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self.pool_class.nbytes + self.noisy.nbytes

    def unpack(self, batch: slice = slice(None)) -> np.ndarray:
        """The memberships of the permutations ``batch``, as :func:`null_memberships` gives them (read-only:
        every block of a run unpacks the same, kept unpacked where all of them fit :data:`UNPACKED_BYTES`).

        Returns
        -------
        ndarray of ``pool_class``'s dtype, shape (permutation, source, sample); -1 outside
        """
        whole = self._whole
        return whole[batch] if whole is not None else self._unpacked(batch)

    @functools.cached_property
    def _whole(self) -> np.ndarray | None:
        """Every permutation unpacked, where they fit :data:`UNPACKED_BYTES`; else None."""
        n_permutations, n_sources, n_samples = self.shape
        if n_permutations * n_sources * n_samples * self.pool_class.itemsize > UNPACKED_BYTES:
            return None
        whole = self._unpacked(slice(None))
        whole.flags.writeable = False
        return whole

    def noisy_side(self, batch: slice = slice(None)) -> np.ndarray:
        """Whether each probe is on the noisy side in the permutations ``batch``: ndarray of uint8 (0 or 1), shape
        (permutation, sample); with :attr:`pool_class`, all the memberships say, in half the bytes of
        :meth:`unpack`'s."""
        return np.unpackbits(self.noisy[batch], axis=1, count=len(self.pool_class))

    def _unpacked(self, batch: slice) -> np.ndarray:
        noisy = self.noisy_side(batch).view(bool)
        out = np.empty((len(noisy), 2, len(self.pool_class)), dtype=self.pool_class.dtype)
        out[:, 0] = np.where(noisy, -1, self.pool_class)
        out[:, 1] = np.where(noisy, self.pool_class, -1)
        return out


FLOOR_GROUPINGS: tuple[str, ...] = ("noisy_by_original", "noisy_by_assigned")
"""Groupings whose clean-noisy cosine is tested against its noise floor (:func:`permuted_cosines`)."""

FLOOR_PERMUTATIONS = 999
"""Default permutations of the noise-floor test of the separation (:func:`permuted_cosines`)."""


def permuted_cosines(x: np.ndarray, members: np.ndarray, n_classes: int) -> np.ndarray:
    """Cosine between the clean and the noisy class means under each permutation of :func:`null_memberships`.

    The noise floor of the clean-noisy cosine: the same statistic as observed (the cosine of a class's clean
    mean with its noisy mean), with clean and noisy membership shuffled within the class, so both groups keep
    the sizes of the comparison (n clean against m noisy probes). A cosine of means is the cosine of sums; with
    the pool's sum S, a permutation's noisy sum N = i X (i its indicator over the pool's rows X) and clean sum
    S - N, it needs S.N = i (X S), |N|^2 = i G i^T and |S|^2 only, with G = X X^T: one Gram matrix of the
    pool per class, then one product of the indicators with it (:func:`_pool_quadratic_forms`), whatever the
    layer's width. A layer narrower than the pool (an output layer) takes the noisy sums i X themselves, the smaller
    product. The products run in the block's precision, as the observed cosine's class sums do
    (:func:`group_sums`): for a float32 block |N|^2 carries float32 rounding (about 1e-6 relative, against
    float64 sums by hand in ``tests/test_analysis_kernels.py``), at half the time of float64 products; S.S and
    S.N are summed in float64.

    Parameters
    ----------
    x : ndarray, shape (sample, unit)
    members : ndarray of int, shape (permutation, source, sample)
        :func:`null_memberships`, sources (clean, noisy).
    n_classes : int

    Returns
    -------
    ndarray of float64, shape (permutation, class); NaN where a class has no clean or no noisy probe or a
    permuted mean is zero
    """
    x = np.asarray(x)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    out = np.full((members.shape[0], n_classes), np.nan)
    for c in range(n_classes):
        pool = np.flatnonzero((members[0] == c).any(axis=0))
        if len(pool) == 0 or not (members[0, 1, pool] == c).any() or not (members[0, 0, pool] == c).any():
            continue
        block = x[pool].astype(dtype, copy=False)
        indicator = _indicator(members[:, 1, pool], c, dtype)  # (permutation, pool)
        if block.shape[1] < len(pool):  # a layer narrower than the pool: the noisy sums are the smaller product
            total, noisy = block.sum(axis=0, dtype=np.float64), (indicator @ block).astype(np.float64)
            total_total, total_noisy, noisy_noisy = total @ total, noisy @ total, np.einsum("pu,pu->p", noisy, noisy)
        else:
            total_total, total_noisy, noisy_noisy = _pool_quadratic_forms(block, indicator)
        out[:, c] = clean_noisy_cosine(total_total, total_noisy, noisy_noisy)
    return out


def _pool_quadratic_forms(block: np.ndarray, indicator: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """S.S, S.N and N.N of a pool's rows X (pool, unit), with S = 1 X and each permutation's N = i X.

    S.S = |X^T 1|^2 and S.N = i (X S) are matrix-vector products in float64; N.N = i G i^T with G = X X^T, as the
    row sums of (i G) * i, in the precision of ``block`` and ``indicator``. Every product is NumPy's, which releases
    the interpreter lock (GIL) while BLAS runs (SciPy's BLAS and LAPACK wrappers hold it), so the fused pass's
    threads compute their blocks' nulls side by side.

    Parameters
    ----------
    block : ndarray of float32 or float64, shape (pool, unit)
    indicator : ndarray of ``block``'s dtype, shape (permutation, pool)
        0/1: the rows each permutation gives to N.

    Returns
    -------
    total_total : float
    total_noisy, noisy_noisy : ndarray of float64, shape (permutation,)
    """
    total = block.sum(axis=0, dtype=np.float64)
    gram = block @ block.T  # G = X X^T (NumPy computes a product with its own transpose by a rank-k update)
    noisy_noisy = np.einsum("pi,pi->p", indicator @ gram, indicator, dtype=np.float64)
    return float(total @ total), indicator @ (block @ total), noisy_noisy


def clean_noisy_cosine(total_total: np.ndarray | float, total_noisy: np.ndarray, noisy_noisy: np.ndarray) -> np.ndarray:
    """Cosine of the clean sum S - N with the noisy sum N of a pool, from S.S, S.N and N.N (any matching shapes).

    Returns
    -------
    ndarray of float64; NaN where either sum is zero
    """
    clean_clean = total_total - 2 * total_noisy + noisy_noisy
    norm = np.sqrt(np.maximum(clean_clean, 0) * np.maximum(noisy_noisy, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (total_noisy - noisy_noisy) / np.where(norm > 0, norm, 1.0), np.nan)


def _indicator(values: np.ndarray, value: int, dtype: Any) -> np.ndarray:
    """``values == value`` as 0/1 of ``dtype``, written straight into the float array (no boolean temporary)."""
    return np.equal(values, value, out=np.empty(values.shape, dtype=dtype), casting="unsafe")


BOOTSTRAP_BATCH = 64
"""Resamples drawn and counted at a time by :func:`bootstrap_count_batches`."""


def bootstrap_count_batches(n: int, n_bootstrap: int, seed: int = SEED, dtype: Any = np.float64,
                            batch: int = BOOTSTRAP_BATCH) -> Iterator[np.ndarray]:
    """Multiplicity of each of ``n`` samples in each of ``n_bootstrap`` resamples with replacement, ``batch``
    resamples at a time.

    The resamples are ``default_rng(seed).integers(0, n, (n_bootstrap, n))`` drawn ``batch`` rows at a time from
    one generator, which gives the same integers as the one call (NumPy fills the array in order from the
    generator's stream, and the generator keeps its state, including a half-used 64-bit word, between calls).
    A batch holds (batch, n) draws and counts, not (n_bootstrap, n): 999 resamples of 50,000 samples are 400 MB
    of float64 counts, 64 of them 26 MB.

    Parameters
    ----------
    n, n_bootstrap : int
        Samples, resamples.
    seed : int
    dtype : numpy dtype of the counts
    batch : int
        Resamples per batch (>= 1).

    Yields
    ------
    ndarray of ``dtype``, shape (min(batch, rest), n); integers, each row sums to ``n``
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1; got {batch}")
    rng = np.random.default_rng(seed)
    for start in range(0, n_bootstrap, batch):
        size = min(batch, n_bootstrap - start)
        draws = rng.integers(0, n, (size, n))
        draws += n * np.arange(size)[:, None]
        yield np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(dtype)


def codes_of(act: xr.DataArray) -> np.ndarray:
    """:func:`grouping_codes` from the probe coords of an activation DataArray."""
    for name in ("group", "label", "original_label"):
        if name not in act.coords:
            raise ValueError(f"activations need the probe coord {name!r} on dim 'sample'; got coords {list(act.coords)}")
    return grouping_codes(act["group"].values, act["label"].values, act["original_label"].values)


def infer_n_classes(act: xr.DataArray) -> int:
    """Largest label or original label + 1."""
    return int(max(act["label"].values.max(), act["original_label"].values.max())) + 1


def group_counts(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Samples per (grouping, class); shape (grouping, class), int64."""
    return np.stack([np.bincount(c[c >= 0], minlength=n_classes)[:n_classes] for c in codes])


def onehot_groupings(codes: np.ndarray, n_classes: int, dtype: Any = np.float32) -> np.ndarray:
    """Indicator matrix of (grouping, class) membership; shape (grouping * class, sample)."""
    n_groupings, n_samples = codes.shape
    onehot = np.zeros((n_groupings, n_classes, n_samples), dtype=dtype)
    for g, c in enumerate(codes):
        keep = c >= 0
        onehot[g, c[keep], np.flatnonzero(keep)] = 1.0
    return onehot.reshape(-1, n_samples)


def compact_index(index: np.ndarray) -> slice | np.ndarray:
    """``index`` as a slice when it is a run of consecutive integers (``x[slice]`` is a view, not a copy)."""
    index = np.asarray(index)
    if len(index) and index[-1] - index[0] == len(index) - 1 and np.all(np.diff(index) == 1):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


@dataclass(frozen=True)
class Segment:
    """The samples of one probe group and the one-hot rows that have members among them.

    Attributes
    ----------
    samples : slice or ndarray of int
        The group's samples (a slice when they are consecutive).
    rows : ndarray of int, shape (row,)
        Rows of the full one-hot matrix with at least one member among ``samples``.
    onehot : ndarray of float32, shape (row, sample)
        Those rows restricted to ``samples``.
    """

    samples: slice | np.ndarray
    rows: np.ndarray
    onehot: np.ndarray

    def within(self, start: int, stop: int) -> Segment | None:
        """This segment restricted to the samples ``start:stop``, numbered from ``start`` (a block read in ranges,
        :mod:`~actlab.analysis.chunked`); None when none of its samples is there. The one-hot columns are a view
        where the samples are consecutive."""
        if isinstance(self.samples, slice):
            low, high = max(self.samples.start, start), min(self.samples.stop, stop)
            if low >= high:
                return None
            first = self.samples.start
            return Segment(slice(low - start, high - start), self.rows, self.onehot[:, low - first:high - first])
        low, high = np.searchsorted(self.samples, [start, stop])
        if low == high:
            return None
        return Segment(compact_index(self.samples[low:high] - start), self.rows, self.onehot[:, low:high])


def segments_of(codes: np.ndarray, onehot: np.ndarray) -> tuple[Segment, ...]:
    """Split a one-hot product into one product per probe group (for :func:`group_sums`).

    Samples that are members of the same :data:`GROUPINGS` (the same probe group) form a segment. Every
    grouping row, and every row of a subset of a grouping (the :data:`HALVES`), has its members in one
    segment, so each product spans one group's samples only, and a row's sum is the same whichever other rows
    are computed with it.

    Parameters
    ----------
    codes : ndarray of int, shape (grouping, sample)
        From :func:`grouping_codes`; they define the segments.
    onehot : ndarray, shape (row, sample)
        The one-hot matrix to split (:func:`onehot_groupings` of ``codes``, of the halves, or of both).
    """
    patterns, which = np.unique(np.asarray(codes).T >= 0, axis=0, return_inverse=True)
    out = []
    for k, pattern in enumerate(patterns):
        if not pattern.any():  # a sample in no grouping adds to no sum
            continue
        samples = np.flatnonzero(which.ravel() == k)
        rows = np.flatnonzero(onehot[:, samples].any(axis=1))
        out.append(Segment(compact_index(samples), rows, np.ascontiguousarray(onehot[np.ix_(rows, samples)])))
    return tuple(out)


def group_sums(x: np.ndarray, codes: np.ndarray, n_classes: int,
               segments: Sequence[Segment] | None = None) -> np.ndarray:
    """Sum of activations per (grouping, class): one one-hot product per probe group (:func:`segments_of`), in the
    input precision (float32 blocks).

    Parameters
    ----------
    x : ndarray, shape (sample, unit)
    codes : ndarray of int, shape (grouping, sample)
        Class codes of the groupings summed (:func:`grouping_codes`, :func:`half_codes`, or both stacked).
    n_classes : int
    segments : sequence of Segment, optional
        ``segments_of(grouping_codes, onehot_groupings(codes, n_classes))``, when already built (the fused pass
        builds them once); the default takes the segments from ``codes`` itself, which are the probe groups
        when ``codes`` are :func:`grouping_codes`.

    Returns
    -------
    ndarray of float64, shape (grouping, class, unit)
    """
    x = np.asarray(x)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    if segments is None:
        segments = segments_of(codes, onehot_groupings(codes, n_classes))
    sums = np.zeros((len(codes) * n_classes, x.shape[1]), dtype=dtype)
    for segment in segments:
        sums[segment.rows] += segment.onehot.astype(dtype, copy=False) @ x[segment.samples].astype(dtype, copy=False)
    return sums.astype(np.float64).reshape(len(codes), n_classes, -1)


def means_from_sums(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Class means from sums (..., grouping, class, unit) and counts (grouping, class); NaN where empty.

    Each sum is multiplied by the reciprocal of its count (within an ulp of the quotient), lazily for a
    dask ``sums``.
    """
    counts = np.asarray(counts)
    with np.errstate(divide="ignore"):
        scale = np.where(counts > 0, 1.0 / counts, np.nan)
    return sums * scale[..., None]


def cosine(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Cosine similarity along ``axis``; NaN where either vector is zero or NaN."""
    dot = np.sum(a * b, axis=axis)
    norm = np.sqrt(np.sum(a * a, axis=axis) * np.sum(b * b, axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), np.nan)


def sample_cosines(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Cosine of every sample to every class mean, in float32 (about 1e-6 relative rounding).

    Parameters
    ----------
    x : ndarray, shape (sample, unit)
    means : ndarray, shape (class, unit), may hold NaN rows

    Returns
    -------
    ndarray of float32, shape (sample, class); NaN for a zero sample, a zero or NaN mean
    """
    x = np.asarray(x, dtype=np.float32)
    valid = np.all(np.isfinite(means), axis=1)
    clean_means = np.where(valid[:, None], means, 0.0).astype(np.float32)
    dot = x @ clean_means.T
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None] * np.linalg.norm(clean_means, axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), np.float32(np.nan))
    out[:, ~valid] = np.nan
    return out


def unit_magnitudes(x: np.ndarray, *, nonnegative: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean and max of |x| over samples; each shape (unit,), float64.

    A block with no negative value (post-ReLU) is its own absolute value, so no copy is made for it.

    Parameters
    ----------
    x : ndarray, shape (sample, unit)
    nonnegative : bool
        ``x`` is known to hold no negative value (a ReLU's output: NaN stays NaN): its minimum is not looked for.
        The results are the same either way.
    """
    x = np.asarray(x)
    if nonnegative:
        return x.mean(axis=0, dtype=np.float64), x.max(axis=0).astype(np.float64)
    low, high = x.min(axis=0), x.max(axis=0)
    if np.all(low >= 0):
        return x.mean(axis=0, dtype=np.float64), high.astype(np.float64)
    return np.abs(x).mean(axis=0, dtype=np.float64), np.maximum(high, -low).astype(np.float64)


def top_units(mean_abs: np.ndarray, n_top: int) -> np.ndarray:
    """Indices of the ``n_top`` units with the largest ``mean_abs``, largest first (ties: lower index first)."""
    order = np.argsort(-mean_abs, kind="stable")
    return order[: min(n_top, len(order))]


@dataclass
class Moments:
    """Sample count, mean and centred scatter matrix of (sample, unit) data; merge with ``+``.

    Attributes
    ----------
    n : int
    mean : ndarray of float64, shape (unit,)
    scatter : ndarray of float64, shape (unit, unit)
        Sum over samples of (x - mean)(x - mean)^T.
    """

    n: int
    mean: np.ndarray
    scatter: np.ndarray

    @classmethod
    def from_block(cls, x: np.ndarray) -> Moments:
        """Moments of one (sample, unit) block: mean in float64, products of the centred block in float32."""
        x = np.asarray(x)
        mean = x.mean(axis=0, dtype=np.float64)
        centred = x.astype(np.float32, copy=False) - mean.astype(np.float32)
        return cls(len(x), mean, (centred.T @ centred).astype(np.float64))

    def __add__(self, other: Moments) -> Moments:
        """Pairwise merge (Chan et al.): exact, order independent up to rounding."""
        return Moments(self.n, self.mean.copy(), self.scatter.copy()).update(other)

    def update(self, other: Moments) -> Moments:
        """Merge ``other`` into these moments in place (Chan et al.); returns self.

        ``other.scatter`` may be float32 (added into these float64 moments); the rank-one term is added a band of
        rows at a time, so a merge holds no second (unit, unit) array.
        """
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.scatter = other.n, other.mean.copy(), other.scatter.astype(np.float64)
            return self
        n = self.n + other.n
        delta = other.mean - self.mean
        self.scatter += other.scatter
        weighted = delta * (self.n * other.n / n)
        for start in range(0, len(delta), 256):
            self.scatter[start: start + 256] += np.outer(weighted[start: start + 256], delta)
        self.mean += delta * (other.n / n)
        self.n = n
        return self


@dataclass(frozen=True)
class BlockPlan:
    """Per-run constants of the fused block statistics (picklable, sent with every block task)."""

    codes: np.ndarray
    n_classes: int
    test_index: np.ndarray
    n_top: int
    seed: int = SEED
    """Seed of the clean halves (:func:`half_codes`) and of the path null (:func:`null_memberships`)."""
    null_permutations: int = 0
    """Permutations of the path-attribution null (:func:`null_clean_paths`)."""
    floor_permutations: int = 0
    """Permutations of the noise-floor test of the separation (:func:`permuted_cosines`)."""
    halves: np.ndarray = field(init=False, repr=False)
    """``half_codes(codes, seed)``, shape (half, sample)."""
    counts: np.ndarray = field(init=False, repr=False)
    """Samples per (grouping, class)."""
    half_counts: np.ndarray = field(init=False, repr=False)
    """Samples per (half, class)."""
    segments: tuple[Segment, ...] = field(init=False, repr=False)
    """:func:`segments_of` the one-hot matrix of the groupings then the halves, built once per run."""
    test_rows: slice | np.ndarray = field(init=False, repr=False)
    """``test_index`` as a slice when the test probes are consecutive (:func:`compact_index`)."""
    null_members: np.ndarray = field(init=False, repr=False)
    """``null_memberships(codes, n_classes, null_permutations, seed)``, drawn once per run; shape
    (permutation, source, sample)."""
    floor_members: tuple[PackedMemberships, ...] = field(init=False, repr=False)
    """``null_memberships(codes, n_classes, floor_permutations, seed, noisy=g)`` for each g of
    :data:`FLOOR_GROUPINGS`, drawn once per run, kept packed (:class:`PackedMemberships`: a bit per permutation
    and probe)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "halves", half_codes(self.codes, self.seed))
        object.__setattr__(self, "counts", group_counts(self.codes, self.n_classes))
        object.__setattr__(self, "half_counts", group_counts(self.halves, self.n_classes))
        object.__setattr__(self, "segments", segments_of(self.codes, onehot_groupings(self.all_codes, self.n_classes)))
        object.__setattr__(self, "test_rows", compact_index(self.test_index))
        dtype, n_samples = np.int8 if self.n_classes <= 127 else np.int64, self.codes.shape[1]
        members = np.empty((self.null_permutations, 2, n_samples), dtype=dtype)
        object.__setattr__(self, "null_members", null_memberships(self.codes, self.n_classes, self.null_permutations,
                                                                  self.seed, out=members))
        floor = np.empty((self.floor_permutations, 2, n_samples), dtype=dtype)
        packed = []
        for grouping in FLOOR_GROUPINGS:  # in place (no int64 copy of a large probe set's draws), then packed
            packed.append(PackedMemberships.pack(null_memberships(self.codes, self.n_classes, self.floor_permutations,
                                                                  self.seed, noisy=grouping, out=floor)))
        object.__setattr__(self, "floor_members", tuple(packed))

    @property
    def all_codes(self) -> np.ndarray:
        """Class codes of the :data:`GROUPINGS` then the :data:`HALVES`; shape (grouping + half, sample)."""
        return np.concatenate([self.codes, self.halves])


@dataclass
class BlockStats:
    """Everything the analyses need from one (layer, epoch) block.

    Attributes
    ----------
    sums : (grouping, class, unit) float64
    half_sums : (half, class, unit) float64, halves :data:`HALVES`
    mean_abs, max_abs : (unit,) float64
    moments : Moments or None
        None for blocks of epochs the PCA is not fitted on.
    path_cosines : (source, test_sample, class) float32, sources :data:`PATH_SOURCES`
    null_clean_path : (permutation, test_sample, class) or (permutation, test_sample) int8, or None
        :func:`null_clean_paths` (blocks of the epochs the null is computed at, with test probes; at each test
        sample's relevant class where the block was given them), else None.
    floor_null : (grouping, permutation, class) float64 or None
        :func:`permuted_cosines` for each of :data:`FLOOR_GROUPINGS` (blocks of the epochs the nulls are
        computed at), else None.
    top_units : (rank,) int, by mean_abs
    top_values : (rank, sample) float32 |activation| of the top units, or None
    predicted : (sample,) int argmax over units (output layer), or None
    """

    sums: np.ndarray
    half_sums: np.ndarray
    mean_abs: np.ndarray
    max_abs: np.ndarray
    moments: Moments | None
    path_cosines: np.ndarray
    null_clean_path: np.ndarray | None
    floor_null: np.ndarray | None
    top_units: np.ndarray
    top_values: np.ndarray | None
    predicted: np.ndarray | None


def path_cosines(x: np.ndarray, sums: np.ndarray, counts: np.ndarray, test_index: slice | np.ndarray) -> np.ndarray:
    """Cosine of each test sample to the clean and noisy (assigned label) class means of the same block.

    ``test_index`` selects the test samples (indices, or a slice: :func:`compact_index`).

    Returns
    -------
    ndarray of float32, shape (source, test_sample, class)
    """
    means = means_from_sums(sums, counts)[[GROUPINGS.index(source) for source in PATH_SOURCES]]
    n_sources, n_classes, n_units = means.shape
    cosines = sample_cosines(x[test_index], means.reshape(-1, n_units))  # one product for every source
    return cosines.reshape(-1, n_sources, n_classes).transpose(1, 0, 2).astype(np.float32)


def clean_paths(cosines: np.ndarray) -> np.ndarray:
    """Clean path (1), noisy path (0) or undefined (-1) from cosines to the clean and the noisy means.

    Parameters
    ----------
    cosines : ndarray, shape (source, ...), sources :data:`PATH_SOURCES`

    Returns
    -------
    ndarray of int8, shape (...): 1 where cos_clean >= cos_noisy, 0 where not, -1 where either is NaN
    """
    clean, noisy = cosines[PATH_SOURCES.index("clean")], cosines[PATH_SOURCES.index("noisy_by_assigned")]
    return np.where(np.isfinite(clean) & np.isfinite(noisy), clean >= noisy, -1).astype(np.int8)


def null_clean_paths(x: np.ndarray, plan: BlockPlan, relevant: np.ndarray | None = None) -> np.ndarray:
    """Clean path of every test sample to every class under each permutation of :func:`null_memberships`.

    The permuted clean class sums are indicator products over each class's pool of training probes (in the
    block's precision; the other classes' probes, zeros of a full one-hot product, are left out); the noisy sum
    is the pool's sum (summed in float64) minus the clean one, and both are normalised in float64 (so that a block
    read in ranges, :mod:`~actlab.analysis.chunked`, gives the same directions up to its sums' rounding).
    A test sample x takes the clean path of class c when cos(x, m_clean) >= cos(x, m_noisy), as in the observed
    attribution (:func:`clean_paths`); for x != 0 that is x . (m_clean / |m_clean| - m_noisy / |m_noisy|) >= 0,
    one product per permutation instead of two sets of cosines. The two forms agree up to float32 rounding of near ties.

    Parameters
    ----------
    x : ndarray, shape (sample, unit)
    plan : BlockPlan
        With ``null_permutations >= 1``; its ``null_members`` are the permutations.
    relevant : ndarray of int, shape (test_sample,), optional
        The class each test sample's path is read at (:func:`null_paths`), when known.

    Returns
    -------
    ndarray of int8, shape (permutation, test_sample, class), or (permutation, test_sample) with ``relevant``;
    -1 where the test sample is zero or not finite, or either permuted mean is zero, empty or not finite
    """
    members = plan.null_members
    n_permutations = members.shape[0]
    x = np.asarray(x)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    directions = np.zeros((n_permutations, plan.n_classes, x.shape[1]), dtype=dtype)
    defined = np.zeros((n_permutations, plan.n_classes), dtype=bool)
    clean = PATH_SOURCES.index("clean")
    for c in range(plan.n_classes):
        pool = np.flatnonzero((members[0] == c).any(axis=0))
        if len(pool) == 0:
            continue
        block = x[pool].astype(dtype, copy=False)
        clean_sums = _indicator(members[:, clean, pool], c, dtype) @ block
        directions[:, c], defined[:, c] = null_direction(clean_sums.astype(np.float64), block.sum(axis=0, dtype=np.float64))
    return null_paths(x[plan.test_rows], directions, defined, relevant)


def null_direction(clean_sums: np.ndarray, pool_sum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Direction m_clean / |m_clean| - m_noisy / |m_noisy| of one class under each permutation of its pool, in the
    precision of ``clean_sums``.

    Parameters
    ----------
    clean_sums : ndarray of float32 or float64, shape (permutation, unit)
        Sum of the probes given to ``clean`` by each permutation.
    pool_sum : ndarray, shape (unit,)
        Sum of the class's pool (the noisy sum is the pool's minus the clean one).

    Returns
    -------
    direction : ndarray, shape (permutation, unit)
    defined : ndarray of bool, shape (permutation,)
        Both sums are non-zero and finite.
    """
    noisy_sums = pool_sum.astype(clean_sums.dtype) - clean_sums
    clean_sums = clean_sums.copy()
    ok = np.ones(len(clean_sums), dtype=bool)
    for sign, sums in ((1, clean_sums), (-1, noisy_sums)):
        norms = np.sqrt(np.einsum("pu,pu->p", sums, sums))
        found = np.isfinite(norms) & (norms > 0)
        sums *= (sign / np.where(found, norms, 1))[:, None]  # a mean's direction is its sum's
        ok &= found
    return clean_sums + noisy_sums, ok


@dataclass(frozen=True)
class PackedPaths:
    """:func:`null_clean_paths` of one block at two bits per (permutation, test sample, class) instead of a byte:
    whether the path is defined and whether it is clean, each ``numpy.packbits`` of the flattened array. 199
    permutations of 16,667 test probes and 10 classes take 8 MB instead of 33 MB, and the fused pass keeps one of
    these per (layer, null epoch) until the layer is assembled.

    Attributes
    ----------
    shape : tuple of int
        (permutation, test_sample, class), the shape of the unpacked paths.
    defined, clean : ndarray of uint8
        Packed ``paths >= 0`` and ``paths == 1``.
    """

    shape: tuple[int, int, int]
    defined: np.ndarray
    clean: np.ndarray

    @classmethod
    def pack(cls, paths: np.ndarray) -> PackedPaths:
        """From :func:`null_clean_paths` output: int8, 1 clean, 0 noisy, -1 undefined."""
        paths = np.asarray(paths)
        return cls(tuple(paths.shape), np.packbits(paths >= 0, axis=None), np.packbits(paths == 1, axis=None))

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self.defined.nbytes + self.clean.nbytes

    def unpack(self) -> np.ndarray:
        """The paths as :func:`null_clean_paths` gave them (int8, shape :attr:`shape`)."""
        count = int(np.prod(self.shape))
        paths = np.unpackbits(self.clean, count=count).view(np.int8)
        paths[np.unpackbits(self.defined, count=count) == 0] = -1
        return paths.reshape(self.shape)


def null_paths(test: np.ndarray, directions: np.ndarray, defined: np.ndarray,
               relevant: np.ndarray | None = None) -> np.ndarray:
    """Clean path of test samples under each permutation, from :func:`null_direction` of every class.

    The split null reads each test sample's path at one class, its relevant one (the predicted class or the
    label, :func:`~actlab.analysis.paths.attribute_paths`). Given those classes, each sample's margins are
    computed for its class only: one product per class of the samples of that class with its permuted directions,
    a tenth of the products of every class for 10 classes.

    Parameters
    ----------
    test : ndarray, shape (test_sample, unit)
    directions : ndarray, shape (permutation, class, unit)
        In the block's precision.
    defined : ndarray of bool, shape (permutation, class)
    relevant : ndarray of int, shape (test_sample,), optional
        Each test sample's relevant class.

    Returns
    -------
    ndarray of int8, shape (permutation, test_sample, class), or (permutation, test_sample) at each sample's
    ``relevant`` class; as :func:`null_clean_paths`
    """
    n_permutations, n_classes, n_units = directions.shape
    test = test.astype(directions.dtype, copy=False)
    squared = np.einsum("ij,ij->i", test, test)
    # defined directions have norm <= 2 and test rows with a finite squared norm are finite, so every margin
    # that is kept is finite
    if relevant is None:
        margin = test @ directions.reshape(-1, n_units).T  # (test_sample, permutation * class)
        paths = np.ascontiguousarray((margin >= 0).astype(np.int8).reshape(len(test), n_permutations, n_classes)
                                     .transpose(1, 0, 2))
        paths[:, ~(np.isfinite(squared) & (squared > 0))] = -1
        undefined_permutation, undefined_class = np.nonzero(~defined)
        paths[undefined_permutation, :, undefined_class] = -1
        return paths
    relevant = np.asarray(relevant)
    if relevant.shape != (len(test),) or (len(relevant) and not (0 <= relevant.min() <= relevant.max() < n_classes)):
        raise ValueError(f"relevant must hold a class in [0, {n_classes}) for each of the {len(test)} test samples")
    paths = np.empty((n_permutations, len(test)), dtype=np.int8)
    for c in np.unique(relevant):
        samples = np.flatnonzero(relevant == c)
        paths[:, samples] = (directions[:, c] @ test[samples].T) >= 0  # (permutation, sample of class c)
    paths[:, ~(np.isfinite(squared) & (squared > 0))] = -1
    paths[~defined[:, relevant]] = -1
    return paths


def block_statistics(x: np.ndarray, plan: BlockPlan, *, keep_top_values: bool, predictions: bool,
                     moments: bool = True, null: bool = False, relevant: np.ndarray | None = None,
                     nonnegative: bool = False) -> BlockStats:
    """All block-local statistics of one (sample, unit) block.

    Parameters
    ----------
    x : ndarray, shape (sample, unit)
    plan : BlockPlan
    keep_top_values : bool
        Keep the per-sample |activation| of the top units (done at the last epoch).
    predictions : bool
        Compute the argmax over units (the output layer).
    moments : bool
        Compute the PCA moments (only for the epochs the PCA is fitted on).
    null : bool
        Compute the path-attribution null (:func:`null_clean_paths`, when the run has test probes) and the
        noise-floor test (:func:`permuted_cosines`); only at a few epochs.
    relevant : ndarray of int, shape (test_sample,), optional
        Each test probe's relevant class at this epoch: the path null is computed at it only (:func:`null_paths`).
    nonnegative : bool
        The block is a ReLU's output (:func:`unit_magnitudes`).
    """
    every = group_sums(x, plan.all_codes, plan.n_classes, plan.segments)  # one product for groupings and halves
    sums = every[: len(GROUPINGS)]
    mean_abs, max_abs = unit_magnitudes(x, nonnegative=nonnegative)
    top = top_units(mean_abs, plan.n_top)
    return BlockStats(
        sums=sums,
        half_sums=every[len(GROUPINGS):],
        mean_abs=mean_abs,
        max_abs=max_abs,
        moments=Moments.from_block(x) if moments else None,
        path_cosines=path_cosines(x, sums, plan.counts, plan.test_rows),
        null_clean_path=null_clean_paths(x, plan, relevant) if null and len(plan.test_index) else None,
        floor_null=np.stack([np.concatenate([permuted_cosines(x, members.unpack(batch), plan.n_classes)
                                             for batch in _unpack_batches(members)])
                             for members in plan.floor_members]) if null else None,
        top_units=top,
        top_values=np.abs(x[:, top]).T.astype(np.float32) if keep_top_values else None,
        predicted=np.argmax(x, axis=1) if predictions else None,
    )


UNPACKED_BYTES = 32 * 2**20
"""Most bytes of memberships unpacked at a time from :class:`PackedMemberships` (a batch of permutations)."""


def _unpack_batches(members: PackedMemberships) -> list[slice]:
    """Batches of permutations unpacked at a time from ``members`` (at least one, maybe empty): as many as fit
    :data:`UNPACKED_BYTES`, so that a probe set of usual size takes all of them at once; each batch recomputes the
    pools' Gram matrices in :func:`permuted_cosines`."""
    n_permutations, n_sources, n_samples = members.shape
    size = max(1, UNPACKED_BYTES // (n_sources * n_samples * members.pool_class.itemsize))
    return [slice(p, p + size) for p in range(0, max(n_permutations, 1), size)]


def check_activations(act: xr.DataArray) -> xr.DataArray:
    """Validate an activation DataArray and return it as (epoch, sample, unit) with one chunk per epoch."""
    if not isinstance(act, xr.DataArray):
        raise TypeError(f"expected an xr.DataArray of activations (epoch, sample, unit); got {type(act).__name__}")
    if set(act.dims) != {"epoch", "sample", "unit"}:
        raise ValueError(f"activations must have dims (epoch, sample, unit); got {act.dims}")
    act = act.transpose("epoch", "sample", "unit")
    return act.chunk({"epoch": 1, "sample": -1, "unit": -1})


def map_epochs(act: xr.DataArray, kernel: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...], dtype) -> da.Array:
    """Lazily apply ``kernel`` to each epoch's (sample, unit) block; returns a dask array (epoch, *shape)."""
    act = check_activations(act)
    blocks = act.data.to_delayed().ravel()
    parts = [
        da.from_delayed(dask.delayed(lambda b: kernel(b[0]))(block), shape=shape, dtype=dtype)
        for block in blocks
    ]
    return da.stack(parts)
