"""descend optimizers on DTensor parameters: FSDP2's ``fully_shard`` and tensor parallelism.

The fast tests run in this process on a one-rank gloo mesh (a DTensor whose local tensor is the
whole tensor, on every backend that runs CPU tensors); the FSDP2 tests launch one ``torchrun``
with two gloo processes on CPU (:mod:`tests.distributed.fsdp_worker`) that covers every
elementwise class, a sharded checkpoint, Muon's sharded matrices and the refusals, and check
what it wrote.
"""

from __future__ import annotations

import os

# Before Triton is first imported, as in tests/kernels/test_triton.py: the Triton executor then
# runs its GPU kernels' own code on CPU tensors, so the fast tests cover it too.
os.environ.setdefault("TRITON_INTERPRET", "1")

import json
from pathlib import Path

import pytest
import torch
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

import descend
from descend.kernels.executor import get_executor
from descend.optim import NonFiniteGradientError
from descend.optim.base import BACKENDS
from tests.distributed import fsdp_worker
from tests.distributed.launch import torchrun

#: Every named backend that is available here and runs CPU tensors.
CPU_BACKENDS = [
    backend
    for backend in BACKENDS
    if backend != "auto"
    and get_executor(backend).available()
    and get_executor(backend).supports(torch.zeros(1))
]
#: Every descend class whose rule is elementwise (no matrix stage), from the registry.
ELEMENTWISE = fsdp_worker.elementwise_classes()
STEPS = 3


def _pair(mesh, seed: int = 0):
    """The same values twice: as DTensor parameters (a sharded matrix, a replicated vector)
    and as plain parameters."""
    generator = torch.Generator().manual_seed(seed)
    values = [torch.randn(5, 3, generator=generator), torch.randn(4, generator=generator)]
    placements = [[Shard(0)], [Replicate()]]
    sharded = [
        torch.nn.Parameter(distribute_tensor(v.clone(), mesh, p))
        for v, p in zip(values, placements, strict=True)
    ]
    plain = [torch.nn.Parameter(v.clone()) for v in values]
    return sharded, plain


def _set_gradients(sharded, plain, step: int, bad: float | None = None) -> None:
    generator = torch.Generator().manual_seed(100 + step)
    for s, p in zip(sharded, plain, strict=True):
        grad = torch.randn(p.shape, generator=generator)
        p.grad = grad.clone()
        s.grad = distribute_tensor(grad, s.device_mesh, s.placements)
    if bad is not None:
        sharded[1].grad._local_tensor[2] = bad
        plain[1].grad[2] = bad


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_dtensor_parameters_step_exactly_as_plain_ones_with_sharded_state(mesh, name, backend):
    make = fsdp_worker.descend_factory(name, backend)
    sharded, plain = _pair(mesh)
    on_shards, on_plain = make(sharded), make(plain)
    for step in range(STEPS):
        _set_gradients(sharded, plain, step)
        on_shards.step()
        on_plain.step()
    for s, p in zip(sharded, plain, strict=True):
        assert isinstance(s, DTensor)
        assert torch.equal(s.full_tensor(), p.detach())
        shard_state, plain_state = on_shards.state[s], on_plain.state[p]
        assert shard_state.keys() == plain_state.keys()
        for key, value in shard_state.items():
            if key == "step" or value.ndim == 0:
                assert not isinstance(value, DTensor)  # torch.optim keeps counters plain
            else:
                # State is distributed as its parameter is, as torch.optim's under FSDP2.
                assert isinstance(value, DTensor) and value.placements == s.placements
            assert torch.equal(_full(value), plain_state[key])


@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if get_executor(b).compiled])
def test_a_compiled_plan_walks_the_local_shards_and_is_kept_across_steps(mesh, backend):
    sharded, plain = _pair(mesh)
    on_shards = descend.Adam(sharded, lr=0.1, backend=backend)
    on_plain = descend.Adam(plain, lr=0.1, backend=backend)
    _set_gradients(sharded, plain, 0)
    on_shards.step()
    on_plain.step()
    group = on_shards.param_groups[0]
    plan = on_shards._plans[id(group)]
    assert {id(p) for p in sharded} <= plan.where.keys()  # planned, not left over
    for step in (1, 2):
        _set_gradients(sharded, plain, step)
        on_shards.step()
        on_plain.step()
        assert on_shards._plans[id(group)] is plan
    # FSDP2 may give a parameter a new local tensor (another address): the plan notices.
    sharded[0]._local_tensor = sharded[0]._local_tensor.clone()
    _set_gradients(sharded, plain, 3)
    on_shards.step()
    on_plain.step()
    assert on_shards._plans[id(group)] is not plan
    for s, p in zip(sharded, plain, strict=True):
        assert torch.equal(s.full_tensor(), p.detach())


