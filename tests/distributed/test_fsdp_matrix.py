"""Matrix methods (Muon, Shampoo, SOAP, PSGD-Kron, MARS) on sharded DTensor parameters.

The fast tests run in this process on a one-rank gloo mesh: each class on ``Shard(0)``
DTensors steps exactly as on plain tensors, keeps its slots sharded and its matrix state whole,
and its state dict round-trips. The slow tests launch :mod:`tests.distributed.matrix_worker`
under ``torchrun`` with 2 and with 4 gloo processes (FSDP2's ``fully_shard``, shards of uneven
sizes, one of them empty on 4 ranks) and check what it wrote: 20 steps equal the single-process
run within 1e-6 of each tensor's largest magnitude, a run resumed at step 10 from each rank's
``state_dict`` or from a ``torch.distributed.checkpoint`` equals the uninterrupted one,
PSGD-Kron's probes are the same on every rank, and each rank holds its share of the slots and
the whole matrix state.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

from tests.distributed import matrix_worker
from tests.distributed.launch import torchrun

CASES = list(matrix_worker.CASES)
WORLD_SIZES = (2, 4)
#: The largest difference allowed from the single-process run, relative to each tensor's
#: largest magnitude (float32).
TOLERANCE = 1e-6
FAST_STEPS = 4


def _named_parameters(mesh, values: dict[str, torch.Tensor] | None = None):
    """Named DTensor parameters (two matrices sharded along their rows, a vector sharded and
    a vector replicated; ``mesh`` ``None``: plain ones) of ``values``, or of the same random
    values each time."""
    if values is None:
        generator = torch.Generator().manual_seed(0)
        shapes = {"0.weight": (7, 5), "0.bias": (7,), "2.weight": (3, 7), "2.bias": (3,)}
        values = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    if mesh is None:
        return [(name, torch.nn.Parameter(v.clone())) for name, v in values.items()]
    placements = {"2.bias": [Replicate()]}
    return [
        (
            name,
            torch.nn.Parameter(
                distribute_tensor(v.clone(), mesh, placements.get(name, [Shard(0)]))
            ),
        )
        for name, v in values.items()
    ]


def _step(named, optimizer, steps) -> None:
    """Set each step's gradients (the same values for DTensor and plain parameters) and step."""
    for step in steps:
        generator = torch.Generator().manual_seed(100 + step)
        for _, param in named:
            grad = torch.randn(param.shape, generator=generator)
            if isinstance(param, DTensor):
                grad = distribute_tensor(grad, param.device_mesh, param.placements)
            param.grad = grad
        optimizer.step()


def _whole(named) -> dict[str, torch.Tensor]:
    return {
        name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
        for name, p in named
    }


@pytest.mark.parametrize("name", CASES)
def test_one_rank_sharded_matrix_method_steps_as_plain_and_round_trips_its_state(mesh, name):
    sharded, plain = _named_parameters(mesh), _named_parameters(None)
    on_shards = matrix_worker.make_optimizer(name, sharded)
    on_plain = matrix_worker.make_optimizer(name, plain)
    _step(sharded, on_shards, range(FAST_STEPS))
    _step(plain, on_plain, range(FAST_STEPS))
    halfway, saved = _whole(sharded), copy.deepcopy(on_shards.state_dict())
    _step(sharded, on_shards, range(FAST_STEPS, 2 * FAST_STEPS))
    _step(plain, on_plain, range(FAST_STEPS, 2 * FAST_STEPS))
    ours, theirs = _whole(sharded), _whole(plain)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key
        assert not torch.equal(ours[key], halfway[key]), key
    # Slots sharded like the parameter; the matrix state whole and plain.
    slot_names = {
        slot.name for group in on_shards.param_groups for slot in on_shards.rule_for(group).slots
    }
    weight = sharded[0][1]
    plain_keys = set()
    for key, value in on_shards.state[weight].items():
        if key in slot_names:
            assert isinstance(value, DTensor) and value.placements == weight.placements, key
        else:
            assert not isinstance(value, DTensor), key
            plain_keys.add(key)
            torch.testing.assert_close(value, on_plain.state[plain[0][1]][key], rtol=0, atol=0)
    if on_shards.rule_for(on_shards.param_groups[0]).stage.matrices is not None:
        assert plain_keys - {"step"}, "a rule with matrix state keeps some"
    # The state dict of halfway, loaded into a fresh optimizer, resumes exactly.
    resumed = _named_parameters(mesh, halfway)
    fresh = matrix_worker.make_optimizer(name, resumed)
    fresh.load_state_dict(saved)
    _step(resumed, fresh, range(FAST_STEPS, 2 * FAST_STEPS))
    for key, value in _whole(resumed).items():
        assert torch.equal(value, ours[key]), key


