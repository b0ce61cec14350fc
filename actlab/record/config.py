"""Settings of a recording run: :class:`RecordConfig` and the parsers of its text forms.

Torch-free, so that ``actlab --help`` and config validation stay fast. Every
setting is checked by type and range on construction, whatever its source
(flags, a TOML file, Python); a bad one raises a one-line
:class:`~actlab.errors.ConfigError` naming the flag, the value and what to give.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from actlab.errors import ConfigError, clipped_repr
from actlab.location import location

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MODELS: dict[str, int] = {"mlp3": 2, "mlp5": 4, "mlp7": 6}
"""MLP name -> number of hidden ReLU layers."""
CONV_MODELS: tuple[str, ...] = ("cnn5", "resnet18k")
"""Built-in convolutional models of the double-descent literature; ``width`` is their k."""
BUILTIN_MODELS: tuple[str, ...] = (*MODELS, *CONV_MODELS)
INSTANCE_MODEL = "instance"
"""``model`` of a run recorded from an ``nn.Module`` instance handed in from Python (it cannot be rebuilt)."""
FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
"""A model factory: ``package.module:callable``."""
CONV_REDUCTIONS: tuple[str, ...] = ("mean", "max", "none")
AUGMENTATIONS: tuple[str, ...] = ("none", "crop-flip")
CUSTOM_DATASET = "custom"
"""``dataset`` of a run whose data were handed in from Python (``actlab.record(train=..., test=...)``)."""

DATASETS: tuple[str, ...] = ("cifar10", "digits", "synthetic")
"""Datasets actlab loads by name; :data:`CUSTOM_DATASET` marks data handed in from Python."""
NOISE_MODES: tuple[str, ...] = ("other", "uniform")
NORMALIZATIONS: tuple[str, ...] = ("channel", "none")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
DTYPES: tuple[str, ...] = ("float32", "float16")

DEFAULT_PROBE_SIZE = 1000
"""Probe samples per group when the size is left at its default (clipped to what is available)."""

SCHEDULE_FORMS = "a list '0,1,5,10', 'every:K' or 'log:N'"

SYNTHETIC_DEFAULTS: dict[str, Any] = {"train": 1000, "test": 500, "classes": 10, "shape": (3, 8, 8), "seed": 0}
"""Defaults of ``--synthetic`` (the tiny generated dataset)."""

MAX_EPOCHS = 1_000_000
"""Upper bound of ``epochs`` and ``checkpoint-every``: a million epochs of even the digits set take weeks."""
MAX_LR = 10.0
"""Upper bound of the Adam learning rate: Adam moves each weight by about ``lr`` per step, so far beyond 1 every step
throws the weights of a normalised network out of range."""
MAX_WEIGHT_DECAY = 10.0
"""Upper bound of the weight decay (the L2 coefficient added to each gradient); 5e-4 is a typical value."""
MAX_BATCH_SIZE = 2**24
"""Upper bound of ``batch-size`` and ``eval-batch-size`` (16,777,216): far beyond any dataset the recorder reads."""
MAX_WIDTH = 2**16
"""Upper bound of a hidden width (65,536): one hidden-to-hidden weight matrix of that width alone takes 16 GiB."""
MAX_SEED = 2**32 - 1
"""Upper bound of seeds: the range every random generator used (NumPy, torch) accepts."""
MAX_SYNTHETIC_SAMPLES = 1_000_000
"""Upper bound of the synthetic ``train`` and ``test`` sizes: the generator is meant for tests and benchmarks."""
MAX_SYNTHETIC_CLASSES = 10_000
"""Upper bound of the synthetic ``classes``."""
MAX_SYNTHETIC_SIDE = 512
"""Upper bound of each synthetic image dimension (channels, height, width)."""

SYNTHETIC_EXAMPLE = "'train=1000,test=500,classes=10,shape=3x8x8,seed=0'"


# -- checks of single values ------------------------------------------------------------


def _flag(name: str) -> str:
    """The flag spelling of a field name (``batch_size`` -> ``batch-size``)."""
    return name.replace("_", "-")


def _is_int(value: Any) -> bool:
    """Whether ``value`` is an integer proper (a bool or a float with a whole value is not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (not a bool, not a string)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int, high: int | None = None, why: str = "") -> int:
    """``value`` as an ``int`` when it is an integer in [low, high] (no upper end when ``high`` is None).

    Otherwise a ConfigError naming the flag, the value and the range; ``why`` explains the upper end.
    """
    if not _is_int(value) or value < low or (high is not None and value > high):
        expected = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}{why}"
        raise ConfigError(f"{_flag(name)} {value!r} is not {expected}; pass one in that range")
    return int(value)


