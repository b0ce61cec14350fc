"""Sample dynamics joined to the activations: noisy probes memorised early against those memorised late.

A noisy probe is a training sample with a wrong assigned label; :func:`actlab.analysis.dynamics.learned_epoch` of its
training sample (matched by ``dataset_index``) is the epoch its wrong label is memorised. The memorised noisy probes
(a finite epoch) are split by :data:`SPLIT_RULE` into an early and a late half. At every layer and recorded epoch,
for each half:

- separation (the study's claim 3): the cosine between the class mean of the clean probes of class c and the mean of
  the half's noisy probes whose ORIGINAL label is c, averaged over the classes both halves have;
- path split (claim 5): the clean- versus noisy-path attribution of the test probes (:mod:`actlab.analysis.paths`)
  with the noisy signal of the predicted class taken from the half's noisy probes (by ASSIGNED label) alone; the
  split is the clean share of the correct predictions minus that of the wrong ones.

The tested differences are ``separation_difference`` = cosine(early) - cosine(late) (positive: the late-memorised
probes sit further from the clean class means, they separate more) and ``split_difference`` = split(late) -
split(early). Their null permutes the early/late labels among the memorised noisy probes (``n_permutations`` draws of
``default_rng(seed)``, the same draws at every layer and epoch). Halves of unequal sizes move the null's centre off
0, so a difference is read as its excess over the null's mean, and the p-value is two-sided about that mean,
(1 + #{|null - mean| >= |excess|}) / (1 + permutations) (:func:`permutation_test`), valid under the hypothesis that
the memorisation epoch says nothing about a probe's activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from actlab.analysis import blocks, inference, paths

N_PERMUTATIONS = 199
"""Relabellings of early and late in the null (floor 1/200 = 0.005)."""

SEED = 0
"""Seed of the relabellings."""

SPLIT_RULE = ("a memorised noisy probe is late when its label was memorised after the median memorisation epoch of "
              "the memorised noisy probes, early otherwise (at or before the median)")
"""How the memorised noisy probes are split into the two halves."""

FAMILIES: dict[str, str] = {
    "memorised_separation": "difference of the clean-noisy class-mean cosine between noisy probes memorised early and "
                            "late (two-sided permutation of the early/late labels, about the null's mean): every "
                            "layer x recorded epoch",
    "memorised_split": "difference of the path split between the noisy signals of probes memorised late and early "
                       "(two-sided permutation of the early/late labels, about the null's mean): every layer x "
                       "recorded epoch",
}
"""The two families of tests of this analysis; Benjamini-Hochberg within each (:func:`memorisation_summary`)."""

STATISTICS = ("separation", "split")
"""The two tested differences, in the order of :data:`FAMILIES`."""


def probe_memorised_epochs(probe_coords: xr.DataArray | xr.Dataset, learned: xr.DataArray) -> xr.DataArray:
    """The epoch each noisy probe's wrong label is memorised: the learned epoch of its training sample.

    Parameters
    ----------
    probe_coords : xr.DataArray or xr.Dataset
        Anything with the probe coords ``group`` and ``dataset_index`` on dim ``sample`` (``run.probes``, an
        activation DataArray).
    learned : xr.DataArray, dims (train_sample,)
        :func:`actlab.analysis.dynamics.learned_epoch` with coord ``dataset_index`` (``sample_dynamics(...)
        ["learned_epoch"]``).

    Returns
    -------
    xr.DataArray of float, dims (sample,)
        NaN for clean and test probes and for noisy probes never memorised.

    Raises
    ------
    ValueError
        A noisy probe whose ``dataset_index`` is not among the training samples.
    """
    noisy = np.asarray(probe_coords["group"].values == "noisy")
    index = np.asarray(probe_coords["dataset_index"].values, dtype=np.int64)
    train_index = np.asarray(learned["dataset_index"].values, dtype=np.int64)
    order = np.argsort(train_index, kind="stable")
    where = np.clip(np.searchsorted(train_index, index, sorter=order), 0, len(order) - 1)
    found = train_index[order[where]] == index
    if (noisy & ~found).any():
        missing = index[noisy & ~found][:3].tolist()
        raise ValueError(f"noisy probes with dataset_index {missing} are not among the training samples")
    values = np.where(noisy, np.asarray(learned.values, dtype=float)[order[where]], np.nan)
    return xr.DataArray(values, dims="sample", coords={"sample": probe_coords["sample"].values},
                        attrs={"long_name": "epoch the noisy probe's assigned label is memorised", "units": "epoch"})


def late_halves(memorised_epoch: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The memorised noisy probes and which of them are late (:data:`SPLIT_RULE`).

    Parameters
    ----------
    memorised_epoch : ndarray of float, shape (sample,)
        NaN outside the memorised noisy probes.

    Returns
    -------
    memorised : ndarray of int, the indices of the memorised noisy probes
    late : ndarray of bool, shape (memorised,)
    median : float, the median memorisation epoch (NaN without memorised probes)
    """
    memorised = np.flatnonzero(np.isfinite(memorised_epoch))
    epochs = np.asarray(memorised_epoch, dtype=float)[memorised]
    median = float(np.median(epochs)) if len(epochs) else float("nan")
    return memorised, epochs > median, median


