"""actlab.Recorder: recording a user's own training loop without changing it."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import zarr
from torch import nn

import actlab
from actlab.digest import with_digest
from actlab.errors import ConfigError, OutputError, StoreError
from actlab.store import open_store

pytestmark = pytest.mark.usefixtures("torch_one_thread")

EPOCHS = 5


def _data(n: int, seed: int, noisy_every: int = 5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 4, 4)).astype(np.float32)
    original = (x[:, 0, 0, 0] > 0).astype(np.int64) + 2 * (x[:, 0, 1, 1] > 0)
    y = original.copy()
    y[::noisy_every] = (y[::noisy_every] + 1) % 4
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(original)


class Net(nn.Module):
    """Dropout (draws from the torch generator in training) and BatchNorm (whose statistics move in training mode)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        return self.head(self.body(x))


def _train(out=None, *, stop_after=None, resume=False, model=None, start=1, observe=False, seen=None):
    """The user's loop: seeded model, SGD with momentum, a scheduler, shuffling with NumPy and Python generators;
    with ``observe``, each batch's logits go to ``rec.observe``, and to the list ``seen`` as (epoch, batch, logits)."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    x, y, original = _data(96, 0)
    model = model or Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    rec = None
    if out is not None:
        rec = actlab.Recorder(model, out=out, probes=np.arange(0, 96, 3), layers="auto", record_epochs="0,1,3,5",
                              epochs=EPOCHS, train=(x, y, original), test=_data(40, 1)[:2], test_probes=20, resume=resume,
                              observe=observe)
    for epoch in range(start, EPOCHS + 1):
        model.train()
        order = np.random.permutation(96)
        random.shuffle(order_list := list(order))
        for batch in np.array_split(np.asarray(order_list), 6):
            logits = model(x[batch])
            if observe:
                rec.observe(torch.from_numpy(batch), logits, y[batch])
            if seen is not None:
                seen.append((epoch, batch, logits.detach().numpy().copy()))
            loss = nn.functional.cross_entropy(logits, y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if rec is not None:
            rec.end_epoch(epoch, metrics={"lr": sched.get_last_lr()[0], **({"odd": epoch} if epoch % 2 else {})})
        if stop_after == epoch:
            return model, rec
    if rec is not None:
        rec.close()
    return model, rec


def test_recorded_training_equals_training_without_recorder_bit_for_bit(tmp_path):
    plain, _ = _train()
    recorded, _ = _train(tmp_path / "run")
    for (name, a), (_, b) in zip(plain.state_dict().items(), recorded.state_dict().items()):
        assert torch.equal(a, b), name
    assert recorded.training  # the mode the loop left is kept
    view = open_store(tmp_path / "run")
    assert view.attrs["status"] == "complete" and list(view.epochs) == [0, 1, 3, 5]
    assert list(view.metrics["epoch"].values) == list(range(EPOCHS + 1))
    assert list(view.dynamics["epoch"].values) == list(range(EPOCHS + 1)) and view.dynamics.sizes["train_sample"] == 96
    # the stored parameters of the last epoch are the trained model's, and the logits follow from them
    for name, value in recorded.state_dict().items():
        np.testing.assert_array_equal(view.parameters[name].sel(epoch=EPOCHS).values, value.numpy())
    recorded.eval()
    x, y, original = _data(96, 0)
    with torch.no_grad():
        logits = recorded(x).numpy()
    np.testing.assert_allclose(view.layers["head"]["preact"].sel(epoch=EPOCHS).values[:32],
                               logits[view.probes["dataset_index"].values[:32]], rtol=1e-5, atol=1e-6)
    correct = logits.argmax(1) == y.numpy()
    np.testing.assert_array_equal(view.dynamics["correct"].sel(epoch=EPOCHS).values, correct)
    noisy = (y != original).numpy()
    assert float(view.metrics["train_noisy_acc"].sel(epoch=EPOCHS)) == pytest.approx(correct[noisy].mean())
    assert list(view.probes["group"].values).count("noisy") == int(noisy[::3].sum())
    # the loop's own metrics: the scheduler's rate after each epoch, NaN where a name was not reported
    np.testing.assert_allclose(view.metrics["lr"].values[1:], [0.1, 0.05, 0.05, 0.025, 0.025])
    assert np.isnan(view.metrics["lr"].values[0]) and list(view.metrics["odd"].values[1::2]) == [1.0, 3.0, 5.0]
    assert np.isnan(view.metrics["odd"].values[[0, 2, 4]]).all()


def test_a_failed_loop_leaves_committed_epochs_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    model, rec = _train(run, stop_after=3)  # as if killed after epoch 3: close() never called
    rec._background.flush()
    view = open_store(run)
    assert view.attrs["status"] == "recording" and list(view.epochs) == [0, 1, 3]
    rec.__exit__(RuntimeError, RuntimeError("killed"), None)  # releases the lock like a dying process
    with pytest.raises(ConfigError, match="other probes"):
        actlab.Recorder(model, out=run, probes=np.arange(0, 96, 2), epochs=EPOCHS, record_epochs="0,1,3,5",
                        train=_data(96, 0), test=_data(40, 1)[:2], test_probes=20, resume=True)
    with pytest.raises(ConfigError, match="stores trajectories from 'evaluation'.*these settings from 'training'"):
        actlab.Recorder(model, out=run, probes=np.arange(0, 96, 3), epochs=EPOCHS, record_epochs="0,1,3,5",
                        train=_data(96, 0), test=_data(40, 1)[:2], test_probes=20, resume=True, observe=True)
    resumed = actlab.Recorder(model, out=run, probes=np.arange(0, 96, 3), epochs=EPOCHS, record_epochs="0,1,3,5",
                              train=_data(96, 0), test=_data(40, 1)[:2], test_probes=20, resume=True)
    assert resumed.next_epoch == 4
    for epoch in (4, 5):
        resumed.end_epoch(epoch)
    resumed.close()
    view = open_store(run)
    assert view.attrs["status"] == "complete" and list(view.epochs) == [0, 1, 3, 5]


def test_without_noise_information_or_data_the_store_still_records(tmp_path):
    torch.manual_seed(0)
    model = Net()
    x, y, _ = _data(30, 2)
    with actlab.Recorder(model, out=tmp_path / "run", probes=(x, y), epochs=2, record_epochs="every:1") as rec:
        for epoch in (1, 2):
            with rec.epoch(epoch):
                pass
    view = open_store(tmp_path / "run")
    assert view.dynamics is None and not view.probes["is_noisy"].values.any()
    assert np.isnan(view.metrics["train_clean_loss"].values).all() and list(view.epochs) == [0, 1, 2]
    with pytest.raises(OutputError, match="already holds a run"):
        actlab.Recorder(model, out=tmp_path / "run", probes=(x, y), epochs=2)


def test_ddp_only_rank_0_writes_and_no_collective_deadlocks(tmp_path):
    """Two gloo processes train one DDP model; each makes a recorder; one store holds every scheduled epoch."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    result = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "ddp_loop.py"), str(tmp_path / "run"),
                             port], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    view = open_store(tmp_path / "run")
    assert view.attrs["status"] == "complete" and list(view.epochs) == [0, 2, 4]
    assert list(view.dynamics["epoch"].values) == list(range(5))
    assert (view.metrics["rank"].values[1:] == 0).all()  # rank 0's numbers only
    # observe: both ranks' training logits end in rank 0's store, every sample once per epoch
    observed = open_store(tmp_path / "run-observed")
    assert observed.attrs["status"] == "complete" and observed.dynamics.attrs["source"] == "training"
    y = open_store(tmp_path / "run").training["label"].values
    batches_per_epoch = 4  # 32 samples of each rank in batches of 8
    for rank in (0, 1):
        seen = np.load(tmp_path / f"run-logits-{rank}.npz")
        for epoch in range(1, 5):
            part = slice((epoch - 1) * batches_per_epoch, epoch * batches_per_epoch)
            index, logits = seen["index"][part].ravel(), seen["logits"][part].reshape(-1, 2)
            expected = _outcomes_by_hand(logits, y[index], y[index])
            stored = observed.dynamics.sel(epoch=epoch)
            np.testing.assert_allclose(stored["loss"].values[index], expected["loss"], rtol=2e-3, atol=2e-3)
            np.testing.assert_array_equal(stored["correct"].values[index], expected["correct"])