# -- FSDP2 on 2 and 4 gloo processes -------------------------------------------------------------


@pytest.fixture(scope="module", params=WORLD_SIZES, ids=lambda n: f"{n}ranks")
def fsdp_run(request, tmp_path_factory):
    """One torchrun of the worker on ``request.param`` processes, covering every case."""
    processes = request.param
    out = tmp_path_factory.mktemp(f"matrix{processes}")
    output = torchrun(["-m", "tests.distributed.matrix_worker", str(out)], processes=processes)
    return out, processes, output


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_fsdp2_matrix_method_equals_the_single_process_run(fsdp_run, name):
    out, processes, _ = fsdp_run
    runs = [_load(out / f"{name}-rank{rank}.pt") for rank in range(processes)]
    for run in runs:
        for sharded, single in zip(run["sharded"], run["single"], strict=True):
            assert _relative_difference(sharded, single) <= TOLERANCE, (name, processes)
        # Every parameter moved (a step that did nothing would pass the check above).
        for sharded, initial in zip(run["sharded"], run["initial"], strict=True):
            assert not torch.equal(sharded, initial), name
        for sharded, first in zip(run["sharded"], runs[0]["sharded"], strict=True):
            assert torch.equal(sharded, first)  # the ranks agree


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("saved_by", ["resumed", "checkpointed"])
def test_fsdp2_matrix_method_resumes_from_its_state_saved_at_step_10(fsdp_run, name, saved_by):
    # "resumed": each rank's state_dict() loaded by load_state_dict; "checkpointed": saved and
    # loaded by torch.distributed.checkpoint (sharded slots, whole matrix state).
    out, processes, _ = fsdp_run
    for rank in range(processes):
        run = _load(out / f"{name}-rank{rank}.pt")
        for resumed, uninterrupted in zip(run[saved_by], run["sharded"], strict=True):
            assert _relative_difference(resumed, uninterrupted) <= TOLERANCE, (name, rank)


@pytest.mark.slow
def test_fsdp2_psgd_kron_draws_the_same_probes_on_every_rank(fsdp_run):
    out, processes, _ = fsdp_run
    drawn = [json.loads((out / f"probes-rank{rank}.json").read_text()) for rank in range(processes)]
    assert len(drawn[0]) >= 2 * matrix_worker.STEPS  # a probe at every step (p = 1 at first)
    assert all(probes == drawn[0] for probes in drawn)


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_fsdp2_each_rank_holds_its_share_of_the_slots_and_the_whole_matrix_state(fsdp_run, name):
    out, processes, output = fsdp_run
    runs = [_load(out / f"{name}-rank{rank}.pt") for rank in range(processes)]
    single = runs[0]["single_state_bytes"]
    assert sum(run["state_bytes"]["slots"] for run in runs) == single["slots"]
    assert max(run["state_bytes"]["slots"] for run in runs) < single["slots"]
    for rank, run in enumerate(runs):
        assert run["state_bytes"]["matrix"] == single["matrix"]
        printed = re.search(
            rf"{name} rank {rank} of {processes}: slots (\d+), matrix (\d+)", output
        )
        assert printed is not None
        assert [int(n) for n in printed.groups()] == [
            run["state_bytes"]["slots"],
            run["state_bytes"]["matrix"],
        ]
