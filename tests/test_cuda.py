"""The CUDA-graph training step against the eager one (runs only where a CUDA GPU is present)."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_graph_step_matches_eager(tiny_record_config):
    from actlab.record.data import prepare_data
    from actlab.record.models import make_mlp
    from actlab.record.trainer import Trainer

    config = tiny_record_config.replace(synthetic="train=1000,test=60,classes=4,shape=3x8x8,seed=1")
    data = prepare_data(config)
    device = torch.device("cuda")
    torch.manual_seed(0)
    eager_model = make_mlp("mlp5", 3 * 8 * 8, 4, 64).to(device)
    graph_model = copy.deepcopy(eager_model)
    # 1000 samples, batch 96: ten graphed steps and one eager partial batch of 40 per epoch
    eager = Trainer(eager_model, data, device, batch_size=96, lr=1e-3, seed=3, cuda_graphs=False)
    for group in eager.optimizer.param_groups:  # the same Adam arithmetic as the graph's (device-side step count)
        group["capturable"] = True
    graphed = Trainer(graph_model, data, device, batch_size=96, lr=1e-3, seed=3, cuda_graphs=True)
    for _ in range(3):
        loss_eager, loss_graphed = eager.train_epoch(), graphed.train_epoch()
        assert loss_graphed == pytest.approx(loss_eager, rel=1e-5)
    for (name, a), (_, b) in zip(eager_model.named_parameters(), graph_model.named_parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=f"parameter {name} differs")
    assert graphed.evaluate()["test_loss"] == pytest.approx(eager.evaluate()["test_loss"], rel=1e-4)


@pytest.mark.parametrize("free", [None, 0])
def test_recorder_train_pass_on_the_gpu_matches_the_cpu_model(tmp_path, monkeypatch, free):
    """train=: the inputs kept on the GPU (free=None) or copied per batch (free=0: no room) give the trajectory of
    the same model evaluated on the CPU."""
    import numpy as np

    import actlab
    from actlab.record.models import make_mlp
    from actlab.store import open_store

    if free is not None:
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 10**12))
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn((300, 3, 8, 8), generator=generator), torch.randint(0, 4, (300,), generator=generator)
    torch.manual_seed(0)
    model = make_mlp("mlp5", 3 * 8 * 8, 4, 64).to("cuda")
    rec = actlab.Recorder(model, out=tmp_path / "run", probes=np.arange(20), epochs=1, record_epochs="0", train=(x, y),
                          batch_size=128)
    assert (rec._train_x is None) == (free == 0) and (rec._train_x is None or rec._train_x.is_cuda)
    rec.end_epoch(1)
    rec.close()
    with torch.no_grad():
        logits = model.cpu().eval()(x).double()
    loss = torch.nn.functional.cross_entropy(logits, y, reduction="none").numpy()
    stored = open_store(tmp_path / "run").dynamics.sel(epoch=1)
    np.testing.assert_allclose(stored["loss"].values, loss, rtol=2e-3, atol=2e-3)
    top = logits.topk(2, dim=1).values
    clear = (top[:, 0] - top[:, 1] > 1e-3).numpy()  # no near-tie whose float32 rounding on the GPU may flip
    np.testing.assert_array_equal(stored["correct"].values[clear], (logits.argmax(1) == y).numpy()[clear])
