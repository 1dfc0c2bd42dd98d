"""A cautious step compiled into the rule's own kernels (the count and apply passes of
:mod:`descend.kernels.caution`) equals the reference executor's cautious step (torch ops:
the rule's step, a copy of the parameters, a count rule, a torch sum, an apply rule) bit for
bit: on the fused executor (Numba) and on Triton (run by its interpreter), float32 and
float64, tensors that span several work items and threads, ascent, steps of different
counters in one launch and a NaN gradient that stays in its element. A broken scale fails the same
comparison, and the arrays the passes touch are checked before a launch.

Bit for bit is possible because both forms round the same values: the kernels compare the
rule's result rounded to the parameter's dtype in registers (what the reference reads back
from memory), the counts are integer sums (exact in any order), and both forms take the
scale from one function, :func:`~descend.kernels.caution.caution_scales`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import descend
from descend.kernels import caution as kernel_caution
from descend.kernels import fused as fused_module
from descend.kernels import get_executor
from descend.kernels.caution import cautious_step, check_caution_array
from descend.kernels.executor import CautiousKernels
from descend.kernels.table import WORK_ITEM
from descend.rules import RULES

pytest.importorskip("numba")

#: Sizes with one tensor over three work items (its count is summed over segments that
#: different threads may take), an empty one and some small ones.
SIZES = [3 * WORK_ITEM + 17, 0, 1, 33, 1000]


def _tensors(sizes, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=generator, dtype=torch.float64).to(dtype) for size in sizes]


def _executor_step(backend, rule_name, dtype, hypers, sizes=SIZES, steps=3, nan_at=None):
    """Parameters and slots after ``steps`` cautious steps of ``cautious_step`` on ``backend``
    (gradients drawn from a fixed seed; ``nan_at`` = (tensor, element) of a NaN gradient in
    the last step)."""
    rule = RULES[rule_name]
    hypers = rule.validate(hypers)
    params = _tensors(sizes, dtype)
    active = [slot.active(hypers) for slot in rule.slots]
    slots = [[torch.zeros_like(p) if on else None for on in active] for p in params]
    generator = torch.Generator().manual_seed(1)
    for step in range(1, steps + 1):
        grads = [
            torch.randn(p.shape, generator=generator, dtype=torch.float64).to(dtype) for p in params
        ]
        if nan_at is not None and step == steps:
            grads[nan_at[0]][nan_at[1]] = float("nan")
        cautious_step(
            get_executor(backend), rule, None, rule.scalars(hypers, step), params, grads, slots
        )
    return params, slots


def _assert_identical(ours, theirs):
    for a, b in zip(ours[0], theirs[0], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    for state_a, state_b in zip(ours[1], theirs[1], strict=True):
        for a, b in zip(state_a, state_b, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


@pytest.fixture
def launches(monkeypatch):
    """Records the kernels the fused executor launches."""
    seen = []
    original = fused_module.FusedExecutor.launch

    def recording(self, kernel, *arguments, **options):
        seen.append(kernel)
        return original(self, kernel, *arguments, **options)

    monkeypatch.setattr(fused_module.FusedExecutor, "launch", recording)
    return seen


CASES = [
    ("adam", torch.float32, {"lr": 0.01}),
    ("adamw", torch.float64, {"lr": 0.01, "weight_decay": 0.1}),
    ("lion", torch.float32, {"lr": 0.01}),
    ("sgd_momentum", torch.float32, {"lr": 0.1, "momentum": 0.9, "maximize": True}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dtype", "hypers"), CASES, ids=[c[0] for c in CASES])
def test_the_fused_kernels_equal_the_reference_bit_for_bit(name, dtype, hypers, launches):
    reference = _executor_step("reference", name, dtype, hypers)
    assert not launches
    ours = _executor_step("fused", name, dtype, hypers)
    assert launches and all(isinstance(kernel, CautiousKernels) for kernel in launches)
    _assert_identical(ours, reference)


@pytest.mark.slow
def test_threads_and_segments_do_not_change_the_count(monkeypatch):
    """The large tensor split over two threads (a grain of one work item) and summed from
    its segments gives the reference's bits, run after run."""
    monkeypatch.setenv(fused_module.THREADS_ENV, "2")
    monkeypatch.setattr(fused_module, "PARALLEL_GRAIN", WORK_ITEM)
    reference = _executor_step("reference", "adam", torch.float32, {"lr": 0.01})
    first = _executor_step("fused", "adam", torch.float32, {"lr": 0.01})
    _assert_identical(first, reference)
    _assert_identical(_executor_step("fused", "adam", torch.float32, {"lr": 0.01}), first)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["fused", "triton"])
def test_a_nan_gradient_stays_in_its_element_on_every_executor(backend, monkeypatch):
    """Every executor's ``sign`` is torch's (0 for NaN), so a NaN gradient's agreement is 0: the
    count and scale stay finite, and the NaN reaches only its own element (through the rule's
    own step, as without caution), the same bits as the reference executor's, in both the
    fused passes and the older form."""
    hypers = {"lr": 0.01}
    reference = _executor_step("reference", "adam", torch.float32, hypers, nan_at=(3, 5))
    ours = _executor_step(backend, "adam", torch.float32, hypers, nan_at=(3, 5))
    _assert_identical(ours, reference)
    assert ours[0][3].isnan().sum() == 1 and ours[0][3][5].isnan()
    if backend == "fused":
        monkeypatch.setattr(fused_module.FusedExecutor, "fuses_caution", False)
        _assert_identical(
            _executor_step(backend, "adam", torch.float32, hypers, nan_at=(3, 5)), reference
        )


