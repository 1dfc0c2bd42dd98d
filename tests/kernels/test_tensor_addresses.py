"""The compiled address loops (descend.kernels.tensor_addresses): every address they read is
the tensor's ``data_ptr()``, a comparison fails on any one changed address, and a step runs the
same whether the loops serve it or Python reads the addresses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descend
from descend.kernels import tensor_addresses
from descend.kernels.tensor_addresses import COMPILED_READ_FROM, READERS, object_addresses
from descend.optim import block, watch


@pytest.fixture(scope="module")
def reader():
    loaded = READERS.get("reader")
    assert loaded, "the address loops must serve on the torch CI runs"
    return loaded


def _tensor(kind: str, size: int, offset: int) -> torch.Tensor:
    base = torch.randn(size + offset + 4, dtype=torch.float64)
    return {
        "plain": lambda: torch.randn(size),
        "parameter": lambda: torch.nn.Parameter(torch.randn(size)),
        "offset view": lambda: base[offset : offset + size],
        "float32 view": lambda: base.view(torch.float32)[offset:],
        "matrix column": lambda: base[: (size // 2) * 2].view(-1, 2)[:, 1],
        "empty": lambda: torch.empty(0),
    }[kind]()


KINDS = ["plain", "parameter", "offset view", "float32 view", "matrix column", "empty"]
tensor_lists = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(1, 300), st.integers(0, 17)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(specs=tensor_lists)
def test_the_loop_reads_every_tensors_data_ptr(reader, specs):
    tensors = [_tensor(*spec) for spec in specs]
    read = reader.read(tensors)
    assert read.dtype == np.int64
    assert read.tolist() == [t.data_ptr() for t in tensors]


@settings(max_examples=60, deadline=None)
@given(specs=tensor_lists, data=st.data())
def test_a_comparison_fails_on_any_one_changed_address(reader, specs, data):
    tensors = [_tensor(*spec) for spec in specs]
    objects = object_addresses(tensors)
    expected = np.array([t.data_ptr() for t in tensors], dtype=np.int64)
    assert reader.same(objects, expected)
    changed = expected.copy()
    position = data.draw(st.integers(0, len(tensors) - 1))
    changed[position] += data.draw(st.sampled_from([-8, -4, 4, 1 << 20]))
    assert not reader.same(objects, changed)


def test_a_tensor_whose_storage_was_resized_away_reads_as_address_zero(reader):
    # A layout guard passes such a tensor (same sizes and strides); the loop must return, not
    # raise, and the address it returns differs from the planned one.
    tensor = torch.randn(4, 4)
    planned = tensor.data_ptr()
    tensor.untyped_storage().resize_(0)
    assert reader.read([tensor]).tolist() == [0] != [planned]


def test_the_loops_serve_on_the_checked_torch_and_nowhere_else(monkeypatch):
    assert torch.__version__.startswith(tensor_addresses.CHECKED_TORCH)
    assert tensor_addresses._c_function() is not None
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    assert tensor_addresses._c_function() is None


#: Enough tensors that the gradients' addresses are read by the compiled loop too.
MANY = COMPILED_READ_FROM + 6


def _adam_run(steps: int, fresh_gradients: bool) -> list[torch.Tensor]:
    """Adam (fused) on :data:`MANY` tensors whose gradients are new tensors at each step (as
    after ``zero_grad()``) or written in place."""
    torch.manual_seed(0)
    params = [torch.randn(16 + k, requires_grad=True) for k in range(MANY)]
    optimizer = descend.Adam(params, lr=0.05, backend="fused")
    for step in range(steps):
        for k, param in enumerate(params):
            gradient = torch.sin(param.detach() * (step + 1) + k)
            if fresh_gradients or param.grad is None:
                param.grad = gradient
            else:
                param.grad.copy_(gradient)
        optimizer.step()
    return [param.detach().clone() for param in params]


@pytest.mark.parametrize("fresh_gradients", [True, False])
def test_a_step_is_the_same_with_the_loops_and_with_python_reads(
    reader, monkeypatch, fresh_gradients
):
    compiled = _adam_run(6, fresh_gradients)
    calls = []
    monkeypatch.setattr(watch, "address_reader", lambda: calls.append("watch"))
    monkeypatch.setattr(block, "address_reader", lambda: calls.append("gradients"))
    from_python = _adam_run(6, fresh_gradients)
    # The Python path really ran: both places asked for the loops and were told no.
    assert {"watch", "gradients"} <= set(calls)
    for a, b in zip(compiled, from_python, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("count", [3, MANY])
def test_a_step_reads_a_gradient_moved_to_another_address(reader, monkeypatch, count):
    # The gradient guard passes a new tensor of the same layout; its address must be read
    # afresh, so the step uses the new values (held against the reference executor, which
    # reads each gradient with torch ops and computes the same bits). A short list is read
    # from Python, a long one by the compiled loop.
    reads = []
    original = type(reader).read

    def counted(self, tensors):
        reads.append(len(tensors))
        return original(self, tensors)

    monkeypatch.setattr(type(reader), "read", counted)
    torch.manual_seed(1)
    params = [torch.randn(8, requires_grad=True) for _ in range(count)]
    twins = [p.detach().clone().requires_grad_() for p in params]
    ours = descend.Adam(params, lr=0.1, backend="fused")
    theirs = descend.Adam(twins, lr=0.1, backend="reference")
    for step in range(4):
        for p, q in zip(params, twins, strict=True):
            gradient = torch.randn(8)
            p.grad = gradient.clone()
            q.grad = gradient.clone()
        ours.step()
        theirs.step()
        for p, q in zip(params, twins, strict=True):
            assert torch.equal(p, q), step
    # From the second step on the gradient guard holds: the loop reads long lists only.
    assert reads == ([] if count < COMPILED_READ_FROM else [count] * 3)


def test_without_the_c_function_no_loop_is_compiled_and_steps_run(monkeypatch):
    monkeypatch.setattr(tensor_addresses, "_c_function", lambda: None)
    tensor_addresses._unavailable.cache_clear()
    try:
        assert tensor_addresses.address_reader() is None
        params = [torch.randn(5, requires_grad=True)]
        params[0].grad = torch.ones(5)
        descend.Adam(params, lr=0.1, backend="fused").step()
    finally:
        monkeypatch.undo()
        tensor_addresses._unavailable.cache_clear()
