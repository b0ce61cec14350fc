"""Datasets, label noise, normalisation statistics and probe selection (NumPy only).

Images stay uint8 ``(N, C, H, W)`` with integer labels; the trainer turns them
into normalised float tensors once. Every random choice takes an explicit
seed and is class-stratified where the class balance matters.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import pickle
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actlab.errors import ConfigError, DataError

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_BIN_DIRNAME = "cifar-10-batches-bin"
CIFAR10_PY_DIRNAME = "cifar-10-batches-py"
CIFAR10_BIN_MD5: dict[str, str] = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}
"""MD5 sums of the official binary CIFAR-10 files (``cifar-10-binary.tar.gz`` contents)."""

CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32
DIGITS_TEST_FRACTION = 0.2
"""Fraction of each digit class held out as the test set."""
DIGITS_SPLIT_SEED = 0
"""Fixed seed of the digits train/test split, so every run sees the same test set (like CIFAR-10's fixed one)."""

# Stream identifiers: each random choice of a run draws from its own stream of the run seed.
_STREAM_SUBSET, _STREAM_NOISE, _STREAM_PROBES, _STREAM_TEST_SUBSET = 1, 2, 3, 4


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """Independent NumPy generator for one purpose (``stream``) of a run seed."""
    return np.random.default_rng([int(seed), int(stream)])


VECTORS = "vectors (sample, feature), stored as (sample, feature, 1, 1)"
"""``dataset.x`` of data handed in as vectors: the model is called on (batch, feature)."""


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image classification dataset held in memory.

    Attributes
    ----------
    name : str
    train_images, test_images : ndarray of uint8, shape (sample, channel, height, width)
    train_labels, test_labels : ndarray of int64, shape (sample,)
    class_names : tuple of str
    description : dict
        JSON-ready provenance: source path, file checksums, split.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def takes_vectors(self) -> bool:
        """Whether the samples are vectors (sample, feature), kept as images (sample, feature, 1, 1)."""
        return self.description.get("x") == VECTORS

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: name, class names, sizes, shape and provenance."""
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "n_train": int(len(self.train_labels)),
            "n_test": int(len(self.test_labels)),
            "image_shape": list(self.image_shape),
            **self.description,
        }


# -- loading ---------------------------------------------------------------------------


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    synthetic: Mapping[str, Any] | None = None,
) -> ImageDataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : {"cifar10", "digits", "synthetic"}
    data_dir : path, optional
        Where CIFAR-10 lives (or is downloaded to); default ``$ACTLAB_DATA``, else ``./data``.
    download : bool
        Let torchvision download CIFAR-10 into ``data_dir`` when no copy is found.
    synthetic : mapping, optional
        Keyword arguments of :func:`make_synthetic` (keys train, test, classes, shape, seed).

    Returns
    -------
    ImageDataset
    """
    if name == "cifar10":
        return load_cifar10(data_dir, download=download)
    if name == "digits":
        return load_digits()
    if name == "synthetic":
        params = dict(synthetic or {})
        return make_synthetic(
            n_train=int(params.get("train", 1000)), n_test=int(params.get("test", 500)),
            n_classes=int(params.get("classes", 10)), shape=tuple(params.get("shape", (3, 8, 8))),
            seed=int(params.get("seed", 0)),
        )
    raise ConfigError(f"unknown dataset {name!r}; choose one of cifar10, digits, synthetic")


def md5sum(path: Path, chunk: int = 1 << 22) -> str:
    """MD5 hex digest of a file."""
    digest = hashlib.md5()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _cifar_bin_dir(root: Path) -> Path | None:
    for candidate in (root / CIFAR10_BIN_DIRNAME, root):
        if (candidate / "data_batch_1.bin").is_file():
            return candidate
    return None


def _cifar_py_dir(root: Path) -> Path | None:
    for candidate in (root / CIFAR10_PY_DIRNAME, root):
        if (candidate / "data_batch_1").is_file() and (candidate / "test_batch").is_file():
            return candidate
    return None


def load_cifar10(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> ImageDataset:
    """CIFAR-10 from the official binary files, verified against their published MD5 sums.

    Looks in ``data_dir`` (default ``$ACTLAB_DATA``, else ``./data``) for
    ``cifar-10-batches-bin/``, then for torchvision's ``cifar-10-batches-py/``;
    without either it lets torchvision download the latter (when ``download``).
    """
    root = Path(data_dir or os.environ.get("ACTLAB_DATA") or "data")
    bin_dir = _cifar_bin_dir(root)
    if bin_dir is not None:
        return _read_cifar_bin(bin_dir)
    py_dir = _cifar_py_dir(root)
    if py_dir is None and download:
        _download_cifar_py(root)
        py_dir = _cifar_py_dir(root)
    if py_dir is None:
        raise DataError(
            f"CIFAR-10 not found in {root.resolve()} (looked for {CIFAR10_BIN_DIRNAME}/ and {CIFAR10_PY_DIRNAME}/"
            f"{'' if download else ', download disabled'}); pass --data-dir DIR or set ACTLAB_DATA to the folder holding {CIFAR10_BIN_DIRNAME}/"
        )
    return _read_cifar_py(py_dir)


def _read_cifar_bin(folder: Path) -> ImageDataset:
    checksums = {}
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for filename, expected in CIFAR10_BIN_MD5.items():
        path = folder / filename
        if not path.is_file():
            raise DataError(f"{path} is missing from the CIFAR-10 binary set; restore the file or point --data-dir elsewhere")
        actual = md5sum(path)
        if actual != expected:
            raise DataError(f"{path} has MD5 {actual}, expected {expected}; the file is damaged, replace it")
        checksums[filename] = actual
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size % CIFAR10_RECORD_BYTES:
            raise DataError(f"{path} is not a whole number of CIFAR-10 records; replace the file")
        records = raw.reshape(-1, CIFAR10_RECORD_BYTES)
        parts[filename] = (records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64))
    train = [parts[f"data_batch_{i}.bin"] for i in range(1, 6)]
    return ImageDataset(
        name="cifar10",
        train_images=np.ascontiguousarray(np.concatenate([p[0] for p in train])),
        train_labels=np.concatenate([p[1] for p in train]),
        test_images=np.ascontiguousarray(parts["test_batch.bin"][0]),
        test_labels=parts["test_batch.bin"][1],
        class_names=CIFAR10_CLASSES,
        description={"source": str(folder.resolve()), "format": "cifar-10 binary", "checksums": {"md5": checksums}},
    )


def _read_cifar_py(folder: Path) -> ImageDataset:
    from torchvision.datasets import CIFAR10  # lazily: only for torchvision's copy

    checksums = {}
    parts = {}
    for filename, expected in CIFAR10.train_list + CIFAR10.test_list:
        path = folder / filename
        if not path.is_file() or md5sum(path) != expected:
            raise DataError(f"{path} is missing or fails its MD5 check; delete {folder} to download again, or pass --data-dir")
        checksums[filename] = expected
        with path.open("rb") as fh:
            batch = pickle.load(fh, encoding="latin1")
        parts[filename] = (np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(batch["labels"], dtype=np.int64))
    train = [parts[name] for name, _ in CIFAR10.train_list]
    test = parts[CIFAR10.test_list[0][0]]
    return ImageDataset(
        name="cifar10",
        train_images=np.ascontiguousarray(np.concatenate([p[0] for p in train])),
        train_labels=np.concatenate([p[1] for p in train]),
        test_images=test[0],
        test_labels=test[1],
        class_names=CIFAR10_CLASSES,
        description={"source": str(folder.resolve()), "format": "torchvision cifar-10 python", "checksums": {"md5": checksums}},
    )


def _download_cifar_py(root: Path) -> None:
    """Let torchvision download CIFAR-10 into ``root``; a failed attempt leaves nothing behind.

    On failure every entry the attempt added to ``root`` is removed, and so are
    the folders it created (``root`` and missing parents); a folder that
    existed before is never removed.
    """
    created = [folder for folder in (root, *root.parents) if not folder.exists()]  # deepest first
    before = set(root.iterdir()) if root.is_dir() else set()
    try:
        root.mkdir(parents=True, exist_ok=True)
        _fetch_cifar_py(root)
    except Exception as exc:  # no network, no permission, ...
        _undo_download(root, before, created)
        raise DataError(
            f"CIFAR-10 not found in {root.resolve()} and the download failed ({type(exc).__name__}: {exc}); "
            f"pass --data-dir DIR or set ACTLAB_DATA to the folder holding {CIFAR10_BIN_DIRNAME}/"
        ) from None


def _fetch_cifar_py(root: Path) -> None:
    """torchvision's download of the python CIFAR-10 (archive and ``cifar-10-batches-py/``) into the folder ``root``."""
    from torchvision.datasets import CIFAR10

    CIFAR10(root=str(root), train=True, download=True)


def _undo_download(root: Path, before: set[Path], created: list[Path]) -> None:
    """Remove what a failed download made: entries of ``root`` not in ``before``, then the ``created`` folders, deepest first."""
    if root.is_dir():
        for entry in set(root.iterdir()) - before:
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    for folder in created:
        with contextlib.suppress(OSError):  # not empty: something else lives there now, keep it
            folder.rmdir()


def load_digits() -> ImageDataset:
    """scikit-learn's bundled 8x8 digits: 1 channel, values 0..16 scaled to uint8 0..255.

    Split into train and test with :data:`DIGITS_TEST_FRACTION` of every class
    held out, chosen with the fixed :data:`DIGITS_SPLIT_SEED`.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    test = stratified_subset(labels, int(round(DIGITS_TEST_FRACTION * len(labels))), seed=DIGITS_SPLIT_SEED)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return ImageDataset(
        name="digits",
        train_images=images[train],
        train_labels=labels[train],
        test_images=images[test],
        test_labels=labels[test],
        class_names=tuple(str(d) for d in range(10)),
        description={"source": "sklearn.datasets.load_digits", "test_fraction": DIGITS_TEST_FRACTION,
                     "split_seed": DIGITS_SPLIT_SEED, "scaling": "round(value * 255 / 16)"},
    )


def make_synthetic(
    n_train: int = 1000,
    n_test: int = 500,
    n_classes: int = 10,
    shape: tuple[int, ...] = (3, 8, 8),
    seed: int = 0,
) -> ImageDataset:
    """Tiny generated dataset: one random pattern per class, mixed half-and-half with uniform noise.

    Classes are balanced (round robin); images are uint8 ``(N, *shape)``.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0, 255, size=(n_classes, *shape))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
        noise = rng.uniform(0, 255, size=(n, *shape))
        images = np.rint(0.5 * prototypes[labels] + 0.5 * noise).astype(np.uint8)
        return images, labels

    train_images, train_labels = draw(n_train)
    test_images, test_labels = draw(n_test)
    return ImageDataset(
        name="synthetic",
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=tuple(f"class{k}" for k in range(n_classes)),
        description={"source": "actlab.record.data.make_synthetic", "seed": seed,
                     "generator": "0.5 * class prototype + 0.5 * uniform noise"},
    )


