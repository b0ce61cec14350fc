"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- record side ---------------------------------------------------------------------------


@pytest.fixture
def cifar_data_dir() -> Path:
    """Folder holding the real ``cifar-10-batches-bin/`` ($ACTLAB_DATA, else ../shared/data beside the repo); skips without it."""
    for root in (os.environ.get("ACTLAB_DATA"), REPO_ROOT.parent / "shared" / "data"):
        if root and (Path(root) / "cifar-10-batches-bin" / "data_batch_1.bin").is_file():
            return Path(root)
    pytest.skip("CIFAR-10 binary files not found; set ACTLAB_DATA to the folder holding cifar-10-batches-bin/")


@pytest.fixture
def torch_one_thread():
    """Run torch single-threaded (shared cores; identical results across in-process and subprocess runs)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_record_config(tmp_path):
    """A seconds-long RecordConfig: MLP3 of width 16 on a small synthetic set, every epoch recorded."""
    from actlab.record import RecordConfig

    return RecordConfig(
        dataset="synthetic", synthetic="train=200,test=60,classes=4,shape=2x4x4,seed=1", model="mlp3", width=16,
        epochs=6, lr=1e-2, batch_size=32, record_epochs="every:1", probe_clean=40, probe_noisy=20, probe_test=30,
        checkpoint_every=0, out=str(tmp_path / "run"), progress=False, device="cpu",
    )
