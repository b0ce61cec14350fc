"""The MLPs of the study: flatten, then hidden Linear + ReLU layers, then a Linear to the classes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from actlab.errors import ConfigError
from actlab.record.config import MODELS
from actlab.store import LayerSpec


def make_mlp(model: str, in_features: int, n_classes: int, widths: int | Sequence[int] = 512) -> nn.Sequential:
    """Build ``mlp3``, ``mlp5`` or ``mlp7`` (2, 4 or 6 hidden ReLU layers).

    Submodules are named ``flatten``, ``linear1``, ``relu1``, ..., ``linearK``,
    ``reluK``, ``output``; weights get PyTorch's default initialisation, so
    seed torch before calling for a reproducible model.

    Parameters
    ----------
    model : {"mlp3", "mlp5", "mlp7"}
    in_features : int
        Flattened input size (channel * height * width).
    n_classes : int
    widths : int or sequence of int
        One width for every hidden layer, or one per hidden layer.

    Returns
    -------
    nn.Sequential
        Input (batch, channel, height, width) or (batch, in_features); output logits (batch, n_classes).
    """
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    n_hidden = MODELS[model]
    widths = [int(widths)] * n_hidden if isinstance(widths, int) else [int(w) for w in widths]
    if len(widths) != n_hidden:
        raise ConfigError(f"{model} has {n_hidden} hidden layers but {len(widths)} widths were given; give one or {n_hidden}")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    fan_in = in_features
    for k, width in enumerate(widths, start=1):
        layers[f"linear{k}"] = nn.Linear(fan_in, width)
        layers[f"relu{k}"] = nn.ReLU()
        fan_in = width
    layers["output"] = nn.Linear(fan_in, n_classes)
    return nn.Sequential(layers)


def mlp_layer_specs(model: nn.Module) -> list[LayerSpec]:
    """Store layers of an MLP from :func:`make_mlp`: every Linear, in forward order.

    Hidden Linears become ``hidden1..hiddenK`` (activation relu), the last one
    ``output`` (identity, the logits).
    """
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    specs = []
    for k, (name, module) in enumerate(linears, start=1):
        last = k == len(linears)
        specs.append(LayerSpec(
            name="output" if last else f"hidden{k}", width=module.out_features, fan_in=module.in_features,
            activation="identity" if last else "relu", module=name,
        ))
    return specs


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def layer_parameters(model: nn.Module, specs: Sequence[LayerSpec]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Weight and bias of each captured Linear, by store layer name (tensors, not copies)."""
    return {spec.name: (model.get_submodule(spec.module).weight, model.get_submodule(spec.module).bias) for spec in specs}