def _as_array(value: Any) -> np.ndarray:
    """A NumPy copy of an array or tensor (a torch tensor on any device, detached)."""
    for method in ("detach", "cpu"):
        if hasattr(value, method):
            value = getattr(value, method)()
    return np.asarray(value)


def _split_arrays(split: Any, name: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Images and labels of one split handed in from Python (an ``(x, y)`` pair, or a dataset of ``(x, y)`` items),
    and whether ``x`` came as vectors (sample, feature), returned as images (sample, feature, 1, 1)."""
    if isinstance(split, (tuple, list)) and len(split) == 2:
        images, labels = _as_array(split[0]), _as_array(split[1])
    elif hasattr(split, "__len__") and hasattr(split, "__getitem__"):
        items = [split[i] for i in range(len(split))]
        if not items or not all(isinstance(item, (tuple, list)) and len(item) >= 2 for item in items):
            raise ConfigError(f"{name} is a dataset whose items are not (x, y) pairs, or it is empty; give (x, y) tensors")
        images = np.stack([_as_array(item[0]) for item in items])
        labels = np.asarray([int(_as_array(item[1])) for item in items])
    else:
        raise ConfigError(f"{name} is a {type(split).__name__}; give a pair (x, y) of tensors or a dataset of (x, y) items")
    vectors = images.ndim == 2
    if vectors:  # one channel per feature, so "channel" normalisation standardises each feature
        images = images[:, :, np.newaxis, np.newaxis]
    if images.ndim != 4 or len(images) != len(labels) or labels.ndim != 1 or not len(labels):
        raise ConfigError(f"{name} has x of shape {images.shape} and y of shape {labels.shape}; give x as images "
                          "(sample, channel, height, width) or vectors (sample, feature), and y as one integer label "
                          "per sample")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating) or not np.all(np.isfinite(images)):
            raise ConfigError(f"{name} x has dtype {images.dtype}; give uint8 pixels (0-255) or finite floats")
        images = images.astype(np.float32)
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ConfigError(f"{name} y holds {labels.dtype} values down to {labels.min()}; give integer labels 0..classes-1")
    return np.ascontiguousarray(images), labels.astype(np.int64), vectors


def custom_dataset(train: Any, test: Any) -> ImageDataset:
    """A dataset from data handed in from Python (``actlab.record(train=..., test=...)``).

    Parameters
    ----------
    train, test : (x, y) or dataset of (x, y) items
        ``x`` images (sample, channel, height, width): uint8 pixels 0-255 (normalised like the built-in
        datasets) or floats (taken as they are, then normalised per ``normalize``); or float vectors (sample,
        feature), stored as images (sample, feature, 1, 1) (``normalize="channel"`` standardises each feature) and
        handed to the model as (batch, feature); ``y`` integer labels.
        Tensors, arrays, or a ``torch.utils.data.Dataset`` (any object with ``len`` and indexing).

    Returns
    -------
    ImageDataset
        Named ``custom``; classes ``0`` .. largest label; ``description.checksums`` holds the MD5 of each
        split's images and labels, which ``--resume`` compares.
    """
    train_images, train_labels, train_vectors = _split_arrays(train, "train")
    test_images, test_labels, test_vectors = _split_arrays(test, "test")
    if train_vectors != test_vectors:
        raise ConfigError("train x and test x differ in kind (one vectors, one images); give both splits the same kind")
    if train_images.shape[1:] != test_images.shape[1:] or train_images.dtype != test_images.dtype:
        raise ConfigError(f"train x is {train_images.dtype} {train_images.shape[1:]} per sample but test x is "
                          f"{test_images.dtype} {test_images.shape[1:]}; give both splits the same kind of images")
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    checksums = {name: hashlib.md5(np.ascontiguousarray(array).tobytes()).hexdigest() for name, array in (
        ("train_images", train_images), ("train_labels", train_labels), ("test_images", test_images),
        ("test_labels", test_labels))}
    return ImageDataset(name="custom", train_images=train_images, train_labels=train_labels, test_images=test_images,
                        test_labels=test_labels, class_names=tuple(str(k) for k in range(n_classes)),
                        description={"source": "handed in from Python", "checksums": checksums,
                                     "dtype": str(train_images.dtype), **({"x": VECTORS} if train_vectors else {})})


# -- sampling ----------------------------------------------------------------------------


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder, ties to lower class)."""
    exact = counts * (total / counts.sum())
    alloc = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - alloc), kind="stable")
    alloc[order[: total - alloc.sum()]] += 1
    return np.minimum(alloc, counts)