def _check_number(name: str, value: Any, expected: str, inside: Callable[[float], bool]) -> float:
    """``value`` as a ``float`` when it is a finite number that ``inside`` accepts, else a ConfigError naming the flag.

    ``expected`` says the accepted range in words (``"> 0"``, ``"in [0, 1)"``).
    """
    finite = _is_real(value) and (_is_int(value) or math.isfinite(value))
    if not finite or not inside(value):
        raise ConfigError(f"{_flag(name)} {value!r} is not a finite number {expected}; pass one {expected}")
    return float(value)


def _check_bool(name: str, value: Any) -> bool:
    """``value`` when it is a real bool (the string ``"no"`` is not false, it is an error)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{_flag(name)} {value!r} is not a boolean; write true or false (unquoted in TOML)")
    return value


def _check_path(name: str, value: Any) -> str | None:
    """``value`` as a ``str`` when it is ``None`` or a non-empty path (str or os.PathLike), else a ConfigError."""
    if value is None:
        return None
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text.strip() or "\0" in text:
        raise ConfigError(f"{_flag(name)} {value!r} is not a folder path; give a non-empty string")
    return text


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


# -- parsers of the text forms -----------------------------------------------------------

def parse_schedule(spec: str | Sequence[int], n_epochs: int) -> list[int]:
    """Turn a record-epoch schedule into the sorted list of epochs it names.

    Parameters
    ----------
    spec : str or sequence of int
        ``"0,1,5,10"`` (explicit epochs), ``"every:K"`` (0, K, 2K, ... and the
        last epoch) or ``"log:N"`` (N unique epochs spaced geometrically from 0
        to the last epoch, dense early); a sequence of ints is an explicit list.
    n_epochs : int
        Number of training epochs; epochs run from 0 (initialisation) to ``n_epochs``.

    Returns
    -------
    list of int
        Strictly increasing epochs within [0, n_epochs].
    """
    if isinstance(spec, str):
        text = spec.strip().lower()
        kind, _, arg = text.partition(":")
        if kind in ("every", "log"):
            try:
                number = int(arg)
            except ValueError:
                raise ConfigError(f"record-epochs {spec!r} needs an integer after '{kind}:'; use {SCHEDULE_FORMS}") from None
            if number < 1 or (kind == "log" and number < 2):
                raise ConfigError(f"record-epochs {spec!r} needs {kind}:K with K >= {1 if kind == 'every' else 2}; use {SCHEDULE_FORMS}")
            if kind == "every":
                return sorted(set(range(0, n_epochs + 1, number)) | {n_epochs})
            return log_epochs(number, n_epochs)
        try:
            epochs = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(f"record-epochs {spec!r} is malformed; use {SCHEDULE_FORMS}") from None
    elif isinstance(spec, (list, tuple)) and all(_is_int(e) for e in spec):
        epochs = [int(e) for e in spec]
    else:
        raise ConfigError(f"record-epochs {spec!r} is malformed; use {SCHEDULE_FORMS}")
    if not epochs:
        raise ConfigError(f"record-epochs {spec!r} names no epoch; use {SCHEDULE_FORMS}")
    bad = [e for e in epochs if e < 0 or e > n_epochs]
    if bad:
        raise ConfigError(f"record-epochs {bad} lie outside 0..{n_epochs} (--epochs {n_epochs}); drop them or raise --epochs")
    return sorted(set(epochs))


def log_epochs(n: int, last: int) -> list[int]:
    """``n`` unique integer epochs from 0 to ``last``, geometrically spaced (dense early).

    Each next epoch is the previous one times the ratio that would reach
    ``last`` in the remaining steps, rounded, and at least one more than the
    previous; 0 and ``last`` are always included. All epochs when ``n > last``.
    """
    if n > last:
        return list(range(last + 1))
    epochs = [0]
    current = 0
    for remaining in range(n - 1, 0, -1):
        base = max(current, 1)
        step = round(base * (last / base) ** (1.0 / remaining))
        current = min(max(current + 1, step), last - (remaining - 1))
        epochs.append(current)
    return epochs


def parse_widths(spec: int | str | Sequence[int], n_hidden: int) -> tuple[int, ...]:
    """One width per hidden layer from ``512`` (all equal) or ``"512,256,..."`` / ``[512, 256, ...]`` (one each).

    Each width is an integer from 1 to :data:`MAX_WIDTH`; anything else raises ConfigError.
    """
    if _is_int(spec):
        values = [spec]
    elif isinstance(spec, str):
        try:
            values = [int(part) for part in spec.split(",")]
        except ValueError:
            raise ConfigError(f"width {spec!r} is malformed; use one integer or a comma list with one per hidden layer") from None
    elif isinstance(spec, (list, tuple)) and spec and all(_is_int(v) for v in spec):
        values = list(spec)
    else:
        raise ConfigError(f"width {spec!r} is malformed; use one integer or a list with one integer per hidden layer")
    if len(values) == 1:
        values = values * n_hidden
    if len(values) != n_hidden:
        raise ConfigError(f"width lists {len(values)} values but the model has {n_hidden} hidden layers; give one value or {n_hidden}")
    if not all(1 <= v <= MAX_WIDTH for v in values):
        raise ConfigError(f"width {spec!r} is out of range; give widths from 1 to {MAX_WIDTH} (wider layers do not fit in memory)")
    return tuple(int(v) for v in values)


def parse_synthetic(spec: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Parameters of the synthetic dataset from ``"train=1000,test=500,classes=10,shape=3x8x8,seed=0"`` or a mapping.

    ``train`` and ``test`` run from ``classes`` to :data:`MAX_SYNTHETIC_SAMPLES`, ``classes`` from 2 to
    :data:`MAX_SYNTHETIC_CLASSES`, ``seed`` from 0 to :data:`MAX_SEED`, and ``shape`` is CxHxW with
    sides from 1 to :data:`MAX_SYNTHETIC_SIDE`; anything else raises ConfigError.
    """
    if spec is None:
        items: dict[str, Any] = {}
    elif isinstance(spec, str):
        items = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"synthetic {spec!r}: {part!r} is not key=value; use e.g. {SYNTHETIC_EXAMPLE}")
            items[key.strip()] = value.strip()
    elif isinstance(spec, Mapping):
        items = dict(spec)
    else:
        raise ConfigError(f"synthetic {spec!r} is malformed; use e.g. {SYNTHETIC_EXAMPLE} or a TOML table with those keys")
    unknown = set(items) - set(SYNTHETIC_DEFAULTS)
    if unknown:
        raise ConfigError(f"synthetic has unknown keys {sorted(unknown, key=str)}; use {sorted(SYNTHETIC_DEFAULTS)}")
    result = dict(SYNTHETIC_DEFAULTS)
    for key, value in items.items():
        if key == "shape":
            result["shape"] = _synthetic_shape(value)
        else:
            result[key] = _synthetic_int(key, value)
    limits = {"classes": (2, MAX_SYNTHETIC_CLASSES), "train": (result["classes"], MAX_SYNTHETIC_SAMPLES),
              "test": (result["classes"], MAX_SYNTHETIC_SAMPLES), "seed": (0, MAX_SEED)}
    for key, (low, high) in limits.items():
        if not low <= result[key] <= high:
            raise ConfigError(f"synthetic {key}={result[key]} is out of range (classes={result['classes']}); "
                              f"give {key} from {low} to {high}")
    result["shape"] = list(result["shape"])
    return result


