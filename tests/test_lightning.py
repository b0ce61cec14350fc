"""actlab.lightning: the Lightning callback records a run (skipped where Lightning is not installed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

lightning = pytest.importorskip("lightning")

from actlab.lightning import ActlabCallback, logged_metrics  # noqa: E402
from actlab.store import open_store  # noqa: E402


class Tiny(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, index):
        loss = nn.functional.cross_entropy(self(batch[0]), batch[1])
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module, loader, callback, epochs):
    """Fit ``module`` on the CPU with only ``callback`` (no logger, checkpoints or progress bar)."""
    torch.manual_seed(0)
    trainer = lightning.Trainer(max_epochs=epochs, callbacks=[callback], accelerator="cpu", logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)


def test_callback_records_every_scheduled_epoch_and_the_logged_metrics(tmp_path):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((48, 1, 4, 4)).astype(np.float32))
    original = torch.from_numpy(rng.integers(0, 3, 48))
    y = original.clone()
    y[::4] = (y[::4] + 1) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    callback = ActlabCallback(tmp_path / "run", probes=np.arange(0, 48, 2), train=(x, y, original), record_epochs="0,1,3")
    module = Tiny()
    _fit(module, loader, callback, 3)
    view = open_store(tmp_path / "run")
    assert view.attrs["status"] == "complete" and list(view.epochs) == [0, 1, 3]
    assert list(view.dynamics["epoch"].values) == [0, 1, 2, 3] and view.dynamics.sizes["train_sample"] == 48
    assert np.isfinite(view.metrics["train.loss"].values[1:]).all()
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(view.parameters[name].sel(epoch=3).values, value.numpy())
    assert logged_metrics({"a/b": torch.tensor(1.5), "vec": torch.ones(2), "flag": True}) == {"a.b": 1.5}


class Observed(Tiny):
    """Returns the logits and the dataset indices for ``ActlabCallback(observe=True)``, and keeps them for the test."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def training_step(self, batch, index):
        sample, x, y = batch
        logits = self(x)
        self.seen.append((self.current_epoch + 1, sample.numpy(), logits.detach().numpy().copy()))
        return {"loss": nn.functional.cross_entropy(logits, y), "logits": logits, "index": sample, "label": y}


def test_callback_with_observe_stores_the_training_step_logits(tmp_path):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((40, 1, 4, 4)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 3, 40))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(40), x, y), batch_size=16, shuffle=True)
    callback = ActlabCallback(tmp_path / "run", probes=np.arange(8), train=(x, y), record_epochs="0", observe=True)
    module = Observed()
    _fit(module, loader, callback, 2)
    view = open_store(tmp_path / "run")
    assert view.attrs["status"] == "complete" and view.dynamics.attrs["source"] == "training"
    for epoch in (1, 2):
        index = np.concatenate([sample for e, sample, _ in module.seen if e == epoch])
        logits = np.concatenate([values for e, _, values in module.seen if e == epoch]).astype(np.float64)
        assert sorted(index) == list(range(40))
        label = y.numpy()[index]
        top = logits.max(1)
        loss = top + np.log(np.exp(logits - top[:, None]).sum(1)) - logits[np.arange(40), label]
        stored = view.dynamics.sel(epoch=epoch)
        np.testing.assert_allclose(stored["loss"].values[index], loss, rtol=2e-3, atol=2e-3)
        np.testing.assert_array_equal(stored["correct"].values[index], logits.argmax(1) == label)
