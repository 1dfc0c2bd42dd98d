"""Bit-for-bit float32: descend's executors against each other, and against torch.optim.

Two promises are checked here, for every rule of the registry and every option combination:

- The executors agree bit for bit (reference = torch ops, fused = Numba, Triton run by its
  interpreter), parameters and state, so a run moved between backends (or a checkpoint moved
  between CPU and GPU) continues exactly.
- The drop-in classes step as ``torch.optim``'s for-loop path (``foreach=False``) does, bit for
  bit, with one documented exception: torch's CPU ``sqrt`` of a float32 tensor comes from MKL's
  vector library, which is not correctly rounded (about one root in six is one unit off on
  x86-64), while every descend executor computes a correctly rounded root, as CUDA, NumPy and
  torch's own fused CPU kernels do. So descend equals the for-loop run with a correctly rounded
  ``sqrt`` (:class:`CorrectlyRoundedSqrt`), which is the plain for-loop wherever torch's
  ``sqrt`` is correctly rounded or the rule takes none; and where torch has a fused path, descend
  is no further from the plain for-loop than torch's fused path is.

What torch's own float32 CPU paths do, measured over 60 steps (for-loop = foreach everywhere):

- SGD: fused equals the for-loop without momentum; with momentum it differs (up to 9.5e-7), as
  its kernel rounds the buffer's update differently. descend equals the for-loop.
- Adagrad, Adam, AdamW: fused differs from the for-loop (up to 7.6e-6 for Adagrad with weight
  decay, 2.4e-7 for Adam): its ``sqrt`` is correctly rounded. descend is as far from the
  for-loop as torch's fused path is (on this kind of CPU) and equals the for-loop with a
  correctly rounded ``sqrt``.
- RMSprop, NAdam, RAdam: no fused path; descend differs from the for-loop only through ``sqrt``.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import itertools

import pytest
import torch
from torch.overrides import TorchFunctionMode

from descend.kernels import update_tensors
from descend.kernels.fused import update_tensors_fused
from descend.rules import RULES
from descend.rules.spec import Rule
from descend.testing import OPTION_GRID, descend_class, option_combinations, torch_class

#: Shapes of the torch comparison: scalars, odd sizes, and tensors long enough for torch's
#: vectorized loops (and their scalar tails).
SHAPES = [(), (1,), (7, 3), (2, 3, 4), (33,), (1031,)]
STEPS = 40


# -- the executors against each other -------------------------------------------------------------


def _grid(rule: Rule) -> list[dict]:
    """Every combination the rule's hyperparameters span: both values of each flag, zero and a
    non-zero value of each number whose default is zero (weight decay, momentum, dampening,
    ...), the default of every other; those the rule's constraints refuse are left out."""
    choices = {}
    for hyper in rule.hypers:
        if hyper.kind is bool:
            choices[hyper.name] = [False, True]
        elif hyper.kind is float and hyper.choices is None and hyper.default == 0.0:
            choices[hyper.name] = [0.0, 0.1]
        else:
            choices[hyper.name] = [hyper.default]
    combinations = []
    for values in itertools.product(*choices.values()):
        try:
            combinations.append(rule.validate(dict(zip(choices, values, strict=True))))
        except ValueError:
            continue
    return combinations


def _one_at_a_time(rule: Rule) -> list[dict]:
    """The combinations of :func:`_grid` that differ from the first (every option off) in at
    most one hyperparameter, and the last (every option on)."""
    grid = _grid(rule)
    first = grid[0]
    chosen = [hypers for hypers in grid if sum(hypers[name] != first[name] for name in hypers) <= 1]
    return chosen + ([grid[-1]] if grid[-1] not in chosen else [])


def _elementwise_rules() -> list[Rule]:
    """Every elementwise function an executor compiles: each rule's update, and a matrix
    stage's ``prepare`` as a rule of its own."""
    found = []
    for rule in RULES.values():
        found.append(rule)
        if rule.prepare_rule is not None:
            found.append(rule.prepare_rule)
    return found


RULE_CASES = [(rule, hypers) for rule in _elementwise_rules() for hypers in _grid(rule)]