def stratified_subset(labels: np.ndarray, size: int, seed: int | np.random.Generator) -> np.ndarray:
    """Indices of a random, class-stratified subset of ``size`` samples, sorted.

    Each class contributes in proportion to its frequency (largest-remainder
    rounding), so the subset keeps the class balance of ``labels``.

    Parameters
    ----------
    labels : ndarray of int, shape (sample,)
    size : int
        0 <= size <= len(labels).
    seed : int or numpy Generator

    Returns
    -------
    ndarray of int64, shape (size,)
    """
    labels = np.asarray(labels)
    if not 0 <= size <= len(labels):
        raise ConfigError(f"cannot draw {size} samples from {len(labels)}; choose a size up to {len(labels)}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    if size == 0 or len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    counts = np.bincount(inverse, minlength=len(classes))
    alloc = _allocate(counts, size)
    chosen = [rng.choice(np.flatnonzero(inverse == k), size=int(n), replace=False) for k, n in enumerate(alloc)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


@dataclass(frozen=True)
class NoisyLabels:
    """Training labels after noise injection.

    Attributes
    ----------
    labels : ndarray of int64, shape (sample,)
        Assigned labels (used in training).
    original_labels : ndarray of int64, shape (sample,)
    is_noisy : ndarray of bool, shape (sample,)
        Samples whose assigned label differs from the original one (a sample
        drawn for noise that got its own label back is clean).
    """

    labels: np.ndarray
    original_labels: np.ndarray
    is_noisy: np.ndarray


def inject_label_noise(
    labels: np.ndarray,
    rate: float,
    n_classes: int,
    *,
    mode: str = "other",
    seed: int | np.random.Generator = 0,
) -> NoisyLabels:
    """Draw new labels for exactly ``round(rate * N)`` class-stratified random samples.

    Parameters
    ----------
    labels : ndarray of int, shape (sample,)
    rate : float
        Fraction of samples to corrupt, in [0, 1).
    n_classes : int
    mode : {"other", "uniform"}
        ``"other"``: new label uniform over the other classes (always differs,
        so exactly ``round(rate * N)`` labels change); ``"uniform"``: uniform
        over all classes, so about one drawn label in ``n_classes`` equals the
        original and the realised noise rate is below ``rate`` (about
        ``rate * (1 - 1 / n_classes)``).
    seed : int or numpy Generator

    Returns
    -------
    NoisyLabels
        ``is_noisy`` marks exactly the samples whose assigned label differs
        from the original one, in both modes.
    """
    if mode not in ("other", "uniform"):
        raise ConfigError(f"unknown noise mode {mode!r}; choose other or uniform")
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"noise rate must lie in [0, 1); got {rate}")
    original = np.asarray(labels, dtype=np.int64)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    chosen = stratified_subset(original, int(round(rate * len(original))), rng)
    assigned = original.copy()
    if mode == "other":
        shift = rng.integers(1, n_classes, size=len(chosen))
        assigned[chosen] = (original[chosen] + shift) % n_classes
    else:
        assigned[chosen] = rng.integers(0, n_classes, size=len(chosen))
    return NoisyLabels(labels=assigned, original_labels=original, is_noisy=assigned != original)


# -- normalisation -----------------------------------------------------------------------


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of uint8 images scaled to [0, 1] (float images as they are).

    Parameters
    ----------
    images : ndarray of uint8 or float32, shape (sample, channel, height, width)

    Returns
    -------
    mean, std : ndarray of float64, shape (channel,)
    """
    if images.dtype != np.uint8:
        return images.mean(axis=(0, 2, 3), dtype=np.float64), images.std(axis=(0, 2, 3), dtype=np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].ravel(), minlength=256).astype(np.float64)
        mean = counts @ values / counts.sum()
        means.append(mean)
        stds.append(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))
    return np.asarray(means), np.asarray(stds)


def normalization_stats(images: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std applied to [0, 1] pixels: training statistics (``"channel"``) or 0 and 1 (``"none"``)."""
    n_channels = images.shape[1]
    if mode == "none":
        return np.zeros(n_channels), np.ones(n_channels)
    if mode == "channel":
        mean, std = channel_stats(images)
        return mean, np.where(std > 0, std, 1.0)
    raise ConfigError(f"unknown normalize {mode!r}; choose channel or none")


def normalize_images(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(images / 255 - mean) / std`` per channel (float images are not divided by 255), float32; dims (sample,
    channel, height, width) in and out."""
    scaled = images.astype(np.float32) / np.float32(255.0 if images.dtype == np.uint8 else 1.0)
    return (scaled - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]


# -- probes ------------------------------------------------------------------------------


def select_probes(
    noisy: NoisyLabels,
    test_labels: np.ndarray,
    sizes: Mapping[str, int | None],
    seed: int | np.random.Generator,
) -> dict[str, np.ndarray]:
    """Class-stratified probe indices for the groups clean, noisy (training set) and test.

    Parameters
    ----------
    noisy : NoisyLabels
        Training labels after noise injection.
    test_labels : ndarray of int, shape (sample,)
    sizes : mapping of group -> int or None
        Requested size per group; ``None`` means the default
        :data:`actlab.record.config.DEFAULT_PROBE_SIZE`, clipped to what is available.
    seed : int or numpy Generator

    Returns
    -------
    dict of group -> ndarray of int64
        Sorted indices into the training set (clean, noisy) or test set (test).

    Raises
    ------
    ConfigError
        When a size exceeds its group, or leaves a class of a non-empty group
        without probes (the message names the smallest size that covers them all).
    """
    from actlab.record.config import DEFAULT_PROBE_SIZE

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    pools = {
        "clean": np.flatnonzero(~noisy.is_noisy),
        "noisy": np.flatnonzero(noisy.is_noisy),
        "test": np.arange(len(test_labels)),
    }
    strata = {"clean": noisy.original_labels, "noisy": noisy.original_labels, "test": np.asarray(test_labels)}
    result = {}
    for group, pool in pools.items():
        requested = sizes.get(group)
        if requested is None:
            size = min(DEFAULT_PROBE_SIZE, len(pool))
        elif requested > len(pool):
            raise ConfigError(f"probe-{group} {requested} exceeds the {len(pool)} {group} samples available; pass at most {len(pool)}")
        else:
            size = requested
        _check_probe_coverage(group, requested, size, strata[group][pool])
        picked = stratified_subset(strata[group][pool], size, rng)
        result[group] = pool[picked]
    return result


def _stratified_counts(labels: np.ndarray, size: int) -> np.ndarray:
    """Per-class sample counts of ``stratified_subset(labels, size)`` (classes present in ``labels``, in order)."""
    counts = np.unique(labels, return_counts=True)[1]
    return _allocate(counts, size)


def _first_size(candidates: Iterable[int], works: Callable[[int], bool]) -> int | None:
    """The first candidate size that ``works``, or None."""
    return next((size for size in candidates if works(size)), None)


def _check_probe_coverage(group: str, requested: int | None, size: int, labels: np.ndarray) -> None:
    """Raise ConfigError when ``size`` probes drawn from a pool with ``labels`` leave one of its classes without probes."""
    if len(labels) == 0:
        return
    classes = np.unique(labels)
    counts = _stratified_counts(labels, size)
    if counts.min() >= 1:
        return
    minimum = _first_size(range(len(classes), len(labels) + 1), lambda n: _stratified_counts(labels, n).min() >= 1)
    given = f"{size}" if requested is not None else f"{size} (the default)"
    raise ConfigError(f"probe-{group} {given} leaves class {classes[counts.argmin()]} without {group} probes "
                      f"({len(classes)} classes in the {len(labels)} {group} samples); pass at least {minimum}")


# -- a run's data ------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedData:
    """Everything a run needs from its data, before any tensor exists.

    Attributes
    ----------
    dataset : ImageDataset
        The loaded dataset; ``train_images`` and ``test_images`` already cut to
        ``--train-size`` and ``--test-size``.
    train_index : ndarray of int64, shape (train_sample,)
        Indices of the training subset in the full training set.
    test_index : ndarray of int64, shape (test_sample,)
        Indices of the evaluated test subset in the full test set.
    noisy : NoisyLabels
        Training labels (aligned with ``dataset.train_images``).
    mean, std : ndarray of float64, shape (channel,)
        Normalisation applied to [0, 1] pixels.
    probes : dict of group -> ndarray of int64
        Probe indices into the (subset) training set or the test set.
    """

    dataset: ImageDataset
    train_index: np.ndarray
    test_index: np.ndarray
    noisy: NoisyLabels
    mean: np.ndarray
    std: np.ndarray
    probes: dict[str, np.ndarray]

    @property
    def probe_sizes(self) -> dict[str, int]:
        return {group: int(len(index)) for group, index in self.probes.items()}

    def describe(self) -> dict[str, Any]:
        """JSON-ready dataset description stored in the run (``dataset`` root attribute)."""
        return {
            **self.dataset.describe(),
            "n_train_used": int(len(self.train_index)),
            "n_test_used": int(len(self.test_index)),
            "n_noisy": int(self.noisy.is_noisy.sum()),
            "normalization": {"mean": self.mean.tolist(), "std": self.std.tolist(),
                              "formula": "(pixel / 255 - mean[channel]) / std[channel]" if self.dataset.train_images.dtype == np.uint8
                              else "(value - mean[channel]) / std[channel]"},
            "probe_sizes": self.probe_sizes,
        }


def _subset_index(labels: np.ndarray, size: int | None, option: str, split: str, dataset_name: str,
                  rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a class-stratified subset of ``size`` samples (all samples when ``size`` is None)."""
    if size is None:
        return np.arange(len(labels), dtype=np.int64)
    if size > len(labels):
        raise ConfigError(f"{option} {size} exceeds the {len(labels)} {split} samples of {dataset_name}; pass at most {len(labels)}")
    return stratified_subset(labels, size, rng)


MAX_SIZE_TRIES = 2000
"""Candidate sizes or noise counts simulated at most when an error message looks for the smallest that works."""


def _noisy_training_labels(config: Any, labels: np.ndarray, size: int | None, n_classes: int, noise: float) -> NoisyLabels:
    """The training labels ``prepare_data`` makes from the full training ``labels`` with ``size`` samples and ``noise``."""
    index = _subset_index(labels, size, "train-size", "training", "the dataset", rng_for(config.resolved_data_seed, _STREAM_SUBSET))
    return inject_label_noise(labels[index], noise, n_classes, mode=config.noise_mode, seed=rng_for(config.resolved_data_seed, _STREAM_NOISE))


def _training_gap(noisy: NoisyLabels, n_classes: int, noise: float) -> tuple[int, str] | None:
    """The first class without clean training samples, or (when ``noise > 0``) without noisy ones, and which kind lacks."""
    clean = np.bincount(noisy.original_labels[~noisy.is_noisy], minlength=n_classes)
    changed = np.bincount(noisy.original_labels[noisy.is_noisy], minlength=n_classes)
    for k in range(n_classes):
        if clean[k] == 0:
            return k, "clean"
        if noise > 0 and changed[k] == 0:
            return k, "noisy"
    return None


def _could_work(size: int, noisy_count: int, n_classes: int, noise: float, mode: str) -> bool:
    """Cheap necessary condition for ``size`` training samples with ``noisy_count`` drawn for noise to cover every class."""
    if noise == 0:
        return size >= n_classes
    clean_enough = size - noisy_count >= n_classes if mode == "other" else size >= 2 * n_classes
    return noisy_count >= n_classes and clean_enough


def _rate_text(count: int, total: int) -> str:
    """The shortest decimal rate that draws exactly ``count`` of ``total`` samples (``round(rate * total) == count``)."""
    for digits in range(1, 17):
        text = f"{count / total:.{digits}g}"
        if round(float(text) * total) == count:
            return text
    return repr(count / total)


def _check_training_classes(config: Any, labels: np.ndarray, noisy: NoisyLabels, class_names: tuple[str, ...],
                            dataset_name: str) -> None:
    """Raise ConfigError when ``noisy`` leaves a class without clean, or (noise > 0) noisy, training samples.

    The message names the flag to change and its smallest working value,
    found by re-running the seeded subset and noise with candidate values:
    ``train-size`` when a larger one fixes it, else ``noise`` on the
    training set of ``train-size`` (all of ``labels`` when not given).
    """
    n_classes, noise, mode = len(class_names), config.noise, config.noise_mode
    gap = _training_gap(noisy, n_classes, noise)
    if gap is None:
        return
    missing = f"class {class_names[gap[0]]!r} without {gap[1]} training samples"
    if np.bincount(labels, minlength=n_classes).min() == 0:
        raise DataError(f"the training set of {dataset_name} leaves {missing}; use a dataset with every class in its training set")

    def covers(size: int | None, rate: float) -> bool:
        return _training_gap(_noisy_training_labels(config, labels, size, n_classes, rate), n_classes, rate) is None

    if config.train_size is not None:
        sizes = (n for n in range(config.train_size + 1, len(labels) + 1)
                 if _could_work(n, round(noise * n), n_classes, noise, mode))
        minimum = _first_size(itertools.islice(sizes, MAX_SIZE_TRIES), lambda n: covers(n, noise))
        if minimum is not None:
            raise ConfigError(f"train-size {config.train_size} leaves {missing} ({n_classes} classes, noise {noise:g}, "
                              f"noise-mode {mode}); pass at least {minimum}")
    total = len(labels) if config.train_size is None else config.train_size
    counts = range(1, total) if gap[1] == "noisy" else range(total - 1, 0, -1)
    candidates = (m for m in counts if _could_work(total, m, n_classes, m / total, mode))
    count = _first_size(itertools.islice(candidates, MAX_SIZE_TRIES), lambda m: covers(config.train_size, m / total))
    where = f"the {total} training samples of {dataset_name}"
    if count is None:
        raise ConfigError(f"noise {noise:g} leaves {missing}, and no noise rate gives each of the {n_classes} classes a "
                          f"clean and a noisy sample among {where}; pass --noise 0 or use more training samples")
    bound = "at least" if gap[1] == "noisy" else "at most"
    raise ConfigError(f"noise {noise:g} leaves {missing} among {where} ({n_classes} classes, noise-mode {mode}); "
                      f"pass {bound} {_rate_text(count, total)}")


def _check_test_classes(labels: np.ndarray, test_index: np.ndarray, test_size: int | None,
                        class_names: tuple[str, ...], dataset_name: str) -> None:
    """Raise ConfigError when the test subset leaves a class without samples (DataError when the full test set does)."""
    counts = np.bincount(labels[test_index], minlength=len(class_names))
    if counts.min() >= 1:
        return
    missing = f"class {class_names[counts.argmin()]!r} without test samples"
    if test_size is None or np.bincount(labels, minlength=len(class_names)).min() == 0:
        raise DataError(f"the test set of {dataset_name} leaves {missing}; use a dataset with every class in its test set")
    minimum = _first_size(range(test_size + 1, len(labels) + 1), lambda n: _stratified_counts(labels, n).min() >= 1)
    raise ConfigError(f"test-size {test_size} leaves {missing} ({len(class_names)} classes); pass at least {minimum}")


def prepare_data(config: Any, dataset: ImageDataset | None = None) -> PreparedData:
    """Load (unless given), subset, corrupt, normalise and pick probes as ``config`` (a RecordConfig) says.

    Every step is seeded by ``config.resolved_data_seed`` (``--data-seed``, else the run seed); the same
    config gives the same result, which is what ``--resume`` relies on.

    Raises
    ------
    ConfigError
        When ``train-size``, ``test-size``, ``noise`` or a probe size leaves a
        class without clean training samples, without noisy training samples
        (noise > 0), without test samples, or without probes in a non-empty
        probe group; the message names the flag, its value and the smallest
        (or largest) value that works.
    """
    if dataset is None:
        dataset = load_dataset(config.dataset, data_dir=config.resolved_data_dir, download=config.download,
                               synthetic=config.synthetic)
    train_index = _subset_index(dataset.train_labels, config.train_size, "train-size", "training",
                                dataset.name, rng_for(config.resolved_data_seed, _STREAM_SUBSET))
    test_index = _subset_index(dataset.test_labels, config.test_size, "test-size", "test",
                               dataset.name, rng_for(config.resolved_data_seed, _STREAM_TEST_SUBSET))
    _check_test_classes(dataset.test_labels, test_index, config.test_size, dataset.class_names, dataset.name)
    full_train_labels = dataset.train_labels
    if config.train_size is not None or config.test_size is not None:
        dataset = ImageDataset(
            name=dataset.name, train_images=dataset.train_images[train_index], train_labels=dataset.train_labels[train_index],
            test_images=dataset.test_images[test_index], test_labels=dataset.test_labels[test_index],
            class_names=dataset.class_names,  # n_train and n_test stay the full sets' sizes (docs/store-format.md)
            description={**dataset.description, "n_train": int(len(full_train_labels)), "n_test": int(len(dataset.test_labels))},
        )
    noisy = _noisy_training_labels(config, full_train_labels, config.train_size, dataset.n_classes, config.noise)
    _check_training_classes(config, full_train_labels, noisy, dataset.class_names, dataset.name)
    mean, std = normalization_stats(dataset.train_images, config.normalize)
    probes = select_probes(
        noisy, dataset.test_labels,
        {"clean": config.probe_clean, "noisy": config.probe_noisy, "test": config.probe_test},
        rng_for(config.resolved_data_seed, _STREAM_PROBES),
    )
    return PreparedData(dataset=dataset, train_index=train_index, test_index=test_index, noisy=noisy, mean=mean, std=std, probes=probes)
