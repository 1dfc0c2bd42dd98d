"""Worker for the sharded matrix-method tests: run under ``torchrun --nproc_per_node=N`` (gloo,
CPU).

For each class whose rule has a matrix stage (Muon, Shampoo, SOAP, PSGD-Kron, MARS), a
two-layer MLP with widths no world size here divides evenly is wrapped with ``fully_shard``
and trained for :data:`STEPS` steps; on every rank an unsharded copy is stepped by the same
class on the same (gathered) gradients. Halfway, the parameters' shards and the optimizer's
state are saved (by ``state_dict`` on each rank, and by ``torch.distributed.checkpoint``),
each loaded into a fresh sharded model and optimizer, and those runs continued. PSGD-Kron's
probes are recorded (as checksums) to compare across ranks, and the bytes of state each rank
holds are counted. Each rank writes what it saw to the output folder
for :mod:`tests.distributed.test_fsdp_matrix` to check, and prints the byte counts.

    torchrun --nproc_per_node=N -m tests.distributed.matrix_worker OUT_DIR
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

import descend
import descend.rules.psgd_kron as psgd_kron
from descend.optim import sharded
from tests.distributed.fsdp_worker import shard_linears

STEPS = 20
SAVED_AT = 10
BATCH = 8
WIDTHS = (6, 13, 5)  # 13 and 5 rows: uneven shards on 2 and 4 ranks (one empty on 4)

Factory = Callable[[list[tuple[str, torch.nn.Parameter]]], torch.optim.Optimizer]


def _split(flag: str, **options) -> Callable:
    """A class with AdamW groups: the weights to its rule, the biases to AdamW."""

    def make(cls: type, named: list) -> torch.optim.Optimizer:
        weights = [(name, p) for name, p in named if p.ndim >= 2]
        biases = [(name, p) for name, p in named if p.ndim < 2]
        return cls([{"params": weights}, {"params": biases, flag: False}], **options)

    return make


def _whole(**options) -> Callable:
    """A class given every parameter, biases included (its rule's own vector path)."""
    return lambda cls, named: cls(named, **options)


#: Each matrix class and how it is built: options that make every whole-tensor part run
#: within 20 steps (SOAP's basis renewed by power iteration, vectors preconditioned too;
#: Shampoo's roots from step 3 on, grafted onto Adam, the 13-wide weights cut into blocks).
CASES: dict[str, Callable] = {
    "Muon": _split("use_muon", lr=0.02),
    "Shampoo": _whole(
        lr=0.01, momentum=0.5, preconditioning_compute_steps=3, max_preconditioner_dim=8
    ),
    "SOAP": _whole(lr=0.01, precondition_frequency=3, precondition_1d=True),
    "PSGDKron": _whole(lr=0.003),
    "MARS": _whole(lr=0.01, optimize_1d=True),
}


def make_optimizer(name: str, named: list) -> torch.optim.Optimizer:
    """The optimizer of case ``name`` over the named parameters."""
    return CASES[name](getattr(descend, name), named)


def make_model(seed: int = 0) -> torch.nn.Module:
    """The same two-layer MLP everywhere."""
    torch.manual_seed(seed)
    first, hidden, last = WIDTHS
    return torch.nn.Sequential(
        torch.nn.Linear(first, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, last)
    )


def sharded_model(mesh: DeviceMesh, seed: int = 0) -> torch.nn.Module:
    """:func:`make_model`, sharded as the elementwise worker shards its model."""
    return shard_linears(make_model(seed), mesh)


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The full batches, identical on every rank."""
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(BATCH, WIDTHS[0], generator=generator),
            torch.randn(BATCH, WIDTHS[-1], generator=generator),
        )
        for _ in range(STEPS)
    ]


def backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """This rank's part of the batch, forward and backward (FSDP2 averages the gradients)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    torch.nn.functional.mse_loss(model(x[part]), y[part]).backward()


def full(model: torch.nn.Module) -> list[torch.Tensor]:
    """The whole parameters (gathered from every rank)."""
    return [p.full_tensor().detach().clone() for p in model.parameters()]


def state_bytes(optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of optimizer state this rank holds: ``slots`` (the rule's elementwise state: of
    a DTensor parameter this rank's shards), ``matrix`` (the rest but counters: the matrix
    state, whole) and ``counters`` (0-d tensors and PSGD-Kron's random stream)."""
    counts = {"slots": 0, "matrix": 0, "counters": 0}
    for group in optimizer.param_groups:
        slot_names = {slot.name for slot in optimizer.rule_for(group).slots}
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if not isinstance(value, torch.Tensor):
                    continue
                size = sharded.local(value).numel() * value.element_size()
                if key in slot_names:
                    counts["slots"] += size
                elif value.ndim == 0 or key in psgd_kron.INTEGER_KEYS:
                    counts["counters"] += size
                else:
                    counts["matrix"] += size
    return counts


def record_probes() -> list[float]:
    """Wrap PSGD-Kron's probe draws: each probe's sum of squares and first element, in order,
    into the list returned."""
    drawn: list[float] = []
    draw = psgd_kron.probe_vectors

    def recorded(like, seed, stream, step):
        probe = draw(like, seed, stream, step)
        drawn.extend([float(probe.square().sum()), float(probe.flatten()[0])])
        return probe

    psgd_kron.probe_vectors = recorded
    return drawn


def resume(
    mesh: DeviceMesh,
    name: str,
    data: list,
    shards: list[torch.Tensor],
    load: Callable[[torch.nn.Module, torch.optim.Optimizer], None],
) -> list[torch.Tensor]:
    """A fresh model (initialized otherwise) given the saved ``shards`` and a fresh optimizer
    given the saved state by ``load``, trained from :data:`SAVED_AT` on; its parameters."""
    model = sharded_model(mesh, seed=7)
    with torch.no_grad():
        for param, shard in zip(model.parameters(), shards, strict=True):
            param._local_tensor.copy_(shard)
    optimizer = make_optimizer(name, list(model.named_parameters()))
    load(model, optimizer)
    for x, y in data[SAVED_AT:]:
        optimizer.zero_grad()
        backward(model, x, y)
        optimizer.step()
    return full(model)


def load_through_checkpoint(folder: Path) -> Callable:
    """Load the optimizer state saved in ``folder`` by ``torch.distributed.checkpoint``."""

    def load(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer_state = get_optimizer_state_dict(model, optimizer)
        dcp.load({"optimizer": optimizer_state}, checkpoint_id=folder)
        set_optimizer_state_dict(model, optimizer, optim_state_dict=optimizer_state)

    return load


def run_case(out: Path, mesh: DeviceMesh, name: str, data: list) -> None:
    """Train case ``name`` sharded, resume it halfway from its ``state_dict`` and from a
    ``torch.distributed.checkpoint`` of it, and step an unsharded copy on the gathered
    gradients; save the four runs and the bytes of state."""
    rank = dist.get_rank()
    model = sharded_model(mesh)
    initial = full(model)
    optimizer = make_optimizer(name, list(model.named_parameters()))
    single = make_model()
    single_optimizer = make_optimizer(name, list(single.named_parameters()))
    folder = out / f"dcp-{name}"
    for step, (x, y) in enumerate(data):
        if step == SAVED_AT:
            shards = [p._local_tensor.detach().clone() for p in model.parameters()]
            saved = copy.deepcopy(optimizer.state_dict())
            optimizer_state = get_optimizer_state_dict(model, optimizer)
            dcp.save({"optimizer": optimizer_state}, checkpoint_id=folder)
        optimizer.zero_grad()
        backward(model, x, y)
        for plain, shard in zip(single.parameters(), model.parameters(), strict=True):
            plain.grad = shard.grad.full_tensor()
        optimizer.step()
        single_optimizer.step()
    resumed = resume(mesh, name, data, shards, lambda _, fresh: fresh.load_state_dict(saved))
    checkpointed = resume(mesh, name, data, shards, load_through_checkpoint(folder))
    counts = state_bytes(optimizer)
    print(
        f"state bytes per rank: {name} rank {rank} of {dist.get_world_size()}: "
        f"slots {counts['slots']}, matrix {counts['matrix']}, counters {counts['counters']}",
        flush=True,
    )
    torch.save(
        {
            "sharded": full(model),
            "single": [p.detach().clone() for p in single.parameters()],
            "resumed": resumed,
            "checkpointed": checkpointed,
            "initial": initial,
            "state_bytes": counts,
            "single_state_bytes": state_bytes(single_optimizer),
        },
        out / f"{name}-rank{rank}.pt",
    )


def main() -> None:
    """Run every case on this rank."""
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    probes = record_probes()
    data = batches()
    for name in CASES:
        run_case(out, mesh, name, data)
    (out / f"probes-rank{dist.get_rank()}.json").write_text(json.dumps(probes))
    dist.barrier()
    # Everything is saved. Leave without running gloo's destructors: torch 2.x can deadlock in
    # ProcessGroupGloo's destructor at interpreter exit (see ddp_worker.py).
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
