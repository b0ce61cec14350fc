"""Record a PyTorch Lightning run with actlab (needs 'pip install lightning'), then analyse it.

    python examples/lightning_recorder.py runs/lightning-digits      # about a minute on a CPU

The digits data (bundled with scikit-learn) with 20 % of the training labels flipped; the run stores every training
sample's trajectory, so 'actlab analyze' also ranks the likely mislabelled samples (analysis/samples.csv). The
trajectories come from the training steps' own logits (``observe=True``, no extra pass over the training set): the
dataset returns each sample's index and ``training_step`` returns the logits and indices with the loss.
"""

from __future__ import annotations

import sys

import lightning
import numpy as np
import torch
from torch import nn

import actlab.workflow
from actlab.lightning import ActlabCallback
from actlab.record import inject_label_noise, load_dataset


class DigitsMLP(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> dict[str, torch.Tensor]:
        index, x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return {"loss": loss, "logits": logits, "index": index, "label": y}  # for ActlabCallback(observe=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main(out: str, epochs: int = 40) -> None:
    data = load_dataset("digits")
    noisy = inject_label_noise(data.train_labels, 0.2, 10, seed=0)
    x = torch.from_numpy(data.train_images.astype(np.float32) / 16.0)
    y, original = torch.from_numpy(noisy.labels.astype(np.int64)), torch.from_numpy(noisy.original_labels.astype(np.int64))
    x_test = torch.from_numpy(data.test_images.astype(np.float32) / 16.0)
    y_test = torch.from_numpy(data.test_labels.astype(np.int64))
    dataset = torch.utils.data.TensorDataset(torch.arange(len(x)), x, y)  # each sample with its index into train
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True)
    callback = ActlabCallback(out, probes=np.arange(len(x)), train=(x, y, original), test=(x_test, y_test),
                              record_epochs="log:12", observe=True, overwrite=True)
    torch.manual_seed(0)
    trainer = lightning.Trainer(max_epochs=epochs, callbacks=[callback], accelerator="cpu", logger=False,
                                enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(DigitsMLP(), loader)
    summary = actlab.workflow.analyze_to_dir(out, progress=False).summary
    print("mislabel ranking ROC AUC:", summary["dynamics"]["mislabel_ranking"]["auc"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/lightning-digits")