@dataclass(frozen=True)
class Layout:
    """Per-run constants of :func:`half_statistics`: who is clean, noisy (memorised) and test, with their classes.

    Attributes
    ----------
    clean_onehot : ndarray, shape (class, sample), clean probes by label
    memorised : ndarray of int, the memorised noisy probes
    original_onehot, assigned_onehot : ndarray, shape (memorised, class)
    test : ndarray of int, the test probes
    test_label : ndarray of int, shape (test,)
    late : ndarray of bool, shape (row, memorised): row 0 observed, then one row per permutation
    """

    clean_onehot: np.ndarray
    memorised: np.ndarray
    original_onehot: np.ndarray
    assigned_onehot: np.ndarray
    test: np.ndarray
    test_label: np.ndarray
    late: np.ndarray


def layout(probe_coords: xr.DataArray | xr.Dataset, memorised_epoch: np.ndarray, n_classes: int, *,
           n_permutations: int = N_PERMUTATIONS, seed: int = SEED) -> Layout:
    """The :class:`Layout` of the probes (coords ``group``, ``label``, ``original_label``) and their memorisation
    epochs (:func:`probe_memorised_epochs`): the observed early/late labels, then ``n_permutations`` relabellings."""
    group = np.asarray(probe_coords["group"].values)
    label = np.asarray(probe_coords["label"].values, dtype=np.int64)
    original = np.asarray(probe_coords["original_label"].values, dtype=np.int64)
    classes = np.arange(n_classes)
    memorised, late, _ = late_halves(np.asarray(memorised_epoch, dtype=float))
    rng = np.random.default_rng(seed)
    rows = np.stack([late] + [rng.permutation(late) for _ in range(n_permutations)]) if len(late) else \
        np.zeros((n_permutations + 1, 0), dtype=bool)
    test = np.flatnonzero(group == "test")
    return Layout(clean_onehot=((group == "clean") & (label == classes[:, None])).astype(np.float64),
                  memorised=memorised, original_onehot=(original[memorised, None] == classes).astype(np.float64),
                  assigned_onehot=(label[memorised, None] == classes).astype(np.float64), test=test,
                  test_label=label[test], late=rows)


def _half_sums(x_memorised: np.ndarray, onehot: np.ndarray, late: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray, np.ndarray]:
    """Sums and counts by class of the early and the late half in every row: (row, class, unit) and (row, class)."""
    weights = late.astype(np.float64)[:, None, :] * onehot.T[None]  # (row, class, memorised)
    late_sums = weights @ x_memorised
    late_counts = weights.sum(axis=2)
    return (onehot.T @ x_memorised)[None] - late_sums, late_sums, onehot.sum(axis=0)[None] - late_counts, late_counts


def _norms(v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("...u,...u->...", v, v))


