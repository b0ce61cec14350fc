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