def _run_executor(step_function, rule: Rule, hypers: dict, shapes, steps: int):
    """Parameters and slots after ``steps`` updates of ``rule`` by one executor's list step,
    on reproducible random data (the gradients change sign and scale each step)."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=generator) for shape in shapes]
    active = [slot.active(hypers) for slot in rule.slots]
    slots = [
        [
            slot.initial(param, hypers) if on else None
            for slot, on in zip(rule.slots, active, strict=True)
        ]
        for param in params
    ]
    values = {**hypers, **rule.state_after(hypers, 0)}
    for step in range(1, steps + 1):
        values = {**hypers, **rule.next_state(hypers, step, values)}
        grads = [
            torch.randn(shape, generator=generator) * 10.0 ** (step % 3 - 1) for shape in shapes
        ]
        step_function(rule, rule.scalars(values, step), params, grads, slots)
    return params, slots


def _assert_same(ours, theirs, label: str) -> None:
    (params, slots), (other_params, other_slots) = ours, theirs
    for index, (a, b) in enumerate(zip(params, other_params, strict=True)):
        assert torch.equal(a, b), (
            f"{label}: parameter {index} differs by {(a - b).abs().max().item():.3g}"
        )
    for index, (state, other) in enumerate(zip(slots, other_slots, strict=True)):
        for slot, (a, b) in enumerate(zip(state, other, strict=True)):
            if a is not None:
                assert torch.equal(a, b), f"{label}: slot {slot} of parameter {index} differs"


@pytest.mark.parametrize(
    ("rule", "hypers"),
    RULE_CASES,
    ids=[
        f"{rule.name}-{'-'.join(f'{k}={v}' for k, v in hypers.items())}"
        for rule, hypers in RULE_CASES
    ],
)
def test_reference_and_fused_executors_agree_bitwise(rule, hypers):
    shapes = [(), (7, 3), (1031,)]
    reference = _run_executor(update_tensors, rule, hypers, shapes, 30)
    fused = _run_executor(update_tensors_fused, rule, hypers, shapes, 30)
    _assert_same(fused, reference, f"{rule.name} fused vs reference")


@pytest.mark.parametrize("rule", _elementwise_rules(), ids=lambda rule: rule.name)
@pytest.mark.slow
def test_triton_executor_agrees_with_reference_bitwise(rule):
    pytest.importorskip("triton", reason="needs Triton (pip install triton)")
    from descend.kernels.triton import TritonExecutor

    # Small chunks and blocks, so that the tensors straddle chunk and block edges. The
    # interpreter is slow: few programs, six steps (RAdam's rectified steps start at the
    # sixth), and the combinations that switch on one option at a time, or all of them.
    executor = TritonExecutor(chunk=64, block=32)

    def triton_step(rule, scalars, params, grads, slots):
        executor.step(rule, None, scalars, params, grads, slots)

    for hypers in _one_at_a_time(rule):
        shapes = [(), (7, 3), (100,)]
        reference = _run_executor(update_tensors, rule, hypers, shapes, 6)
        triton = _run_executor(triton_step, rule, hypers, shapes, 6)
        _assert_same(triton, reference, f"{rule.name} {hypers} triton vs reference")


# -- descend against torch.optim ------------------------------------------------------------------


def _correctly_rounded(x: torch.Tensor) -> torch.Tensor:
    # The float64 root rounded to float32 is the correctly rounded float32 root.
    return torch.sqrt(x.double()).to(x.dtype) if x.dtype == torch.float32 else torch.sqrt(x)


class CorrectlyRoundedSqrt(TorchFunctionMode):
    """Every float32 ``sqrt`` torch.optim takes (``Tensor.sqrt``, ``sqrt_``, ``torch.sqrt``,
    ``torch._foreach_sqrt``), correctly rounded."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.sqrt, torch.Tensor.sqrt):
            return _correctly_rounded(args[0])
        if func is torch.Tensor.sqrt_:
            return args[0].copy_(_correctly_rounded(args[0]))
        if func is torch._foreach_sqrt:
            return [_correctly_rounded(x) for x in args[0]]
        if func is torch._foreach_sqrt_:
            for x in args[0]:
                x.copy_(_correctly_rounded(x))
            return None
        return func(*args, **kwargs)


