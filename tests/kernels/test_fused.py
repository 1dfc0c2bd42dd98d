"""The fused executor against the reference executor, and the fused optimizers' bookkeeping."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import descend
from descend.kernels import update_tensors
from descend.kernels.fused import kernel_source, kernel_threads, update_tensors_fused
from descend.kernels.table import WORK_ITEM, segments
from descend.kernels.variant import variant_holds, variant_of
from descend.optim.generated import optimizer_class
from descend.rules import RULES
from descend.rules.elementwise import sqrt
from descend.rules.spec import Hyper, Rule, Slot
from descend.testing import (
    OPTION_GRID,
    TOLERANCE,
    ErrorTracker,
    option_combinations,
    run_side_by_side,
)

SRC = Path(__file__).resolve().parents[2] / "src"


# -- work split -----------------------------------------------------------------------------------


# Sizes up to three work items (and a few elements more) reach every edge case of the split.
SPLITS = st.sampled_from([1, 7, 64, WORK_ITEM]).flatmap(
    lambda item: st.tuples(st.lists(st.integers(0, 3 * item + 3), max_size=8), st.just(item))
)


@settings(max_examples=60, deadline=None)
@given(SPLITS)
def test_segments_cover_every_element_once(split):
    sizes, work_item = split
    item_start, tensor, start, stop = segments(np.asarray(sizes, dtype=np.int64), work_item)
    lengths = stop - start
    assert (lengths > 0).all()
    # Every work item holds at most work_item elements.
    item_of_segment = np.repeat(np.arange(len(item_start) - 1), np.diff(item_start))
    assert len(item_of_segment) == len(tensor)
    assert (np.bincount(item_of_segment, weights=lengths) <= work_item).all()
    # Each tensor's segments, in order, tile its elements exactly once.
    order = np.lexsort((start, tensor))
    for index, size in enumerate(sizes):
        mine = order[tensor[order] == index]
        if size == 0:
            assert len(mine) == 0
            continue
        assert start[mine][0] == 0 and stop[mine][-1] == size
        assert (start[mine][1:] == stop[mine][:-1]).all()


# -- fused executor against the reference executor, rule by rule ----------------------------------


def hyper_values(hyper: Hyper):
    """Values worth testing for one hyperparameter: its default, zero, and a random one."""
    if hyper.kind is bool:
        return st.booleans()
    low = 0.0 if hyper.low is None else hyper.low
    high = 1.0 if hyper.high is None else min(hyper.high, 1.0)
    high = high * 0.999 if hyper.high_open else high
    return st.one_of(st.just(hyper.default), st.just(low), st.floats(low, high))


@st.composite
def tensor_lists(draw, dtype):
    """Parameters of mixed shapes, some non-contiguous (transposed or strided views)."""
    count = draw(st.integers(1, 6))
    tensors = []
    for _ in range(count):
        kind = draw(st.sampled_from(["flat", "matrix", "transposed", "strided"]))
        n = draw(st.sampled_from([0, 1, 2, 7, 33, 1000, WORK_ITEM + 3]))
        if kind == "flat":
            tensors.append(torch.randn(n, dtype=dtype))
        elif kind == "matrix":
            tensors.append(torch.randn(max(n // 7, 1), 7, dtype=dtype))
        elif kind == "transposed":
            tensors.append(torch.randn(7, max(n // 7, 1), dtype=dtype).t())
        else:
            tensors.append(torch.randn(2 * n + 1, dtype=dtype)[::2])
    return tensors


@st.composite
def rule_problems(draw):
    rule = draw(st.sampled_from(list(RULES.values())))
    hypers = {hyper.name: draw(hyper_values(hyper)) for hyper in rule.hypers}
    try:
        hypers = rule.validate(hypers)
    except ValueError:
        assume(False)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    params = draw(tensor_lists(dtype))
    steps = draw(st.integers(1, 6))
    return rule, hypers, dtype, params, steps


def worst_error_against_reference(update, rule, hypers, dtype, params, steps) -> float:
    """Run ``steps`` random steps of ``rule`` with the executor function ``update`` and with the
    reference executor from the same start; the worst error of any parameter or slot."""
    generator = torch.Generator().manual_seed(0)
    active = [slot.active(hypers) for slot in rule.slots]
    ours = [p.clone() if p.is_contiguous() else p for p in params]
    theirs = [p.clone() for p in params]

    def make_slots(tensors):
        return [
            [
                torch.full_like(t, slot.initial_value(hypers)) if on else None
                for slot, on in zip(rule.slots, active, strict=True)
            ]
            for t in tensors
        ]

    our_slots, their_slots = make_slots(ours), make_slots(theirs)
    tracker = ErrorTracker()
    for step in range(1, steps + 1):
        grads = [torch.randn(p.shape, dtype=dtype, generator=generator) for p in params]
        scalars = rule.scalars(hypers, step)
        update(rule, scalars, ours, grads, our_slots)
        update_tensors(rule, scalars, theirs, grads, their_slots)
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            tracker.observe(("param", index), a, b)
            for k, (x, y) in enumerate(zip(our_slots[index], their_slots[index], strict=True)):
                if x is not None:
                    tracker.observe((k, index), x, y)
    return tracker.worst()


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_problems())
def test_fused_executor_matches_reference(problem):
    rule, hypers, dtype, params, steps = problem
    error = worst_error_against_reference(update_tensors_fused, rule, hypers, dtype, params, steps)
    assert error <= TOLERANCE[dtype], (rule.name, hypers)


def test_flags_become_constants_and_zero_switches_drop_branches():
    rule = RULES["adam"]
    scalars = rule.scalars(rule.validate({}), 1)
    variant = variant_of(rule, scalars, "float32", [True, True, False])
    constants = dict(variant.constants)
    assert constants["amsgrad"] is False and constants["weight_decay"] == 0.0
    assert "lr" not in constants and "step_size" in variant.runtime
    source = kernel_source(rule, variant)
    # The element function is the rule's own, operator by operator.
    assert "exp_avg_sq = fma(_mul(_sub(1, beta2), g), g, _mul(beta2, exp_avg_sq))" in source


def _changed_scalars(draw, scalars):
    """``scalars`` with some values replaced: a flag flipped, a number set to zero or to
    another non-zero number."""
    changed = dict(scalars)
    for name, value in scalars.items():
        if isinstance(value, bool):
            changed[name] = draw(st.sampled_from([value, not value]))
        else:
            changed[name] = draw(st.sampled_from([value, 0.0, 0.5, -2.0]))
    return changed


@given(data=st.data(), name=st.sampled_from(sorted(RULES)))
@settings(max_examples=150, deadline=None)
def test_a_variant_holds_exactly_when_variant_of_would_return_it_again(data, name):
    """The plan reuses a kernel across steps at one setting while ``variant_holds``: it must
    agree with building the variant afresh, whatever changed."""
    rule = RULES[name]
    scalars = rule.scalars(rule.validate({}), 3)
    active = [True] * len(rule.slots)
    before, after = _changed_scalars(data.draw, scalars), _changed_scalars(data.draw, scalars)
    variant = variant_of(rule, before, "float32", active)
    assert variant_holds(variant, rule, after) == (
        variant_of(rule, after, "float32", active) == variant
    )


# -- a rule added later gets the fused executor without kernel code -------------------------------


def scaled_sign_update(p, g, avg, *, lr, beta, eps, centered):
    """A made-up rule: normalized moving average, to show new rules fuse as they are."""
    avg = beta * avg + (1 - beta) * g
    step = avg / (sqrt(avg * avg) + eps)
    if centered:
        step = step - 0.5 * avg
    p = p - lr * step
    return p, avg


SCALED_SIGN = Rule(
    name="scaled_sign",
    update=scaled_sign_update,
    hypers=(
        Hyper("lr", 0.01, "step", low=0.0),
        Hyper("beta", 0.9, "decay", low=0.0, high=1.0),
        Hyper("eps", 1e-8, "eps", low=0.0),
        Hyper("centered", False, "c", kind=bool),
    ),
    slots=(Slot("avg"),),
)


@pytest.mark.parametrize("centered", [False, True])
def test_new_rule_gets_fused_kernel(centered):
    hypers = SCALED_SIGN.validate({"centered": centered})
    params = [torch.randn(37), torch.randn(5, 3)]
    reference = [p.clone() for p in params]
    slots = [[torch.zeros_like(p)] for p in params]
    reference_slots = [[torch.zeros_like(p)] for p in params]
    for step in range(1, 4):
        grads = [torch.randn_like(p) for p in params]
        scalars = SCALED_SIGN.scalars(hypers, step)
        update_tensors_fused(SCALED_SIGN, scalars, params, grads, slots)
        update_tensors(SCALED_SIGN, scalars, reference, grads, reference_slots)
    for a, b in zip(
        params + [s[0] for s in slots], reference + [s[0] for s in reference_slots], strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# -- optimizers: fused backend against the reference backend --------------------------------------


def _fused_cases() -> dict[str, tuple[type, list[dict]]]:
    """Every elementwise optimizer of the registry with its defaults, and the drop-in classes
    with the options of their registry row's parity grid too (a new rule is in it unasked)."""
    cases = {}
    for rule in RULES.values():
        if rule.stage is not None:  # a matrix stage runs on torch: covered by tests/optim
            continue
        name = optimizer_class(rule).__name__
        grid = option_combinations(name) if name in OPTION_GRID else []
        cases[name] = (optimizer_class(rule), [{}, *grid[1 :: max(1, len(grid) // 6)]])
    return cases


CLASSES = _fused_cases()


@st.composite
def optimizer_problems(draw):
    name = draw(st.sampled_from(list(CLASSES)))
    options = dict(draw(st.sampled_from(CLASSES[name][1])))
    shapes = draw(
        st.lists(st.lists(st.integers(0, 9), max_size=3).map(tuple), min_size=1, max_size=12)
    )
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return name, options, shapes, dtype, draw(st.integers(1, 12)), draw(st.integers(0, 999))


@settings(max_examples=40, deadline=None)
@given(optimizer_problems())
def test_fused_optimizers_match_reference_backend(problem):
    name, options, shapes, dtype, steps, seed = problem
    cls = CLASSES[name][0]
    param_error, state_error, *_ = run_side_by_side(
        lambda params: cls(params, backend="fused", **options),
        lambda params: cls(params, backend="reference", **options),
        shapes,
        dtype,
        steps=steps,
        seed=seed,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]


def test_many_tensors_of_mixed_sizes_match_torch():
    shapes = [(1024,)] * 200 + [(3, 3)] * 50 + [(0,), (1,), (WORK_ITEM * 2 + 5,), (7, 3, 11)]
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend.Adam(params, lr=0.01, backend="fused"),
        lambda params: torch.optim.Adam(params, lr=0.01),
        shapes,
        torch.float32,
        steps=15,
    )
    assert max(param_error, state_error) <= TOLERANCE[torch.float32]


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


def _assert_same(params_a, params_b, a=None, b=None):
    for x, y in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    if a is not None:
        for x, y in zip(params_a, params_b, strict=True):
            for key, value in b.state[y].items():
                torch.testing.assert_close(a.state[x][key], value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("direction", ["fused->reference", "reference->fused"])
def test_state_dict_moves_between_backends(direction):
    source, target = direction.split("->")
    params, twin = _twins()
    ours = descend.Adam(params, lr=0.01, amsgrad=True, backend=source)
    theirs = descend.Adam(twin, lr=0.01, amsgrad=True, backend=source)
    _step_both(ours, theirs, params, twin, steps=4)
    resumed = descend.Adam(params, lr=0.01, amsgrad=True, backend=target)
    resumed.load_state_dict(copy.deepcopy(ours.state_dict()))
    _step_both(resumed, theirs, params, twin, steps=4, seed=1)
    _assert_same(params, twin, resumed, theirs)
    assert int(resumed.state[params[0]]["step"]) == 8


def test_torch_checkpoint_loads_into_fused_and_back():
    params, twin = _twins()
    theirs = torch.optim.Adam(twin, lr=0.01)
    ours = descend.Adam(params, lr=0.01, backend="fused")
    _step_both(ours, theirs, params, twin, steps=3)
    back = torch.optim.Adam(params, lr=0.01)
    back.load_state_dict(copy.deepcopy(ours.state_dict()))
    _step_both(back, theirs, params, twin, steps=3, seed=1)
    _assert_same(params, twin)


def test_plan_follows_changes_made_between_steps():
    params, twin = _twins()
    ours = descend.SGD(params, lr=0.05, backend="fused")
    theirs = descend.SGD(twin, lr=0.05, backend="reference")
    _step_both(ours, theirs, params, twin)
    for optimizer in (ours, theirs):
        # Momentum switched on mid-run: a new slot appears.
        optimizer.param_groups[0]["momentum"] = 0.9
    _step_both(ours, theirs, params, twin)
    for optimizer, group_params in ((ours, params), (theirs, twin)):
        # A state tensor replaced, a parameter's storage replaced, a new group added.
        optimizer.state[group_params[0]]["momentum_buffer"] = torch.ones(4, 3)
        group_params[1].data = group_params[1].data.clone()
    extra, extra_twin = _twins(((6,),))
    ours.add_param_group({"params": extra, "lr": 0.01})
    theirs.add_param_group({"params": extra_twin, "lr": 0.01})
    _step_both(ours, theirs, params + extra, twin + extra_twin)
    _assert_same(params + extra, twin + extra_twin, ours, theirs)
    # A deep copy: load_state_dict keeps the very tensors it is given when it can.
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    _step_both(ours, theirs, params + extra, twin + extra_twin, seed=2)
    _assert_same(params + extra, twin + extra_twin, ours, theirs)


def test_parameters_at_different_step_counts_share_one_group():
    params, twin = _twins(((3,), (4,), (5,)))
    ours = descend.Adam(params, lr=0.01, backend="fused")
    theirs = torch.optim.Adam(twin, lr=0.01)
    generator = torch.Generator().manual_seed(0)
    for step in range(6):
        for index, (x, y) in enumerate(zip(params, twin, strict=True)):
            if index > step // 2:  # parameter i joins at step 2i
                x.grad = y.grad = None
                continue
            grad = torch.randn(x.shape, generator=generator)
            x.grad, y.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
    _assert_same(params, twin, ours, theirs)


def test_gradient_laid_out_unlike_its_parameter():
    params, twin = _twins(((4, 6),))
    ours = descend.RMSprop(params, backend="fused")
    theirs = torch.optim.RMSprop(twin)
    for _ in range(3):
        grad = torch.randn(6, 4).t()
        params[0].grad, twin[0].grad = grad, grad.clone()
        ours.step()
        theirs.step()
    _assert_same(params, twin, ours, theirs)


# -- backend selection ----------------------------------------------------------------------------


def test_backend_is_validated():
    with pytest.raises(ValueError, match="backend='gpu' is invalid"):
        descend.Adam([torch.zeros(2, requires_grad=True)], backend="gpu")
    half = torch.zeros(2, dtype=torch.bfloat16, requires_grad=True)
    with pytest.raises(
        ValueError,
        match=r"backend='fused' cannot update "
        r"param_groups\[0\]\['params'\]\[0\], a torch.bfloat16 tensor",
    ):
        descend.Adam([half], backend="fused")
    optimizer = descend.Adam([torch.zeros(2, requires_grad=True)], backend="fused")
    with pytest.raises(ValueError, match="float16"):
        optimizer.add_param_group(
            {"params": [torch.zeros(2, dtype=torch.float16, requires_grad=True)]}
        )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_auto_backend_mixed_dtypes_match_torch(dtype):
    params = [
        torch.randn(5, dtype=d, requires_grad=True)
        for d in (torch.float32, dtype, torch.float64, dtype)
    ]
    twin = [p.detach().clone().requires_grad_() for p in params]
    ours = descend.AdamW(params, lr=0.01, eps=1e-4)
    theirs = torch.optim.AdamW(twin, lr=0.01, eps=1e-4, foreach=False)
    _step_both(ours, theirs, params, twin, steps=5)
    assert len(ours._plans) == 1  # the float32 and float64 tensors ran fused
    for x, y in zip(params, twin, strict=True):
        # Half-precision tensors take the reference path: torch's rounding, op by op, though
        # torch.optim writes some steps with other ops (lerp, addcdiv): a few ulps apart.
        tolerance = TOLERANCE.get(x.dtype, 4 * torch.finfo(x.dtype).eps)
        assert (x.double() - y.double()).abs().max() <= tolerance * y.double().abs().max()


def test_thread_setting_is_validated(monkeypatch):
    monkeypatch.setenv("DESCEND_NUM_THREADS", "0")
    with pytest.raises(ValueError, match="DESCEND_NUM_THREADS='0'"):
        kernel_threads()
    monkeypatch.setenv("DESCEND_NUM_THREADS", "1")
    assert kernel_threads() == 1
    monkeypatch.delenv("DESCEND_NUM_THREADS")
    assert kernel_threads() == torch.get_num_threads()


@settings(max_examples=60, deadline=None)
@given(
    value=st.none()
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
)
def test_the_thread_setting_is_read_as_os_environ_holds_it(value):
    """The step reads the variable from the mapping behind ``os.environ`` (faster when it is
    unset): the same value, decoded, as ``os.environ.get`` for any text, and unset alike."""
    from descend.kernels.fused import THREADS_ENV, _threads_setting

    before = os.environ.pop(THREADS_ENV, None)
    try:
        if value is not None:
            os.environ[THREADS_ENV] = value
        assert _threads_setting() == os.environ.get(THREADS_ENV) == value
    finally:
        os.environ.pop(THREADS_ENV, None)
        if before is not None:
            os.environ[THREADS_ENV] = before


# -- disk cache -----------------------------------------------------------------------------------

FRESH_PROCESS = textwrap.dedent("""
    import torch, descend
    from descend.kernels import fused
    params = [torch.randn(10, requires_grad=True)]
    params[0].grad = torch.randn(10)
    descend.SGD(params, lr=0.1, momentum=0.9, backend="fused").step()
    (kernel,) = fused.KERNELS.kernels.values()
    print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
""")


@pytest.mark.slow
def test_fresh_process_loads_compiled_kernel_from_disk(tmp_path):
    env = dict(os.environ, DESCEND_CACHE_DIR=str(tmp_path), PYTHONPATH=str(SRC))
    runs = [
        subprocess.run(
            [sys.executable, "-c", FRESH_PROCESS],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs[0] == ["0", "1"]  # compiled and saved
    assert runs[1] == ["1", "0"]  # loaded, no compile
    assert list(tmp_path.glob("descend_kernel_sgd_float32_*.py"))


def _fused_sgd_result() -> float:
    params = [torch.ones(10, requires_grad=True)]
    params[0].grad = torch.ones(10)
    descend.SGD(params, lr=0.5, backend="fused").step()
    return float(params[0].detach()[0])


@pytest.mark.parametrize("damage", ["source", "machine code", "planted code"])
def test_a_damaged_kernel_cache_is_recompiled_with_a_warning(tmp_path, monkeypatch, damage):
    from descend.kernels import fused

    monkeypatch.setenv("DESCEND_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fused.KERNELS, "kernels", {})
    assert _fused_sgd_result() == 0.5
    (source,) = tmp_path.glob("descend_kernel_sgd_float32_*.py")
    marker = tmp_path / "planted-code-ran"
    if damage == "source":
        source.write_text(source.read_text()[:200])  # truncated: a SyntaxError if imported
    elif damage == "planted code":
        source.write_text(source.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n")
    else:
        for path in (tmp_path / "__pycache__").glob("*.nbc"):
            path.write_bytes(os.urandom(100))
    fused.KERNELS.kernels.clear()  # as a fresh process would, load from the damaged cache
    with pytest.warns(RuntimeWarning, match="recompiling"):
        assert _fused_sgd_result() == 0.5  # 1 - 0.5 * 1, computed by a sound kernel
    assert not marker.exists()
    fused.KERNELS.kernels.clear()  # repaired: loads silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _fused_sgd_result() == 0.5


@pytest.mark.slow
def test_processes_compiling_one_kernel_together_see_no_damage(tmp_path):
    env = dict(
        os.environ,
        DESCEND_CACHE_DIR=str(tmp_path),
        PYTHONPATH=str(SRC),
        PYTHONWARNINGS="error::RuntimeWarning",
    )
    script = FRESH_PROCESS.replace("momentum=0.9", "momentum=0.8, nesterov=True")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outcomes = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0], outcomes
    assert not any("recompiling" in stderr for _, stderr in outcomes)
    # One compiled, the others loaded what it saved.
    assert sorted(out.split()[1] for out, _ in outcomes) == ["0", "0", "1"]
