"""Worker for the FSDP2 tests: run under ``torchrun --nproc_per_node=2`` (gloo, CPU).

One run covers every case, since starting the processes is the slow part: for each elementwise
descend class and backend, a 3-layer MLP wrapped with ``fully_shard`` is trained with the
descend class, with its ``torch.optim`` counterpart (if it has one) under the same sharding, and,
on every rank, an unsharded copy is stepped by the same descend class on the same (gathered)
gradients; then a checkpoint is saved and loaded with ``torch.distributed.checkpoint``, Muon is
given sharded matrices, and one rank's gradient shard is made non-finite. Each rank writes what
it saw to the output folder for :mod:`tests.distributed.test_fsdp` to check.

    torchrun --nproc_per_node=2 -m tests.distributed.fsdp_worker OUT_DIR BACKEND[,BACKEND...]
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard

import descend
from descend.rules import GroupReduction

STEPS = 4
BATCH = 8
LR = 0.01
#: The pseudo-class of Muon's elementwise groups: a param group with ``use_muon=False``.
MUON_ADAMW = "Muon(use_muon=False)"

Factory = Callable[[list], torch.optim.Optimizer]


def elementwise_classes() -> list[str]:
    """Every descend class (from the registry of classes) whose rule is elementwise, and Muon's
    AdamW groups, which are too; not those whose step sums over every parameter (Prodigy),
    which refuse sharded parameters."""
    names = [
        name
        for name, cls in descend.optim.CLASSES.items()
        if cls.rule.stage is None and not isinstance(cls.rule.group_state, GroupReduction)
    ]
    if "Muon" in descend.optim.CLASSES:
        names.append(MUON_ADAMW)
    return names


def descend_factory(name: str, backend: str, **options) -> Factory:
    """Builds the descend optimizer ``name`` (at learning rate :data:`LR`) over parameters."""
    if name == MUON_ADAMW:
        return lambda params: descend.Muon(
            [{"params": params, "use_muon": False, "lr": LR}], backend=backend, **options
        )
    cls = descend.optim.CLASSES[name]
    return lambda params: cls(params, lr=LR, backend=backend, **options)


def torch_factory(name: str) -> Factory | None:
    """The ``torch.optim`` class computing the same iterates (the class's ``torch_equivalent``),
    with every hyperparameter both take copied from the descend optimizer's group; ``None`` for
    a class without one."""
    descend_cls = descend.Muon if name == MUON_ADAMW else descend.optim.CLASSES[name]
    dotted, fixed = (
        ("torch.optim.AdamW", {})
        if name == MUON_ADAMW
        else descend_cls.torch_equivalent or (None, None)
    )
    if dotted is None:
        return None
    module, _, class_name = dotted.rpartition(".")
    torch_cls = getattr(importlib.import_module(module), class_name)
    group = descend_factory(name, "reference")([torch.zeros(1, requires_grad=True)]).param_groups[0]
    accepted = inspect.signature(torch_cls).parameters
    shared = {
        key: value
        for key, value in group.items()
        if key in accepted and key not in ("params", "foreach", "fused")
    }
    return lambda params: torch_cls(params, **{**shared, **fixed})


def make_model(seed: int = 0) -> torch.nn.Module:
    """The same 3-layer MLP everywhere (layer widths that 2 ranks shard unevenly)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 15),
        torch.nn.Tanh(),
        torch.nn.Linear(15, 7),
        torch.nn.Tanh(),
        torch.nn.Linear(7, 2),
    )


def shard_linears(model: torch.nn.Sequential, mesh: DeviceMesh) -> torch.nn.Module:
    """``model`` with each Linear and the whole model wrapped by ``fully_shard``."""
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def sharded_model(mesh: DeviceMesh, seed: int = 0) -> torch.nn.Module:
    """:func:`make_model`, sharded by :func:`shard_linears`."""
    return shard_linears(make_model(seed), mesh)


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The full batches, identical on every rank."""
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(BATCH, 6, generator=generator), torch.randn(BATCH, 2, generator=generator))
        for _ in range(STEPS)
    ]


def backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """This rank's half of the batch, forward and backward (FSDP2 averages the gradients)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    half = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    torch.nn.functional.mse_loss(model(x[half]), y[half]).backward()


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: list) -> None:
    """One step per batch."""
    for x, y in data:
        optimizer.zero_grad()
        backward(model, x, y)
        optimizer.step()


def full(model: torch.nn.Module) -> list[torch.Tensor]:
    """The whole parameters (gathered from every rank)."""
    return [p.full_tensor().detach().clone() for p in model.parameters()]


