"""Train with descend optimizers under DistributedDataParallel, then with ZeRO sharding.

Run on one machine with two CPU processes (gloo backend):

    torchrun --nproc_per_node=2 examples/distributed_training.py

Across machines, start the same command on each with ``--nnodes``, ``--node_rank`` and
``--master_addr`` set as usual for torchrun.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

import descend


def make_model() -> torch.nn.Module:
    """The same initial weights on every rank."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))


def shard_of_batch(step: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank draws the same global batch and keeps its own slice of it."""
    generator = torch.Generator().manual_seed(step)
    x = torch.randn(64, 20, generator=generator)
    y = x[:, :1].sin() + 0.1 * torch.randn(64, 1, generator=generator)
    size = 64 // world
    return x[rank * size : (rank + 1) * size], y[rank * size : (rank + 1) * size]


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> float:
    """Plain training loop; DDP averages the gradients across ranks inside backward()."""
    rank, world = dist.get_rank(), dist.get_world_size()
    loss = torch.tensor(0.0)
    for step in range(steps):
        x, y = shard_of_batch(step, rank, world)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    return loss.item()


def main() -> None:
    """DDP with descend.Adam, then ZeRO-sharded descend.AdamW with a consolidated checkpoint."""
    dist.init_process_group("gloo")
    rank = dist.get_rank()

    model = DistributedDataParallel(make_model())
    optimizer = descend.Adam(model.parameters(), lr=1e-2)
    loss = train(model, optimizer, steps=100)
    if rank == 0:
        print(f"DDP + descend.Adam: final loss {loss:.4f}")

    sharded_model = DistributedDataParallel(make_model())
    sharded = ZeroRedundancyOptimizer(
        sharded_model.parameters(), optimizer_class=descend.AdamW, lr=1e-2
    )
    loss = train(sharded_model, sharded, steps=100)
    sharded.consolidate_state_dict(to=0)  # every rank takes part; rank 0 receives all shards
    if rank == 0:
        torch.save(sharded.state_dict(), "zero_checkpoint.pt")
        print(f"ZeRO + descend.AdamW: final loss {loss:.4f}; state saved to zero_checkpoint.pt")
    # Release the DDP wrappers (and their gradient reducers) before the process group itself.
    del model, sharded_model, optimizer, sharded
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