def half_statistics(x: np.ndarray, plan: Layout, predicted: np.ndarray) -> np.ndarray:
    """Separation and path split of the early and the late half, for the observed labels and every permutation.

    Parameters
    ----------
    x : ndarray, shape (sample, unit)
        One layer at one epoch, every probe.
    plan : Layout
    predicted : ndarray of int, shape (sample,)
        Predicted class of every probe at that epoch (only the test probes' are read).

    Returns
    -------
    ndarray of float64, shape (row, 4)
        Per row of ``plan.late``: cosine early, cosine late, split early, split late (NaN where undefined).
    """
    x = np.asarray(x, dtype=np.float64)
    clean = plan.clean_onehot @ x  # class sums: the cosine does not see the count
    clean_norm = _norms(clean)
    x_memorised = x[plan.memorised]
    out = np.full((len(plan.late), 4), np.nan)
    early, late, n_early, n_late = _half_sums(x_memorised, plan.original_onehot, plan.late)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = [np.einsum("cu,rcu->rc", clean, sums) / (clean_norm * _norms(sums))
                   for sums in (early, late)]
    both = (n_early > 0) & (n_late > 0) & np.isfinite(cosines[0]) & np.isfinite(cosines[1])
    for k, cos in enumerate(cosines):
        kept = np.where(both, cos, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, k] = np.where(both.any(axis=1), kept / np.maximum(both.sum(axis=1), 1), np.nan)
    x_test = x[plan.test]
    pred = np.asarray(predicted, dtype=np.int64)[plan.test]
    correct = pred == plan.test_label
    test_norm = _norms(x_test)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_clean = np.einsum("iu,iu->i", x_test, clean[pred]) / (test_norm * clean_norm[pred])
    columns = np.arange(len(pred))
    early, late, n_early, n_late = _half_sums(x_memorised, plan.assigned_onehot, plan.late)
    for k, (sums, counts) in enumerate(((early, n_early), (late, n_late))):
        dots = (sums @ x_test.T)[:, pred, columns]  # (row, test): the half's noisy sum of each predicted class
        with np.errstate(invalid="ignore", divide="ignore"):
            cos_noisy = np.where(counts[:, pred] > 0, dots / (_norms(sums)[:, pred] * test_norm), np.nan)
        defined = np.isfinite(cos_noisy) & np.isfinite(cos_clean)
        clean_path = np.where(defined, (cos_clean >= cos_noisy).astype(float), np.nan)
        out[:, 2 + k] = paths.weighted_splits(np.ones((1, len(pred))), clean_path, correct)[0]
    return out


TEST_PARTS = ("null_mean", "null_low", "null_high", "excess", "p_value")
"""What :func:`permutation_test` gives for each tested difference."""


def permutation_test(observed: float, null: np.ndarray) -> dict[str, float]:
    """Two-sided permutation test of a difference about the centre of its null.

    Halves of unequal sizes shift the null's centre away from 0 (a mean of fewer probes is noisier, so its cosine to
    a clean mean is lower), so the test measures ``excess`` = observed - the null's mean: p = (1 + #{|null - mean| >=
    |excess|}) / (1 + permutations), as :func:`actlab.analysis.paths.split_change_p_value` does. Draws with an
    undefined difference (a half without a member in any class) are left out of the count and of the permutations.

    Returns
    -------
    dict
        ``null_mean``, ``null_low``, ``null_high`` (2.5 and 97.5 % points), ``excess`` and ``p_value``; NaN when the
        observed value is undefined.
    """
    null = np.asarray(null, dtype=float)
    finite = null[np.isfinite(null)]
    if not np.isfinite(observed) or not len(finite):
        return dict.fromkeys(TEST_PARTS, np.nan)
    centre = finite.mean()
    low, high = np.percentile(finite, [2.5, 97.5])
    extreme = np.abs(finite - centre) >= abs(observed - centre) * (1 - 1e-12)
    return {"null_mean": float(centre), "null_low": float(low), "null_high": float(high),
            "excess": float(observed - centre), "p_value": float((1 + extreme.sum()) / (1 + len(finite)))}


VARIABLES: dict[str, str] = {
    "cos_early": "mean over classes of the cosine between the clean class mean and the mean of the early-memorised "
                 "noisy probes of that original label",
    "cos_late": "the same for the late-memorised noisy probes",
    "separation_difference": "cos_early - cos_late (positive: the late-memorised probes separate more)",
    "split_early": "path split of the test probes with the noisy signal of the early-memorised probes",
    "split_late": "path split of the test probes with the noisy signal of the late-memorised probes",
    "split_difference": "split_late - split_early",
    **{f"{statistic}_{part}": f"{words} of the {statistic} difference with early/late labels permuted"
       for statistic in STATISTICS for part, words in (("null_mean", "mean"), ("null_low", "2.5 % point"),
                                                        ("null_high", "97.5 % point"))},
    **{f"{statistic}_excess": f"{statistic} difference minus the mean of its null (the sign the words read)"
       for statistic in STATISTICS},
    **{f"{statistic}_p_value": f"two-sided permutation p-value of the {statistic} difference about its null's mean: "
                               "(1 + #{|null - mean| >= |excess|}) / (1 + permutations)" for statistic in STATISTICS},
}
"""Variables of :func:`memorisation_split`, dims (epoch,)."""