def _synthetic_int(key: str, value: Any) -> int:
    """One integer parameter of the synthetic spec: an int, or its decimal text."""
    if _is_int(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigError(f"synthetic {key}={value!r} is not an integer; use e.g. {SYNTHETIC_EXAMPLE}")


def parse_seeds(spec: str | Sequence[int]) -> tuple[int, ...]:
    """The seeds of an ensemble from ``"0-7"``, ``"0,1,5"`` (or a mix, ``"0-3,8"``) or a sequence of ints.

    Returns
    -------
    tuple of int
        Distinct non-negative seeds in the order given.
    """
    forms = "use a range '0-7', a list '0,1,5' or both '0-3,8'"
    if isinstance(spec, str):
        seeds: list[int] = []
        try:
            for part in filter(None, (p.strip() for p in spec.split(","))):
                first, dash, last = part.partition("-")
                if dash and int(last) < int(first):
                    raise ValueError
                seeds.extend(range(int(first), int(last) + 1) if dash else [int(first)])
        except ValueError:
            raise ConfigError(f"seeds {spec!r} is malformed; {forms}") from None
    else:
        if isinstance(spec, (bool, int)) or not all(isinstance(s, int) and not isinstance(s, bool) for s in spec):
            raise ConfigError(f"seeds {spec!r} must be a list of integers; {forms}")
        seeds = list(spec)
    if not seeds:
        raise ConfigError(f"seeds {spec!r} names no seed; {forms}")
    if min(seeds) < 0 or max(seeds) > MAX_SEED:
        raise ConfigError(f"seeds {spec!r} holds seeds outside 0..{MAX_SEED}; give seeds in that range")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds {spec!r} repeats a seed; give each seed once")
    return tuple(seeds)


def _check_ensemble_seeds(config: RecordConfig) -> None:
    """``data_seed`` and ``noise_per_seed`` are valid, and fit ``seeds`` and ``seed``."""
    if config.data_seed is not None:
        _check_int("data_seed", config.data_seed, 0, MAX_SEED)
    _check_bool("noise_per_seed", config.noise_per_seed)
    if config.seeds is not None and config.seed != 0:
        raise ConfigError(f"seed {config.seed} and seeds {list(config.seeds)} exclude each other; give seeds alone")
    if config.noise_per_seed and config.seeds is None:
        raise ConfigError("noise-per-seed applies to ensembles only; give seeds too, or drop noise-per-seed")
    if config.noise_per_seed and config.data_seed is not None:
        raise ConfigError(f"noise-per-seed draws the data of each replica from its own seed, data-seed {config.data_seed} "
                          "from one seed for all; drop one of them")


def _synthetic_shape(value: Any) -> tuple[int, ...]:
    """The synthetic image shape from ``"3x8x8"`` or ``[3, 8, 8]``: three sides from 1 to MAX_SYNTHETIC_SIDE."""
    parts = value.lower().split("x") if isinstance(value, str) else value
    try:
        shape = tuple(int(p) if isinstance(p, str) else p for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or not all(_is_int(side) and 1 <= side <= MAX_SYNTHETIC_SIDE for side in shape):
        raise ConfigError(f"synthetic shape {value!r} is malformed; give CxHxW with sides from 1 to {MAX_SYNTHETIC_SIDE}, e.g. 3x8x8")
    return tuple(int(side) for side in shape)


def _check_model(value: Any) -> str:
    """A built-in model name, ``package.module:callable``, or :data:`INSTANCE_MODEL`."""
    if isinstance(value, str) and (value in BUILTIN_MODELS or value == INSTANCE_MODEL or FACTORY_PATTERN.match(value)):
        return value
    raise ConfigError(f"unknown model {value!r}; choose one of {', '.join(BUILTIN_MODELS)} or name a factory "
                      "'package.module:callable'")


def _too_big(exc: Exception) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else "an integer with too many digits"


def _check_model_args(value: Any, model: str) -> dict[str, Any]:
    """The factory's keyword arguments from a JSON object (text) or a mapping with string keys."""
    shown = clipped_repr(value, 60)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model-args {shown} is not valid JSON ({exc.msg}); give an object like '{{\"width\": 64}}'") from None
        except (ValueError, RecursionError) as exc:  # an integer of more than 4,300 digits; nesting deeper than Python's stack
            raise ConfigError(f"model-args {shown} cannot be read ({_too_big(exc)}); give plain numbers and shallow "
                              "objects") from None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"model-args {shown} is not a JSON object; give one like '{{\"width\": 64}}'")
    try:
        value = json.loads(json.dumps(dict(value), allow_nan=False))
    except RecursionError:
        raise ConfigError(f"model-args {shown} is nested too deeply; give shallow objects") from None
    except (TypeError, ValueError):
        raise ConfigError(f"model-args {shown} holds values JSON cannot store; use numbers, strings, lists and objects") from None
    if value and not FACTORY_PATTERN.match(model):
        raise ConfigError(f"model-args apply to a factory model 'package.module:callable', not to {model}; drop them")
    return value


def _check_layers(value: Any) -> str | tuple[str, ...] | None:
    """``None`` (the model's default), ``"auto"``, or module names from a comma list or a sequence of strings."""
    if value is None or value == "auto":
        return value
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if (not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value)
            or len(set(value)) != len(value)):
        raise ConfigError(f"layers {value!r} is malformed; give 'auto' or distinct module names 'layer1.0.relu1,fc'")
    return tuple(value)


