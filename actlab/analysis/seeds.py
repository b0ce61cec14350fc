"""Findings across seeds: the summaries of an ensemble's replicas condensed into medians with intervals.

:func:`aggregate_summaries` takes one :func:`~actlab.analysis.summary` per seed and returns the same
nested structure in which every number is replaced by an :func:`interval` over the seeds, every
yes/no by a :func:`share` with its interval, and every name (a layer, a verdict) by its counts.
The wording layer (:mod:`actlab.findings`) reads either form.

Where each seed carries its own sampling interval (:data:`OWN_INTERVALS`: a bootstrap over probes or classes),
the interval over seeds is a :func:`hierarchical_interval` (seeds resampled, then each seed's own sampling).
Otherwise the interval of a median is distribution-free: the order statistics ``x_(k) .. x_(n+1-k)`` with the
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

OWN_INTERVALS: dict[str, tuple[str, str]] = {
    "excess": ("excess_low", "excess_high"),
    "slope": ("low", "high"),
    "change": ("change_low", "change_high"),
    "r2_difference": ("r2_difference_low", "r2_difference_high"),
}
"""Summary keys whose seeds carry their own 95 % sampling interval (bootstrap over probes or classes), by the keys of
its bounds: over seeds these get a :func:`hierarchical_interval`."""

N_HIERARCHICAL = 9999
"""Resamples of :func:`hierarchical_interval`."""

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


def hierarchical_interval(values: Sequence[float | None], lows: Sequence[float | None], highs: Sequence[float | None],
                          level: float = LEVEL, n_bootstrap: int = N_HIERARCHICAL, seed: int = 0) -> dict[str, Any]:
    """Median over seeds with a hierarchical bootstrap interval: seeds resampled, then each seed's own sampling.

    Each resample draws the seeds with replacement, then for each drawn seed a value from its own sampling
    distribution, taken as normal with the seed's value as mean and its 95 % interval's half-width / 1.96 as
    standard deviation. The seeds of an ensemble share their data and probes, so one resample of the probes (or
    classes) moves every seed alike: one standard normal draw per resample, scaled by each seed's own spread
    (their sampling errors are not averaged away over seeds). The interval is the percentile interval of the
    resampled medians (``default_rng(seed)``).

    Parameters
    ----------
    values, lows, highs : sequence of float or None
        Per seed: the value and its own interval (seeds without all three are left out).

    Returns
    -------
    dict
        ``median``, ``low``, ``high``, ``n``, ``coverage`` (the nominal ``level``) and ``method``.
    """
    rows = np.array([(v, lo, hi) for v, lo, hi in zip(values, lows, highs)
                     if all(x is not None and np.isfinite(x) for x in (v, lo, hi))], dtype=float).reshape(-1, 3)
    if len(rows) < 2:
        return {**interval(rows[:, 0].tolist(), level), "method": "order statistics"}
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(rows), (n_bootstrap, len(rows)))
    spread = (rows[:, 2] - rows[:, 1]) / (2 * stats.norm.ppf(0.975))
    draws = rows[picks, 0] + rng.standard_normal((n_bootstrap, 1)) * spread[picks]  # shared probes: one draw
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(np.median(draws, axis=1), [tail, 100 - tail])
    return {"median": float(np.median(rows[:, 0])), "low": float(low), "high": float(high), "n": len(rows),
            "coverage": level, "method": "hierarchical bootstrap: seeds, then the probes they share"}


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
    units = {name: f"{row['large_activation']['layer']} unit {row['large_activation']['unit']}"
             for name, row in zip(names, rows) if row.get("large_activation") and row["large_activation"].get("unit") is not None}
    if units and out.get("large_activation"):
        out["large_activation"].pop("unit", None)  # a unit's index means nothing across seeds: per seed only
        out["large_activation"]["units_by_seed"] = units
    out["shared"] = "data and probes"
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
        out = {name: _combine([v.get(name) for v in present], name) for name in _keys(present)}
        for name, (low, high) in OWN_INTERVALS.items():
            if is_interval(out.get(name)) and out[name]["n"] > 1:
                out[name] = hierarchical_interval(*([v.get(key) for v in present] for key in (name, low, high)))
        return out
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