@pytest.mark.slow
def test_a_broken_scale_fails_the_comparison(monkeypatch):
    """The comparison above catches a wrong scale: ``n / kept`` in place of ``n / (kept + 1)``
    in the fused executor's passes changes the iterates."""
    reference = _executor_step("reference", "adam", torch.float32, {"lr": 0.01})

    def broken(kept, sizes, dtype):
        return (sizes.to(dtype) / kept.to(dtype)).to(torch.float64)

    monkeypatch.setattr(fused_module, "caution_scales", broken)
    ours = _executor_step("fused", "adam", torch.float32, {"lr": 0.01})
    with pytest.raises(AssertionError):
        _assert_identical(ours, reference)


def _optimizer_run(backend, steps=4):
    """Parameters and state of a cautious Adam whose second parameter gets no gradient in
    the first step (so its counter lags: one launch with two scalar rows)."""
    params = [p.requires_grad_() for p in _tensors([WORK_ITEM + 5, 40, 7], torch.float32)]
    optimizer = descend.Adam(params, lr=0.01, cautious=True, backend=backend)
    generator = torch.Generator().manual_seed(3)
    for step in range(steps):
        for index, param in enumerate(params):
            grad = torch.randn(param.shape, generator=generator)
            param.grad = None if (step == 0 and index == 1) else grad
        optimizer.step()
    return [p.detach() for p in params], [list(optimizer.state[p].values()) for p in params]


@pytest.mark.slow
def test_the_optimizer_steps_its_blocks_in_the_kernels_with_lagging_counters(launches):
    reference = _optimizer_run("reference")
    assert not launches
    ours = _optimizer_run("fused")
    assert launches and all(isinstance(kernel, CautiousKernels) for kernel in launches)
    _assert_identical(ours, reference)


@pytest.mark.slow
def test_an_executor_that_does_not_fuse_caution_runs_the_older_form(monkeypatch, launches):
    """Told it does not fuse caution, the fused executor's blocks run the plain kernel and the
    correction passes after it: the same bits."""
    in_kernel = _optimizer_run("fused")
    launches.clear()
    monkeypatch.setattr(fused_module.FusedExecutor, "fuses_caution", False)
    older = _optimizer_run("fused")
    assert launches and not any(isinstance(kernel, CautiousKernels) for kernel in launches)
    _assert_identical(older, in_kernel)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dtype", "hypers"), CASES[:3], ids=[c[0] for c in CASES[:3]])
def test_the_triton_kernels_equal_the_reference_bit_for_bit(name, dtype, hypers):
    pytest.importorskip("triton")
    sizes = [3 * 8192 + 17, 0, 1, 33]
    reference = _executor_step("reference", name, dtype, hypers, sizes=sizes, steps=2)
    ours = _executor_step("triton", name, dtype, hypers, sizes=sizes, steps=2)
    _assert_identical(ours, reference)


@pytest.mark.slow
def test_triton_rounds_a_bfloat16_result_before_comparing(monkeypatch):
    """In bfloat16 the rule computes in float32 and stores rounded: the in-kernel passes
    compare the rounded result, as the older form (which reads it back) does."""
    pytest.importorskip("triton")
    sizes = [8192 + 3, 100]
    hypers = {"lr": 0.01}
    in_kernel = _executor_step("triton", "adam", torch.bfloat16, hypers, sizes=sizes, steps=2)
    monkeypatch.setattr(type(get_executor("triton")), "fuses_caution", False)
    older = _executor_step("triton", "adam", torch.bfloat16, hypers, sizes=sizes, steps=2)
    _assert_identical(in_kernel, older)


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros(4, dtype=np.float32), "float32"),
        (np.zeros(5), "(5,)"),
        (np.zeros((4, 2))[:, 0], "False"),
        (torch.zeros(4, dtype=torch.float32), "torch.float32"),
        (torch.zeros(3, dtype=torch.float64), "(3,)"),
    ],
)
def test_a_count_or_scale_array_unlike_the_launch_is_refused(array, problem):
    with pytest.raises(ValueError, match="scales") as error:
        check_caution_array("scales", array, 4)
    assert problem in str(error.value)
    check_caution_array("scales", np.zeros(4), 4)
    check_caution_array("scales", torch.zeros(4, dtype=torch.float64), 4, torch.device("cpu"))


def test_the_scales_are_n_over_kept_plus_one_in_the_parameters_dtype():
    kept = torch.tensor([0.0, 3.0, float("nan")], dtype=torch.float64)
    sizes = torch.tensor([5, 7, 9])
    scales = kernel_caution.caution_scales(kept, sizes, torch.float32)
    assert scales.dtype == torch.float64
    assert scales[0] == 5.0
    assert scales[1] == float(torch.tensor(7.0) / torch.tensor(4.0))
    assert scales[2].isnan()