def _outcomes_by_hand(logits, label, original):
    """loss, margin, correct, correct_original of every row, in NumPy (float64)."""
    logits = np.asarray(logits, np.float64)
    rows = np.arange(len(logits))
    top = logits.max(1, keepdims=True)
    logsumexp = top[:, 0] + np.log(np.exp(logits - top).sum(1))
    others = logits.copy()
    others[rows, label] = -np.inf
    return {"loss": logsumexp - logits[rows, label], "margin": logits[rows, label] - others.max(1),
            "correct": logits.argmax(1) == label, "correct_original": logits.argmax(1) == original}


def test_observed_training_equals_training_without_recorder_bit_for_bit(tmp_path):
    """observe() changes no weight, and the store holds the training step's own logits' outcomes."""
    plain, _ = _train()
    seen = []
    observed, _ = _train(tmp_path / "run", observe=True, seen=seen)
    for (name, a), (_, b) in zip(plain.state_dict().items(), observed.state_dict().items()):
        assert torch.equal(a, b), name
    view = open_store(tmp_path / "run")
    assert view.attrs["status"] == "complete" and view.dynamics.attrs["source"] == "training"
    assert list(view.dynamics["epoch"].values) == list(range(EPOCHS + 1))
    x, y, original = (t.numpy() for t in _data(96, 0))
    noisy = y != original
    for epoch in range(1, EPOCHS + 1):
        batches = [(batch, logits) for e, batch, logits in seen if e == epoch]
        index = np.concatenate([batch for batch, _ in batches])
        assert sorted(index) == list(range(96))
        expected = _outcomes_by_hand(np.concatenate([logits for _, logits in batches]), y[index], original[index])
        stored = view.dynamics.sel(epoch=epoch)
        for name in ("loss", "margin"):
            np.testing.assert_allclose(stored[name].values[index], expected[name], rtol=2e-3, atol=2e-3)
        for name in ("correct", "correct_original"):
            np.testing.assert_array_equal(stored[name].values[index], expected[name])
        correct = np.empty(96, bool)
        correct[index] = expected["correct"]
        assert float(view.metrics["train_noisy_acc"].sel(epoch=epoch)) == pytest.approx(correct[noisy].mean())
    # epoch 0, before training, is an evaluation pass of the initial model
    torch.manual_seed(0)
    initial = Net().eval()
    with torch.no_grad():
        logits = initial(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(view.dynamics["correct"].sel(epoch=0).values, logits.argmax(1) == y)


def _planted(tmp_path, name, **recorder_args):
    """A recorder over 6 training samples (3 classes, samples 4 and 5 noisy) whose model the test never runs."""
    label, original = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 2, 0, 2, 0])
    x = torch.zeros((6, 2))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3))
    rec = actlab.Recorder(model, out=tmp_path / name, probes=np.arange(6), epochs=2, record_epochs="0", layers=["0"],
                          train=(x, torch.from_numpy(label), torch.from_numpy(original)), observe=True, **recorder_args)
    return rec, label, original