@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if get_executor(b).compiled])
def test_compiled_executors_refuse_a_dtensor_given_to_them_directly(mesh, backend):
    executor = get_executor(backend)
    param = _pair(mesh)[0][0]
    assert not executor.supports(param)
    assert executor.supports(param._local_tensor)
    grad = distribute_tensor(torch.ones(5, 3), mesh, [Shard(0)])
    rule = descend.rules.SGD
    scalars = rule.scalars(rule.hypers_from_group(descend.SGD([torch.zeros(1)]).defaults), 1)
    before = param.full_tensor()
    with pytest.raises(ValueError, match="DTensor"):
        executor.step(rule, None, scalars, [param], [grad], [[None] * len(rule.slots)])
    with pytest.raises(ValueError, match="DTensor"):
        executor.step(
            rule, None, scalars, [param._local_tensor], [grad], [[None] * len(rule.slots)]
        )
    assert torch.equal(param.full_tensor(), before)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("placement", [Shard(0), Replicate()], ids=["sharded", "replicated"])
def test_muon_steps_a_sharded_or_replicated_matrix_as_a_plain_one(mesh, backend, placement):
    # Newton-Schulz runs on the whole matrix gathered from the shards (see
    # descend.optim.sharded_matrix; tests/distributed/test_fsdp_matrix.py runs it on 2 and 4
    # ranks).
    values = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    distributed = torch.nn.Parameter(distribute_tensor(values.clone(), mesh, [placement]))
    plain = torch.nn.Parameter(values.clone())
    on_distributed = descend.Muon([("body.weight", distributed)], lr=0.02, backend=backend)
    on_plain = descend.Muon([plain], lr=0.02, backend=backend)
    for step in range(STEPS):
        grad = torch.randn(6, 4, generator=torch.Generator().manual_seed(step))
        distributed.grad = distribute_tensor(grad.clone(), mesh, [placement])
        plain.grad = grad
        on_distributed.step()
        on_plain.step()
    assert torch.equal(distributed.full_tensor(), plain.detach())
    assert not torch.equal(plain.detach(), values)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_the_nonfinite_guard_reads_dtensor_gradients(mesh, backend, bad):
    sharded, plain = _pair(mesh)
    skipping = descend.Adam(sharded, lr=0.1, nonfinite="skip", backend=backend)
    raising = descend.Adam(
        [("w", sharded[0]), ("b", sharded[1])], lr=0.1, nonfinite="raise", backend=backend
    )
    _set_gradients(sharded, plain, 0)
    skipping.step()
    before = [s.full_tensor() for s in sharded]
    _set_gradients(sharded, plain, 1, bad=bad)
    skipping.step()
    assert skipping.skipped_steps == 1
    with pytest.raises(NonFiniteGradientError, match="'b'"):
        raising.step()
    assert all(torch.equal(s.full_tensor(), b) for s, b in zip(sharded, before, strict=True))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_gradient_distributed_unlike_its_parameter_is_refused_before_any_change(mesh, backend):
    sharded, plain = _pair(mesh)
    optimizer = descend.Adam([("w", sharded[0]), ("b", sharded[1])], lr=0.1, backend=backend)
    _set_gradients(sharded, plain, 0)
    optimizer.step()
    snapshot = [s.full_tensor().detach() for s in sharded]
    steps = [float(optimizer.state[s]["step"]) for s in sharded]
    # On one rank a replicated gradient has the shard's local shape: only its placement tells.
    sharded[0].grad = distribute_tensor(torch.ones(5, 3), mesh, [Replicate()])
    with pytest.raises(ValueError, match=r"gradient of parameter 'w'.*Replicate"):
        optimizer.step()
    sharded[0].grad = torch.ones(5, 3)
    with pytest.raises(ValueError, match=r"gradient of parameter 'w'.*plain"):
        optimizer.step()
    assert all(torch.equal(s.full_tensor(), b) for s, b in zip(sharded, snapshot, strict=True))
    assert [float(optimizer.state[s]["step"]) for s in sharded] == steps
    # And a plain parameter is not stepped with a DTensor gradient (whose address is not its
    # elements').
    optimizer = descend.Adam([("v", plain[0])], lr=0.1, backend=backend)
    plain[0].grad = torch.ones(5, 3)
    optimizer.step()
    before = plain[0].detach().clone()
    plain[0].grad = distribute_tensor(torch.ones(5, 3), mesh, [Replicate()])
    with pytest.raises(ValueError, match=r"gradient of parameter 'v'.*DTensor"):
        optimizer.step()
    assert torch.equal(plain[0], before)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_state_distributed_unlike_its_parameter_is_refused(mesh, backend):
    sharded, plain = _pair(mesh)
    optimizer = descend.Adam([("w", sharded[0]), ("b", sharded[1])], lr=0.1, backend=backend)
    _set_gradients(sharded, plain, 0)
    optimizer.step()
    # A checkpoint of the unsharded model (plain state) does not load into sharded parameters.
    unsharded = descend.Adam(plain, lr=0.1)
    plain[0].grad, plain[1].grad = torch.ones(5, 3), torch.ones(4)
    unsharded.step()
    before = optimizer.state_dict()
    with pytest.raises(ValueError, match=r"'exp_avg' for parameter 'w'.*nothing was loaded"):
        optimizer.load_state_dict(unsharded.state_dict())
    assert torch.equal(
        optimizer.state[sharded[0]]["exp_avg"].full_tensor(),
        before["state"][0]["exp_avg"].full_tensor(),
    )
    # Nor is a plain tensor put into the state by hand stepped against a shard.
    optimizer.state[sharded[0]]["exp_avg"] = torch.zeros(5, 3)
    snapshot = sharded[0].full_tensor()
    with pytest.raises(ValueError, match=r"state\['exp_avg'\] of parameter 'w'.*plain"):
        optimizer.step()
    assert torch.equal(sharded[0].full_tensor(), snapshot)


