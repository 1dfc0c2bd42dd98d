"""descend optimizers under DistributedDataParallel and ZeroRedundancyOptimizer (gloo, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import descend
from descend.kernels.executor import get_executor
from descend.optim.base import BACKENDS
from tests.distributed import ddp_worker
from tests.distributed.launch import torchrun

pytestmark = pytest.mark.slow

WORKER = Path(ddp_worker.__file__)
# The workers train on CPU tensors: every named backend that is available and runs them.
EXPLICIT_BACKENDS = [
    backend
    for backend in BACKENDS
    if backend != "auto"
    and get_executor(backend).available()
    and get_executor(backend).supports(torch.zeros(1))
]


def _torchrun(out: Path, optimizer: str, backend: str, mode: str) -> None:
    torchrun([str(WORKER), str(out), optimizer, backend, mode], timeout=300)


def _single_process(optimizer: str, backend: str) -> list[torch.Tensor]:
    model = ddp_worker.make_model()
    opt = getattr(descend, optimizer)(model.parameters(), lr=0.01, backend=backend)
    ddp_worker.train_steps(model, opt, ddp_worker.batches(), rank=0, world=1)
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("backend", EXPLICIT_BACKENDS)
@pytest.mark.parametrize("optimizer", ["Adam", "SGD"])
def test_ddp_ranks_agree_and_match_a_single_process_on_the_full_batch(tmp_path, optimizer, backend):
    _torchrun(tmp_path, optimizer, backend, "ddp")
    rank0 = torch.load(tmp_path / "params_rank0.pt")
    rank1 = torch.load(tmp_path / "params_rank1.pt")
    for a, b in zip(rank0, rank1, strict=True):
        assert torch.equal(a, b)
    # Averaging the two half-batch gradients equals the full-batch mean gradient up to rounding.
    for a, b in zip(rank0, _single_process(optimizer, backend), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", EXPLICIT_BACKENDS)
def test_zero_redundancy_optimizer_consolidates_and_reloads_its_state(tmp_path, backend):
    _torchrun(tmp_path, "Adam", backend, "zero")
    checkpoint = torch.load(tmp_path / "zero_checkpoint.pt", weights_only=False)
    state = checkpoint["optimizer"]["state"]
    assert len(state) == 4 and all(
        {"exp_avg", "exp_avg_sq", "step"} <= set(s) for s in state.values()
    )
    for rank in (0, 1):
        uninterrupted = torch.load(tmp_path / f"params_rank{rank}.pt")
        resumed = torch.load(tmp_path / f"resumed_rank{rank}.pt")
        for a, b in zip(uninterrupted, resumed, strict=True):
            assert torch.equal(a, b)
    single = _single_process("Adam", backend)
    for a, b in zip(torch.load(tmp_path / "params_rank0.pt"), single, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
