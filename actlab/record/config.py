"""Settings of a recording run: :class:`RecordConfig` and the parsers of its text forms.

Torch-free, so that ``actlab --help`` and config validation stay fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from actlab.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MODELS: dict[str, int] = {"mlp3": 2, "mlp5": 4, "mlp7": 6}
"""Model name -> number of hidden ReLU layers."""

DATASETS: tuple[str, ...] = ("cifar10", "digits", "synthetic")
NOISE_MODES: tuple[str, ...] = ("other", "uniform")
NORMALIZATIONS: tuple[str, ...] = ("channel", "none")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
DTYPES: tuple[str, ...] = ("float32", "float16")

DEFAULT_PROBE_SIZE = 1000
"""Probe samples per group when the size is left at its default (clipped to what is available)."""

SCHEDULE_FORMS = "a list '0,1,5,10', 'every:K' or 'log:N'"

SYNTHETIC_DEFAULTS: dict[str, Any] = {"train": 1000, "test": 500, "classes": 10, "shape": (3, 8, 8), "seed": 0}
"""Defaults of ``--synthetic`` (the tiny generated dataset)."""


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
    else:
        try:
            epochs = [int(e) for e in spec]
        except (TypeError, ValueError):
            raise ConfigError(f"record-epochs {spec!r} is malformed; use {SCHEDULE_FORMS}") from None
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
    """One width per hidden layer from ``512`` (all equal) or ``"512,256,..."`` (one each)."""
    if isinstance(spec, int):
        values = [spec]
    elif isinstance(spec, str):
        try:
            values = [int(part) for part in spec.split(",")]
        except ValueError:
            raise ConfigError(f"width {spec!r} is malformed; use one integer or a comma list with one per hidden layer") from None
    else:
        values = [int(v) for v in spec]
    if len(values) == 1:
        values = values * n_hidden
    if len(values) != n_hidden:
        raise ConfigError(f"width lists {len(values)} values but the model has {n_hidden} hidden layers; give one value or {n_hidden}")
    if any(v < 1 for v in values):
        raise ConfigError(f"widths must be positive; got {values}")
    return tuple(values)


def parse_synthetic(spec: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Parameters of the synthetic dataset from ``"train=1000,test=500,classes=10,shape=3x8x8,seed=0"`` or a mapping."""
    result = dict(SYNTHETIC_DEFAULTS)
    if spec is None:
        items: dict[str, Any] = {}
    elif isinstance(spec, str):
        items = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"synthetic {spec!r}: {part!r} is not key=value; use e.g. 'train=1000,test=500,classes=10,shape=3x8x8'")
            items[key.strip()] = value.strip()
    else:
        items = dict(spec)
    unknown = set(items) - set(SYNTHETIC_DEFAULTS)
    if unknown:
        raise ConfigError(f"synthetic has unknown keys {sorted(unknown)}; use {sorted(SYNTHETIC_DEFAULTS)}")
    try:
        for key, value in items.items():
            if key == "shape":
                shape = value.lower().split("x") if isinstance(value, str) else value
                result["shape"] = tuple(int(s) for s in shape)
            else:
                result[key] = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"synthetic {spec!r} is malformed; use e.g. 'train=1000,test=500,classes=10,shape=3x8x8,seed=0'") from None
    if len(result["shape"]) != 3 or min(result["shape"]) < 1:
        raise ConfigError(f"synthetic shape must be CxHxW with positive sizes; got {result['shape']}")
    if result["classes"] < 2 or result["train"] < result["classes"] or result["test"] < 1:
        raise ConfigError(f"synthetic needs classes >= 2, train >= classes and test >= 1; got {items}")
    result["shape"] = list(result["shape"])
    return result


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
    if min(seeds) < 0:
        raise ConfigError(f"seeds {spec!r} holds negative seeds; give seeds >= 0")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds {spec!r} repeats a seed; give each seed once")
    return tuple(seeds)


