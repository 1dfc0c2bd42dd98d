"""The rule model's extensions, on small made-up rules: the ``lerp`` primitive, slots that start
as the parameter, running products, group state and matrix stages, on every executor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from descend import functional
from descend.kernels import update_tensors
from descend.kernels.fused import update_tensors_fused
from descend.optim.base import RuleOptimizer
from descend.rules.elementwise import lerp, numpy_lerp
from descend.rules.spec import (
    CourseForm,
    GroupState,
    Hyper,
    Listing,
    MatrixStage,
    Rule,
    RunningProduct,
    Slot,
)

BACKENDS = ["reference", "fused"]
FMA = torch.backends.cpu.get_cpu_capability() != "DEFAULT"


# -- the lerp primitive ---------------------------------------------------------------------------


def interpolate_update(p, g, *, weight):
    """A made-up rule: x <- lerp(x, g, weight)."""
    p = lerp(p, g, weight)
    return (p,)


INTERPOLATE = Rule("interpolate", interpolate_update, (Hyper("weight", 0.1, "w"),))


@pytest.mark.skipif(
    not FMA, reason="torch computes lerp with a fused multiply-add only on CPUs with vector FMA"
)
@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([torch.float32, torch.float64]),
    st.floats(-2.0, 2.0, allow_nan=False),
    st.integers(1, 300),
    st.integers(0, 2**16),
)
def test_compiled_lerp_is_torchs_bit_for_bit(dtype, weight, size, seed):
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(size, dtype=dtype, generator=generator)
    end = torch.randn(size, dtype=dtype, generator=generator)
    fused, reference = start.clone(), start.clone()
    update_tensors_fused(INTERPOLATE, {"weight": weight}, [fused], [end], [[]])
    update_tensors(INTERPOLATE, {"weight": weight}, [reference], [end], [[]])
    expected = torch.lerp(start, end, weight)
    assert torch.equal(fused, expected)
    assert torch.equal(reference, expected)


@given(st.floats(-2.0, 2.0, allow_nan=False))
def test_numpy_lerp_follows_torchs_formula(weight):
    rng = np.random.default_rng(0)
    start, end = rng.standard_normal(50), rng.standard_normal(50)
    expected = torch.lerp(torch.from_numpy(start), torch.from_numpy(end), weight).numpy()
    np.testing.assert_allclose(numpy_lerp(start, end, weight), expected, rtol=1e-15, atol=1e-15)


# -- a rule with every extension ------------------------------------------------------------------


def _halving(hypers, step):
    return hypers["shrink"] ** step


def _count(values):
    return {"k": values["k"] + 1, "total": values["total"] + values["lr"]}


def anchored_update(p, g, anchor, *, lr, pull, product):
    """A made-up rule: x <- x - lr * g * product + pull * (anchor - x); anchor <- anchor."""
    p = p - lr * g * product + pull * (anchor - p)
    return p, anchor


def _anchored_scalars(values, step):
    return {"product": values["product"], "pull": values["total"] * 0.01}


ANCHORED = Rule(
    "anchored",
    anchored_update,
    (Hyper("lr", 0.1, "step", low=0.0), Hyper("shrink", 0.9, "factor", low=0.0, high=1.0)),
    (Slot("anchor", from_parameter=True),),
    step_scalars=_anchored_scalars,
    products=(RunningProduct("product", _halving),),
    group_state=GroupState({"k": 0, "total": 0.0}, _count),
    listing=Listing(course=CourseForm("anchored")),
)


class Anchored(RuleOptimizer):
    """A made-up optimizer running :data:`ANCHORED`."""

    rule = ANCHORED

    def __init__(self, params, lr=0.1, shrink=0.9, *, nonfinite="propagate", backend="auto"):
        super().__init__(params, dict(lr=lr, shrink=shrink), nonfinite=nonfinite, backend=backend)


def _expected_run(x0, gradients, lr, shrink, skipped):
    """The anchored rule by hand, in float64 except the product (a float32 0-d tensor, as a
    step counter's dtype), for one parameter: ``skipped[t]`` marks the optimizer steps at which
    this parameter had no gradient."""
    x, anchor, count, total = x0.double(), None, 0, 0.0
    product = torch.tensor(1.0, dtype=torch.float32)
    products = []
    for t, gradient in enumerate(gradients):
        count, total = count + 1, total + lr
        if skipped[t]:
            continue
        if anchor is None:
            anchor = x.clone()
            step = 0
        step += 1
        product = product * shrink**step
        products.append(product.item())
        x = x - lr * gradient.double() * product.item() + total * 0.01 * (anchor - x)
    return x, products


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_every_extension_runs_as_specified(backend, dtype):
    generator = torch.Generator().manual_seed(1)
    shapes = [(3, 2), (4,), (5,)]
    params = [torch.randn(s, dtype=dtype, generator=generator).requires_grad_() for s in shapes]
    starts = [p.detach().clone() for p in params]
    optimizer = Anchored(
        [{"params": params[:2]}, {"params": params[2:], "lr": 0.05}], backend=backend
    )
    steps = 9
    gradients = [
        [torch.randn(s, dtype=dtype, generator=generator) for s in shapes] for _ in range(steps)
    ]
    # Parameter 1 has no gradient on odd steps; parameter 2 (group 1) none at the first two.
    skipped = [[False] * steps, [t % 2 == 1 for t in range(steps)], [t < 2 for t in range(steps)]]
    for t in range(steps):
        for index, param in enumerate(params):
            param.grad = None if skipped[index][t] else gradients[t][index].clone()
        optimizer.step()
    for group in optimizer.param_groups:
        assert group["k"] == steps  # every step advanced every group, with gradients or not
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for index, param in enumerate(params):
        lr = 0.1 if index < 2 else 0.05
        expected, products = _expected_run(
            starts[index], [g[index] for g in gradients], lr, 0.9, skipped[index]
        )
        torch.testing.assert_close(
            param.detach().double(), expected, rtol=tolerance, atol=tolerance
        )
        state = optimizer.state[param]
        # The product is a 0-d tensor in the step counter's dtype, multiplied in that dtype.
        assert state["product"].dtype == torch.float32 and state["product"].ndim == 0
        assert state["product"].item() == products[-1]
        assert products[-1] != float(np.prod([0.9**c for c in range(1, len(products) + 1)]))
        torch.testing.assert_close(state["anchor"], starts[index])


def test_skipped_steps_leave_group_state_alone():
    param = torch.ones(3, requires_grad=True)
    optimizer = Anchored([param], nonfinite="skip")
    param.grad = torch.tensor([1.0, float("nan"), 0.0])
    optimizer.step()
    assert optimizer.param_groups[0]["k"] == 0 and optimizer.skipped_steps == 1
    assert torch.equal(param, torch.ones(3))


def test_group_state_and_products_survive_a_checkpoint():
    params = [torch.randn(4, requires_grad=True) for _ in range(2)]
    twins = [p.detach().clone().requires_grad_() for p in params]
    first, straight = Anchored(params), Anchored(twins)
    for step in range(6):
        for param, twin in zip(params, twins, strict=True):
            param.grad = torch.full_like(param, 0.1 * step)
            twin.grad = param.grad.clone()
        if step == 3:
            state = first.state_dict()
            assert state["param_groups"][0]["k"] == 3
            first = Anchored(params)
            first.load_state_dict(state)
        first.step()
        straight.step()
    for param, twin in zip(params, twins, strict=True):
        assert torch.equal(param, twin)


def test_functional_form_keeps_the_state_in_the_config():
    w = np.array([1.0, -2.0])
    next_w, config = functional.FunctionalSpec(ANCHORED)(w, np.array([0.5, 0.5]))
    assert config["k"] == 1 and config["total"] == pytest.approx(0.1)
    assert config["product"] == pytest.approx(0.9)
    np.testing.assert_array_equal(config["anchor"], w)  # from the weights, not zeros
    np.testing.assert_allclose(next_w, w - 0.1 * 0.5 * 0.9)


def test_scalars_fill_missing_state_with_its_value_after_that_many_steps():
    hypers = ANCHORED.validate({"lr": 0.2})
    scalars = ANCHORED.scalars(hypers, 3)
    assert scalars["product"] == pytest.approx(0.9 * 0.9**2 * 0.9**3)
    assert scalars["pull"] == pytest.approx(3 * 0.2 * 0.01)


# -- a matrix stage -------------------------------------------------------------------------------


def average_update(u, g, average, *, beta):
    """A made-up stage preparation: a <- beta a + (1 - beta) g; u <- a."""
    average = beta * average + (1 - beta) * g
    return average, average


def normalized(u, hypers):
    """A made-up matrix function: U / ||U||_F."""
    return u / u.norm()


def normalized_update(p, g, average, *, lr):
    """A made-up rule: x <- x - lr * a / ||a||_F (the stage's result comes in as g)."""
    p = p - lr * g
    return p, average


NORMALIZED = Rule(
    "normalized",
    normalized_update,
    (Hyper("lr", 0.1, "step", low=0.0), Hyper("beta", 0.5, "decay", low=0.0, high=1.0)),
    (Slot("average"),),
    stage=MatrixStage(average_update, normalized),
    counts_steps=False,
)


class Normalized(RuleOptimizer):
    """A made-up optimizer running :data:`NORMALIZED`."""

    rule = NORMALIZED

    def __init__(self, params, lr=0.1, beta=0.5, *, backend="auto"):
        super().__init__(params, dict(lr=lr, beta=beta), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matrix_stage_runs_between_the_elementwise_parts(backend):
    param = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    x, average = param.detach().clone(), torch.zeros(3, 4, dtype=torch.float64)
    optimizer = Normalized([param], backend=backend)
    for _ in range(5):
        gradient = torch.randn(3, 4, dtype=torch.float64)
        param.grad = gradient.clone()
        optimizer.step()
        average = 0.5 * average + 0.5 * gradient
        x = x - 0.1 * average / average.norm()
    torch.testing.assert_close(param.detach(), x, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(optimizer.state[param]["average"], average, rtol=1e-14, atol=1e-14)


def test_stage_refuses_parameters_of_another_dimension_before_any_change():
    good, bad = torch.zeros(2, 2, requires_grad=True), torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"params'\]\[1\] \(shape \(3,\)\) is 1-D"):
        Normalized([good, bad])
    optimizer = Normalized([good])
    with pytest.raises(ValueError, match="2-D"):
        optimizer.add_param_group({"params": [bad]})
    assert len(optimizer.param_groups) == 1


# -- hyperparameter kinds -------------------------------------------------------------------------


def test_integer_and_choice_hyperparameters_name_what_is_allowed():
    steps = Hyper("steps", 5, "count", low=0, high=99, kind=int)
    assert steps.check(7) == 7
    with pytest.raises(ValueError, match="steps=2.5 is invalid: expected an integer"):
        steps.check(2.5)
    with pytest.raises(ValueError, match="steps=100 is out of range: expected 0 <= steps <= 99"):
        steps.check(100)
    with pytest.raises(ValueError, match="steps=True is invalid"):
        steps.check(True)
    mode = Hyper("mode", None, "which", choices=(None, "a", "b"))
    assert mode.check("b") == "b" and mode.check(None) is None
    with pytest.raises(ValueError, match="mode='c' is invalid: expected one of None, 'a', 'b'"):
        mode.check("c")