def memorisation_split(act: xr.DataArray, memorised_epoch: xr.DataArray, predicted: xr.DataArray, *,
                       n_permutations: int = N_PERMUTATIONS, seed: int = SEED,
                       n_classes: int | None = None) -> xr.Dataset:
    """Separation and path split of the noisy probes memorised early against late, in one layer, with the null.

    Parameters
    ----------
    act : xr.DataArray, dims (epoch, sample, unit)
        With the probe coords ``group``, ``label``, ``original_label`` (``run.layer(name)``); read one epoch at a time.
    memorised_epoch : xr.DataArray, dims (sample,)
        :func:`probe_memorised_epochs`.
    predicted : xr.DataArray of int, dims (epoch, sample)
        :func:`actlab.analysis.paths.predictions` of the output layer, at ``act``'s epochs.
    n_permutations, seed
        The null (module docstring).
    n_classes : int, optional
        Default: the largest label or original label + 1.

    Returns
    -------
    xr.Dataset, dims (epoch,)
        :data:`VARIABLES`, plus ``separation_null`` and ``split_null`` (epoch, permutation); attrs ``rule``,
        ``n_early``, ``n_late``, ``median_epoch``, ``n_permutations``, ``seed``, ``p_floor``, ``layer``.
    """
    act = blocks.check_activations(act)
    n_classes = n_classes or blocks.infer_n_classes(act)
    memorised = memorised_epoch.sel(sample=act["sample"].values).values
    plan = layout(act, memorised, n_classes, n_permutations=n_permutations, seed=seed)
    _, late, median = late_halves(memorised)
    epochs = act["epoch"].values
    predicted = predicted.sel(sample=act["sample"].values, epoch=epochs).transpose("epoch", "sample")
    rows = np.stack([half_statistics(act.isel(epoch=i).values, plan, predicted.isel(epoch=i).values)
                     for i in range(len(epochs))])  # (epoch, row, 4)
    differences = {"separation": rows[:, :, 0] - rows[:, :, 1], "split": rows[:, :, 3] - rows[:, :, 2]}
    data = {"cos_early": rows[:, 0, 0], "cos_late": rows[:, 0, 1], "separation_difference": differences["separation"][:, 0],
            "split_early": rows[:, 0, 2], "split_late": rows[:, 0, 3], "split_difference": differences["split"][:, 0]}
    for statistic, values in differences.items():
        tests = [permutation_test(row[0], row[1:]) for row in values]
        for part in TEST_PARTS:
            data[f"{statistic}_{part}"] = np.array([test[part] for test in tests])
    ds = xr.Dataset({name: ("epoch", values, {"long_name": VARIABLES[name], "units": "1"}) for name, values in data.items()},
                    coords={"epoch": epochs, "permutation": np.arange(n_permutations)})
    for statistic, values in differences.items():
        ds[f"{statistic}_null"] = (("epoch", "permutation"), values[:, 1:],
                                   {"long_name": f"{statistic} difference under each relabelling", "units": "1"})
    ds.attrs.update(rule=SPLIT_RULE, n_early=int((~late).sum()), n_late=int(late.sum()), median_epoch=median,
                    n_permutations=int(n_permutations), seed=int(seed), p_floor=1.0 / (1 + n_permutations),
                    layer=str(act.name))
    return ds


def memorisation_analysis(run: Any, learned: xr.DataArray, *, n_permutations: int = N_PERMUTATIONS,
                          seed: int = SEED) -> xr.Dataset:
    """:func:`memorisation_split` of every layer of a run, the predictions read from its output layer.

    Parameters
    ----------
    run : actlab.analysis.Run
    learned : xr.DataArray, dims (train_sample,)
        The learned epoch of every training sample, with coord ``dataset_index`` (``results["dynamics"]
        ["learned_epoch"]`` of :func:`actlab.analysis.analyze`, or ``sample_dynamics(run.dynamics)``).

    Returns
    -------
    xr.Dataset, dims (layer, epoch[, permutation]); attrs as :func:`memorisation_split` without ``layer``.
    """
    memorised = probe_memorised_epochs(run.probes, learned)
    predicted = paths.predictions(run.layer(run.layer_names[-1])).compute()
    found = [memorisation_split(run.layer(name), memorised, predicted, n_permutations=n_permutations, seed=seed,
                                n_classes=run.n_classes) for name in run.layer_names]
    out = xr.concat(found, dim=xr.DataArray(run.layer_names, dims="layer", name="layer"), combine_attrs="drop_conflicts")
    out.attrs.pop("layer", None)
    out.attrs["epochs"] = [int(e) for e in run.epochs]
    return out


