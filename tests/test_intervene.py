"""Offline interventions: the intervened MLP forward pass equals NumPy from the stored weights; factories, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_runner import run_cli

from actlab.analysis import load_results
from actlab.errors import ConfigError
from actlab.record import record
from actlab.record.intervene import Rebuilt, Rewind, intervene, matched_units
from actlab.store import ANALYSIS_DIRNAME, open_store


def numpy_logits(view, epoch, rewound=(), rewind_epoch=None, zero=None, until=None):
    """The MLP forward pass in NumPy from the stored weights of ``epoch``; the modules in ``rewound`` take their
    weights of ``rewind_epoch``; ``zero`` = (layer, units) sets those pre-activations (so post-activations) to 0;
    ``until``: return that layer's post-activation instead of the logits."""
    norm = view.attrs["dataset"]["normalization"]
    images = view.probes["image"].values.astype(np.float64) / 255.0
    h = ((images - np.array(norm["mean"])[:, None, None]) / np.array(norm["std"])[:, None, None]).reshape(len(images), -1)
    params = view.parameters
    for name in view.layer_names:
        module = view.layers[name].attrs["module"]
        at = rewind_epoch if module in rewound else epoch
        w, b = (params[f"{module}.{k}"].sel(epoch=at).values.astype(np.float64) for k in ("weight", "bias"))
        pre = h @ w.T + b
        if zero is not None and zero[0] == name:
            pre[:, list(zero[1])] = 0
        h = np.maximum(pre, 0) if view.layers[name].attrs["activation"] == "relu" else pre
        if name == until:
            break
    return h


def numpy_accuracies(view, logits):
    predicted = logits.argmax(1)
    group, label, original = (view.probes[k].values for k in ("group", "label", "original_label"))
    return [np.mean(predicted[m] == t[m]) for m, t in ((group == "clean", label), (group == "noisy", label),
                                                       (group == "noisy", original), (group == "test", label))]


@pytest.fixture
def mlp_run(tiny_record_config, torch_one_thread):
    return record(tiny_record_config.replace(epochs=3))


def test_intervened_mlp_equals_numpy_forward(mlp_run):
    view = open_store(mlp_run)
    rebuilt = Rebuilt(mlp_run)
    rebuilt.load(3, [Rewind(("hidden2",), 1)])
    with torch.no_grad():
        ours = rebuilt.logits({"hidden1": [2, 5]})
    expected = numpy_logits(view, 3, rewound=("linear2",), rewind_epoch=1, zero=("hidden1", [2, 5]))
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(numpy_logits(view, 3), expected, atol=1e-3)  # the intervention changes the logits

    ds = intervene(mlp_run, rewind=["hidden2@1", "hidden1,output@0"], n_null=5, seed=1)
    np.testing.assert_allclose(ds["baseline_accuracy"], numpy_accuracies(view, numpy_logits(view, 3)))
    np.testing.assert_allclose(ds["rewind_accuracy"].sel(rewind="hidden2@1"),
                               numpy_accuracies(view, numpy_logits(view, 3, ("linear2",), 1)))
    np.testing.assert_allclose(ds["rewind_accuracy"].sel(rewind="hidden1,output@0"),
                               numpy_accuracies(view, numpy_logits(view, 3, ("linear1", "output"), 0)))
    assert list(ds["layer"].values) == ["hidden1", "hidden2"]  # every layer but the logits
    for layer in ("hidden1", "hidden2"):  # the large unit: largest mean |post-activation| over the probes
        unit = int(ds["ablated_unit"].sel(layer=layer))
        assert unit == int(np.argmax(numpy_logits(view, 3, until=layer).mean(0)))
        np.testing.assert_allclose(ds["ablate_accuracy"].sel(layer=layer),
                                   numpy_accuracies(view, numpy_logits(view, 3, zero=(layer, [unit]))))
    null = ds["null_accuracy"].values
    p = (1 + (null <= ds["ablate_accuracy"].values[:, None, :] + 1e-12).sum(1)) / 6
    np.testing.assert_allclose(ds["ablate_p_value"].values, p)