LOGITS = np.array([[3.0, 1.0, 0.0], [0.5, 0.2, 2.0], [0.0, -1.0, 4.0], [1.0, 2.5, -2.0], [0.0, 0.3, 1.5], [0.1, 0.2, 2.0]],
                  np.float32)


def test_planted_logits_give_known_loss_margin_and_correct_in_the_store(tmp_path, monkeypatch):
    monkeypatch.setattr("actlab.record.observed.FOLD_VALUES", 10)  # the first batch (12 logits) is folded alone
    rec, label, original = _planted(tmp_path, "run")
    order = np.array([4, 1, 5, 0, 3, 2])  # two batches out of order, the first with its labels
    rec.observe(torch.from_numpy(order[:4]), torch.from_numpy(LOGITS[order[:4]]).requires_grad_(), label[order[:4]])
    rec.observe(order[4:], torch.from_numpy(LOGITS[order[4:]]))
    rec.end_epoch(1)
    with pytest.raises(ConfigError, match="epoch 2: 1 of 6 training samples were not observed and 1 were observed more than once"):
        rec.observe(np.array([0, 1, 2, 3, 4]), torch.from_numpy(LOGITS[:5]))
        rec.observe(np.array([0]), torch.from_numpy(LOGITS[:1]))
        rec.end_epoch(2)
    rec.observe(np.arange(6), torch.from_numpy(LOGITS))
    rec.end_epoch(2)
    rec.close()
    view = open_store(tmp_path / "run")
    expected = _outcomes_by_hand(LOGITS, label, original)
    # by construction: sample 1's assigned class 1 loses to class 2 by 1.8; sample 4 (noisy) predicts its original 2, sample 5
        # (noisy) its assigned 2
    np.testing.assert_allclose(expected["margin"][[0, 1, 4]], [2.0, -1.8, -1.2], rtol=1e-6)
    assert list(expected["correct"]) == [True, False, True, False, False, True]
    assert list(expected["correct_original"]) == [True, False, True, False, True, False]
    for epoch in (1, 2):
        stored = view.dynamics.sel(epoch=epoch)
        for name in ("loss", "margin"):
            np.testing.assert_allclose(stored[name].values, expected[name], rtol=1e-3)
        for name in ("correct", "correct_original"):
            np.testing.assert_array_equal(stored[name].values, expected[name])
        assert float(view.metrics["train_clean_loss"].sel(epoch=epoch)) == pytest.approx(expected["loss"][:4].mean(), rel=1e-6)
        assert float(view.metrics["train_noisy_true_acc"].sel(epoch=epoch)) == 0.5


