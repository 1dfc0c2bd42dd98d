"""The cheap per-step check of the tensors a kernel writes (descend.optim.watch): whatever a
user does to a tensor, the check says "unchanged" only when the kernel's walk over it is the
planned one."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descend
from descend.optim.watch import Watch, metadata


def _mutations() -> dict[str, object]:
    def data_view(t: torch.Tensor, make) -> None:
        t.data = make(t.data)

    return {
        "nothing": lambda t: None,
        "in-place write": lambda t: t.mul_(2),
        "t_": lambda t: t.t_(),
        "transpose_": lambda t: t.transpose_(0, 1),
        "unsqueeze_": lambda t: t.unsqueeze_(0),
        "as_strided_ transposed": lambda t: t.as_strided_((4, 4), (1, 4)),
        "resize_ smaller": lambda t: t.resize_(2, 2),
        "resize_ larger": lambda t: t.resize_(64, 64),
        "set_ other storage": lambda t: t.set_(torch.randn(4, 4)),
        "set_ same storage transposed": lambda t: t.set_(t.untyped_storage(), 0, (4, 4), (1, 4)),
        ".data = transposed view": lambda t: data_view(t, lambda d: d.t()),
        ".data = first rows": lambda t: data_view(t, lambda d: d[:2]),
        ".data = flat view": lambda t: data_view(t, lambda d: d.view(16)),
        ".data = overlapping view": lambda t: data_view(t, lambda d: d.as_strided((2, 8), (4, 1))),
        ".data = int32 view": lambda t: data_view(t, lambda d: d.view(torch.int32)),
        ".data = float16 view": lambda t: data_view(t, lambda d: d.view(torch.float16)),
        ".data = new tensor": lambda t: data_view(t, lambda d: torch.randn(4, 4)),
        ".data = float64 copy": lambda t: data_view(t, lambda d: d.double()),
        "storage resized away": lambda t: t.untyped_storage().resize_(0),
        "swapped": lambda t: torch.utils.swap_tensors(t, torch.randn(4, 4)),
    }


MUTATIONS = _mutations()

#: The change the cheap keys do not see, by design (see the module docstring): a non-dense
#: view at the same address with the same strides and byte count.
BLIND = {".data = overlapping view"}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_the_watch_sees_every_change_of_the_walk(name):
    tensor = torch.randn(4, 4)
    watch = Watch([torch.randn(3), tensor, torch.randn(2, 2)])
    planned = metadata(watch.tensors)
    MUTATIONS[name](tensor)
    unchanged = metadata(watch.tensors) == planned
    if name in BLIND:
        # The walk stays inside the planned block: same address and byte count.
        assert watch.current()
        assert tensor.data_ptr() == planned[0][1] and tensor.nbytes == 64
    else:
        assert watch.current() == unchanged


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(set(MUTATIONS) - BLIND)), min_size=1, max_size=3))
def test_a_sequence_of_changes_is_seen_as_the_full_check_sees_it(names):
    tensor = torch.randn(4, 4)
    watch = Watch([tensor])
    planned = metadata([tensor])
    for name in names:
        try:
            MUTATIONS[name](tensor)
        except (RuntimeError, IndexError):
            return  # torch refuses this change on the tensor as it now is
    assert watch.current() == (metadata([tensor]) == planned)


@pytest.mark.parametrize("backend", ["fused", "auto"])
def test_state_seen_transposed_through_data_is_stepped_as_torch_does(backend):
    torch.manual_seed(0)
    mine = torch.nn.Parameter(torch.randn(5, 5))
    theirs = torch.nn.Parameter(mine.detach().clone())
    ours = descend.Adam([mine], lr=0.1, backend=backend)
    reference = torch.optim.Adam([theirs], lr=0.1)

    def step_both() -> None:
        grad = torch.randn(5, 5)
        mine.grad, theirs.grad = grad.clone(), grad.clone()
        ours.step()
        reference.step()

    step_both()
    for optimizer, param in ((ours, mine), (reference, theirs)):
        state = optimizer.state[param]["exp_avg"]
        state.data = state.data.t()
    for _ in range(3):
        step_both()
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(ours.state[mine]["exp_avg"], reference.state[theirs]["exp_avg"])
