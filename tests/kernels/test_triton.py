"""The Triton executor against the NumPy and torch evaluations of each rule and against
torch.optim, run by Triton's interpreter on CPU tensors.

``TRITON_INTERPRET=1`` is set before Triton is first imported (this module is collected before
any test runs), so every kernel here is the GPU kernel's own code, executed with NumPy;
``backend="auto"`` ignores the interpreter, so other tests in the process are unaffected. Most
tests shrink the launch (chunks of 64 elements, blocks of 16) so that small tensors straddle
chunk and block edges. The checks that need a GPU are in ``test_triton_gpu.py``.
"""

from __future__ import annotations

import copy
import os

os.environ["TRITON_INTERPRET"] = "1"

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import descend
from descend.kernels import executors_for
from descend.kernels import triton as triton_executor
from descend.kernels.table import TensorTable
from descend.kernels.torch_support import fma as torch_fma
from descend.kernels.triton import (
    EXECUTOR,
    chunk_list,
    interpreting,
    kernel_source,
    update_tensors_triton,
)
from descend.kernels.variant import variant_of
from descend.rules import RULES
from descend.rules.elementwise import HELPERS, bind, maximum, minimum, sign, sqrt
from descend.rules.spec import Hyper, Rule, Slot
from descend.testing import (
    OPTION_GRID,
    TOLERANCE,
    option_combinations,
    run_side_by_side,
)
from tests.kernels.test_fused import hyper_values, worst_error_against_reference

pytest.importorskip("triton", reason="the Triton executor's tests need Triton (pip install triton)")

# The interpreter also computes the lanes a mask leaves out (on zeros: 0 / 0 with eps = 0).
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

SRC = Path(__file__).resolve().parents[2] / "src"
HALF = (torch.float16, torch.bfloat16)
#: The launch shape of most tests: small tensors straddle chunk and block edges.
SMALL_CHUNK, SMALL_BLOCK = 64, 16
#: Sizes around the small chunk's and block's edges.
EDGE_SIZES = [0, 1, 2, 15, 16, 17, 63, 64, 65, 129]


@pytest.fixture(autouse=True, scope="module")
def small_launches():
    assert interpreting(), "Triton was imported before this module set TRITON_INTERPRET"
    saved = EXECUTOR.chunk, EXECUTOR.block
    EXECUTOR.chunk, EXECUTOR.block = SMALL_CHUNK, SMALL_BLOCK
    yield
    EXECUTOR.chunk, EXECUTOR.block = saved


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the kernel computes in for parameters of ``dtype``."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# -- chunk lists ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=8), st.sampled_from([1, 16, 64]), st.data())
def test_chunk_list_covers_every_element_once(sizes, chunk, data):
    sizes = np.asarray(sizes, dtype=np.int64)
    indices = None
    if len(sizes) and data.draw(st.booleans()):
        indices = np.asarray(
            sorted(data.draw(st.sets(st.integers(0, len(sizes) - 1)))), dtype=np.int64
        )
    rows = chunk_list(sizes, indices, chunk)
    covered = [np.zeros(size, dtype=np.int64) for size in sizes]
    for tensor, start, stop in rows:
        assert start % chunk == 0 and 0 < stop - start <= chunk
        covered[tensor][start:stop] += 1
    chosen = range(len(sizes)) if indices is None else indices
    for index, counts in enumerate(covered):
        assert (counts == (1 if index in chosen else 0)).all()


# -- the kernel against the NumPy and torch evaluations of the rule -------------------------------


