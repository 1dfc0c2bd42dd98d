"""Nothing a user does between steps makes a step crash, write outside a tensor or change
anything before it fails: every case here once crashed the process (exit 139), corrupted memory
or gave wrong numbers on the fused executor."""

from __future__ import annotations

import copy
import io

import pytest
import torch

import descend

BACKENDS = ["reference", "fused", "auto"]
MAKERS = {
    "adam": lambda params, backend: descend.Adam(params, lr=0.1, backend=backend),
    "sgd_momentum": lambda params, backend: descend.SGD(
        params, lr=0.1, momentum=0.9, backend=backend
    ),
}


def snapshot(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Copies of every parameter and state tensor, to show that nothing changed."""
    tensors = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            tensors.append(param.detach().clone())
            for value in optimizer.state.get(param, {}).values():
                if torch.is_tensor(value):
                    tensors.append(value.clone())
    return tensors


def assert_unchanged(before: list[torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
    after = snapshot(optimizer)
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert old.shape == new.shape and old.dtype == new.dtype
        assert torch.equal(old, new)


def stepped(maker: str, backend: str, size: int = 1000):
    """A named parameter and its optimizer, after two steps (so the plan and state exist)."""
    weight = torch.nn.Parameter(torch.randn(size))
    bias = torch.nn.Parameter(torch.randn(3))
    optimizer = MAKERS[maker]([("weight", weight), ("bias", bias)], backend)
    for _ in range(2):
        weight.grad, bias.grad = torch.randn(size), torch.randn(3)
        optimizer.step()
    return weight, bias, optimizer


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("maker", list(MAKERS))
@pytest.mark.parametrize(
    "case", ["bigger", "smaller view", "float64", "grad dtype", "grad size", "short slot"]
)
def test_changed_tensors_raise_naming_the_parameter_and_change_nothing(case, maker, backend):
    weight, bias, optimizer = stepped(maker, backend)
    slot = "exp_avg" if maker == "adam" else "momentum_buffer"
    if case == "bigger":
        weight.data = torch.zeros(200_000)
        weight.grad = torch.randn(200_000)
    elif case == "smaller view":
        weight.data = weight.data[:10]  # same address, fewer elements
        weight.grad = torch.randn(10)
    elif case == "float64":
        weight.data = weight.data.double()
        weight.grad = torch.randn(1000, dtype=torch.float64)
    elif case == "grad dtype":
        weight.grad = torch.randn(1000)
        weight.grad.data = weight.grad.data.double()
    elif case == "grad size":
        weight.grad = torch.randn(1000)
        weight.grad.data = torch.randn(50)
    elif case == "short slot":
        buffer = torch.full((100,), 7.0)
        optimizer.state[weight][slot] = buffer[:10]
        weight.grad = torch.randn(1000)
    bias.grad = torch.randn(3)
    before = snapshot(optimizer)
    guard = torch.full((100,), 7.0) if case == "short slot" else None
    with pytest.raises(ValueError, match="'weight'"):
        optimizer.step()
    assert_unchanged(before, optimizer)
    if case == "short slot":
        assert torch.equal(buffer, torch.full((100,), 7.0)) and guard is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_legitimate_replacement_rebuilds_and_matches_torch(backend):
    weight, _, ours = stepped("adam", backend)
    theirs_weight = torch.nn.Parameter(weight.detach().clone())
    theirs = torch.optim.Adam([theirs_weight, torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))
    # Same shape and dtype, new storage: the plan follows it.
    weight.data = weight.data.clone() * 0.5
    theirs_weight.data = theirs_weight.data.clone() * 0.5
    ours.state[weight]["exp_avg"] = ours.state[weight]["exp_avg"].clone()
    for _ in range(3):
        gradient = torch.randn(1000)
        weight.grad, theirs_weight.grad = gradient.clone(), gradient.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(weight.detach(), theirs_weight.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("source_size", [4, 4096])
def test_checkpoint_of_another_model_is_refused_before_anything_loads(backend, source_size):
    small = torch.nn.Linear(8, source_size)
    source = descend.Adam(small.parameters(), backend=backend)
    small(torch.randn(2, 8)).sum().backward()
    source.step()
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target_model = torch.nn.Linear(8, 64)
    target = descend.Adam(target_model.named_parameters(), backend=backend)
    target_model(torch.randn(2, 8)).sum().backward()
    target.step()
    before = snapshot(target)
    saved_state = target.state_dict()
    with pytest.raises(ValueError, match="'weight'.*shape"):
        target.load_state_dict(torch.load(buffer))
    assert_unchanged(before, target)
    assert target.state_dict()["state"].keys() == saved_state["state"].keys()


@pytest.mark.parametrize("backend", BACKENDS)
def test_checkpoint_missing_a_slot_is_refused(backend):
    param = torch.nn.Parameter(torch.randn(5))
    source = descend.Adam([param], backend=backend)
    param.grad = torch.randn(5)
    source.step()
    state = source.state_dict()
    del state["state"][0]["exp_avg_sq"]
    target = descend.Adam([torch.nn.Parameter(torch.randn(5))], backend=backend)
    with pytest.raises(ValueError, match="exp_avg_sq"):
        target.load_state_dict(state)
    assert not target.state


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_tensor_twice_in_a_group_is_refused(backend):
    param = torch.nn.Parameter(torch.randn(4))
    with pytest.raises(ValueError, match="appears twice"):
        descend.Adam([param, param], backend=backend)


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_a_refused_sparse_gradient_changes_no_earlier_parameter(backend):
    dense = torch.nn.Parameter(torch.randn(4))
    table = torch.nn.Parameter(torch.randn(6, 2))
    optimizer = descend.Adam([dense, table], backend=backend)
    dense.grad = torch.randn(4)
    table.grad = torch.sparse_coo_tensor([[1, 3]], torch.ones(2, 2), (6, 2), check_invariants=True)
    before = snapshot(optimizer)
    with pytest.raises(RuntimeError, match="sparse"):
        optimizer.step()
    assert_unchanged(before, optimizer)
    assert all(
        "step" not in state or float(state["step"]) == 0 for state in optimizer.state.values()
    )


def test_integer_parameters_and_string_hyperparameters_are_refused_at_construction():
    with pytest.raises(ValueError, match="int64.*floating-point"):
        descend.SGD([torch.arange(4)], lr=0.5)
    with pytest.raises(ValueError, match="lr='0.1' is invalid"):
        descend.SGD([torch.nn.Parameter(torch.zeros(2))], lr="0.1")


def test_a_parameter_the_fused_executor_cannot_walk_is_refused_by_name():
    weight = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
    with pytest.raises(ValueError, match="'w'.*float16"):
        descend.Adam([("w", weight)], backend="fused")