def test_observe_keeps_batches_as_given_and_refuses_one_changed_in_place_afterwards(tmp_path):
    rec, label, original = _planted(tmp_path, "run")
    index, wide = np.arange(6), torch.from_numpy(np.hstack([LOGITS, np.zeros((6, 2), np.float32)]))
    rec.observe(index, wide[:, :3])  # a view of a larger tensor: copied
    index[:] = 0  # a NumPy array is copied too: changing it afterwards changes nothing
    wide.mul_(2)
    rec.end_epoch(1)
    logits = torch.from_numpy(LOGITS.copy())
    rec.observe(torch.arange(6), logits)
    logits.mul_(2)  # a tensor is kept as given: changed in place before the epoch ends, it is refused
    with pytest.raises(ConfigError, match="^epoch 2: the logits, indices or labels of 1 observed batches were changed in "
                                          "place after observe; hand observe tensors the loop does not change afterwards$"):
        rec.end_epoch(2)
    rec.observe(torch.arange(6), torch.from_numpy(LOGITS))
    rec.end_epoch(2)
    rec.close()
    expected, stored = _outcomes_by_hand(LOGITS, label, original), open_store(tmp_path / "run").dynamics
    for epoch in (1, 2):
        np.testing.assert_allclose(stored["loss"].sel(epoch=epoch).values, expected["loss"], rtol=1e-3)