def memorisation_summary(results: xr.Dataset) -> dict[str, Any]:
    """Benjamini-Hochberg within each family of :data:`FAMILIES`, and the numbers the findings and reports read.

    Parameters
    ----------
    results : xr.Dataset, dims (layer, epoch)
        :func:`memorisation_analysis`.

    Returns
    -------
    dict
        ``rule``, ``n_early``, ``n_late``, ``median_epoch``, ``n_permutations``, ``p_floor``, ``last_epoch``;
        ``families`` (name -> description, method, level, size); ``by_layer``: per layer, at the last epoch, the
        :data:`VARIABLES` with their q-values and decisions (``separation_rejects``, ``split_rejects``,
        ``separation_direction``, ``split_direction``: ``"late"``, ``"early"`` or ``"none"``), and over every
        epoch the count of epochs where each test rejects (``separation_epochs_rejected``, ...).
    """
    layers = [str(layer) for layer in results["layer"].values]
    epochs = [int(e) for e in results["epoch"].values]
    by_layer: dict[str, dict[str, Any]] = {layer: {} for layer in layers}
    families = {}
    for family, statistic in zip(FAMILIES, STATISTICS):
        p = results[f"{statistic}_p_value"].transpose("layer", "epoch").values
        q = np.array(inference.benjamini_hochberg(p.ravel().tolist()), dtype=float).reshape(p.shape)
        families[family] = {"description": FAMILIES[family], "method": inference.METHOD, "level": inference.LEVEL,
                            "size": int(np.isfinite(p).sum())}
        for i, layer in enumerate(layers):
            q_last = None if np.isnan(q[i, -1]) else float(q[i, -1])
            rejects = inference.rejects(q_last)
            excess = float(results[f"{statistic}_excess"].isel(layer=i, epoch=-1))
            by_layer[layer].update({f"{statistic}_q_value": q_last, f"{statistic}_rejects": rejects,
                                    f"{statistic}_direction": memorised_direction(rejects, excess),
                                    f"{statistic}_epochs_rejected": int(np.sum(q[i] <= inference.LEVEL)),
                                    f"{statistic}_epochs_tested": int(np.isfinite(q[i]).sum())})
    for i, layer in enumerate(layers):
        for name in VARIABLES:
            value = float(results[name].isel(layer=i, epoch=-1))
            by_layer[layer][name] = value if np.isfinite(value) else None
    attrs = results.attrs
    return {"rule": SPLIT_RULE, "n_early": int(attrs["n_early"]), "n_late": int(attrs["n_late"]),
            "median_epoch": float(attrs["median_epoch"]), "n_permutations": int(attrs["n_permutations"]),
            "p_floor": float(attrs["p_floor"]), "last_epoch": epochs[-1], "families": families, "by_layer": by_layer}


def memorised_direction(rejects: bool | None, excess: float) -> str | None:
    """``"late"`` (a positive excess of the difference over its null: the late-memorised half separates more, or its
    noisy signal gives the larger split) or ``"early"`` when the test rejected, ``"none"`` when not, None when not
    tested."""
    if rejects is None or not np.isfinite(excess):
        return None
    return ("late" if excess > 0 else "early") if rejects else "none"


NODE = "memorisation"
"""The results node :func:`with_memorisation` adds (and ``actlab compare --extra memorisation`` saves, one child per
run)."""


def with_memorisation(results: xr.DataTree, run: Any, *, n_permutations: int = N_PERMUTATIONS,
                      seed: int = SEED) -> xr.DataTree:
    """A new results tree: ``results`` with node :data:`NODE` holding :func:`memorisation_analysis` of the run.

    ``results`` itself is not changed (the new tree shares its arrays, not its nodes or attrs).

    Parameters
    ----------
    results : xr.DataTree
        :func:`actlab.analysis.analyze` of ``run``; its ``dynamics`` node gives the learned epochs.
    run : actlab.analysis.Run
        The run the results were computed from (its activations are read once more, layer by layer).
    n_permutations, seed
        The null (module docstring).

    Returns
    -------
    xr.DataTree
        With child :data:`NODE`, dims (layer, epoch[, permutation]). Without a ``dynamics`` node, no child, and the
        root attrs ``skipped`` name why (the reason the dynamics were skipped, when the results give one); when the
        analysis fails, the root attrs ``errors`` hold ``"<exception type>: <message>"`` under :data:`NODE`.
    """
    tree = results.copy(deep=False)
    if "dynamics" not in results.children:
        why = dict(results.attrs.get("skipped", {})).get("dynamics", "the results have no sample dynamics")
        tree.attrs = {**results.attrs, "skipped": {**dict(results.attrs.get("skipped", {})), NODE: why}}
        return tree
    try:
        found = memorisation_analysis(run, results["dynamics"]["learned_epoch"], n_permutations=n_permutations,
                                      seed=seed)
    except Exception as exc:  # isolate: the other results stand
        tree.attrs = {**results.attrs, "errors": {**dict(results.attrs.get("errors", {})),
                                                  NODE: f"{type(exc).__name__}: {exc}"}}
        return tree
    tree.attrs = dict(results.attrs)
    tree[NODE] = xr.DataTree(found)
    return tree
