"""Slots created together are laid out together (descend.optim.packing): each slot's tensors
of a compiled step end to end in one buffer, values and behaviour exactly torch.optim's; and
the per-step checks still see every change of a packed tensor or of a gradient."""

from __future__ import annotations

import copy
import io

import pytest
import torch

import descend
from descend.optim.packing import ALIGN_BYTES, PACK_LIMIT
from tests.optim.test_step_safety import assert_unchanged, snapshot

SHAPES = [(5, 3), (7,), (4, 4, 2), (1,), (33,)]


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape)) for shape in SHAPES]


def _pair(make: str, backend: str = "fused", **options):
    mine = _params()
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in mine]
    ours = getattr(descend, make)(mine, backend=backend, **options)
    reference = getattr(torch.optim, make)(theirs, **options)
    return mine, theirs, ours, reference


def _step(mine, theirs, ours, reference, steps: int = 1) -> None:
    for _ in range(steps):
        for a, b in zip(mine, theirs, strict=True):
            grad = torch.randn(a.shape)
            a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        reference.step()


def _one_buffer(tensors: list[torch.Tensor]) -> bool:
    """Whether the tensors are views of one storage, in order, end to end up to alignment."""
    storage = tensors[0].untyped_storage().data_ptr()
    if any(t.untyped_storage().data_ptr() != storage for t in tensors):
        return False
    ends = [t.data_ptr() + t.nbytes for t in tensors]
    starts = [t.data_ptr() for t in tensors]
    return all(a % ALIGN_BYTES == 0 for a in starts) and all(
        end <= start < end + ALIGN_BYTES for end, start in zip(ends, starts[1:], strict=False)
    )


@pytest.mark.parametrize("make, slots", [("Adam", ["exp_avg", "exp_avg_sq"]), ("RMSprop", [])])
def test_slots_created_in_a_fused_step_lie_end_to_end_in_one_buffer(make, slots):
    options = {"lr": 0.01, "momentum": 0.9, "centered": True} if make == "RMSprop" else {}
    mine, theirs, ours, reference = _pair(make, **options)
    _step(mine, theirs, ours, reference, steps=3)
    names = slots or ["square_avg", "momentum_buffer", "grad_avg"]
    for name in names:
        tensors = [ours.state[p][name] for p in mine]
        assert _one_buffer(tensors), name
        for tensor, param in zip(tensors, mine, strict=True):
            assert tensor.shape == param.shape and tensor.is_contiguous()
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b)
        for name in names:
            torch.testing.assert_close(ours.state[a][name], reference.state[b][name])


def test_adagrads_state_created_at_construction_is_packed_and_steps_as_torch():
    mine, theirs, ours, reference = _pair("Adagrad", lr=0.1, initial_accumulator_value=0.5)
    assert _one_buffer([ours.state[p]["sum"] for p in mine])
    _step(mine, theirs, ours, reference, steps=3)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ours.state[a]["sum"], reference.state[b]["sum"])


def test_the_reference_executor_leaves_the_state_as_torch_lays_it_out():
    mine, theirs, ours, reference = _pair("Adam", backend="reference")
    _step(mine, theirs, ours, reference)
    storages = {ours.state[p]["exp_avg"].untyped_storage().data_ptr() for p in mine}
    assert len(storages) == len(mine)


def test_non_contiguous_and_compressed_slots_stay_where_they_were_made():
    torch.manual_seed(0)
    last = [torch.nn.Parameter(torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last))]
    last.append(torch.nn.Parameter(torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)))
    optimizer = descend.Adam(last, backend="fused")
    for param in last:
        param.grad = torch.randn_like(param)
    optimizer.step()
    for param in last:
        state = optimizer.state[param]["exp_avg"]
        assert state.stride() == param.stride()
        assert state.untyped_storage().nbytes() == state.nbytes
    coded = _params()
    optimizer = descend.Adam(coded, backend="fused", state_precision="bfloat16")
    for param in coded:
        param.grad = torch.randn_like(param)
    optimizer.step()
    tensors = [t for p in coded for t in optimizer.state[p].values() if t.dim() > 0]
    assert all(t.untyped_storage().nbytes() == t.nbytes for t in tensors)


def test_a_first_step_that_stops_removes_the_packed_state():
    params = _params()
    optimizer = descend.Adam(params, backend="fused", nonfinite="raise")
    for param in params:
        param.grad = torch.randn_like(param)
    params[2].grad[0, 0, 0] = float("inf")
    with pytest.raises(descend.NonFiniteGradientError):
        optimizer.step()
    assert not optimizer.state


