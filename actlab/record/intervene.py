"""Offline interventions from the stored weights: layer rewinding and unit ablation, measured on the stored probes.

The model is rebuilt from the run's settings (a built-in model, or a factory the caller passes again: a name
read from the store is never imported), loaded with the weights of a recorded epoch from ``parameters/`` and
run on the stored probe images, normalised as the run normalised them. Two interventions:

- rewinding: the weights of chosen layers are replaced by their values at an earlier recorded epoch
  (Stephenson et al. 2021: does rewinding the last layers undo the memorisation of noisy labels?);
- ablation: chosen units of a layer are set to 0 in the forward pass, by default the unit of largest mean
  |activation| of each hidden layer and, as its null, random units of the same layer whose mean |activations|
  add up to the large unit's.

Each is scored by the accuracy on the clean probes, the noisy probes against their assigned and their original
label, and the test probes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from actlab.errors import ConfigError, StoreError
from actlab.files import ZARR_KIND_ATTR, staged_dir
from actlab.record.config import INSTANCE_MODEL, RecordConfig
from actlab.record.data import prepare_data
from actlab.record.models import build_model
from actlab.record.setup import check_same_data
from actlab.record.trainer import to_device_normalized
from actlab.store import ANALYSIS_DIRNAME, StoreView, default_compressors, open_store

MEASURES: dict[str, str] = {
    "clean": "clean training probes against their label",
    "noisy_assigned": "noisy training probes against their ASSIGNED (noisy) label",
    "noisy_original": "noisy training probes against their ORIGINAL (true) label",
    "test": "test probes against their label",
}
"""The accuracies every intervention is scored by."""

TEST_SET = "test_set"
"""The extra measure with ``test_set=True``: every evaluated test sample of the run against its label."""

INTERVENTIONS_NAME = "interventions"
"""The output folder inside the run's analysis folder."""

RESULTS_NAME, FIGURE_NAME = "interventions.zarr", "interventions.png"
"""Inside the output folder: the results (Zarr) and their figure (:func:`actlab.plots.plot_interventions`)."""

N_NULL = 20
"""Draws of matched random units, the null of each large-unit ablation."""


@dataclass(frozen=True)
class Rewind:
    """Replace the weights of ``layers`` (recorded layer names or module names) by their values at ``epoch``."""

    layers: tuple[str, ...]
    epoch: int

    @classmethod
    def parse(cls, text: str) -> Rewind:
        """``"hidden5,hidden6@40"`` -> ``Rewind(("hidden5", "hidden6"), 40)``."""
        names, at, epoch = str(text).rpartition("@")
        layers = tuple(name.strip() for name in names.split(",") if name.strip())
        if not at or not layers or not epoch.strip().lstrip("-").isdigit():
            raise ConfigError(f"--rewind {text!r} is not LAYER[,LAYER...]@EPOCH; write e.g. hidden5,hidden6@40")
        return cls(layers, int(epoch))

    def __str__(self) -> str:
        return f"{','.join(self.layers)}@{self.epoch}"