def _check_betas(value: Any) -> tuple[float, float]:
    """Adam's betas from ``"0.9,0.999"`` or a pair of numbers, each finite in [0, 1)."""
    if isinstance(value, str):
        try:
            values: Any = tuple(float(v) for v in value.split(","))
        except ValueError:
            values = ()
    else:
        values = tuple(value) if isinstance(value, (list, tuple)) else ()
    finite = all(_is_real(v) and (_is_int(v) or math.isfinite(v)) for v in values)
    if len(values) != 2 or not finite or not all(0.0 <= v < 1.0 for v in values):
        raise ConfigError(f"betas {value!r} is not two finite numbers in [0, 1); pass e.g. 0.9,0.999")
    return float(values[0]), float(values[1])


@dataclass(frozen=True)
class RecordConfig:
    """Every setting of a recording run, validated on construction.

    Field names equal the ``actlab record`` flags with underscores. See
    ``actlab record --help`` for each default and its reason. After
    construction ``width`` holds one width per hidden layer (a tuple),
    ``betas`` a pair of floats and paths are strings; numbers are plain
    ``int`` and ``float``, so :meth:`to_dict` is JSON-ready.
    """

    model: str = "mlp7"
    model_args: str | dict[str, Any] | None = None
    width: int | str | tuple[int, ...] = 512
    layers: str | tuple[str, ...] | None = None
    conv_reduce: str = "mean"
    augment: str = "none"
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = True
    synthetic: str | dict[str, Any] | None = None
    train_size: int | None = None
    test_size: int | None = None
    noise: float = 0.3
    noise_mode: str = "other"
    normalize: str = "channel"
    epochs: int = 300
    batch_size: int = 128
    lr: float = 1e-4
    betas: tuple[float, float] | str = (0.9, 0.999)
    weight_decay: float = 0.0
    seed: int = 0
    seeds: str | tuple[int, ...] | None = None
    data_seed: int | None = None
    noise_per_seed: bool = False
    device: str = "auto"
    record_epochs: str | tuple[int, ...] = "log:40"
    probe_clean: int | None = None
    probe_noisy: int | None = None
    probe_test: int | None = None
    dtype: str = "float32"
    eval_batch_size: int = 4096
    cuda_graphs: bool = True
    flush_denormal: bool = True
    checkpoint_every: int = 10
    out: str | None = None
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, (*DATASETS, CUSTOM_DATASET))
        _check_choice("conv-reduce", self.conv_reduce, CONV_REDUCTIONS)
        _check_choice("augment", self.augment, AUGMENTATIONS)
        _check_choice("noise-mode", self.noise_mode, NOISE_MODES)
        _check_choice("normalize", self.normalize, NORMALIZATIONS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("dtype", self.dtype, DTYPES)
        model = _check_model(self.model)
        checked: dict[str, Any] = {
            "model": model,
            "model_args": _check_model_args({} if self.model_args is None else self.model_args, model),
            "layers": _check_layers(self.layers),
            "width": parse_widths(self.width, MODELS.get(model, 1)),
            "betas": _check_betas(self.betas),
            "data_dir": _check_path("data_dir", self.data_dir),
            "out": _check_path("out", self.out),
            "noise": _check_number("noise", self.noise, "in [0, 1)", lambda v: 0.0 <= v < 1.0),
            "lr": _check_number("lr", self.lr, f"in (0, {MAX_LR:g}]", lambda v: 0.0 < v <= MAX_LR),
            "weight_decay": _check_number("weight_decay", self.weight_decay, f"in [0, {MAX_WEIGHT_DECAY:g}]",
                                          lambda v: 0.0 <= v <= MAX_WEIGHT_DECAY),
            "epochs": _check_int("epochs", self.epochs, 1, MAX_EPOCHS, " (a million epochs would run for weeks)"),
            "checkpoint_every": _check_int("checkpoint_every", self.checkpoint_every, 0, MAX_EPOCHS, " (the bound of epochs)"),
            "batch_size": _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE, " (2**24, beyond any dataset)"),
            "eval_batch_size": _check_int("eval_batch_size", self.eval_batch_size, 1, MAX_BATCH_SIZE, " (2**24, beyond any dataset)"),
            "seed": _check_int("seed", self.seed, 0, MAX_SEED, " (2**32 - 1, what every random generator accepts)"),
        }
        for name in ("download", "overwrite", "progress", "cuda_graphs", "flush_denormal"):
            checked[name] = _check_bool(name, getattr(self, name))
        for name, low in (("train_size", 1), ("test_size", 1), ("probe_clean", 0), ("probe_noisy", 0), ("probe_test", 0)):
            if getattr(self, name) is not None:
                checked[name] = _check_int(name, getattr(self, name), low)  # the dataset bounds it: prepare_data
        if self.synthetic is not None or self.dataset == "synthetic":
            checked["synthetic"] = parse_synthetic(self.synthetic)
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        schedule = parse_schedule(self.record_epochs, self.epochs)
        if not isinstance(self.record_epochs, str):
            object.__setattr__(self, "record_epochs", tuple(schedule))
        if self.seeds is not None:
            object.__setattr__(self, "seeds", parse_seeds(self.seeds))
            if self.model not in MODELS or self.layers is not None or self.augment != "none":
                raise ConfigError(f"seeds trains MLP ensembles of their default layers only, not model {self.model} "
                                  "with layers or augment; record one seed per run with --seed")
        _check_ensemble_seeds(self)

    # -- derived ------------------------------------------------------------------
    @property
    def n_hidden(self) -> int:
        """Number of hidden ReLU layers of an MLP; 1 (the one width k) for any other model."""
        return MODELS.get(self.model, 1)

    @property
    def is_factory(self) -> bool:
        """Whether the model comes from a factory ``package.module:callable``."""
        return bool(FACTORY_PATTERN.match(self.model))

    @property
    def schedule(self) -> list[int]:
        """The recorded epochs, resolved."""
        return parse_schedule(self.record_epochs, self.epochs)

    @property
    def resolved_data_seed(self) -> int:
        """Seed of the subset, noise and probe draws: ``data_seed``, else the first of ``seeds``, else ``seed``."""
        if self.data_seed is not None:
            return self.data_seed
        return self.seeds[0] if self.seeds else self.seed

    @property
    def run_dir(self) -> Path | str:
        """``out`` if given (a URL stays one, :func:`actlab.location.location`), else ``runs/<model>``
        (``runs/<model>-<dataset>`` for datasets other than CIFAR-10; a factory's callable name for ``<model>``)."""
        if self.out is not None:
            return location(self.out)
        model = self.model.rpartition(":")[2]  # a factory's callable
        name = model if self.dataset == "cifar10" else f"{model}-{self.dataset}"
        return Path("runs") / name

    @property
    def resolved_data_dir(self) -> Path:
        """``data_dir``, else ``$ACTLAB_DATA``, else ``./data``."""
        return Path(self.data_dir or os.environ.get("ACTLAB_DATA") or "data")

    # -- conversion ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (the ``config`` attribute of a store, minus environment)."""
        data = asdict(self)
        data["width"] = list(self.width)
        data["betas"] = list(self.betas)
        if not isinstance(self.record_epochs, str):
            data["record_epochs"] = list(self.record_epochs)
        if self.seeds is not None:
            data["seeds"] = list(self.seeds)
        if isinstance(self.layers, tuple):
            data["layers"] = list(self.layers)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True, where: str = "config") -> RecordConfig:
        """Build from a mapping of field names; ``strict`` rejects unknown keys (a typo in a TOML file)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown and strict:
            raise ConfigError(f"{where} has unknown keys {unknown}; use the flag names of 'actlab record' with underscores")
        values = {k: v for k, v in data.items() if k in names}
        for key in ("width", "record_epochs", "betas", "layers"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def replace(self, **changes: Any) -> RecordConfig:
        """A copy with some settings changed (validated again).

        Changing ``model`` without ``width`` keeps a width shared by all hidden
        layers (so ``RecordConfig().replace(model="mlp3")`` has two layers of
        512); a list of distinct widths stays and must then fit the new model.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown record settings {unknown}; see 'actlab record --help' for the names")
        if "model" in changes and "model_args" not in changes and not FACTORY_PATTERN.match(str(changes["model"])):
            changes["model_args"] = None  # a factory's arguments do not follow it to another model
        if "model" in changes and "width" not in changes and len(set(self.width)) == 1:
            changes["width"] = self.width[0]  # one shared width follows the model to its own number of layers
        return replace(self, **changes)


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``--config`` TOML file into a mapping of setting name -> value (keys with ``-`` become ``_``)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}); fix the file") from None
    result = {key.replace("-", "_"): value for key, value in data.items()}
    if "synthetic" in result and isinstance(result["synthetic"], dict):
        result["synthetic"] = dict(result["synthetic"])
    return result
