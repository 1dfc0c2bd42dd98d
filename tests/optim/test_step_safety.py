"""A step either matches torch.optim or refuses before it changes anything: layouts that change
at the same address, overlapping memory, parameters listed twice after construction, group
values edited or loaded out of range, damaged checkpoints, settings in the environment that
stop a step half-way. Each case here once stepped wrong numbers, corrupted memory, or raised
after the step counters had advanced."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import descend
from descend.kernels import fused
from tests.optim.test_memory_safety import snapshot

BACKENDS = ["reference", "fused", "auto"]


def assert_step_refused(optimizer: torch.optim.Optimizer, match: str) -> None:
    """``optimizer.step()`` raises ``ValueError`` matching ``match`` and changes nothing."""
    before = snapshot(optimizer)
    with pytest.raises(ValueError, match=match):
        optimizer.step()
    assert_unchanged(before, optimizer)


def assert_unchanged(before: list[torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
    """Every parameter and state tensor as in ``before``, bit for bit (NaN equal to NaN)."""
    after = snapshot(optimizer)
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert old.shape == new.shape and old.dtype == new.dtype
        assert (
            torch.equal(old, new)
            or torch.equal(old.isnan(), new.isnan())
            and torch.equal(old.nan_to_num(), new.nan_to_num())
        )


SRC = Path(descend.__file__).resolve().parents[1]


def pair(make, *shape, steps: int = 2, backend: str = "auto", **options):
    """A descend optimizer and its torch.optim counterpart on equal copies of a parameter,
    after ``steps`` equal steps."""
    torch.manual_seed(0)
    mine = torch.nn.Parameter(torch.randn(*shape))
    theirs = torch.nn.Parameter(mine.detach().clone())
    ours = getattr(descend, make)([mine], backend=backend, **options)
    reference = getattr(torch.optim, make)([theirs], **options)
    for _ in range(steps):
        step_both(mine, theirs, ours, reference)
    return mine, theirs, ours, reference


def step_both(mine, theirs, ours, reference):
    grad = torch.randn(mine.shape)
    mine.grad, theirs.grad = grad.clone(), grad.clone()
    ours.step()
    reference.step()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("change", ["data.t()", "t_()", "as_strided_", "state t_()"])
def test_a_layout_changed_at_the_same_address_is_stepped_as_torch_does(change, backend):
    mine, theirs, ours, reference = pair("Adam", 5, 5, backend=backend, lr=0.1)
    address = mine.data_ptr()
    for param, optimizer in ((mine, ours), (theirs, reference)):
        if change == "data.t()":
            param.data = param.data.t()
        elif change == "t_()":
            param.data.t_()
        elif change == "as_strided_":
            param.data.as_strided_((5, 5), (1, 5))
        else:
            optimizer.state[param]["exp_avg"].t_()
    assert mine.data_ptr() == address
    for _ in range(3):
        step_both(mine, theirs, ours, reference)
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(ours.state[mine]["exp_avg"], reference.state[theirs]["exp_avg"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_expanded_tensor_at_the_old_address_is_refused_not_written_past_its_end(backend):
    # The kernel once wrote n * n floats into the n-float block of an expanded replacement.
    n = 64
    param = torch.nn.Parameter(torch.randn(n, n))
    optimizer = descend.SGD([param], lr=0.1, backend=backend)
    param.grad = torch.randn(n, n)
    optimizer.step()
    row = torch.randn(n)
    param.data = row.expand(n, n)
    param.grad = torch.randn(n, n)
    assert_step_refused(optimizer, "same memory location")


@pytest.mark.parametrize("backend", BACKENDS)
def test_overlapping_state_is_refused(backend):
    param = torch.nn.Parameter(torch.randn(3, 3))
    optimizer = descend.SGD([param], lr=0.1, momentum=0.9, backend=backend)
    param.grad = torch.randn(3, 3)
    optimizer.step()
    buffer = optimizer.state[param]["momentum_buffer"]
    buffer.set_(buffer.untyped_storage(), 0, (3, 3), (0, 1))
    assert_step_refused(optimizer, "momentum_buffer.*same memory location")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_parameter_appended_twice_after_construction_is_refused(backend):
    param = torch.nn.Parameter(torch.randn(10))
    optimizer = descend.SGD([param], lr=0.1, backend=backend)
    param.grad = torch.randn(10)
    optimizer.step()
    optimizer.param_groups[0]["params"].append(param)
    assert_step_refused(optimizer, "listed twice")
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.randn(2))]})
    optimizer.param_groups[0]["params"].pop()
    optimizer.step()  # fixed: steps again


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_sgd_with_dampening_matches_torch_from_the_first_step(backend):
    # The fused executor once dampened the first step of a parameter it could not plan.
    torch.manual_seed(0)
    base = torch.randn(6, 4, 2)
    mine = torch.nn.Parameter(base[..., 0])
    theirs = torch.nn.Parameter(base[..., 0].clone())
    options = dict(lr=0.01, momentum=0.9, dampening=0.5)
    ours = descend.SGD([mine], backend=backend, **options)
    reference = torch.optim.SGD([theirs], **options)
    for _ in range(3):
        step_both(mine, theirs, ours, reference)
    torch.testing.assert_close(mine, theirs)


BAD_VALUES = [
    ("lr", math.nan),
    ("lr", math.inf),
    ("lr", -1.0),
    ("lr", "abc"),
    ("lr", None),
    ("eps", None),
    ("weight_decay", math.nan),
    ("amsgrad", "yes"),
    ("betas", (0.9, math.nan)),
    ("betas", "abc"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_a_group_value_edited_out_of_range_is_refused_before_the_step(key, value, backend):
    param = torch.nn.Parameter(torch.randn(4))
    optimizer = descend.Adam([param], lr=0.1, backend=backend)
    param.grad = torch.randn(4)
    optimizer.step()
    optimizer.param_groups[0][key] = value
    before = snapshot(optimizer)
    with pytest.raises(
        ValueError,
        match=r"parameter group 0: .*(lr|eps|weight_decay|amsgrad"
        r"|betas)",
    ):
        optimizer.step()
    assert_unchanged(before, optimizer)
    assert float(optimizer.state[param]["step"]) == 1.0


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_a_state_dict_with_group_values_out_of_range_is_refused_before_loading(key, value):
    param = torch.nn.Parameter(torch.randn(4))
    optimizer = descend.Adam([param], lr=0.1)
    param.grad = torch.randn(4)
    optimizer.step()
    saved = optimizer.state_dict()
    saved["param_groups"][0][key] = value
    with pytest.raises(ValueError, match="parameter group 0 of the state dict"):
        optimizer.load_state_dict(saved)
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_a_checkpoint_with_a_missing_moment_is_refused_as_torch_refuses_it():
    param = torch.nn.Parameter(torch.randn(4))
    optimizer = descend.Adam([param], lr=0.1)
    param.grad = torch.randn(4)
    optimizer.step()
    saved = optimizer.state_dict()
    saved["state"][0]["exp_avg"] = None
    with pytest.raises(ValueError, match="'exp_avg'.*NoneType"):
        descend.Adam([param], lr=0.1).load_state_dict(saved)


def test_an_unset_momentum_buffer_loads_and_restarts_as_in_torch():
    # torch.optim.SGD reads momentum_buffer=None as "not created yet" (older versions saved it).
    torch.manual_seed(0)
    mine = torch.nn.Parameter(torch.randn(4))
    theirs = torch.nn.Parameter(mine.detach().clone())
    reference = torch.optim.SGD([theirs], lr=0.1, momentum=0.9, dampening=0.5)
    theirs.grad = torch.randn(4)
    reference.step()
    saved = reference.state_dict()
    saved["state"][0]["momentum_buffer"] = None
    reference.load_state_dict(saved)
    ours = descend.SGD([mine], lr=0.1, momentum=0.9, dampening=0.5)
    ours.load_state_dict(saved)
    mine.data.copy_(theirs.detach())
    for _ in range(2):
        step_both(mine, theirs, ours, reference)
    torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-7)


@pytest.mark.parametrize("value", [None, 0.01, "state"])
def test_load_state_dict_of_something_else_is_a_clear_error(value):
    optimizer = descend.Adam([torch.nn.Parameter(torch.randn(2))])
    with pytest.raises(ValueError, match="expects an optimizer state dict"):
        optimizer.load_state_dict(value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "counter", [torch.tensor(-1.0), torch.tensor([1.0, 2.0]), torch.tensor(math.nan), "in place -1"]
)
def test_a_step_counter_no_step_can_follow_is_refused(counter, backend):
    param = torch.nn.Parameter(torch.randn(4))
    optimizer = descend.Adam([param], lr=0.1, backend=backend)
    param.grad = torch.randn(4)
    optimizer.step()
    if isinstance(counter, str):
        optimizer.state[param]["step"].fill_(-1)
    else:
        optimizer.state[param]["step"] = counter
    assert_step_refused(optimizer, r"state\['step'\]")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_learning_rate_beyond_the_dtype_is_refused_where_torch_sgd_refuses_it(backend):
    mine = torch.nn.Parameter(torch.randn(4))
    theirs = torch.nn.Parameter(mine.detach().clone())
    mine.grad, theirs.grad = torch.ones(4), torch.ones(4)
    with pytest.raises(RuntimeError, match="overflow"):
        torch.optim.SGD([theirs], lr=1e308).step()
    optimizer = descend.SGD([mine], lr=1e308, backend=backend)
    assert_step_refused(optimizer, "lr=1e\\+308 does not fit in float32")
    # float64 holds it: torch steps, and so does descend.
    wide = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    wide.grad = torch.full((2,), 1e-300, dtype=torch.float64)
    descend.SGD([wide], lr=1e308, backend=backend).step()
    assert torch.isfinite(wide).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_step_scalar_that_overflows_at_a_later_step_of_one_setting_is_refused(backend):
    """Steps at one setting reuse its kernel: each step's own scalars are still checked.
    Adam's step size lr / (1 - beta1**t) is largest at t = 1: lr = 4e37 fits float32 at
    step 5 (9.8e37) but not at step 1 (4e38, past float32's 3.4e38)."""
    param = torch.nn.Parameter(torch.ones(8))
    param.grad = torch.ones(8)
    optimizer = descend.Adam([param], lr=1e-3, backend=backend)
    optimizer.step()
    optimizer.param_groups[0]["lr"] = 4e37
    optimizer.state[param]["step"].fill_(4)
    optimizer.step()  # step 5 fits
    assert torch.isfinite(param).all()
    optimizer.state[param]["step"].fill_(0)  # in place: the plan still holds
    assert_step_refused(optimizer, "step_size")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tensor_learning_rate_edited_in_place_out_of_range_is_refused(backend):
    """The group holds the same tensor object as at the last check: its value is checked
    again anyway."""
    lr = torch.tensor(0.01)
    param = torch.nn.Parameter(torch.ones(8))
    param.grad = torch.ones(8)
    optimizer = descend.Adam([param], lr=lr, backend=backend)
    optimizer.step()
    lr.fill_(-1.0)
    assert_step_refused(optimizer, "lr")


@pytest.mark.parametrize("setting", ["threads", "cache"])
def test_a_bad_setting_in_the_environment_fails_before_the_counters_advance(
    setting, monkeypatch, tmp_path
):
    pytest.importorskip("numba")
    param = torch.nn.Parameter(torch.randn(4))
    optimizer = descend.Adam([param], lr=0.1, backend="fused")
    param.grad = torch.randn(4)
    optimizer.step()
    if setting == "threads":
        monkeypatch.setenv(fused.THREADS_ENV, "many")
        optimizer.param_groups[0]["lr"] = 0.2
        match = "DESCEND_NUM_THREADS"
    else:
        blocker = tmp_path / "a file"
        blocker.write_text("")
        monkeypatch.setenv(fused.CACHE_ENV, str(blocker))
        monkeypatch.setattr(fused.KERNELS, "kernels", {})  # as a fresh process: none in memory
        optimizer.param_groups[0]["amsgrad"] = True
        match = "kernel cache directory"
    assert_step_refused(optimizer, match)
    assert float(optimizer.state[param]["step"]) == 1.0


def test_the_compile_lock_never_waits_forever(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    path = tmp_path / "kernel.lock"
    with open(path, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: as another process would
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fused._file_lock(path, notice=0.05, timeout=0.3):
                pass
    messages = [str(w.message) for w in caught]
    assert any("waiting for process" in m for m in messages), messages
    assert any("gave up waiting" in m for m in messages), messages


def test_a_stopped_compiler_holding_the_lock_is_not_waited_for(tmp_path):
    pytest.importorskip("fcntl")
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("needs /proc to see that a process is stopped")
    path = tmp_path / "kernel.lock"
    script = (
        f"import sys; sys.path.insert(0, {str(SRC)!r})\n"
        "from pathlib import Path\n"
        "from descend.kernels import fused\n"
        f"with fused._file_lock(Path({str(path)!r})):\n"
        "    print('locked', flush=True)\n"
        "    import time; time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        os.kill(holder.pid, signal.SIGSTOP)  # as Ctrl-Z would, mid-compile
        for _ in range(100):  # the stop is asynchronous
            if fused._stopped(holder.pid):
                break
            time.sleep(0.05)
        start = time.monotonic()
        with pytest.warns(RuntimeWarning, match="is stopped"), fused._file_lock(path):
            pass
        assert time.monotonic() - start < 10
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_parameter_whose_storage_shrank_under_it_is_refused(backend):
    # The address changes, so the plan rebuilds; the rebuilt plan must not walk past the end.
    param = torch.nn.Parameter(torch.randn(1000))
    optimizer = descend.Adam([param], lr=0.1, backend=backend)
    param.grad = torch.randn(1000)
    optimizer.step()
    param.data.untyped_storage().resize_(400)  # 100 floats left under a 1000-float tensor
    param.grad = torch.randn(1000)
    state = {name: value.clone() for name, value in optimizer.state[param].items()}
    with pytest.raises(ValueError, match="past the end of its storage"):
        optimizer.step()
    for name, value in optimizer.state[param].items():
        assert torch.equal(value, state[name])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_parameter_assigned_over_another_in_the_group_list_is_refused(backend):
    # The list keeps its length: a count of parameters cannot tell.
    first, second = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(3))
    optimizer = descend.SGD([first, second], lr=0.1, backend=backend)
    first.grad = torch.randn(3)
    optimizer.step()
    optimizer.param_groups[0]["params"][1] = first
    assert_step_refused(optimizer, "listed twice")