def test_a_partial_parameter_is_refused(mesh):
    partial = torch.nn.Parameter(DTensor.from_local(torch.ones(3), mesh, [Partial()]))
    with pytest.raises(ValueError, match=r"\['params'\]\[0\].*Partial"):
        descend.AdamW([partial], lr=0.1)


# -- FSDP2 on two gloo processes ------------------------------------------------------------------


def _torchrun(out: Path, backends: list[str]) -> None:
    torchrun(["-m", "tests.distributed.fsdp_worker", str(out), ",".join(backends)])


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    """One two-process FSDP2 run covering every case (starting torchrun is the slow part)."""
    out = tmp_path_factory.mktemp("fsdp")
    # The default backend, as users get it (the fused executor where Numba is installed); the
    # fast tests above cover every backend on DTensors, and each backend here would add seconds.
    backends = ["auto"]
    _torchrun(out, backends)
    return out, backends


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.slow
def test_fsdp2_iterates_equal_torch_and_the_single_process_run(fsdp_run, name):
    out, backends = fsdp_run
    for backend in backends:
        for rank in (0, 1):
            run = _load(out / f"{name}-{backend}-rank{rank}.pt")
            assert run["descend"], name
            # Elementwise: the shards' updates are exactly the whole tensor's.
            for sharded, single in zip(run["descend"], run["single"], strict=True):
                assert torch.equal(sharded, single), (name, backend)
            if run["torch"] is not None:
                for ours, theirs in zip(run["descend"], run["torch"], strict=True):
                    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
            # The parameters moved (a step that did nothing would pass the checks above).
            assert not torch.equal(run["descend"][0], run["initial"][0])
    has_torch = fsdp_worker.torch_factory(name) is not None
    assert (run["torch"] is not None) == has_torch


@pytest.mark.slow
def test_fsdp2_checkpoint_through_distributed_checkpoint_resumes_exactly(fsdp_run):
    out, backends = fsdp_run
    for backend in backends:
        for rank in (0, 1):
            run = _load(out / f"checkpoint-{backend}-rank{rank}.pt")
            for resumed, uninterrupted in zip(run["resumed"], run["uninterrupted"], strict=True):
                assert torch.equal(resumed, uninterrupted)
            # The state dict has torch.optim's shape under FSDP2: names, keys and types.
            assert run["state_layout"] == run["torch_state_layout"]
            kinds = {kind for entry in run["state_layout"].values() for _, kind in entry}
            assert kinds == {"DTensor", "Tensor"}  # sharded slots, plain step counters


@pytest.mark.slow
def test_fsdp2_muon_accepts_sharded_matrices(fsdp_run):
    out, _ = fsdp_run
    for rank in (0, 1):
        report = json.loads((out / f"muon-rank{rank}.json").read_text())
        assert report["refused"] == ""


@pytest.mark.slow
def test_fsdp2_nonfinite_shard_on_one_rank_skips_or_raises_on_every_rank(fsdp_run):
    out, _ = fsdp_run
    reports = [json.loads((out / f"nonfinite-rank{rank}.json").read_text()) for rank in (0, 1)]
    for report in reports:
        # Only rank 1's shard held the NaN; rank 0 must skip as well.
        assert report["skipped_steps"] == 1
        assert report["unchanged"]
        assert report["raised"].startswith("NonFiniteGradientError")
    assert reports[0]["raised"] == reports[1]["raised"]