def _run_optimizer(make, steps: int = STEPS):
    """Parameters and state tensors (step counters aside) after ``steps`` steps on reproducible
    random gradients."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=generator).requires_grad_() for shape in SHAPES]
    optimizer = make(params)
    for _ in range(steps):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer.step()
    state = [
        {
            key: value.detach().clone()
            for key, value in optimizer.state[param].items()
            if isinstance(value, torch.Tensor) and key != "step"
        }
        for param in params
    ]
    return [param.detach().clone() for param in params], state


def _distance(ours, theirs) -> float:
    """Largest absolute difference over parameters and the state tensors both keep."""
    (params, state), (other_params, other_state) = ours, theirs
    pairs = list(zip(params, other_params, strict=True))
    for mine, other in zip(state, other_state, strict=True):
        pairs += [(mine[key], other[key]) for key in other if key in mine]
    return max(
        (float((a.double() - b.double()).abs().max()) for a, b in pairs if a.numel()), default=0.0
    )


def _accepts(name: str, options: dict, **path) -> bool:
    try:
        torch_class(name)([torch.zeros(1, requires_grad=True)], **options, **path)
    except (ValueError, RuntimeError, TypeError):
        return False
    return True


TORCH_CASES = [(name, options) for name in OPTION_GRID for options in option_combinations(name)]


@pytest.mark.parametrize(
    ("name", "options"),
    TORCH_CASES,
    ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in TORCH_CASES],
)
@pytest.mark.slow
def test_descend_steps_as_torch_for_loop_bitwise(name, options):
    loop = _run_optimizer(lambda ps: torch_class(name)(ps, foreach=False, **options))
    with CorrectlyRoundedSqrt():
        rounded_loop = _run_optimizer(lambda ps: torch_class(name)(ps, foreach=False, **options))
    fused_distance = None
    if _accepts(name, options, fused=True):
        fused_distance = _distance(
            _run_optimizer(lambda ps: torch_class(name)(ps, fused=True, **options)), loop
        )
    for backend in ("reference", "fused"):
        ours = _run_optimizer(
            lambda ps, backend=backend: descend_class(name)(ps, backend=backend, **options)
        )
        assert _distance(ours, rounded_loop) == 0.0, backend
        if fused_distance is not None:
            # Both differ from the for-loop only where a root rounds differently (and fused
            # SGD in its momentum update); which of the two ends a unit or two closer is
            # chance, so the bound is twice the fused path's distance.
            assert _distance(ours, loop) <= 2 * fused_distance, backend


def test_correctly_rounded_sqrt_matches_numpy():
    # The premise of the comparison above, and the reference executor's sqrt, checked against
    # NumPy's (IEEE) square root, float32 and float64, with zeros, subnormals and infinities.
    from descend.kernels.torch_support import sqrt

    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        tiny = torch.finfo(dtype).tiny
        x = torch.cat(
            [
                torch.rand(200003, generator=generator, dtype=dtype) * 4.0,
                torch.rand(1000, generator=generator, dtype=dtype) * tiny,
                torch.tensor([0.0, -0.0, tiny, float("inf"), 1.0, 4.0], dtype=dtype),
            ]
        )
        expected = torch.from_numpy(x.numpy() ** 0.5)
        assert torch.equal(sqrt(x), expected), dtype
    assert torch.equal(_correctly_rounded(x.float()), torch.from_numpy(x.float().numpy() ** 0.5))
    assert torch.isnan(sqrt(torch.tensor([-1.0, float("nan")]))).all()


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_complex_adagrad_accumulator_starts_like_torch(backend):
    # torch starts a complex accumulator at value + value * 1j, so its complex run equals its
    # run on the real view; so must descend's.
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(5, 3, dtype=torch.complex64, generator=generator)
    ours, theirs, real = (start.clone().requires_grad_() for _ in range(3))
    optimizers = [
        descend_class("Adagrad")([ours], lr=0.1, initial_accumulator_value=0.1, backend=backend),
        torch.optim.Adagrad([theirs], lr=0.1, initial_accumulator_value=0.1, foreach=False),
        descend_class("Adagrad")(
            [torch.view_as_real(real.detach()).requires_grad_()],
            lr=0.1,
            initial_accumulator_value=0.1,
            backend=backend,
        ),
    ]
    real_view = optimizers[2].param_groups[0]["params"][0]
    for _ in range(3):
        grad = torch.randn(5, 3, dtype=torch.complex64, generator=generator)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        real_view.grad = torch.view_as_real(grad).clone()
        with CorrectlyRoundedSqrt():
            for optimizer in optimizers:
                optimizer.step()
    assert torch.equal(ours, theirs)
    assert torch.equal(optimizers[0].state[ours]["sum"], optimizers[1].state[theirs]["sum"])
    assert torch.equal(torch.view_as_real(ours.detach()), real_view.detach())
