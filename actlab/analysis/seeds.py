"""Findings across seeds: the summaries of an ensemble's replicas condensed into medians with intervals.

:func:`aggregate_summaries` takes one :func:`~actlab.analysis.summary` per seed and returns the same
nested structure in which every number is replaced by an :func:`interval` over the seeds, every
yes/no by a :func:`share` with its interval, and every name (a layer, a verdict) by its counts.
The wording layer (:mod:`actlab.findings`) reads either form.

The interval of a median is distribution-free: the order statistics ``x_(k) .. x_(n+1-k)`` with the
largest ``k`` whose coverage, ``1 - 2 * P(Binomial(n, 1/2) < k)``, is at least 95 %. With five seeds
or fewer no such pair exists; the interval is then the full range, whose coverage (93.75 % for five
seeds, 87.5 % for four) is reported with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

LEVEL = 0.95
"""Coverage the intervals aim at."""

IDENTIFIERS = frozenset({"unit"})
"""Summary keys whose numbers name something (a unit's index): counted over seeds, never averaged."""

PER_SEED = frozenset({"top_ranked"})
"""Summary keys that list one seed's samples (the likely mislabelled ones): left to each seed's summary, None over seeds."""

INTERVAL_KEYS = frozenset({"median", "low", "high", "n", "coverage"})
SHARE_KEYS = frozenset({"share", "count", "n", "low", "high"})
COUNTS_KEYS = frozenset({"value", "counts", "n"})


def interval(values: Sequence[float | None], level: float = LEVEL) -> dict[str, Any]:
    """Median of ``values`` over seeds with its distribution-free interval (module docstring).

    Parameters
    ----------
    values : sequence of float or None
        One value per seed; None and NaN (a seed without that number) are left out.
    level : float
        Coverage aimed at.

    Returns
    -------
    dict
        ``median``, ``low``, ``high``, ``n`` (seeds with a value) and ``coverage`` (of the interval,
        None for fewer than two values); all None when no seed has a value.
    """
    finite = np.sort(np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float))
    n = len(finite)
    if n == 0:
        return {"median": None, "low": None, "high": None, "n": 0, "coverage": None}
    if n == 1:
        return {"median": float(finite[0]), "low": float(finite[0]), "high": float(finite[0]), "n": 1, "coverage": None}
    coverage = {k: 1 - 2 * stats.binom.cdf(k - 1, n, 0.5) for k in range(1, n // 2 + 1)}
    good = [k for k, c in coverage.items() if c >= level]
    k = max(good) if good else 1
    return {"median": float(np.median(finite)), "low": float(finite[k - 1]), "high": float(finite[n - k]), "n": n,
            "coverage": float(coverage[k])}


def share(flags: Sequence[bool | None], level: float = LEVEL) -> dict[str, Any]:
    """Share of seeds in which a yes/no finding holds, with its Clopper-Pearson interval.

    Returns
    -------
    dict
        ``share``, ``count`` (seeds where it holds), ``n`` (seeds with an answer), ``low``, ``high``.
    """
    answers = [bool(f) for f in flags if f is not None]
    n, count = len(answers), sum(answers)
    if n == 0:
        return {"share": None, "count": 0, "n": 0, "low": None, "high": None}
    alpha = 1 - level
    low = 0.0 if count == 0 else float(stats.beta.ppf(alpha / 2, count, n - count + 1))
    high = 1.0 if count == n else float(stats.beta.ppf(1 - alpha / 2, count + 1, n - count))
    return {"share": count / n, "count": count, "n": n, "low": low, "high": high}


def counts(names: Sequence[Any]) -> dict[str, Any]:
    """The most common of ``names`` over seeds (ties: first seen) and how often each occurs."""
    given = [str(name) for name in names if name is not None]
    tally = Counter(given)
    return {"value": tally.most_common(1)[0][0] if tally else None, "counts": dict(tally), "n": len(given)}


def aggregate_summaries(summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Condense one summary per seed into one summary of intervals (module docstring).

    Parameters
    ----------
    summaries : mapping of seed name -> summary
        :func:`actlab.analysis.summary` of each replica (``{"seed0": {...}, ...}``).

    Returns
    -------
    dict
        The structure of one summary, with ``seeds`` (the names) and ``n_seeds`` added: numbers become
        :func:`interval` dicts, booleans :func:`share` dicts, strings :func:`counts` dicts; ``errors``
        maps seed -> that seed's errors; a section missing from a seed is left out of it; identifiers
        (:data:`IDENTIFIERS`, a unit's index) are counted like names.
    """
    if not summaries:
        raise ValueError("aggregate_summaries needs the summary of at least one seed")
    names = list(summaries)
    rows = [summaries[name] for name in names]
    out = {key: _combine([row.get(key) for row in rows], key) for key in _keys(rows) if key not in ("run", "errors")}
    out["errors"] = {name: dict(row.get("errors") or {}) for name, row in zip(names, rows) if row.get("errors")}
    out["seeds"] = names
    out["n_seeds"] = len(names)
    return out


def _keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def _combine(values: list[Any], key: str) -> Any:
    present = [v for v in values if v is not None]
    if not present or key in PER_SEED:
        return None
    if all(isinstance(v, Mapping) for v in present):
        return {name: _combine([v.get(name) for v in present], name) for name in _keys(present)}
    if key in IDENTIFIERS:
        return counts(present)
    if all(isinstance(v, bool) for v in present):
        return share(present)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return interval(present)
    return counts(present)


def is_interval(value: Any) -> bool:
    """Whether ``value`` is an :func:`interval` dict (a number over seeds)."""
    return isinstance(value, Mapping) and INTERVAL_KEYS <= set(value)


def is_share(value: Any) -> bool:
    """Whether ``value`` is a :func:`share` dict (a yes/no over seeds)."""
    return isinstance(value, Mapping) and SHARE_KEYS <= set(value)


def is_counts(value: Any) -> bool:
    """Whether ``value`` is a :func:`counts` dict (a name over seeds)."""
    return isinstance(value, Mapping) and COUNTS_KEYS <= set(value)
