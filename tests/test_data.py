"""Datasets, label noise, stratified sampling, normalisation and probe selection (actlab.record.data)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from actlab.errors import ConfigError, DataError
from actlab.record import RecordConfig
from actlab.record.data import (
    CIFAR10_BIN_MD5,
    channel_stats,
    inject_label_noise,
    load_cifar10,
    load_dataset,
    make_synthetic,
    normalization_stats,
    normalize_images,
    prepare_data,
    select_probes,
    stratified_subset,
)


def test_data_module_does_not_import_torch():
    code = "import sys, actlab.record.data, actlab.record.config, actlab.record; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- synthetic and digits -----------------------------------------------------------------


def test_synthetic_shapes_balance_and_seed():
    ds = make_synthetic(n_train=120, n_test=40, n_classes=4, shape=(3, 5, 6), seed=3)
    assert ds.train_images.shape == (120, 3, 5, 6) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (40, 3, 5, 6)
    assert np.bincount(ds.train_labels).tolist() == [30] * 4
    again = make_synthetic(n_train=120, n_test=40, n_classes=4, shape=(3, 5, 6), seed=3)
    np.testing.assert_array_equal(ds.train_images, again.train_images)
    other = make_synthetic(n_train=120, n_test=40, n_classes=4, shape=(3, 5, 6), seed=4)
    assert not np.array_equal(ds.train_images, other.train_images)
    # class-dependent: a nearest-class-mean classifier fitted on train separates the test set
    means = np.stack([ds.train_images[ds.train_labels == k].reshape(30, -1).mean(0) for k in range(4)])
    dist = ((ds.test_images.reshape(40, 1, -1).astype(float) - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == ds.test_labels).mean() > 0.9


def test_digits_scaling_and_stratified_split():
    from sklearn.datasets import load_digits as sk_digits

    ds = load_dataset("digits")
    sk = sk_digits()
    assert ds.train_images.shape[1:] == (1, 8, 8) and ds.train_images.dtype == np.uint8
    assert len(ds.train_labels) + len(ds.test_labels) == len(sk.target) == 1797
    # every class holds out 20 % (largest-remainder rounding: within one sample)
    per_class = np.bincount(sk.target)
    np.testing.assert_allclose(np.bincount(ds.test_labels), 0.2 * per_class, atol=1)
    assert len(ds.test_labels) == round(0.2 * 1797)
    # the images are sklearn's, scaled by 255/16, and train + test is a partition of them
    flat = np.rint(sk.images * 255 / 16).astype(np.uint8).reshape(1797, -1)
    all_images = np.concatenate([ds.train_images, ds.test_images]).reshape(1797, -1)
    key = lambda a: sorted(map(bytes, a))  # noqa: E731
    assert key(all_images) == key(flat)
    assert ds.train_images.max() == 255
    np.testing.assert_array_equal(load_dataset("digits").test_images, ds.test_images)  # fixed split


# -- stratified subsets and label noise ------------------------------------------------------


def test_stratified_subset_class_counts():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    picked = stratified_subset(labels, 10, seed=0)
    assert np.bincount(labels[picked]).tolist() == [5, 3, 2]
    assert len(np.unique(picked)) == 10 and np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(picked, stratified_subset(labels, 10, seed=0))
    # 7 of (50, 30, 20): exact shares 3.5, 2.1, 1.4 -> floors 3, 2, 1, the remainder goes to the largest fraction
    assert np.bincount(labels[stratified_subset(labels, 7, seed=1)]).tolist() == [4, 2, 1]
    with pytest.raises(ConfigError):
        stratified_subset(labels, 101, seed=0)


@pytest.mark.parametrize("rate", [0.3, 0.123, 0.0])
def test_noise_count_and_other_mode(rate):
    labels = np.repeat(np.arange(10), 101)
    noisy = inject_label_noise(labels, rate, 10, mode="other", seed=5)
    n = len(labels)
    assert noisy.is_noisy.sum() == round(rate * n)
    assert np.all(noisy.labels[noisy.is_noisy] != labels[noisy.is_noisy])
    np.testing.assert_array_equal(noisy.labels[~noisy.is_noisy], labels[~noisy.is_noisy])
    np.testing.assert_array_equal(noisy.original_labels, labels)
    assert noisy.labels.min() >= 0 and noisy.labels.max() <= 9
    # class-stratified: every class is corrupted at the rate, within one sample
    np.testing.assert_allclose(np.bincount(labels[noisy.is_noisy], minlength=10), rate * 101, atol=1)


def test_noise_other_covers_all_other_classes_uniformly():
    labels = np.zeros(20000, dtype=np.int64)
    labels[10000:] = 1
    noisy = inject_label_noise(labels, 0.5, 5, mode="other", seed=0)
    new = noisy.labels[noisy.is_noisy & (labels == 0)]
    counts = np.bincount(new, minlength=5)
    assert counts[0] == 0
    np.testing.assert_allclose(counts[1:] / counts.sum(), 0.25, atol=0.03)


def test_noise_uniform_mode_counts_only_changed_labels():
    labels = np.repeat(np.arange(4), 500)
    noisy = inject_label_noise(labels, 0.5, 4, mode="uniform", seed=2)
    changed = noisy.labels != labels
    np.testing.assert_array_equal(noisy.is_noisy, changed)  # no sample marked noisy keeps its original label
    assert noisy.is_noisy.sum() == changed.sum()
    # 1000 samples drew a label uniformly over 4 classes: about a quarter drew their own back and stay clean
    assert 680 < noisy.is_noisy.sum() < 820
    np.testing.assert_array_equal(noisy.labels[~noisy.is_noisy], labels[~noisy.is_noisy])


def test_uniform_mode_probes_and_description_use_changed_labels():
    config = RecordConfig(dataset="synthetic", synthetic="train=400,test=80,classes=4,shape=1x3x3", noise=0.5,
                          noise_mode="uniform", epochs=1)
    data = prepare_data(config)
    changed = data.noisy.labels != data.noisy.original_labels
    assert data.describe()["n_noisy"] == changed.sum() < 200
    assert changed[data.probes["noisy"]].all() and not changed[data.probes["clean"]].any()
    assert len(data.probes["noisy"]) == changed.sum()  # the default takes every noisy sample up to 1000


def test_noise_seed_determinism():
    labels = np.repeat(np.arange(10), 50)
    a = inject_label_noise(labels, 0.3, 10, seed=7)
    b = inject_label_noise(labels, 0.3, 10, seed=7)
    c = inject_label_noise(labels, 0.3, 10, seed=8)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.is_noisy, b.is_noisy)
    assert not np.array_equal(a.is_noisy, c.is_noisy)


def test_noise_rejects_bad_input():
    with pytest.raises(ConfigError, match="noise mode"):
        inject_label_noise(np.zeros(10, int), 0.3, 2, mode="pairs")
    with pytest.raises(ConfigError):
        inject_label_noise(np.zeros(10, int), 1.0, 2)


# -- normalisation -----------------------------------------------------------------------------


def test_channel_stats_by_hand():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 3, 5, 4), dtype=np.uint8)
    images[:, 2] //= 4
    mean, std = channel_stats(images)
    scaled = images / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=1e-12)
    normalised = normalize_images(images, mean, std)
    np.testing.assert_allclose(normalised.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(axis=(0, 2, 3)), 1, atol=1e-5)
    zero, one = normalization_stats(images, "none")
    np.testing.assert_array_equal(normalize_images(images, zero, one), images.astype(np.float32) / 255)


def test_prepare_uses_training_subset_statistics():
    config = RecordConfig(dataset="synthetic", synthetic="train=400,test=50,classes=4,shape=1x3x3", train_size=100,
                          epochs=1, noise=0.2)
    full = make_synthetic(n_train=400, n_test=50, n_classes=4, shape=(1, 3, 3), seed=0)
    data = prepare_data(config)
    assert len(data.train_index) == 100
    assert np.bincount(full.train_labels[data.train_index]).tolist() == [25] * 4
    np.testing.assert_array_equal(data.dataset.train_images, full.train_images[data.train_index])
    np.testing.assert_allclose(data.mean, (full.train_images[data.train_index] / 255.0).mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(data.std, (full.train_images[data.train_index] / 255.0).std(axis=(0, 2, 3)))
    assert data.noisy.is_noisy.sum() == 20
    with pytest.raises(ConfigError, match="train-size"):
        prepare_data(config.replace(train_size=401))


# -- probes ----------------------------------------------------------------------------------------


def test_probes_groups_sizes_and_stratification():
    labels = np.repeat(np.arange(5), 200)
    noisy = inject_label_noise(labels, 0.3, 5, seed=0)
    test_labels = np.repeat(np.arange(5), 40)
    probes = select_probes(noisy, test_labels, {"clean": 100, "noisy": None, "test": None}, seed=0)
    assert len(probes["clean"]) == 100 and len(probes["noisy"]) == 300 and len(probes["test"]) == 200  # defaults clipped
    assert not noisy.is_noisy[probes["clean"]].any() and noisy.is_noisy[probes["noisy"]].all()
    assert np.bincount(labels[probes["clean"]]).tolist() == [20] * 5
    with pytest.raises(ConfigError, match="probe-noisy 301 exceeds the 300"):
        select_probes(noisy, test_labels, {"clean": None, "noisy": 301, "test": None}, seed=0)


# -- CIFAR-10 -----------------------------------------------------------------------------------


def test_cifar_absent_without_download_is_one_line_error(tmp_path):
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path / "nothing", download=False)
    message = str(info.value)
    assert "\n" not in message and "--data-dir" in message and "ACTLAB_DATA" in message and "nothing" in message


def test_cifar_damaged_file_fails_md5(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in CIFAR10_BIN_MD5:
        (folder / name).write_bytes(bytes(3073 * 2))
    with pytest.raises(DataError, match="MD5"):
        load_cifar10(tmp_path, download=False)


@pytest.mark.cifar
def test_real_cifar10(cifar_data_dir):
    ds = load_cifar10(cifar_data_dir, download=False)
    assert ds.train_images.shape == (50000, 3, 32, 32) and ds.test_images.shape == (10000, 3, 32, 32)
    assert np.bincount(ds.train_labels).tolist() == [5000] * 10
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10
    mean, std = channel_stats(ds.train_images)
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=5e-5)
    np.testing.assert_allclose(std, [0.2470, 0.2435, 0.2616], atol=5e-5)
    assert ds.describe()["checksums"]["md5"] == CIFAR10_BIN_MD5
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"


def test_test_size_keeps_a_stratified_test_subset_and_maps_probes_to_the_full_set():
    from actlab.record.setup import probe_set

    config = RecordConfig(dataset="synthetic", synthetic="train=400,test=200,classes=4,shape=1x3x3", test_size=40,
                          epochs=1, probe_test=8)
    full = make_synthetic(n_train=400, n_test=200, n_classes=4, shape=(1, 3, 3), seed=0)
    data = prepare_data(config)
    assert len(data.test_index) == 40 and np.all(np.diff(data.test_index) > 0)
    assert np.bincount(full.test_labels[data.test_index]).tolist() == [10] * 4
    np.testing.assert_array_equal(data.dataset.test_images, full.test_images[data.test_index])
    described = data.describe()  # n_test the full set, n_test_used the subset (docs/store-format.md)
    assert (described["n_train"], described["n_test"], described["n_train_used"], described["n_test_used"]) == (400, 200, 400, 40)
    # the training side is untouched: same subset, noise and statistics as without --test-size
    without = prepare_data(config.replace(test_size=None))
    np.testing.assert_array_equal(data.noisy.labels, without.noisy.labels)
    np.testing.assert_array_equal(data.mean, without.mean)
    probes = probe_set(data)
    test_rows = probes.group == 2
    np.testing.assert_array_equal(probes.images[test_rows], full.test_images[probes.dataset_index[test_rows]])
    with pytest.raises(ConfigError, match="test-size 201 exceeds the 200 test samples"):
        prepare_data(config.replace(test_size=201))
    with pytest.raises(ConfigError, match="test-size"):
        config.replace(test_size=0)


def test_failed_download_leaves_no_new_folder_behind(tmp_path, monkeypatch):
    from actlab.record import data as data_module

    def fail(root):
        (root / "cifar-10-python.tar.gz").write_bytes(b"partial")
        (root / "cifar-10-batches-py").mkdir()
        raise OSError("no network")

    monkeypatch.setattr(data_module, "_fetch_cifar_py", fail)
    root = tmp_path / "new" / "deeper"
    with pytest.raises(DataError, match="download failed"):
        load_cifar10(root, download=True)
    assert list(tmp_path.iterdir()) == []  # both folders the attempt created are gone, tmp_path stays
    # a folder that existed keeps itself and what it held; only the attempt's files go
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="OSError: no network"):
        load_cifar10(tmp_path / "mine", download=True)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    (tmp_path / "mine" / "notes.txt").unlink()
    with pytest.raises(DataError):
        load_cifar10(tmp_path / "mine", download=True)
    assert (tmp_path / "mine").is_dir()  # existed before the attempt: kept, even empty


# -- every class keeps clean, noisy, test samples and probes ---------------------------------------


def _config(**settings):
    return RecordConfig(dataset="digits", epochs=1, **settings)


def _minimum_in(message):
    return float(message.rsplit(" ", 1)[1])


@pytest.mark.parametrize(("settings", "flag", "kind"), [
    (dict(train_size=5), "train-size 5", "clean training samples"),
    (dict(train_size=25), "train-size 25", "noisy training samples"),
    (dict(train_size=25, noise_mode="uniform"), "train-size 25", "training samples"),
    (dict(train_size=100, noise=0.95), "train-size 100", "clean training samples"),
    (dict(test_size=5), "test-size 5", "test samples"),
    (dict(probe_clean=5), "probe-clean 5", "clean probes"),
    (dict(probe_noisy=0), "probe-noisy 0", "noisy probes"),
    (dict(probe_test=9), "probe-test 9", "test probes"),
])
def test_sizes_that_leave_a_class_empty_name_the_flag_and_the_smallest_that_works(settings, flag, kind):
    with pytest.raises(ConfigError) as info:
        prepare_data(_config(**settings))
    message = str(info.value)
    assert message.startswith(flag + " leaves class ") and kind in message and "pass at least" in message, message
    name = flag.split()[0].replace("-", "_")
    minimum = int(_minimum_in(message))
    prepare_data(_config(**{**settings, name: minimum}))  # the stated minimum works ...
    with pytest.raises(ConfigError):
        prepare_data(_config(**{**settings, name: minimum - 1}))  # ... and is the smallest


def test_class_minimum_follows_classes_and_noise():
    # 10 classes at noise 0.3: round(0.3 * n) >= 10 needs n >= 32; at noise 0.5, n >= 19 and 20 samples give 10 clean ones
    for noise, minimum in ((0.3, 32), (0.5, 20)):
        with pytest.raises(ConfigError, match=rf"train-size 5 .*\(10 classes, noise {noise}, noise-mode other\); pass at least {minimum}$"):
            prepare_data(_config(train_size=5, noise=noise))
    with pytest.raises(ConfigError, match=r"pass at least 10$"):
        prepare_data(_config(train_size=5, noise=0.0))  # without noise one clean sample per class is enough


@pytest.mark.parametrize(("noise", "bound"), [(0.001, "at least"), (0.999, "at most")])
def test_noise_that_leaves_a_class_without_noisy_or_clean_samples(noise, bound):
    with pytest.raises(ConfigError) as info:
        prepare_data(_config(noise=noise))
    message = str(info.value)
    assert message.startswith(f"noise {noise} leaves class ") and "1438 training samples of digits" in message, message
    assert f"pass {bound} " in message
    prepare_data(_config(noise=_minimum_in(message)))


def test_too_few_samples_for_any_noise_say_so():
    config = RecordConfig(dataset="synthetic", synthetic="train=15,test=10,classes=10,shape=1x2x2", epochs=1)
    with pytest.raises(ConfigError, match="no noise rate gives each of the 10 classes a clean and a noisy sample"):
        prepare_data(config)
    assert prepare_data(config.replace(noise=0.0)).noisy.is_noisy.sum() == 0


def test_noise_free_run_may_have_an_empty_noisy_group():
    data = prepare_data(_config(noise=0.0, probe_noisy=0, train_size=10, probe_clean=10, test_size=10, probe_test=10))
    assert data.probe_sizes == {"clean": 10, "noisy": 0, "test": 10}
    for group in ("clean", "test"):
        labels = data.noisy.original_labels if group == "clean" else data.dataset.test_labels
        assert sorted(labels[data.probes[group]]) == list(range(10))
