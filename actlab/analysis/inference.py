"""Multiple testing: the families of tests whose words the findings print, and Benjamini-Hochberg within each.

Every word of a verdict ("beyond its null", "below its noise floor", ...) comes from a test that rejects after
the false discovery rate is controlled within a named family of tests (:data:`FAMILIES`), at :data:`LEVEL`.
:func:`benjamini_hochberg` gives the adjusted p-values (q-values); a test rejects when its q-value is at most
the level. :func:`sign_flip_p_value` is the exact test of a mean change over classes (the depth trend).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

LEVEL = 0.05
"""False discovery rate controlled within each family."""

METHOD = "Benjamini-Hochberg"

FAMILIES: dict[str, str] = {
    "noise_floor": "clean-noisy cosine below its noise floor (one-sided within-class permutation test): every hidden "
                   "layer x read epoch x grouping (noisy by original, by assigned label)",
    "depth_trend": "change of the depth slope of the clean-noisy cosine since the first recorded epoch (exact "
                   "sign-flip test over classes, two-sided): every read epoch after the first x grouping",
    "path_split": "path split beyond its permutation null (one-sided): every layer x read epoch",
    "split_change": "change of the path split since the first recorded epoch against the paired permutation nulls "
                    "(two-sided): every layer x read epoch after the first",
    "explained_by": "CV R^2 of the large unit from the input and from each output target (permutation tests): the "
                    "four tests of the reported unit",
}
"""The families of one analysis, by name: what is tested and which tests form the family (read epochs: the phase
epochs of :func:`actlab.analysis.pipeline.phase_epochs`)."""


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (q-values) of one family; None or NaN p-values are not in the family.

    q_(i) = min over j >= i of p_(j) m / j (sorted ascending, capped at 1), m the number of finite p-values;
    rejecting every test with q <= level controls the false discovery rate at that level (independent or
    positively dependent tests).

    Parameters
    ----------
    p_values : sequence of float or None

    Returns
    -------
    list of float or None, in the order given
    """
    p = np.array([np.nan if v is None else float(v) for v in p_values], dtype=float)
    finite = np.flatnonzero(np.isfinite(p))
    out: list[float | None] = [None] * len(p)
    if len(finite) == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    for index, q in zip(order, adjusted):
        out[int(index)] = float(q)
    return out


def rejects(q_value: float | None, level: float = LEVEL) -> bool | None:
    """Whether a test with this q-value rejects at ``level``; None when it was not performed."""
    return None if q_value is None else bool(q_value <= level)


def sign_flip_p_value(changes: Sequence[float], max_exact: int = 16, n_draws: int = 9999, seed: int = 0) -> float | None:
    """Two-sided sign-flip p-value of the mean of per-class changes: exact over all 2^k sign patterns (k classes).

    Under the hypothesis that each class's change is symmetric about 0 (nothing changed), every sign pattern
    is equally likely; p = #{patterns with |mean| >= observed |mean|} / 2^k. With more than ``max_exact``
    classes, ``n_draws`` random patterns (``default_rng(seed)``) and p = (1 + #{>=}) / (1 + n_draws).

    Parameters
    ----------
    changes : sequence of float, one per class (NaN left out)

    Returns
    -------
    float or None (no finite change)
    """
    d = np.asarray([c for c in changes if c is not None and np.isfinite(c)], dtype=float)
    if len(d) == 0:
        return None
    observed = abs(d.mean()) * (1 - 1e-12)
    if len(d) <= max_exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
        return float(np.mean(np.abs(signs @ d / len(d)) >= observed))
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_draws, len(d)))
    return float((1 + np.sum(np.abs(signs @ d / len(d)) >= observed)) / (1 + n_draws))