@st.composite
def tensor_lists(draw, dtype):
    """Parameters of sizes around chunk and block edges, some non-contiguous."""
    tensors = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["flat", "matrix", "transposed", "strided", "offset"]))
        n = draw(st.sampled_from(EDGE_SIZES))
        if kind == "flat":
            tensors.append(torch.randn(n).to(dtype))
        elif kind == "matrix":
            tensors.append(torch.randn(max(n // 3, 1), 3).to(dtype))
        elif kind == "transposed":
            tensors.append(torch.randn(3, max(n // 3, 1)).to(dtype).t())
        elif kind == "strided":
            tensors.append(torch.randn(2 * n + 1).to(dtype)[::2])
        else:  # contiguous, but not 16-byte aligned
            tensors.append(torch.randn(n + 1).to(dtype)[1:])
    return tensors


@st.composite
def rule_problems(draw, dtypes=(torch.float32, torch.float64, *HALF)):
    rule = draw(st.sampled_from(list(RULES.values())))
    hypers = {hyper.name: draw(hyper_values(hyper)) for hyper in rule.hypers}
    try:
        hypers = rule.validate(hypers)
    except ValueError:
        assume(False)
    dtype = draw(st.sampled_from(dtypes))
    return rule, hypers, dtype, draw(tensor_lists(dtype)), draw(st.integers(1, 3))


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where the other has NaN (NaN payloads may differ)."""
    nan = a.isnan()
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(nan, b.isnan())
        and torch.equal(a[~nan], b[~nan])
    )


def fused_lerp(start, end, weight):
    """``lerp`` with one rounding per element, as the kernel computes it (``tl.fma``); NumPy's
    ``numpy_lerp`` rounds twice. torch's CPU lerp is the fused multiply-add."""
    return torch.lerp(torch.as_tensor(start), torch.as_tensor(end), weight).numpy()


def fused_fma(a, b, c):
    """``a * b + c`` with one rounding, as the kernel computes it (``tl.fma``) and torch's
    ``add(alpha=)``/``addcmul``; NumPy's ``numpy_fma`` rounds twice."""

    def tensor(x):
        return torch.as_tensor(x) if isinstance(x, np.ndarray | np.generic) else x

    return torch_fma(tensor(a), tensor(b), torch.as_tensor(c)).numpy()


def fused_numpy_update(function):
    """``function`` bound to NumPy with the fused primitives rounding once, in it and in the
    helpers it calls: a fresh copy with namespaces of its own (the cached NumPy bindings, which
    the lab and the functional API use, must keep NumPy's own primitives)."""
    bound = bind.__wrapped__(function, "numpy")
    namespace = bound.__globals__
    for name in list(namespace):
        if name in HELPERS:
            namespace[name] = fused_numpy_update(HELPERS[name])
    if "lerp" in namespace:
        namespace["lerp"] = fused_lerp
    if "fma" in namespace:
        namespace["fma"] = fused_fma
    return bound


def numpy_step(rule, scalars, param, grad, slots, dtype):
    """One step of the rule's own update evaluated by NumPy in the kernel's compute dtype,
    results rounded to ``dtype`` as the kernel stores them; returns new (param, slots)."""
    work = compute_dtype(dtype)
    update = fused_numpy_update(rule.update)

    def as_array(tensor):
        return None if tensor is None else tensor.to(work).numpy()

    new_param, *new_slots = update(
        as_array(param), as_array(grad), *map(as_array, slots), **scalars
    )

    def stored(value, like):
        array = np.array(np.broadcast_to(np.asarray(value, dtype=like.numpy().dtype), like.shape))
        return torch.from_numpy(array).to(dtype)

    return stored(new_param, param.to(work)), [
        None if old is None else stored(new, old.to(work))
        for old, new in zip(slots, new_slots, strict=True)
    ]


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_problems())
def test_kernel_matches_numpy_evaluation_bitwise(problem):
    """Every rule, dtype and option: the kernel's results are the NumPy evaluation's, bit for
    bit (IEEE operations in the same order, scalars in float64, elements in float32)."""
    rule, hypers, dtype, params, steps = problem
    generator = torch.Generator().manual_seed(0)
    active = [slot.active(hypers) for slot in rule.slots]
    ours = [p.clone() if p.is_contiguous() else p for p in params]
    our_slots = [
        [
            torch.full_like(p, slot.initial_value(hypers)) if on else None
            for slot, on in zip(rule.slots, active, strict=True)
        ]
        for p in ours
    ]
    expected = [p.clone() for p in params]
    expected_slots = [[None if s is None else s.clone() for s in slots] for slots in our_slots]
    for step in range(1, steps + 1):
        grads = [torch.randn(p.shape, generator=generator).to(dtype) for p in params]
        scalars = rule.scalars(hypers, step)
        update_tensors_triton(rule, scalars, ours, grads, our_slots)
        for index, grad in enumerate(grads):
            expected[index], expected_slots[index] = numpy_step(
                rule, scalars, expected[index], grad, expected_slots[index], dtype
            )
    for index, (a, b) in enumerate(zip(ours, expected, strict=True)):
        assert same(a, b), (rule.name, dtype, index)
        for x, y in zip(our_slots[index], expected_slots[index], strict=True):
            assert x is None or same(x, y), (rule.name, dtype, index)


@pytest.mark.slow  # twenty drawn rules under the interpreter; the fast lane keeps the torch parity
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_problems(dtypes=(torch.float32, torch.float64)))
def test_kernel_matches_reference_executor(problem):
    """Against the torch-op executor: equal up to torch's CPU sqrt, which is not always
    correctly rounded (one ulp off here and there)."""
    rule, hypers, dtype, params, steps = problem
    error = worst_error_against_reference(update_tensors_triton, rule, hypers, dtype, params, steps)
    assert error <= TOLERANCE[dtype], (rule.name, hypers)


def test_default_launch_shape_over_several_chunks(monkeypatch):
    monkeypatch.setattr(EXECUTOR, "chunk", 8192)
    monkeypatch.setattr(EXECUTOR, "block", 1024)
    rule = RULES["adam"]
    hypers = rule.validate({"amsgrad": True, "weight_decay": 0.1})
    params = [torch.randn(2 * 8192 + 5), torch.randn(8192), torch.randn(3)]
    slots = [[torch.zeros_like(p), torch.zeros_like(p), torch.zeros_like(p)] for p in params]
    expected = [p.clone() for p in params]
    expected_slots = [[s.clone() for s in group] for group in slots]
    for step in (1, 2):
        grads = [torch.randn_like(p) for p in params]
        scalars = rule.scalars(hypers, step)
        update_tensors_triton(rule, scalars, params, grads, slots)
        for index, grad in enumerate(grads):
            expected[index], expected_slots[index] = numpy_step(
                rule, scalars, expected[index], grad, expected_slots[index], torch.float32
            )
    for a, b, sa, sb in zip(params, expected, slots, expected_slots, strict=True):
        assert torch.equal(a, b) and all(map(torch.equal, sa, sb))


def test_nonfinite_gradients_propagate_like_numpy():
    rule = RULES["adam"]
    hypers = rule.validate({"amsgrad": True})
    param = torch.randn(40)
    grad = torch.randn(40)
    grad[[3, 17, 33]] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    slots = [torch.zeros(40), torch.zeros(40), torch.zeros(40)]
    expected, expected_slots = numpy_step(
        rule, rule.scalars(hypers, 1), param, grad, slots, torch.float32
    )
    update_tensors_triton(rule, rule.scalars(hypers, 1), [param], [grad], [slots])
    assert same(param, expected) and param.isnan().sum() == 3
    assert all(map(same, slots, expected_slots))


# -- a rule added later gets a GPU kernel without kernel code -------------------------------------


def clipped_sign_update(p, g, avg, *, lr, beta, limit, eps, centered):
    """A made-up rule calling every primitive, to show new rules compile as they are (``abs``
    is the primitive: executors bind the rule's names to their own implementations)."""
    avg = beta * avg + (1 - beta) * g
    step = sign(avg) * minimum(abs(avg), limit) / (sqrt(maximum(avg * avg, eps)))
    if centered:
        step = step - 0.5 * avg
    p = p - lr * step
    return p, avg


CLIPPED_SIGN = Rule(
    name="clipped_sign",
    update=clipped_sign_update,
    hypers=(
        Hyper("lr", 0.01, "step", low=0.0),
        Hyper("beta", 0.9, "decay", low=0.0, high=1.0),
        Hyper("limit", 0.5, "clip", low=0.0),
        Hyper("eps", 1e-8, "eps", low=0.0),
        Hyper("centered", False, "c", kind=bool),
    ),
    slots=(Slot("avg"),),
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("centered", [False, True])
def test_new_rule_with_every_primitive_gets_a_kernel(centered, dtype):
    hypers = CLIPPED_SIGN.validate({"centered": centered})
    params = [torch.randn(37).to(dtype), torch.randn(5, 3).to(dtype), torch.zeros(4).to(dtype)]
    slots = [[torch.zeros_like(p)] for p in params]
    expected = [p.clone() for p in params]
    expected_slots = [[s.clone() for s in group] for group in slots]
    for step in range(1, 4):
        grads = [torch.randn(p.shape).to(dtype) for p in params]
        grads[2].zero_()  # sign(0) = 0
        scalars = CLIPPED_SIGN.scalars(hypers, step)
        update_tensors_triton(CLIPPED_SIGN, scalars, params, grads, slots)
        for index, grad in enumerate(grads):
            expected[index], expected_slots[index] = numpy_step(
                CLIPPED_SIGN, scalars, expected[index], grad, expected_slots[index], dtype
            )
    for a, b, sa, sb in zip(params, expected, slots, expected_slots, strict=True):
        assert torch.equal(a, b) and all(map(torch.equal, sa, sb))


def test_kernel_source_has_flags_as_constants_and_scalars_as_arguments():
    rule = RULES["adam"]
    scalars = rule.scalars(rule.validate({"weight_decay": 0.1}), 3)
    variant = variant_of(rule, scalars, "bfloat16", [True, True, False])
    source = kernel_source(rule, variant)
    start = source.index("def kernel(")
    signature = source[start : source.index("):\n", start)]
    for name in ("step_size", "bc2_sqrt", "beta1", "beta2", "eps", "weight_decay", "decay"):
        assert f" {name}: tl.float64," in signature
    assert "amsgrad" not in signature and "maximize" not in signature
    # The element function is the rule's own, operator by operator; flags are literals.
    assert "exp_avg_sq = fma(_mul(_sub(1, beta2), g), g, _mul(beta2, exp_avg_sq))" in source
    assert "weight_decay, decay, False, False, False)" in source
    assert "tl.pointer_type(tl.bfloat16)" in source


# -- optimizers against torch.optim ---------------------------------------------------------------

SHAPES = [(), (1,), (7, 3), (5,), (2, 3, 4), (65,)]
CASES = [(name, options) for name in OPTION_GRID for options in option_combinations(name)]


@pytest.mark.parametrize(
    ("name", "options"),
    CASES,
    ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in CASES],
)
@pytest.mark.slow
def test_every_option_combination_matches_torch(name, options):
    # Two groups, parameters skipping steps: launches over subsets at different step counts.
    groups = [{}, {"lr": options["lr"] * 0.5}]
    param_error, state_error, *_ = run_side_by_side(
        lambda params: getattr(descend, name)(params, backend="triton", **options),
        lambda params: getattr(torch.optim, name)(params, **options),
        SHAPES,
        torch.float32,
        steps=4,
        group_options=groups,
    )
    assert param_error <= TOLERANCE[torch.float32]
    assert state_error <= TOLERANCE[torch.float32]


@st.composite
def random_problem(draw):
    name = draw(st.sampled_from(list(OPTION_GRID)))
    options = draw(st.sampled_from(option_combinations(name)))
    options["lr"] = draw(st.floats(1e-4, 0.1))
    if name in ("Adam", "AdamW"):
        options["betas"] = (draw(st.floats(0.0, 0.99)), draw(st.floats(0.5, 0.9999)))
        options["eps"] = draw(st.sampled_from([1e-8, 1e-6, 1e-3]))
    if name == "RMSprop":
        options["alpha"] = draw(st.floats(0.5, 0.999))
    shapes = draw(
        st.lists(st.sampled_from([(n,) for n in EDGE_SIZES] + [(3, 5), ()]), min_size=1, max_size=4)
    )
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return name, options, shapes, dtype, draw(st.integers(1, 6)), draw(st.integers(0, 2**16))


@settings(max_examples=15, deadline=None)
@given(random_problem())
def test_random_problems_match_torch(problem):
    name, options, shapes, dtype, steps, seed = problem
    param_error, state_error, *_ = run_side_by_side(
        lambda params: getattr(descend, name)(params, backend="triton", **options),
        lambda params: getattr(torch.optim, name)(params, **options),
        shapes,
        dtype,
        steps=steps,
        seed=seed,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]


@pytest.mark.parametrize("name", ["Momentum", "Nesterov"])
def test_velocity_rules_match_reference_backend(name):
    param_error, state_error, *_ = run_side_by_side(
        lambda params: getattr(descend, name)(params, lr=0.05, weight_decay=0.1, backend="triton"),
        lambda params: getattr(descend, name)(
            params, lr=0.05, weight_decay=0.1, backend="reference"
        ),
        SHAPES,
        torch.float32,
        steps=4,
    )
    assert max(param_error, state_error) <= TOLERANCE[torch.float32]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_half_precision_matches_torch_fused_and_keeps_its_state_dtypes(name, dtype):
    """Like torch's fused kernels: state in the parameter's dtype, arithmetic in float32."""
    shapes = [(7, 3), (65,), (1,)]
    params = [torch.randn(shape).to(dtype).requires_grad_() for shape in shapes]
    twin = [p.detach().clone().requires_grad_() for p in params]
    ours = getattr(descend, name)(params, lr=0.01, backend="triton")
    theirs = getattr(torch.optim, name)(twin, lr=0.01, fused=True)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        for x, y in zip(params, twin, strict=True):
            grad = torch.randn(x.shape, generator=generator).to(dtype)
            x.grad, y.grad = grad, grad.clone()
        ours.step()
        theirs.step()
    for x, y in zip(params, twin, strict=True):
        assert torch.equal(x, y)
        for key, value in theirs.state[y].items():
            assert ours.state[x][key].dtype == value.dtype, key
            assert torch.equal(ours.state[x][key], value), key


def test_mixed_dtypes_in_one_group_run_one_launch_each():
    dtypes = [torch.float32, torch.bfloat16, torch.float64, torch.float16, torch.float32]
    params = [torch.randn(9).to(d).requires_grad_() for d in dtypes]
    alone = [p.detach().clone().requires_grad_() for p in params]
    mixed = descend.Adam(params, lr=0.01, backend="triton")
    separate = [descend.Adam([p], lr=0.01, backend="triton") for p in alone]
    for _ in range(3):
        for x, y in zip(params, alone, strict=True):
            grad = torch.randn(9).to(x.dtype)
            x.grad, y.grad = grad, grad.clone()
        mixed.step()
        for optimizer in separate:
            optimizer.step()
    (plan,) = mixed._plans.values()
    assert sorted(str(block.dtype) for block in plan.blocks) == sorted({str(d) for d in dtypes})
    for x, y in zip(params, alone, strict=True):
        assert torch.equal(x, y)


# -- state, checkpoints and training loops --------------------------------------------------------


def _twins(shapes=((4, 3), (5,), (2, 2, 2)), dtype=torch.float32):
    first = [torch.randn(s, dtype=dtype, requires_grad=True) for s in shapes]
    return first, [p.detach().clone().requires_grad_() for p in first]


def _step_both(a, b, params_a, params_b, steps=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for x, y in zip(params_a, params_b, strict=True):
            grad = torch.randn(x.shape, dtype=x.dtype, generator=generator)
            x.grad, y.grad = grad.clone(), grad.clone()
        a.step()
        b.step()


def _assert_close(params_a, params_b, a=None, b=None):
    for x, y in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    if a is not None:
        for x, y in zip(params_a, params_b, strict=True):
            for key, value in b.state[y].items():
                torch.testing.assert_close(a.state[x][key], value, rtol=1e-6, atol=1e-7)


def _make(kind: str, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if kind == "torch":
        return torch.optim.Adam(params, lr=0.01, amsgrad=True)
    return descend.Adam(params, lr=0.01, amsgrad=True, backend=kind)


@pytest.mark.parametrize(
    "direction", ["triton->torch", "torch->triton", "triton->fused", "reference->triton"]
)
def test_state_dict_moves_between_backends_and_torch(direction):
    source, target = direction.split("->")
    params, twin = _twins()
    ours, theirs = _make(source, params), _make(source, twin)
    _step_both(ours, theirs, params, twin, steps=3)
    resumed = _make(target, params)
    resumed.load_state_dict(copy.deepcopy(ours.state_dict()))
    _step_both(resumed, theirs, params, twin, steps=3, seed=1)
    _assert_close(params, twin, resumed, theirs)
    assert int(resumed.state[params[0]]["step"]) == 6


@pytest.mark.parametrize("mode", ["skip", "raise"])
def test_nonfinite_gradients_change_nothing(mode):
    params, _ = _twins()
    optimizer = descend.Adam(params, lr=0.01, nonfinite=mode, backend="triton")
    _step_both(optimizer, optimizer, params, params, steps=1)
    before = [p.detach().clone() for p in params]
    state = copy.deepcopy(optimizer.state_dict()["state"])
    for p in params:
        p.grad = torch.ones_like(p)
    params[1].grad[2] = float("inf")
    if mode == "raise":
        with pytest.raises(descend.NonFiniteGradientError, match=r"\[1\]"):
            optimizer.step()
    else:
        optimizer.step()
        assert optimizer.skipped_steps == 1
    assert all(map(torch.equal, params, before))
    for key, entry in optimizer.state_dict()["state"].items():
        for name, value in entry.items():
            assert torch.equal(value, state[key][name])


def _small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def test_grad_scaler_steps_and_skips_like_torch():
    x, y = torch.randn(16, 5), torch.randn(16, 1)
    runs = []
    for make in (
        lambda p: descend.Adam(p, lr=0.01, backend="triton"),
        lambda p: torch.optim.Adam(p, lr=0.01),
    ):
        model = _small_model()
        optimizer = make(model.parameters())
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        for step in range(4):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            if step == 2:
                loss = loss * float("inf")  # the scaler skips this step
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        runs.append((model, optimizer, scaler.get_scale()))
    (ours, our_optimizer, our_scale), (theirs, their_optimizer, their_scale) = runs
    assert our_scale == their_scale == 2.0**7
    _assert_close(
        list(ours.parameters()), list(theirs.parameters()), our_optimizer, their_optimizer
    )


def test_compiled_model_trains_like_torch():
    x, y = torch.randn(16, 5), torch.randn(16, 1)
    compiled, plain = torch.compile(_small_model(), backend="aot_eager"), _small_model()
    ours = descend.Adam(compiled.parameters(), lr=0.01, backend="triton")
    theirs = torch.optim.Adam(plain.parameters(), lr=0.01)
    for _ in range(3):
        for model, optimizer in ((compiled, ours), (plain, theirs)):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    _assert_close(list(compiled.parameters()), list(plain.parameters()), ours, theirs)


def test_schedule_never_recompiles():
    params, twin = _twins()
    ours = descend.AdamW(params, lr=0.01, backend="triton")
    theirs = torch.optim.AdamW(twin, lr=0.01)
    schedules = [
        torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1 / (1 + step)) for o in (ours, theirs)
    ]
    _step_both(ours, theirs, params, twin, steps=1)
    kernels = len(triton_executor.KERNELS.kernels)
    for _ in range(5):
        for schedule in schedules:
            schedule.step()
        _step_both(ours, theirs, params, twin, steps=1)
    assert len(triton_executor.KERNELS.kernels) == kernels
    _assert_close(params, twin, ours, theirs)


# -- what the executor checks ---------------------------------------------------------------------


def test_backend_selection_and_refusals(monkeypatch):
    assert [e.name for e in executors_for("auto")][-1] == "reference"
    assert "triton" not in [e.name for e in executors_for("auto")]  # never the interpreter
    descend.Adam([torch.zeros(3, dtype=torch.bfloat16, requires_grad=True)], backend="triton")
    meta = torch.zeros(3, device="meta", requires_grad=True)
    with pytest.raises(
        ValueError,
        match=r"backend='triton' cannot update "
        r"param_groups\[0\]\['params'\]\[0\].*CPU tensors",
    ):
        descend.Adam([meta], backend="triton")
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(ValueError, match="backend='triton' is not available: no CUDA"):
            descend.Adam([torch.zeros(3, requires_grad=True)], backend="triton")


def test_stateless_step_checks_every_operand():
    rule = RULES["adam"]
    scalars = rule.scalars(rule.validate({}), 1)
    params = [torch.randn(4), torch.randn(5)]
    slots = [[torch.zeros(4), torch.zeros(4), None], [torch.zeros(5), torch.zeros(5), None]]
    before = [p.clone() for p in params]
    with pytest.raises(
        ValueError,
        match="the gradient of tensor 1 is a torch.float32 tensor of "
        r"shape \(4,\)",
    ):
        update_tensors_triton(rule, scalars, params, [torch.randn(4), torch.randn(4)], slots)
    slots[0][1] = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="slot 1 of tensor 0 is a torch.float64"):
        update_tensors_triton(rule, scalars, params, [torch.randn(4), torch.randn(5)], slots)
    assert all(map(torch.equal, params, before))


def test_plan_checks_gradients_and_follows_replaced_tensors():
    params, twin = _twins()
    ours = descend.SGD(params, lr=0.05, momentum=0.9, backend="triton")
    theirs = torch.optim.SGD(twin, lr=0.05, momentum=0.9)
    _step_both(ours, theirs, params, twin)
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.randn(p.shape)
    params[2].grad.data = torch.randn(3)  # .data: past autograd's own shape check
    with pytest.raises(ValueError, match=r"the gradient of param_groups\[0\]\['params'\]\[2\]"):
        ours.step()
    assert all(map(torch.equal, params, before))
    for group_params in (params, twin):
        # A parameter's storage replaced: the kernel must write to the new one.
        group_params[1].data = group_params[1].data.clone()
    _step_both(ours, theirs, params, twin)
    _assert_close(params, twin, ours, theirs)
    ours.state[params[0]]["momentum_buffer"] = torch.zeros(3)
    with pytest.raises(ValueError, match="momentum_buffer"):
        ours.step()


def test_addresses_are_uploaded_only_when_they_change():
    params = [torch.randn(9, requires_grad=True), torch.randn(33, requires_grad=True)]
    optimizer = descend.Adam(params, lr=0.01, backend="triton")
    grads = [torch.randn(9), torch.randn(33)]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    optimizer.step()
    (plan,) = optimizer._plans.values()
    (block,) = plan.blocks
    device_table = block.table.derived["triton"]
    uploaded = device_table.uploaded
    optimizer.step()  # same gradients: nothing to upload
    assert device_table.uploaded is uploaded
    params[0].grad = torch.randn(9)  # a new gradient tensor: a new address
    optimizer.step()
    assert device_table.uploaded is not uploaded
    assert device_table.uploaded[1, 0] == params[0].grad.data_ptr()
    assert device_table.aligned  # fresh allocations are 64-byte aligned


def test_unaligned_tensors_run_the_unaligned_kernel():
    storage = torch.randn(40)
    table = TensorTable([9, 30], 2)
    table.addresses[:] = [
        [storage[1:].data_ptr(), storage[10:].data_ptr()],
        [storage.data_ptr(), storage.data_ptr()],
    ]
    device_table = triton_executor.DeviceTable(table)
    device_table.refresh(table)
    assert not device_table.aligned
    table.addresses[0] = [storage.data_ptr(), storage[4:].data_ptr()]
    device_table.refresh(table)
    assert device_table.aligned


# -- the compiled (GPU) path ----------------------------------------------------------------------

COMPILE_FOR_H100 = """
import re
import triton
import descend
from descend.testing import OPTION_GRID, option_combinations
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from descend.kernels.triton import get_kernel
from descend.kernels.variant import variant_of
from descend.rules import RULES

def ptx(rule, hypers, dtype):
    hypers = rule.validate(hypers)
    variant = variant_of(rule, rule.scalars(hypers, 2), dtype,
                         [slot.active(hypers) for slot in rule.slots])
    kernel = get_kernel(rule, variant)
    # The types a launch gives the arguments: the tables' pointers, the tensor count, and the
    # run-time scalars as the kernel declares them (a Python float would otherwise be fp32).
    signature = {"_table": "*i64", "_chunks": "*i64", "_count": "i32"}
    for parameter in kernel.params[3:]:
        signature[parameter.name] = ("constexpr" if parameter.is_constexpr
                                     else parameter.annotation_type or "undeclared")
    assert [signature[name] for name in variant.runtime] == ["fp64"] * len(variant.runtime)
    source = ASTSource(fn=kernel, signature=signature,
                       constexprs={"ALIGNED": True, "CHUNK": 8192, "BLOCK": 1024})
    return triton.compile(source, target=GPUTarget("cuda", 90, 32),
                          options={"enable_fp_fusion": False, "num_warps": 4}).asm["ptx"]

# Every variant the drop-in classes' option grid produces must compile (float32) ...
for name in OPTION_GRID:
    rule = getattr(descend, name).rule
    for options in option_combinations(name):
        hypers = {key: value for key, value in options.items() if key != "lr"}
        ptx(rule, hypers, "float32")
# ... and these are inspected.
for rule, hypers, dtype in [(RULES["adam"], {"amsgrad": True}, "float32"),
                            (RULES["adamw"], {}, "bfloat16"),
                            (RULES["rmsprop"], {"centered": True, "momentum": 0.5}, "float16"),
                            (RULES["sgd"], {"momentum": 0.9, "nesterov": True}, "float64"),
                            (RULES["lion"], {"weight_decay": 0.1}, "float32")]:
    code = ptx(rule, hypers, dtype)
    ops = sorted(set(re.findall(r"\\b(?:ld|st)\\.global\\.v[24]\\.b(?:32|64)|\\bfma\\.rn\\.f32"
                                r"|\\bdiv\\.(?:rn|full|approx)\\.f32|\\bsqrt\\.(?:rn|approx)[.a-z]*f32",
                                code)))
    print(rule.name, dtype, " ".join(ops))
"""


@pytest.mark.slow
def test_kernels_compile_for_an_h100_without_one(tmp_path):
    """Triton's GPU compiler (not the interpreter) accepts the generated kernels: 16-byte
    vector loads and stores, correctly rounded division and square root, and no multiply-add
    fused by the compiler (only the rule's own ``fma``: Lion, which has none, gets none)."""
    pytest.importorskip("triton.backends.nvidia", reason="Triton's NVIDIA backend is missing")
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env.update(
        PYTHONPATH=os.pathsep.join([str(SRC), str(SRC.parent)]),
        DESCEND_CACHE_DIR=str(tmp_path / "descend"),
        TRITON_CACHE_DIR=str(tmp_path / "triton"),
    )
    result = subprocess.run(
        [sys.executable, "-c", COMPILE_FOR_H100],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = {}
    for line in result.stdout.strip().splitlines():
        rule_name, dtype, *ops = line.split()
        found[f"{rule_name} {dtype}"] = " ".join(ops)
    assert set(found) == {
        "adam float32",
        "adamw bfloat16",
        "rmsprop float16",
        "sgd float64",
        "lion float32",
    }
    for name, ops in found.items():
        assert "ld.global.v" in ops and "st.global.v" in ops, (name, ops)
        assert "approx" not in ops and "div.full" not in ops
    assert "fma.rn.f32" not in found["lion float32"]
    for name in ("adam float32", "adamw bfloat16", "rmsprop float16"):
        assert "div.rn.f32" in found[name] and "sqrt.rn.f32" in found[name], found[name]