def test_test_set_measure_from_the_data_prepared_again(mlp_run):
    from actlab.record import RecordConfig, prepare_data

    view = open_store(mlp_run)
    ds = intervene(mlp_run, rewind=["hidden1@0"], n_null=2, test_set=True)
    assert list(ds["measure"].values)[-1] == "test_set"
    data = prepare_data(RecordConfig.from_dict(view.attrs["config"], strict=False))
    np.testing.assert_array_equal(data.dataset.test_labels, view.evaluation["label"].values)
    x = ((data.dataset.test_images / 255.0 - data.mean[:, None, None]) / data.std[:, None, None]).reshape(
        len(data.dataset.test_images), -1)

    def accuracy(rewound=(), rewind_epoch=None):
        h = x
        for name in view.layer_names:
            module = view.layers[name].attrs["module"]
            at = rewind_epoch if module in rewound else 3
            h = h @ view.parameters[f"{module}.weight"].sel(epoch=at).values.T.astype(np.float64) + view.parameters[
                f"{module}.bias"].sel(epoch=at).values
            h = np.maximum(h, 0) if view.layers[name].attrs["activation"] == "relu" else h
        return np.mean(h.argmax(1) == data.dataset.test_labels)

    assert float(ds["baseline_accuracy"].sel(measure="test_set")) == pytest.approx(accuracy())
    assert float(ds["rewind_accuracy"].sel(rewind="hidden1@0", measure="test_set")) == pytest.approx(accuracy(("linear1",), 0))
    # the probe measures are those of a run without the test set
    plain = intervene(mlp_run, rewind=["hidden1@0"], ablate=False)
    np.testing.assert_array_equal(ds["rewind_accuracy"].sel(measure=list(plain["measure"].values)).values,
                                  plain["rewind_accuracy"].values)


def test_matched_units_rule():
    rng = np.random.default_rng(0)
    mean_abs = np.array([0.5, 9.0, 1.0, 2.0, 0.2, 3.0, 4.0])
    for _ in range(20):
        units = matched_units(mean_abs, 1, rng)
        assert 1 not in units and mean_abs[units].sum() >= 9.0
        # minimal in the draw's order: without its last unit the sum falls short (some unit must be dropped)
        assert min(mean_abs[units].sum() - mean_abs[u] for u in units) < 9.0
    assert list(matched_units(np.array([1.0, 50.0, 2.0]), 1, rng)) == [0, 2]  # the others cannot match: all of them


def test_cli_writes_results_and_refuses_bad_input(mlp_run, tmp_path):
    code, _, err = run_cli("intervene", mlp_run, "--rewind", "hidden2@1")
    assert code == 2 and "run 'actlab analyze" in err  # no analysis folder yet: nothing written
    assert not (mlp_run / ANALYSIS_DIRNAME).exists()
    out = tmp_path / "iv"
    code, stdout, err = run_cli("intervene", mlp_run, "--rewind", "hidden2@1", "--ablate", "--null-draws", "3", "--out", out)
    assert code == 0, err
    saved = load_results(out / "interventions.zarr").to_dataset()
    assert (out / "interventions.png").read_bytes()[:4] == b"\x89PNG"
    lines = stdout.splitlines()  # the table wraps to 100 columns (findings.text_table): a row label may take two lines
    label_width = len(next(line for line in lines if line.startswith("---")).split()[0])
    labels = " ".join(line[:label_width].strip() for line in lines[1:] if not line.startswith("---"))
    assert "rewind hidden2@1" in labels and "ablate hidden1 unit" in labels
    np.testing.assert_array_equal(saved["rewind_accuracy"].values,
                                  intervene(mlp_run, rewind=["hidden2@1"], ablate=False)["rewind_accuracy"].values)
    for args, words in ((["--rewind", "hidden9@1"], "names no stored parameters"), (["--rewind", "hidden2@7"], "not a recorded epoch"),
                        (["--rewind", "hidden2"], "LAYER[,LAYER...]@EPOCH"), ([], "nothing to do")):
        code, _, err = run_cli("intervene", mlp_run, *args, "--out", tmp_path / "bad")
        assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert not (tmp_path / "bad").exists()


def test_factory_run_needs_its_factory_and_instances_are_refused(tiny_record_config, torch_one_thread):
    import anymodel_nets

    config = tiny_record_config.replace(synthetic="train=96,test=40,classes=4,shape=3x8x8,seed=1", epochs=2,
                                        probe_clean=16, probe_noisy=8, probe_test=12)
    run_dir = record(config, model="anymodel_nets:make_net", model_args={"width": 3})
    with pytest.raises(ConfigError, match="pass that factory"):
        intervene(run_dir)
    with pytest.raises(ConfigError, match="not anymodel_nets:not_a_module"):
        intervene(run_dir, factory=anymodel_nets.not_a_module)
    ds = intervene(run_dir, factory=anymodel_nets.make_net, n_null=2)
    view = open_store(run_dir)
    net = anymodel_nets.make_net(width=3).eval()
    net.load_state_dict({k: torch.from_numpy(view.parameters[k].sel(epoch=2).values) for k in view.parameters.data_vars})
    rebuilt = Rebuilt(run_dir, factory=anymodel_nets.make_net)
    with torch.no_grad():
        logits = net(rebuilt.inputs).numpy()
    np.testing.assert_allclose(ds["baseline_accuracy"], numpy_accuracies(view, logits))
    assert "features.1.gelu" in ds["layer"].values  # the conv layer's channel is its unit (layer names carry the class)

    instance_run = record(config.replace(out=str(run_dir) + "-instance"), model=anymodel_nets.make_net(width=3))
    with pytest.raises(ConfigError, match="model instance"):
        intervene(instance_run)
