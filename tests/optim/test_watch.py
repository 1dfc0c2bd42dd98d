"""The cheap per-step check of the tensors a kernel writes (descend.optim.watch): whatever a
user does to a tensor, the check says "unchanged" only when the kernel's walk over it is the
planned one."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import descend
from descend.kernels.tensor_addresses import READERS
from descend.optim import block, watch
from descend.optim.watch import DictVersions, LayoutGuard, Watch, layouts, metadata


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

#: The change the cheaper keys do not see, by design (see the module docstring): a non-dense
#: view at the same address with the same strides and byte count. The C++ layout guard sees it.
BLIND = {".data = overlapping view"}

#: How a watch checks: the C++ layout guard with the addresses read in a compiled loop or from
#: Python, or the keys used where that guard is missing.
MODES = ["guard", "guard, addresses from Python", "keys"]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    """Run the test with the layout guard (and the compiled address loop, loaded now, or
    addresses read from Python), and again as on a torch without that guard."""
    if request.param == "keys":
        monkeypatch.setattr(watch, "guard_available", lambda: False)
    else:
        assert watch.guard_available()
        if request.param == "guard":
            assert READERS.get("reader")
        else:
            monkeypatch.setattr(watch, "address_reader", lambda: None)
    return request.param


def test_the_layout_guard_is_in_use_on_this_torch():
    # The fast path is the one the pinned torch runs; the keys are only a fallback.
    assert watch.guard_available()
    assert Watch([torch.randn(3)]).guard is not None


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_the_watch_sees_every_change_of_the_walk(name, mode):
    tensor = torch.randn(4, 4)
    checked = Watch([torch.randn(3), tensor, torch.randn(2, 2)])
    assert (checked.guard is None) == (mode == "keys")
    planned = metadata(checked.tensors)
    MUTATIONS[name](tensor)
    unchanged = metadata(checked.tensors) == planned
    if name in BLIND and mode == "keys":
        # The walk stays inside the planned block: same address and byte count.
        assert checked.current()
        assert tensor.data_ptr() == planned[0][1] and tensor.nbytes == 64
    else:
        assert checked.current() == unchanged
        assert checked.current() == unchanged  # and again, after a re-armed guard


def test_a_guard_that_fails_on_an_unchanged_walk_is_rearmed_and_still_sees_changes():
    tensor = torch.randn(4, 4)
    checked = Watch([tensor])
    first = checked.guard
    tensor.requires_grad_()  # not part of the walk, but part of what the C++ check reads
    assert checked.current()
    assert checked.guard is not first and checked.guard is not None
    assert checked.guard.holds([tensor])
    tensor.data = tensor.data.t()
    assert not checked.current()


@pytest.mark.parametrize("name", sorted(set(MUTATIONS) - {"nothing", "in-place write"}))
def test_a_layout_guard_fails_on_every_change_of_sizes_strides_dtype_or_device(name):
    tensor = torch.randn(4, 4)
    guard = LayoutGuard([tensor])
    before = layouts([tensor])
    MUTATIONS[name](tensor)
    if layouts([tensor]) != before:
        assert not guard.holds([tensor])
    else:  # the change moved the address only: that is the watch's address list's to see
        assert guard.holds([tensor])


class _Wrapped(torch.Tensor):
    """A tensor subclass standing for a DTensor gradient of the same layout."""


def test_a_layout_guard_refuses_a_tensor_of_another_python_type():
    """A step trusts a holding gradient guard to mean no DTensor came in (it tests for one
    only when the guard fails): the guard must refuse any other tensor type."""
    a, b = torch.randn(3), torch.randn(2, 2)
    guard = LayoutGuard([a, b])
    assert guard.holds([a, b])
    assert not guard.holds([a, b.as_subclass(_Wrapped)])
    assert not guard.holds([torch.nn.Parameter(a), b])


def test_a_layout_guard_refuses_another_number_of_tensors():
    a, b = torch.randn(3), torch.randn(3)
    guard = LayoutGuard([a, b])
    assert guard.holds([a, b]) and guard.holds([b, a])
    assert not guard.holds([a]) and not guard.holds([a, b, a])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(set(MUTATIONS) - BLIND)), min_size=1, max_size=3),
    st.sampled_from(MODES),
)
def test_a_sequence_of_changes_is_seen_as_the_full_check_sees_it(names, how):
    # torch itself crashes reading a tensor whose storage was resized away (``.double()``
    # after it is a segmentation fault): that change can only come last.
    assume("storage resized away" not in names[:-1])
    tensor = torch.randn(4, 4)
    with pytest.MonkeyPatch.context() as patch:
        if how == "keys":
            patch.setattr(watch, "guard_available", lambda: False)
        checked = Watch([tensor])
    planned = metadata([tensor])
    for name in names:
        try:
            MUTATIONS[name](tensor)
        except (RuntimeError, IndexError):
            return  # torch refuses this change on the tensor as it now is
    assert checked.current() == (metadata([tensor]) == planned)


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


# -- state dicts: version tags in place of an identity pass per entry --------------------------


def _counted_check(calls: list[int]):
    """A check that passes and counts its calls."""
    return lambda: calls.append(1) is None


def test_dict_versions_are_read_here():
    # The pinned torch on this CPython keeps the tags, so steps take the version path.
    assert watch.dict_version_reader() is not None
    calls: list[int] = []
    watched = {"exp_avg": torch.zeros(2)}
    versions = DictVersions([watched])
    assert versions.holds(_counted_check(calls)) and versions.holds(_counted_check(calls))
    assert calls == [1]  # the second answer came from the unchanged tag
    watched["exp_avg"] = torch.zeros(2)
    assert versions.holds(_counted_check(calls))
    assert calls == [1, 1]  # an entry set to another object: checked again


def test_dict_versions_are_not_read_from_a_dict_subclass():
    class Custom(dict):
        """A mapping that may answer a read from elsewhere than its entries."""

    calls: list[int] = []
    versions = DictVersions([{}, Custom()])
    assert versions.holds(_counted_check(calls)) and versions.holds(_counted_check(calls))
    assert calls == [1, 1]


def test_a_failed_check_is_asked_again():
    versions = DictVersions([{}])
    assert not versions.holds(lambda: False)
    calls: list[int] = []
    assert versions.holds(_counted_check(calls))
    assert calls == [1]


#: Edits of a state dict, each applied alike to descend's and torch.optim's.
STATE_EDITS = {
    "nothing": lambda state: None,
    "same tensor set again": lambda state: state.__setitem__("exp_avg", state["exp_avg"]),
    "moment replaced by a copy": lambda state: state.__setitem__(
        "exp_avg", state["exp_avg"].clone()
    ),
    "moment replaced, doubled": lambda state: state.__setitem__(
        "exp_avg_sq", state["exp_avg_sq"] * 2
    ),
    "counter replaced": lambda state: state.__setitem__("step", state["step"].clone()),
    "extra key added": lambda state: state.__setitem__("note", 1),
    "extra key removed": lambda state: state.pop("note", None),
    "moment removed and put back": lambda state: state.__setitem__("exp_avg", state.pop("exp_avg")),
}


def _adam_beside_torch(shapes: list[tuple[int, ...]]):
    """descend's fused Adam and torch.optim's on equal parameters, two steps taken, and the
    function that steps both on equal random gradients."""
    torch.manual_seed(0)
    mine = [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in mine]
    ours = descend.Adam(mine, lr=0.05, backend="fused")
    reference = torch.optim.Adam(theirs, lr=0.05)

    def step_both() -> None:
        for a, b in zip(mine, theirs, strict=True):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        ours.step()
        reference.step()

    step_both()
    step_both()
    return mine, theirs, ours, reference, step_both


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(STATE_EDITS)), st.integers(0, 2), st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_state_dicts_edited_between_steps_are_stepped_as_torch_does(edits):
    # A stale version path would write the replaced tensors, not those the state now holds.
    mine, theirs, ours, reference, step_both = _adam_beside_torch([(7,), (3, 4), (5,)])
    for name, index, whole_state_copied in edits:
        for optimizer, params in ((ours, mine), (reference, theirs)):
            state = optimizer.state[params[index]]
            STATE_EDITS[name](state)
            if whole_state_copied:
                optimizer.state[params[index]] = dict(state)
        step_both()
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(ours.state[a][key], reference.state[b][key])


def test_unchanged_state_dicts_skip_the_identity_pass(monkeypatch):
    params = [torch.nn.Parameter(torch.randn(8)) for _ in range(3)]
    for p in params:
        p.grad = torch.randn(8)
    optimizer = descend.Adam(params, lr=0.1, backend="fused")
    optimizer.step()
    optimizer.step()
    compared: list[int] = []
    real = block.identical
    monkeypatch.setattr(block, "identical", lambda a, b: compared.append(len(a)) or real(a, b))
    optimizer.step()
    assert compared == []
    optimizer.state[params[1]]["exp_avg"] = optimizer.state[params[1]]["exp_avg"].clone()
    optimizer.step()
    assert compared  # an edited state dict is compared entry by entry
    compared.clear()
    optimizer.step()
    assert compared == []  # and the fast path is back once it was confirmed


def test_an_optimizer_state_reassigned_is_followed_as_torch_follows_it():
    mine, theirs, ours, reference, step_both = _adam_beside_torch([(6,), (6,)])
    # A new mapping of the same state dicts, then one of them edited.
    for optimizer in (ours, reference):
        optimizer.state = defaultdict(dict, optimizer.state)
    step_both()
    for optimizer, params in ((ours, mine), (reference, theirs)):
        optimizer.state[params[0]]["exp_avg"] = optimizer.state[params[0]]["exp_avg"] * 3
    step_both()
    step_both()
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ours.state[a]["exp_avg"], reference.state[b]["exp_avg"])