def test_packed_state_saves_and_loads_into_torch_and_back():
    mine, theirs, ours, reference = _pair("AdamW", lr=0.1, weight_decay=0.1)
    _step(mine, theirs, ours, reference, steps=2)
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in mine]
    from_ours = torch.optim.AdamW(copies, lr=0.1, weight_decay=0.1)
    from_ours.load_state_dict(torch.load(buffer))
    from_torch = descend.AdamW(mine, lr=0.1, weight_decay=0.1, backend="fused")
    # (a copy: torch's load keeps tensors of the right dtype, so both would share them)
    from_torch.load_state_dict(copy.deepcopy(reference.state_dict()))
    for _ in range(2):
        for a, b, c in zip(mine, theirs, copies, strict=True):
            grad = torch.randn(a.shape)
            a.grad, b.grad, c.grad = grad.clone(), grad.clone(), grad.clone()
        for optimizer in (from_torch, reference, from_ours):
            optimizer.step()
    for a, b, c in zip(mine, theirs, copies, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(c, b)
        torch.testing.assert_close(
            from_torch.state[a]["exp_avg_sq"], reference.state[b]["exp_avg_sq"]
        )


def _change_state(tensor: torch.Tensor, change: str) -> None:
    if change == "t_":
        tensor.t_()
    elif change == "as_strided_":
        tensor.as_strided_((5, 3), (1, 5))
    elif change == "set_":
        tensor.set_(tensor.detach().clone())
    elif change == ".data =":
        tensor.data = tensor.data.clone()
    elif change == "resize_":
        tensor.resize_(3, 5)


@pytest.mark.parametrize("change", ["t_", "as_strided_", "set_", ".data =", "resize_"])
def test_a_packed_state_tensor_changed_in_place_is_stepped_as_torch_does(change):
    mine, theirs, ours, reference = _pair("Adam", lr=0.1)
    _step(mine, theirs, ours, reference, steps=2)
    assert _one_buffer([ours.state[p]["exp_avg"] for p in mine])
    for param, optimizer in ((mine[0], ours), (theirs[0], reference)):
        _change_state(optimizer.state[param]["exp_avg"], change)
    for a, b in zip(mine, theirs, strict=True):
        grad = torch.randn(a.shape)
        a.grad, b.grad = grad.clone(), grad.clone()
    try:
        reference.step()
    except RuntimeError:
        # torch refuses a state tensor of another shape; descend refuses it before any change.
        before = snapshot(ours)
        with pytest.raises(ValueError, match="exp_avg"):
            ours.step()
        assert_unchanged(before, ours)
        return
    _step_alike(ours, mine, reference, theirs)


GRADIENT_CHANGES = [
    "fresh, same layout",
    "t_",
    "as_strided_ transposed",
    "transposed copy",
    "resize_ smaller",
    ".data = float64",
    "set_ to a larger storage",
]


def _change_gradient(param: torch.Tensor, change: str) -> None:
    grad = param.grad
    assert grad is not None
    if change == "fresh, same layout":
        param.grad = grad.clone()
    elif change == "t_":
        grad.t_()
    elif change == "as_strided_ transposed":
        grad.as_strided_((5, 3), (1, 5))
    elif change == "transposed copy":
        param.grad = grad.t().contiguous().t()
    elif change == "resize_ smaller":
        grad.resize_(2, 2)
    elif change == ".data = float64":
        grad.data = grad.data.double()
    elif change == "set_ to a larger storage":
        grad.set_(torch.randn(6, 6))


@pytest.mark.parametrize("change", GRADIENT_CHANGES)
def test_a_gradient_changed_after_the_gradient_guard_armed_is_seen(change):
    mine, theirs, ours, reference = _pair("Adam", lr=0.1)
    _step(mine, theirs, ours, reference, steps=2)
    (plan,) = ours._plans.values()
    assert plan.blocks[0].grad_guard is not None  # the checked path is the guarded one
    for a, b in zip(mine, theirs, strict=True):
        grad = torch.randn(a.shape)
        a.grad, b.grad = grad.clone(), grad.clone()
    for param in (mine[0], theirs[0]):
        _change_gradient(param, change)
    try:
        reference.step()
    except RuntimeError:
        before = snapshot(ours)
        with pytest.raises((ValueError, RuntimeError)):
            ours.step()
        assert_unchanged(before, ours)
        return
    if mine[0].grad.shape != mine[0].shape or mine[0].grad.dtype != mine[0].dtype:
        # torch steps a gradient that no longer fits its parameter; descend refuses it.
        before = snapshot(ours)
        with pytest.raises(ValueError, match="gradient"):
            ours.step()
        assert_unchanged(before, ours)
        return
    _step_alike(ours, mine, reference, theirs)


def test_a_slot_above_the_packing_limit_stays_where_it_was_made():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(n)) for n in (8, PACK_LIMIT + 1, 8, 8)]
    optimizer = descend.Adam(params, backend="fused")
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer.step()
    large = optimizer.state[params[1]]["exp_avg"]
    assert large.untyped_storage().nbytes() == large.nbytes
    assert _one_buffer([optimizer.state[p]["exp_avg"] for p in (params[0], *params[2:])])


def _step_alike(ours, mine, reference, theirs) -> None:
    """Step descend (``reference`` has stepped) and compare parameters and first moments."""
    ours.step()
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ours.state[a]["exp_avg"], reference.state[b]["exp_avg"])


@pytest.mark.parametrize("fmt", ["int8", {"exp_avg": "int8", "exp_avg_sq": "bf16+ecc"}])
def test_slots_a_compressed_request_keeps_in_float32_are_packed(fmt):
    # Tensors under int8's minimum (4096 elements) keep float32 slots: those are packed like
    # any float32 slot, while the large tensor's compressed storage stays the codec's own.
    mine = [*_params(), torch.nn.Parameter(torch.randn(64, 80))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in mine]
    ours = descend.Adam(mine, backend="fused", state_precision=fmt)
    reference = torch.optim.Adam(theirs)
    _step(mine, theirs, ours, reference, steps=3)
    small, large = mine[:-1], mine[-1]
    assert _one_buffer([ours.state[p]["exp_avg"] for p in small])
    if fmt == "int8":
        assert _one_buffer([ours.state[p]["exp_avg_sq"] for p in small])
    assert ours.state[large]["exp_avg"].dtype == torch.uint8
    codes = ours.state[large]["exp_avg"]
    assert codes.untyped_storage().nbytes() == codes.nbytes
    if fmt == "int8":  # the small tensors' state uncompressed: torch's values exactly
        for a, b in zip(small, theirs[:-1], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