def test_observe_refuses_wrong_indices_and_accepts_partial_epochs_when_asked(tmp_path):
    rec, label, _ = _planted(tmp_path, "strict")
    rec.observe(np.arange(3), torch.from_numpy(LOGITS[:3]))
    rec.observe(np.arange(3, 6), torch.from_numpy(LOGITS[3:]), label[3:][::-1].copy())  # indices in another order
    with pytest.raises(ConfigError, match="epoch 1: 2 observed labels differ from train's labels"):
        rec.end_epoch(1)
    rec.observe(np.arange(1, 7), torch.from_numpy(LOGITS))
    with pytest.raises(ConfigError, match="epoch 1: 1 observed indices lie outside 0..5"):
        rec.end_epoch(1)
    rec.close()
    with pytest.raises(ConfigError, match="observe=True needs train"):
        actlab.Recorder(nn.Sequential(nn.Linear(2, 3)), out=tmp_path / "none", probes=(torch.zeros(2, 2), torch.zeros(2)),
                        epochs=1, observe=True)

    rec, label, original = _planted(tmp_path, "partial", every_sample_once=False)
    # sample 5 not observed (drop_last); sample 0 observed twice, once wrong (as DistributedSampler's padding)
    other = LOGITS.copy()
    other[0] = [0.0, 1.0, 0.5]
    rec.observe(np.arange(5), torch.from_numpy(LOGITS[:5]))
    rec.observe(np.array([0]), torch.from_numpy(other[:1]))
    rec.end_epoch(1)
    rec.close()
    stored = open_store(tmp_path / "partial").dynamics.sel(epoch=1)
    first, second = _outcomes_by_hand(LOGITS[:1], label[:1], original[:1]), _outcomes_by_hand(other[:1], label[:1], original[:1])
    assert np.isnan(stored["loss"].values[5]) and np.isnan(stored["margin"].values[5]) and not stored["correct"].values[5]
    np.testing.assert_allclose(stored["loss"].values[0], (first["loss"][0] + second["loss"][0]) / 2, rtol=1e-3)
    np.testing.assert_allclose(stored["margin"].values[0], (first["margin"][0] + second["margin"][0]) / 2, rtol=1e-3)
    assert not stored["correct"].values[0]  # correct in 1 of 2 observations: not in more than half
    # a source the contract does not name is refused, even under a valid digest
    group = zarr.open_group(tmp_path / "partial" / "store.zarr", path="dynamics", mode="r+", zarr_format=3)
    attrs = {key: value for key, value in group.attrs.items() if key != "actlab_digest"}
    group.attrs.put(with_digest({**attrs, "source": "guessed"}))
    with pytest.raises(StoreError, match="attribute source of group dynamics is 'guessed'"):
        open_store(tmp_path / "partial")


def test_train_inputs_stay_on_a_gpu_only_where_they_take_at_most_a_quarter_of_its_free_memory(monkeypatch):
    from actlab.record.recorder import _resident

    x = torch.zeros((100, 8))  # 3,200 bytes
    assert _resident(x, x, torch.device("cpu")) is None  # on the CPU the pass reads x as it is
    given = torch.zeros((100, 8), device="meta")
    assert _resident(given, x, torch.device("meta")).device.type == "meta"  # already on the model's device: used as is
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * 3200 - 1, 10**12))
    assert _resident(x, x, torch.device("cuda")) is None  # more than a quarter of the free memory: copied per batch


def test_epochs_not_recorded_are_committed_at_a_recorded_epoch_or_after_commit_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr("actlab.record.recorder.COMMIT_SECONDS", 3600.0)
    rec = actlab.Recorder(nn.Sequential(nn.Linear(2, 3)), out=tmp_path / "run", layers=["0"], epochs=5, record_epochs="0,3",
                          probes=(torch.zeros((4, 2)), torch.zeros(4, dtype=torch.int64)))
    committed = []
    for epoch, seconds in ((1, 3600.0), (2, 3600.0), (3, 3600.0), (4, 0.0)):
        monkeypatch.setattr("actlab.record.recorder.COMMIT_SECONDS", seconds)
        rec.end_epoch(epoch)
        rec._background.flush()
        committed.append(sorted(rec.writer.committed_metric_epochs))
    rec.close()
    assert committed == [[0], [0], [0, 1, 2, 3], [0, 1, 2, 3, 4]]
