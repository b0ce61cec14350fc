"""A 2-process gloo DDP training loop on the CPU with two actlab.Recorders in every process (tests/test_recorder.py):
one evaluating train= (store OUT), one observing each rank's training logits (store OUT-observed, the logits of rank
r also saved to OUT-logits-r.npz for the test's own computation).

    python tests/ddp_loop.py OUT PORT      # forks 2 processes; only rank 0 writes the stores
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import actlab
import actlab.record.recorder  # noqa: F401  (imported once, before the fork: the workers inherit it)

EPOCHS = 4


def worker(rank: int, out: str, port: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((64, 1, 4, 4)).astype(np.float32))
    y = torch.from_numpy((x[:, 0, 0, 0] > 0).long().numpy())
    model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = actlab.Recorder(model, out=out, probes=np.arange(16), epochs=EPOCHS, record_epochs="0,2,4", train=(x, y))
    observing = actlab.Recorder(model, out=f"{out}-observed", probes=np.arange(16), epochs=EPOCHS, record_epochs="0",
                                train=(x, y), observe=True)
    assert rec.active == observing.active == (rank == 0)
    shard = torch.arange(rank, 64, 2)
    seen = {"index": [], "logits": []}
    for epoch in range(1, EPOCHS + 1):
        for batch in shard.split(8):
            logits = model(x[batch])
            observing.observe(batch, logits, y[batch])
            seen["index"].append(batch.numpy())
            seen["logits"].append(logits.detach().numpy())
            loss = nn.functional.cross_entropy(logits, y[batch])
            opt.zero_grad()
            loss.backward()  # all-reduce: both ranks must get here every step
            opt.step()
        rec.end_epoch(epoch, metrics={"rank": rank})
        observing.end_epoch(epoch)  # all-reduce of the observations: both ranks
    rec.close()
    observing.close()
    np.savez(f"{out}-logits-{rank}.npz", index=np.stack(seen["index"]), logits=np.stack(seen["logits"]))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.start_processes(worker, args=(sys.argv[1], sys.argv[2]), nprocs=2, join=True, start_method="fork")
