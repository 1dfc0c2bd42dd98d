"""Worker for the distributed tests: run under ``torchrun --nproc_per_node=2``.

Trains a small model with DistributedDataParallel and a descend optimizer (or a
ZeroRedundancyOptimizer wrapping one), each rank on its half of every batch, and saves each
rank's final parameters (and, for ZeRO, a checkpoint-resumed run's) to the output folder.

    torchrun --nproc_per_node=2 ddp_worker.py OUT_DIR OPTIMIZER BACKEND MODE
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

import descend

STEPS = 12
BATCH = 16


def make_model() -> torch.nn.Module:
    """The same small network on every rank and in the single-process reference."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The full batches, identical everywhere."""
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(BATCH, 6, generator=generator), torch.randn(BATCH, 2, generator=generator))
        for _ in range(STEPS)
    ]


def train_steps(model, optimizer, data, rank: int, world: int) -> None:
    """One optimizer step per batch, on this rank's shard (rank=0, world=1: the full batch)."""
    for x, y in data:
        shard = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x[shard]), y[shard]).backward()
        optimizer.step()


def main() -> None:
    """Run the worker."""
    out, optimizer_name, backend, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    optimizer_class = getattr(descend, optimizer_name)
    model = DistributedDataParallel(make_model())
    data = batches()
    if mode == "ddp":
        optimizer = optimizer_class(model.parameters(), lr=0.01, backend=backend)
        train_steps(model, optimizer, data, rank, world)
    else:
        optimizer = ZeroRedundancyOptimizer(
            model.parameters(), optimizer_class=optimizer_class, lr=0.01, backend=backend
        )
        train_steps(model, optimizer, data[: STEPS // 2], rank, world)
        optimizer.consolidate_state_dict(to=0)
        checkpoint = out / "zero_checkpoint.pt"
        if rank == 0:
            torch.save(
                {"model": model.module.state_dict(), "optimizer": optimizer.state_dict()},
                checkpoint,
            )
        dist.barrier()
        # A fresh model and optimizer resume from the consolidated checkpoint.
        saved = torch.load(checkpoint, weights_only=False)
        resumed = DistributedDataParallel(make_model())
        resumed.module.load_state_dict(saved["model"])
        resumed_optimizer = ZeroRedundancyOptimizer(
            resumed.parameters(), optimizer_class=optimizer_class, lr=0.01, backend=backend
        )
        resumed_optimizer.load_state_dict(saved["optimizer"])
        train_steps(resumed, resumed_optimizer, data[STEPS // 2 :], rank, world)
        train_steps(model, optimizer, data[STEPS // 2 :], rank, world)
        torch.save(
            [p.detach() for p in resumed.module.parameters()], out / f"resumed_rank{rank}.pt"
        )
    torch.save([p.detach() for p in model.module.parameters()], out / f"params_rank{rank}.pt")
    dist.barrier()
    # Everything is saved. Leave without running gloo's destructors: torch 2.x can deadlock in
    # ProcessGroupGloo's destructor at interpreter exit (its worker thread waits for the GIL
    # that the exiting main thread holds), which would hang the test instead of failing it.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