class Rebuilt:
    """A run's model rebuilt from its store, with the probes as its inputs.

    Parameters
    ----------
    run_dir : path
        A recorded run.
    factory : callable, optional
        The factory of a run recorded from ``package.module:callable``: it must be that callable (checked by
        name). A built-in model needs none; a run recorded from a bare instance is refused.
    device : str
        Torch device of the forward passes.

    Attributes
    ----------
    view : StoreView
    model : nn.Module, in eval mode
    inputs : Tensor, shape (sample, channel, height, width)
        The normalised probe images.
    modules : dict of str -> str
        Recorded layer name -> module name.
    """

    def __init__(self, run_dir: str | os.PathLike, *, factory: Callable[..., Any] | None = None,
                 device: str = "cpu") -> None:
        self.view: StoreView = open_store(run_dir)
        attrs = self.view.attrs
        config = RecordConfig.from_dict(attrs["config"], strict=False, where=str(run_dir))
        self.config, self.run_dir = config, run_dir
        self.device = torch.device(device)
        model_args = dict(config.model_args or {})
        if config.model == INSTANCE_MODEL:
            raise ConfigError(f"{run_dir} was recorded from a model instance, which actlab cannot rebuild; record it "
                              "with a built-in model or a factory 'package.module:callable' to intervene")
        if ":" in str(config.model):
            self.model = _from_factory(config.model, model_args, factory, run_dir)
        else:
            if factory is not None:
                raise ConfigError(f"{run_dir} was recorded with the built-in model {config.model}; drop the factory")
            image_shape = tuple(self.view.probes["image"].shape[1:])
            self.model = build_model(config.model, model_args, image_shape, _n_classes(attrs, self.view), config.width)
        self.model = self.model.to(self.device).eval()
        norm = attrs["dataset"]["normalization"]
        self.inputs = to_device_normalized(self.view.probes["image"].values, np.asarray(norm["mean"]),
                                           np.asarray(norm["std"]), self.device)
        self.modules = {spec["name"]: spec["module"] for spec in attrs["layers"]}
        self.activations = {spec["name"]: spec["activation"] for spec in attrs["layers"]}
        self.epochs = [int(e) for e in self.view.epochs]

    def state_at(self, epoch: int) -> dict[str, torch.Tensor]:
        """Every stored state_dict entry at recorded ``epoch``."""
        if epoch not in self.epochs:
            raise ConfigError(f"epoch {epoch} is not a recorded epoch of {self.view.path}; choose one of {self.epochs}")
        at = self.view.parameters.sel(epoch=epoch)
        return {name: torch.from_numpy(np.ascontiguousarray(at[name].values)) for name in self.view.parameters.data_vars}

    def parameter_names(self, layer: str) -> list[str]:
        """The stored parameters of a recorded layer (its module's) or of a module prefix."""
        module = self.modules.get(layer, layer)
        names = [n for n in self.view.parameters.data_vars if n.startswith(f"{module}.")]
        if not names:
            raise ConfigError(f"{layer!r} names no stored parameters (module {module!r}); name a layer among "
                              f"{list(self.modules)} whose module has weights, or a module such as "
                              f"{sorted({n.rsplit('.', 1)[0] for n in self.view.parameters.data_vars})[:6]}")
        return names

    def load(self, epoch: int, rewind: Sequence[Rewind] = ()) -> None:
        """Load the weights of ``epoch``, then each :class:`Rewind`'s layers at its epoch."""
        state = self.state_at(epoch)
        for change in rewind:
            earlier = self.state_at(change.epoch)
            for layer in change.layers:
                for name in self.parameter_names(layer):
                    state[name] = earlier[name]
        self.model.load_state_dict(state)

    def logits(self, zero: Mapping[str, Sequence[int]] | None = None, inputs: torch.Tensor | None = None,
               batch_size: int = 4096) -> np.ndarray:
        """Logits of the probes (or of ``inputs``), with the units ``zero[layer]`` of each recorded layer set to 0.

        Returns
        -------
        ndarray of float32, shape (sample, class)
        """
        inputs = self.inputs if inputs is None else inputs
        with self._zeroed(zero or {}), torch.inference_mode():
            return torch.cat([self.model(inputs[i:i + batch_size]).float().cpu()
                              for i in range(0, len(inputs), batch_size)]).numpy()

    def test_set(self, data_dir: str | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Every evaluated test sample of the run, normalised, and its label, from the run's data prepared again.

        The data are loaded as the run's settings say (``data_dir`` overrides the stored data folder) and
        checked against the store: the probes' indices, the dataset's checksums and the evaluated test labels.

        Raises
        ------
        StoreError
            The data found now differ from those the run was recorded with.
        """
        config = self.config if data_dir is None else self.config.replace(data_dir=data_dir)
        data = prepare_data(config)
        check_same_data(self.view.path, self.view.attrs, data)
        labels = np.asarray(data.dataset.test_labels, dtype=np.int64)
        if not np.array_equal(labels, self.view.evaluation["label"].values):
            raise StoreError(f"the test labels found now differ from those {self.run_dir} evaluated; point --data-dir at "
                             "the original data")
        return to_device_normalized(data.dataset.test_images, data.mean, data.std, self.device), labels

    def mean_abs(self, layer: str) -> np.ndarray:
        """Mean |activation| of each unit (a conv layer's channel, over samples and positions) of a recorded layer,
        after its ReLU for a ReLU layer; shape (unit,)."""
        totals: list[torch.Tensor] = []

        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            out = output.relu() if self.activations[layer] == "relu" else output
            dims = [0, *range(2, out.dim())]
            totals.append(out.abs().float().sum(dim=dims).cpu() / np.prod([out.shape[d] for d in dims[1:]] or [1]))

        handle = dict(self.model.named_modules())[self.modules[layer]].register_forward_hook(hook)
        try:
            self.logits()
        finally:
            handle.remove()
        return (torch.stack(totals).sum(0) / len(self.inputs)).double().numpy()

    @contextlib.contextmanager
    def _zeroed(self, zero: Mapping[str, Sequence[int]]) -> Iterator[None]:
        modules = dict(self.model.named_modules())
        handles = []
        for layer, units in zero.items():
            if layer not in self.modules:
                raise ConfigError(f"cannot ablate {layer!r}: not a recorded layer; choose from {list(self.modules)}")
            index = torch.as_tensor(list(units), dtype=torch.long)

            def hook(module: nn.Module, inputs: Any, output: torch.Tensor, index: torch.Tensor = index) -> torch.Tensor:
                output = output.clone()
                output[:, index.to(output.device)] = 0
                return output

            handles.append(modules[self.modules[layer]].register_forward_hook(hook))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def _n_classes(attrs: Mapping[str, Any], view: StoreView) -> int:
    names = attrs.get("dataset", {}).get("class_names")
    if names:
        return len(names)
    return int(max(view.probes["label"].max(), view.probes["original_label"].max())) + 1


def _from_factory(spec: str, model_args: Mapping[str, Any], factory: Callable[..., Any] | None,
                  run_dir: str | os.PathLike) -> nn.Module:
    """The model from the caller's ``factory``, which must be the factory the run names (never imported from it)."""
    if factory is None:
        raise ConfigError(f"{run_dir} was recorded with the factory {spec}; pass that factory (Python: factory=..., "
                          f"CLI: --model {spec}) to rebuild it")
    given = f"{getattr(factory, '__module__', '')}:{getattr(factory, '__qualname__', '')}"
    if given != spec:
        raise ConfigError(f"{run_dir} was recorded with the factory {spec}, not {given}; pass {spec}")
    built = factory(**model_args)
    if not isinstance(built, nn.Module):
        raise ConfigError(f"factory {spec} returned a {type(built).__name__}, not a torch.nn.Module")
    return built


def accuracies(logits: np.ndarray, view: StoreView) -> np.ndarray:
    """Accuracy of ``logits`` (sample, class) in each of :data:`MEASURES`; shape (measure,), NaN for an empty group."""
    predicted = np.argmax(logits, axis=1)
    group, label, original = (view.probes[k].values for k in ("group", "label", "original_label"))
    masks = {"clean": (group == "clean", label), "noisy_assigned": (group == "noisy", label),
             "noisy_original": (group == "noisy", original), "test": (group == "test", label)}
    return np.array([np.mean(predicted[mask] == truth[mask]) if mask.any() else np.nan
                     for mask, truth in (masks[m] for m in MEASURES)])


def matched_units(mean_abs: np.ndarray, unit: int, rng: np.random.Generator) -> np.ndarray:
    """Random units other than ``unit``, drawn in random order until their mean |activations| add up to at least
    ``mean_abs[unit]`` (all other units when they add up to less)."""
    others = rng.permutation(np.delete(np.arange(len(mean_abs)), unit))
    reached = np.cumsum(mean_abs[others]) >= mean_abs[unit]
    return np.sort(others[: int(np.argmax(reached)) + 1 if reached.any() else len(others)])


def intervene(run_dir: str | os.PathLike, *, epoch: int | None = None, rewind: Sequence[Rewind | str] = (),
              ablate: bool = True, layers: Sequence[str] | None = None, n_null: int = N_NULL, seed: int = 0,
              factory: Callable[..., Any] | None = None, device: str = "cpu", test_set: bool = False,
              data_dir: str | None = None) -> xr.Dataset:
    """Rewind layers and ablate units of a run's model at a recorded epoch; score each on the stored probes.

    Parameters
    ----------
    run_dir : path
        A recorded run (built-in model, or a factory run with ``factory``).
    epoch : int, optional
        Recorded epoch whose weights are intervened on (default: the last).
    rewind : sequence of Rewind or "LAYER[,LAYER]@EPOCH"
        Each is one intervention: its layers take their weights of its (recorded) epoch.
    ablate : bool
        Ablate the large unit of each hidden layer, with ``n_null`` matched random-unit draws as its null.
    layers : sequence of str, optional
        Layers ablated (default: every recorded layer but the last, the logits).
    n_null : int
        Draws of matched random units per layer (:func:`matched_units`).
    seed : int
        Seed of the draws.
    factory, device
        See :class:`Rebuilt`.
    test_set : bool
        Also score every evaluated test sample of the run (measure ``test_set``), from the run's data loaded
        again (:meth:`Rebuilt.test_set`; ``data_dir`` overrides the stored data folder).

    Returns
    -------
    xr.Dataset
        ``baseline_accuracy`` (measure); ``rewind_accuracy`` (rewind, measure) with ``rewind_epoch`` (rewind);
        with ``ablate``: ``ablated_unit``, ``ablated_mean_abs`` (layer), ``ablate_accuracy`` (layer, measure),
        ``null_accuracy`` (layer, draw, measure), ``null_n_units`` (layer, draw) and ``ablate_p_value``
        (layer, measure): ``(1 + #{null accuracy <= ablated accuracy}) / (1 + n_null)``, small when the large
        unit's ablation costs more accuracy than matched random units'.
    """
    rebuilt = Rebuilt(run_dir, factory=factory, device=device)
    view = rebuilt.view
    epoch = rebuilt.epochs[-1] if epoch is None else int(epoch)
    rewinds = [r if isinstance(r, Rewind) else Rewind.parse(r) for r in rewind]
    for change in rewinds:  # every name and epoch is checked before any forward pass
        rebuilt.state_at(change.epoch)
        for layer in change.layers:
            rebuilt.parameter_names(layer)
    if not isinstance(n_null, (int, np.integer)) or n_null < 1:
        raise ConfigError(f"n_null must be a positive integer; got {n_null!r}")
    test = rebuilt.test_set(data_dir) if test_set else None

    def score(zero: Mapping[str, Sequence[int]] | None = None) -> np.ndarray:
        probes = accuracies(rebuilt.logits(zero), view)
        if test is None:
            return probes
        return np.append(probes, np.mean(np.argmax(rebuilt.logits(zero, test[0]), axis=1) == test[1]))

    rebuilt.load(epoch)
    measure_attrs = {"units": "1"}
    ds = xr.Dataset(coords={"measure": [*MEASURES, *([TEST_SET] if test_set else [])]})
    ds["baseline_accuracy"] = ("measure", score(),
                               {"long_name": f"accuracy with the weights of epoch {epoch}", **measure_attrs})
    if rewinds:
        scores = []
        for change in rewinds:
            rebuilt.load(epoch, [change])
            scores.append(score())
        rebuilt.load(epoch)
        ds = ds.assign_coords(rewind=[str(r) for r in rewinds])
        ds["rewind_accuracy"] = (("rewind", "measure"), np.array(scores),
                                 {"long_name": "accuracy with the named layers rewound", **measure_attrs})
        ds["rewind_epoch"] = ("rewind", [r.epoch for r in rewinds], {"long_name": "epoch the layers were rewound to"})
    if ablate:
        ds = ds.merge(_ablations(rebuilt, score, list(layers) if layers is not None else view.layer_names[:-1],
                                 ds["measure"].values.tolist(), n_null, seed))
    described = {**MEASURES, TEST_SET: "every evaluated test sample against its label"}
    return ds.assign_attrs(run=str(view.path), epoch=epoch, n_null=n_null, seed=seed,
                           measures=[f"{k}: {described[k]}" for k in ds["measure"].values.tolist()])


def _ablations(rebuilt: Rebuilt, score: Callable[[Mapping[str, Sequence[int]]], np.ndarray], layers: list[str],
               measures: list[str], n_null: int, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    unit, top_mean, ablated, null, sizes = [], [], [], [], []
    for layer in layers:
        mean_abs = rebuilt.mean_abs(layer)
        top = int(np.argmax(mean_abs))
        unit.append(top)
        top_mean.append(float(mean_abs[top]))
        ablated.append(score({layer: [top]}))
        draws = [matched_units(mean_abs, top, rng) for _ in range(n_null)]
        sizes.append([len(d) for d in draws])
        null.append([score({layer: d}) for d in draws])
    ablated_acc, null_acc = np.array(ablated), np.array(null)
    p_value = (1 + np.sum(null_acc <= ablated_acc[:, None, :] + 1e-12, axis=1)) / (1 + n_null)
    return xr.Dataset(
        {
            "ablated_unit": ("layer", unit, {"long_name": "unit of largest mean |activation| on the probes"}),
            "ablated_mean_abs": ("layer", top_mean, {"long_name": "its mean |activation|", "units": "1"}),
            "ablate_accuracy": (("layer", "measure"), ablated_acc, {"long_name": "accuracy with that unit set to 0", "units": "1"}),
            "null_accuracy": (("layer", "draw", "measure"), null_acc,
                              {"long_name": "accuracy with matched random units set to 0", "units": "1"}),
            "null_n_units": (("layer", "draw"), np.array(sizes), {"long_name": "random units set to 0 in the draw"}),
            "ablate_p_value": (("layer", "measure"), p_value,
                               {"long_name": "rank of the large unit's accuracy among the matched-unit null", "units": "1"}),
        },
        coords={"layer": layers, "draw": np.arange(n_null), "measure": measures},
    )


def save_interventions(ds: xr.Dataset, run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                       figure_png: bytes | None = None) -> Path:
    """Write ``ds`` and its figure atomically into a folder, by default ``RUN/analysis/interventions``.

    The folder must be new, empty or hold actlab results (:func:`actlab.files.staged_dir`); it receives
    ``interventions.zarr`` (read it back with :func:`actlab.analysis.load_results`) and, when ``figure_png`` is
    given, ``interventions.png``. ``actlab analyze RUN`` replaces ``RUN/analysis`` as a whole: run it first.

    Returns
    -------
    Path
        The folder.
    """
    run_dir = Path(run_dir)
    target = Path(out) if out is not None else run_dir / ANALYSIS_DIRNAME / INTERVENTIONS_NAME
    if out is None and not (run_dir / ANALYSIS_DIRNAME).is_dir():
        raise ConfigError(f"{run_dir / ANALYSIS_DIRNAME} does not exist yet; run 'actlab analyze {run_dir}' first, "
                          "or give --out")
    strings = {name: var.astype(object) for name, var in ds.variables.items() if var.dtype.kind == "U"}
    portable = ds.assign_coords({k: v for k, v in strings.items() if k in ds.coords}).assign(
        {k: v for k, v in strings.items() if k not in ds.coords})  # Zarr v3 specifies variable-length strings only
    portable.attrs[ZARR_KIND_ATTR] = "results"
    with staged_dir(target, "results", inputs=[run_dir], allowed_inside=[target]) as built:
        portable.to_zarr(built / RESULTS_NAME, mode="w-", zarr_format=3, consolidated=False,  # CRC32C, as load_results asks
                         encoding={name: {"compressors": default_compressors()} for name in portable.variables})
        if figure_png is not None:
            (built / FIGURE_NAME).write_bytes(figure_png)
    return target
