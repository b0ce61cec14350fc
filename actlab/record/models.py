"""The models: the MLPs of the study, the CNN and ResNet of the double-descent literature, and any
``nn.Module`` from a factory; which layers of a model are recorded, and its parameters as stored."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from actlab.errors import ConfigError
from actlab.record.config import MODELS
from actlab.store import LayerSpec, ParameterSpec


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


# -- any model ---------------------------------------------------------------------------

ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Softsign, nn.Tanhshrink,
    nn.LogSigmoid,
)
"""Module types whose outputs ``layers="auto"`` records (with the last module of the forward pass)."""

BLOCK_MODULES: tuple[type[nn.Module], ...] = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
BLOCK_NAME = re.compile(r"(Block|Bottleneck|EncoderLayer|DecoderLayer)$")
"""A module is a block (residual or transformer) for ``layers="auto"`` when it is one of :data:`BLOCK_MODULES` or its
class name matches this (torchvision's ``BasicBlock`` and ``Bottleneck``, timm's and Hugging Face's ``...Block`` and
``...EncoderLayer``)."""

WEIGHT_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Module types ``layers="auto"`` records when a model has neither activation modules nor blocks (its activations are
functions called in ``forward``)."""


def make_cnn5(in_channels: int, n_classes: int, width: int = 64) -> nn.Sequential:
    """The five-layer CNN of Nakkiran et al. 2019 ("Deep Double Descent"), of width k.

    Four Conv(3x3, stride 1, padding 1)-BatchNorm-ReLU layers of k, 2k, 4k, 8k channels, max-pooled by
    1, 2, 2, 2, then a global max pool (MaxPool 8 in total, 4 on 32x32 images) and a Linear to the classes.
    Submodules are ``conv1, bn1, relu1, ..., conv4, bn4, relu4, pool4, ..., output``.

    Parameters
    ----------
    in_channels : int
    n_classes : int
    width : int
        k.

    Returns
    -------
    nn.Sequential
        Input (batch, channel, height, width), height and width at least 8; output logits (batch, n_classes).
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = in_channels
    for k, factor in enumerate((1, 2, 4, 8), start=1):
        layers[f"conv{k}"] = nn.Conv2d(channels, factor * width, kernel_size=3, stride=1, padding=1, bias=True)
        layers[f"bn{k}"] = nn.BatchNorm2d(factor * width)
        layers[f"relu{k}"] = nn.ReLU()
        if k > 1:
            layers[f"pool{k}"] = nn.MaxPool2d(2)
        channels = factor * width
    layers["global_pool"] = nn.AdaptiveMaxPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["output"] = nn.Linear(channels, n_classes)
    return nn.Sequential(layers)


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016): BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the shortcut.

    The shortcut is the input, or a strided 1x1 conv of the first ReLU's output when the shape changes.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False)
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet18 of width k (Nakkiran et al. 2019): stages of k, 2k, 4k, 8k channels.

    ``conv1`` (3x3), four stages ``layer1..layer4`` of two :class:`PreActBlock` each (strides 1, 2, 2, 2),
    then ``bn``, ``relu``, a global average pool and ``output`` (Linear). Input (batch, channel, height,
    width); output logits (batch, n_classes).
    """

    def __init__(self, in_channels: int, n_classes: int, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        stages, planes = [], width
        for k, factor in enumerate((1, 2, 4, 8)):
            stride = 1 if k == 0 else 2
            stages.append(nn.Sequential(PreActBlock(planes, factor * width, stride), PreActBlock(factor * width, factor * width)))
            planes = factor * width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.output = nn.Linear(planes, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.output(self.flatten(self.pool(self.relu(self.bn(out)))))


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``"package.module:callable"`` (``callable`` may be dotted: ``Class.method``).

    Raises
    ------
    ConfigError
        The module cannot be imported, lacks the attribute, or it is not callable.
    """
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = _import_from_here(module_name)
    except Exception as exc:
        raise ConfigError(f"model {spec!r}: module {module_name!r} cannot be imported ({type(exc).__name__}: {exc}); "
                          "check the name, and that the module lies in the current folder or on PYTHONPATH") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"model {spec!r}: {module_name} has no attribute {attribute!r}; name a callable defined there")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"model {spec!r}: {attribute} is a {type(target).__name__}, not callable; name a function or class")
    return target


def _import_from_here(module_name: str) -> Any:
    """Import ``module_name``; one not found on ``sys.path`` is looked for in the current folder too (as ``python -m``
    finds it), which is on ``sys.path`` for this import only."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        if exc.name != module_name.partition(".")[0] or here in sys.path:
            raise
    sys.path.insert(0, here)
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(here)


def build_model(model: str, model_args: Mapping[str, Any], in_shape: Sequence[int], n_classes: int,
                width: int | Sequence[int]) -> nn.Module:
    """The model a run's settings name: a built-in one, or what the factory ``package.module:callable`` returns.

    Parameters
    ----------
    model : str
        ``mlp3``, ``mlp5``, ``mlp7``, ``cnn5``, ``resnet18k``, or ``package.module:callable``.
    model_args : mapping
        Keyword arguments of the factory (``{}`` for a built-in model).
    in_shape : sequence of int
        Input shape of one sample (channel, height, width).
    n_classes : int
    width : int or sequence of int
        Hidden widths of an MLP; k of ``cnn5`` and ``resnet18k`` (the first value).

    Raises
    ------
    ConfigError
        The factory cannot be loaded or called, or returns something other than an ``nn.Module``.
    """
    widths = [int(width)] if isinstance(width, int) else [int(w) for w in width]
    if model in MODELS:
        return make_mlp(model, int(np.prod(in_shape)), n_classes, widths)
    if model == "cnn5":
        return make_cnn5(int(in_shape[0]), n_classes, widths[0])
    if model == "resnet18k":
        return PreActResNet18(int(in_shape[0]), n_classes, widths[0])
    factory = load_factory(model)
    try:
        built = factory(**model_args)
    except Exception as exc:
        raise ConfigError(f"model {model!r} failed when called with model-args {dict(model_args)} "
                          f"({type(exc).__name__}: {exc}); fix the arguments or the factory") from None
    if not isinstance(built, nn.Module):
        raise ConfigError(f"model {model!r} returned a {type(built).__name__}, not a torch.nn.Module; return the model")
    return built


def _forward_calls(model: nn.Module, sample: torch.Tensor) -> tuple[list[tuple[str, torch.Tensor]], dict[str, int]]:
    """Leaf modules in the order the forward pass of ``sample`` calls them, with their outputs and call counts."""
    calls: list[tuple[str, torch.Tensor]] = []
    counts: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: Any) -> None:
            counts[name] = counts.get(name, 0) + 1
            if counts[name] == 1:
                calls.append((name, output))
        return record

    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(sample)
    except Exception as exc:
        raise ConfigError(f"the model fails on one sample of the data, shape {tuple(sample.shape)} "
                          f"({type(exc).__name__}: {exc}); make the model fit the data") from None
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return calls, counts


def layer_specs(model: nn.Module, sample: torch.Tensor, layers: str | Sequence[str], conv_reduce: str) -> list[LayerSpec]:
    """The layers to record of any model: the named ones, or those ``"auto"`` finds.

    ``"auto"`` records, of the modules called once by the forward pass: every activation module (an MLP's layers, a
    CNN's conv stages, a ResNet's ReLUs); every outermost block (:data:`BLOCK_MODULES`, :data:`BLOCK_NAME`: a residual
    or transformer block) that holds no such activation module, its output being the block's output; where neither
    exists, every Linear and Conv module; and the last module (the head). It prints one line naming each chosen
    layer and why.

    One forward pass of ``sample`` (eval mode, no gradients) finds the order and output shape of each module.
    Each layer is stored under :func:`store_name` (the qualified module name; a ``Sequential`` child's with its class
    appended) with activation ``"identity"``: its output is used as it is. A 4-dim output (sample, channel, y, x)
    makes a conv layer, reduced over (y, x) by ``conv_reduce``; any other output is flattened per sample into a
    dense layer.

    Parameters
    ----------
    model : nn.Module
    sample : Tensor, shape (1, ...)
        One input sample, on the model's device.
    layers : "auto" or sequence of str
        Qualified module names (``model.named_modules()``), recorded in forward order.
    conv_reduce : {"mean", "max", "none"}

    Raises
    ------
    ConfigError
        A named module does not exist, is not called by the forward pass, is called more than once, or does
        not return a tensor.
    """
    calls, counts = _forward_calls(model, sample)
    order = [name for name, _ in calls]
    outputs = dict(calls)
    modules = dict(model.named_modules())
    if layers == "auto":
        reasons = _auto_layers(order, modules, counts, outputs)
        chosen = list(reasons)
        if not chosen:
            raise ConfigError("layers 'auto' found no module to record (the model calls no submodule); name the modules")
        print(f"actlab record: layers auto records {len(chosen)} of the {len(order) - 1} modules the model calls: "
              + "; ".join(f"{store_name(name, modules[name])} ({reason})" for name, reason in reasons.items())
              + "; name others with layers=[...] (--layers)", file=sys.stderr)
    else:
        unknown = [name for name in layers if name not in modules or not name]
        if unknown:
            raise ConfigError(f"layers {unknown} are not submodules of the model; choose from "
                              f"{', '.join(name for name in modules if name)}")
        unused = [name for name in layers if name not in outputs]
        if unused:
            raise ConfigError(f"layers {unused} are not called by the model's forward pass; choose called modules")
        chosen = sorted(set(layers), key=order.index)
    repeated = [name for name in chosen if counts[name] > 1]
    if repeated:
        raise ConfigError(f"modules {repeated} run more than once per forward pass, so their output is not one layer; "
                          "give the model one module per use, or name other layers")
    specs = []
    for name in chosen:
        output = outputs[name]
        if not isinstance(output, torch.Tensor):
            raise ConfigError(f"module {name!r} returns a {type(output).__name__}, not a tensor; name another layer")
        module = modules[name]
        fan_in = int(getattr(module, "in_features", 0) or getattr(module, "in_channels", 0) or 0)
        if output.dim() == 4:
            channels, y, x = (int(s) for s in output.shape[1:])
            specs.append(LayerSpec(name=store_name(name, module), width=channels, fan_in=fan_in, activation="identity",
                                   module=name, kind="conv", reduce=conv_reduce, shape=(channels, y, x) if conv_reduce == "none" else ()))
        else:
            specs.append(LayerSpec(name=store_name(name, module), width=int(np.prod(output.shape[1:])), fan_in=fan_in,
                                   activation="identity", module=name))
    return specs


def store_name(qualified: str, module: nn.Module) -> str:
    """Store name of a recorded module: its qualified name, with its class appended where the name ends in a position
    (a child of ``nn.Sequential`` or ``nn.ModuleList``): ``2`` -> ``2.relu``, ``features.0`` -> ``features.0.conv2d``."""
    return f"{qualified}.{type(module).__name__.lower()}" if qualified.rpartition(".")[2].isdigit() else qualified


def _auto_layers(order: list[str], modules: Mapping[str, nn.Module], counts: Mapping[str, int],
                 outputs: Mapping[str, Any]) -> dict[str, str]:
    """The modules ``layers="auto"`` records, in forward order, each with why (see :func:`layer_specs`)."""
    once = [name for name in order if name and counts[name] == 1 and isinstance(outputs[name], torch.Tensor)]

    def inside(name: str, parent: str) -> bool:
        return name.startswith(f"{parent}.")

    activations = [name for name in once if isinstance(modules[name], ACTIVATION_MODULES)]
    candidates = [name for name in once
                  if (isinstance(modules[name], BLOCK_MODULES) or BLOCK_NAME.search(type(modules[name]).__name__))
                  and not any(inside(activation, name) for activation in activations)]
    blocks = [name for name in candidates if not any(inside(name, other) for other in candidates)]
    reasons = {name: f"{type(modules[name]).__name__} block, its activations are not modules called once"
               for name in blocks}
    reasons.update({name: f"{type(modules[name]).__name__} activation" for name in activations})
    if not reasons:
        reasons = {name: f"{type(modules[name]).__name__}, the model has no activation module"
                   for name in once if isinstance(modules[name], WEIGHT_MODULES)}
    last = next((name for name in reversed(order) if name and not list(modules[name].children())), None)
    if last is not None and last not in reasons and not any(inside(last, block) for block in blocks):
        reasons[last] = "the last module"
    return {name: reasons[name] for name in order if name in reasons}


def parameter_specs(model: nn.Module) -> list[ParameterSpec]:
    """Every state_dict entry of ``model`` (parameters and buffers) as stored: name, shape, NumPy dtype."""
    return [ParameterSpec(name=name, shape=tuple(value.shape), dtype=_numpy_dtype(value.dtype))
            for name, value in model.state_dict().items()]


def _numpy_dtype(dtype: torch.dtype) -> str:
    return "float32" if dtype == torch.bfloat16 else str(torch.empty(0, dtype=dtype).numpy().dtype)


def parameter_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """CPU copies of every state_dict entry of ``model``, by name (bfloat16 as float32)."""
    return {name: (value.float() if value.dtype == torch.bfloat16 else value).detach().cpu().numpy().copy()
            for name, value in model.state_dict().items()}