def run_class(out: Path, mesh: DeviceMesh, name: str, backend: str, data: list) -> None:
    """Train ``name`` on the sharded model, its torch counterpart beside it, and an unsharded
    copy on the same gradients; save the three."""
    model = sharded_model(mesh)
    initial = full(model)
    optimizer = descend_factory(name, backend)(list(model.parameters()))
    make_torch = torch_factory(name)
    torch_model = sharded_model(mesh) if make_torch else None
    torch_optimizer = make_torch(list(torch_model.parameters())) if make_torch else None
    single = make_model()
    single_optimizer = descend_factory(name, backend)(list(single.parameters()))
    for x, y in data:
        optimizer.zero_grad()
        backward(model, x, y)
        for plain, sharded in zip(single.parameters(), model.parameters(), strict=True):
            plain.grad = sharded.grad.full_tensor()
        optimizer.step()
        single_optimizer.step()
        if torch_optimizer is not None:
            torch_optimizer.zero_grad()
            backward(torch_model, x, y)
            torch_optimizer.step()
    ours, theirs = full(model), [p.detach().clone() for p in single.parameters()]
    if hasattr(optimizer, "eval"):  # Schedule-Free: the averaged weights too
        optimizer.eval()
        single_optimizer.eval()
        ours += full(model)
        theirs += [p.detach().clone() for p in single.parameters()]
    torch.save(
        {
            "descend": ours,
            "single": theirs,
            "initial": initial,
            "torch": full(torch_model) if torch_model is not None else None,
        },
        out / f"{name}-{backend}-rank{dist.get_rank()}.pt",
    )


def state_layout(optimizer_state: dict) -> dict[str, list]:
    """Parameter name -> sorted (state key, type name) of a distributed optimizer state dict."""
    return {
        name: sorted((key, type(value).__name__) for key, value in entry.items())
        for name, entry in optimizer_state["state"].items()
    }


def run_checkpoint(out: Path, mesh: DeviceMesh, backend: str, data: list) -> None:
    """Save a sharded checkpoint halfway, load it into a fresh model and optimizer (initialized
    differently), and compare the resumed run with the uninterrupted one."""
    half = len(data) // 2
    model = sharded_model(mesh)
    optimizer = descend.AdamW(model.parameters(), lr=LR, backend=backend)
    train(model, optimizer, data[:half])
    model_state, optimizer_state = get_state_dict(model, optimizer)
    layout = state_layout(optimizer_state)
    folder = out / f"dcp-{backend}"
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=folder)
    train(model, optimizer, data[half:])

    fresh = sharded_model(mesh, seed=7)
    fresh_optimizer = descend.AdamW(fresh.parameters(), lr=LR, backend=backend)
    model_state, optimizer_state = get_state_dict(fresh, fresh_optimizer)
    loaded = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(loaded, checkpoint_id=folder)
    set_state_dict(
        fresh,
        fresh_optimizer,
        model_state_dict=loaded["model"],
        optim_state_dict=loaded["optimizer"],
    )
    train(fresh, fresh_optimizer, data[half:])

    reference = sharded_model(mesh)
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=LR)
    train(reference, reference_optimizer, data[:half])
    torch_layout = state_layout(get_state_dict(reference, reference_optimizer)[1])
    torch.save(
        {
            "resumed": full(fresh),
            "uninterrupted": full(model),
            "state_layout": layout,
            "torch_state_layout": torch_layout,
        },
        out / f"checkpoint-{backend}-rank{dist.get_rank()}.pt",
    )


def describe_error(action: Callable[[], object]) -> str:
    """``"Type: message"`` of what ``action`` raises, ``""`` if nothing."""
    try:
        action()
    except Exception as error:  # noqa: BLE001 - reported to the test, which checks the type
        return f"{type(error).__name__}: {error}"
    return ""


def run_muon(out: Path, mesh: DeviceMesh) -> None:
    """Muon given the sharded matrices of an FSDP2 model (accepted: see test_fsdp_matrix)."""
    model = sharded_model(mesh)
    matrices = [(name, p) for name, p in model.named_parameters() if p.ndim == 2]
    refused = describe_error(lambda: descend.Muon(matrices, lr=0.02))
    (out / f"muon-rank{dist.get_rank()}.json").write_text(json.dumps({"refused": refused}))


def run_nonfinite(out: Path, mesh: DeviceMesh, data: list) -> None:
    """A NaN in rank 1's shard of one gradient only: both ranks must skip, or both raise."""
    model = sharded_model(mesh)
    skipping = descend.Adam(model.named_parameters(), lr=LR, nonfinite="skip")
    raising = descend.Adam(model.named_parameters(), lr=LR, nonfinite="raise")
    train(model, skipping, data[:1])
    before = [p._local_tensor.clone() for p in model.parameters()]
    skipping.zero_grad()
    backward(model, *data[1])
    bias = dict(model.named_parameters())["2.bias"]
    if dist.get_rank() == 1:
        bias.grad._local_tensor[0] = float("nan")
    skipping.step()
    raised = describe_error(raising.step)
    unchanged = all(
        torch.equal(p._local_tensor, b) for p, b in zip(model.parameters(), before, strict=True)
    )
    (out / f"nonfinite-rank{dist.get_rank()}.json").write_text(
        json.dumps(
            {"skipped_steps": skipping.skipped_steps, "unchanged": unchanged, "raised": raised}
        )
    )


def main() -> None:
    """Run every case on this rank."""
    out, backends = Path(sys.argv[1]), sys.argv[2].split(",")
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    data = batches()
    for backend in backends:
        for name in elementwise_classes():
            run_class(out, mesh, name, backend, data)
        run_checkpoint(out, mesh, backend, data)
    run_muon(out, mesh)
    run_nonfinite(out, mesh, data)
    dist.barrier()
    # Everything is saved. Leave without running gloo's destructors: torch 2.x can deadlock in
    # ProcessGroupGloo's destructor at interpreter exit (see ddp_worker.py).
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