def _check_ensemble_seeds(config: RecordConfig) -> None:
    """``data_seed`` and ``noise_per_seed`` are valid, and fit ``seeds`` and ``seed``."""
    if config.data_seed is not None and (isinstance(config.data_seed, bool) or not isinstance(config.data_seed, int)
                                         or config.data_seed < 0):
        raise ConfigError(f"data-seed must be an integer >= 0; got {config.data_seed!r}")
    if not isinstance(config.noise_per_seed, bool):
        raise ConfigError(f"noise-per-seed must be true or false; got {config.noise_per_seed!r}")
    if config.seeds is not None and config.seed != 0:
        raise ConfigError(f"seed {config.seed} and seeds {list(config.seeds)} exclude each other; give seeds alone")
    if config.noise_per_seed and config.seeds is None:
        raise ConfigError("noise-per-seed applies to ensembles only; give seeds too, or drop noise-per-seed")
    if config.noise_per_seed and config.data_seed is not None:
        raise ConfigError(f"noise-per-seed draws the data of each replica from its own seed, data-seed {config.data_seed} "
                          "from one seed for all; drop one of them")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _as_floats(name: str, value: Any, count: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {value!r} is malformed; give {count} comma-separated numbers") from None
    if len(values) != count:
        raise ConfigError(f"{name} needs {count} numbers; got {value!r}")
    return values


@dataclass(frozen=True)
class RecordConfig:
    """Every setting of a recording run, validated on construction.

    Field names equal the ``actlab record`` flags with underscores. See
    ``actlab record --help`` for each default and its reason.
    """

    model: str = "mlp7"
    width: int | str | tuple[int, ...] = 512
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
        _check_choice("model", self.model, list(MODELS))
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("noise-mode", self.noise_mode, NOISE_MODES)
        _check_choice("normalize", self.normalize, NORMALIZATIONS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("dtype", self.dtype, DTYPES)
        object.__setattr__(self, "width", parse_widths(self.width, self.n_hidden))
        object.__setattr__(self, "betas", _as_floats("betas", self.betas, 2))
        if self.synthetic is not None or self.dataset == "synthetic":
            object.__setattr__(self, "synthetic", parse_synthetic(self.synthetic))
        for name in ("epochs", "batch_size", "eval_batch_size", "seed", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name.replace('_', '-')} must be an integer; got {value!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("epochs, batch-size and eval-batch-size must be at least 1")
        if self.seed < 0 or self.checkpoint_every < 0:
            raise ConfigError("seed and checkpoint-every must be >= 0")
        if not (isinstance(self.noise, (int, float)) and 0.0 <= self.noise < 1.0):
            raise ConfigError(f"noise must be a rate in [0, 1); got {self.noise!r}")
        if self.lr <= 0 or self.weight_decay < 0 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"need lr > 0, weight-decay >= 0 and betas in [0, 1); got lr={self.lr}, "
                              f"weight-decay={self.weight_decay}, betas={self.betas}")
        for name in ("train_size", "test_size", "probe_clean", "probe_noisy", "probe_test"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"{name.replace('_', '-')} must be a non-negative integer; got {value!r}")
        if self.train_size == 0 or self.test_size == 0:
            raise ConfigError("train-size and test-size must be at least 1")
        schedule = parse_schedule(self.record_epochs, self.epochs)
        if not isinstance(self.record_epochs, str):
            object.__setattr__(self, "record_epochs", tuple(schedule))
        if self.seeds is not None:
            object.__setattr__(self, "seeds", parse_seeds(self.seeds))
        _check_ensemble_seeds(self)

    # -- derived ------------------------------------------------------------------
    @property
    def n_hidden(self) -> int:
        """Number of hidden ReLU layers of the model."""
        return MODELS[self.model]

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
    def run_dir(self) -> Path:
        """``out`` if given, else ``runs/<model>`` (``runs/<model>-<dataset>`` for datasets other than CIFAR-10)."""
        if self.out is not None:
            return Path(self.out)
        name = self.model if self.dataset == "cifar10" else f"{self.model}-{self.dataset}"
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
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True, where: str = "config") -> RecordConfig:
        """Build from a mapping of field names; ``strict`` rejects unknown keys (a typo in a TOML file)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown and strict:
            raise ConfigError(f"{where} has unknown keys {unknown}; use the flag names of 'actlab record' with underscores")
        values = {k: v for k, v in data.items() if k in names}
        for key in ("width", "record_epochs", "betas"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def replace(self, **changes: Any) -> RecordConfig:
        """A copy with some settings changed (validated again)."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown record settings {unknown}; see 'actlab record --help' for the names")
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
