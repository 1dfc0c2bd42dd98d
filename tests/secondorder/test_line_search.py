"""The shared strong-Wolfe search: torch's results bit for bit, the conditions it promises, and
its safeguards against non-finite values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.lbfgs import _cubic_interpolate as torch_cubic
from torch.optim.lbfgs import _strong_wolfe as torch_strong_wolfe

from descend.secondorder import cubic_interpolate, strong_wolfe


def along_line(loss, x: torch.Tensor, d: torch.Tensor):
    """torch's obj_func and descend's phi for the same function, direction and start."""

    def obj_func(x0, t, direction):
        point = (x0 + t * direction).detach().requires_grad_(True)
        value = loss(point)
        (grad,) = torch.autograd.grad(value, point)
        return value.item(), grad

    def phi(t):
        value, grad = obj_func(x, t, d)
        return value, grad, grad.dot(d)

    return obj_func, phi


PROBLEMS = {
    "rosenbrock": lambda x: (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum(),
    "quartic": lambda x: (x**4).sum() - (x**2).sum() + x.sum(),
    "quadratic": lambda x: 0.5 * (torch.arange(1, len(x) + 1, dtype=x.dtype) * x * x).sum(),
}


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(list(PROBLEMS)),
    st.sampled_from([torch.float32, torch.float64]),
    st.integers(0, 2**16),
    st.floats(1e-3, 30.0),
    st.integers(1, 25),
)
def test_matches_torch_strong_wolfe_bit_for_bit(name, dtype, seed, t0, max_ls):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4, generator=generator, dtype=dtype)
    loss = PROBLEMS[name]
    f, g = along_line(loss, x, torch.zeros_like(x))[0](x, 0.0, torch.zeros_like(x))
    d = -g
    gtd = g.dot(d)
    obj_func, phi = along_line(loss, x, d)
    f_t, g_t, t_t, evals_t = torch_strong_wolfe(obj_func, x, t0, d, f, g, gtd, max_ls=max_ls)
    ours = strong_wolfe(phi, t0, f, g, gtd, d.abs().max(), max_ls=max_ls)
    if not (math.isfinite(float(t_t)) and math.isfinite(f_t)):
        # A trial overflowed (float32): torch returns NaN or inf, descend a finite point no
        # higher than the start.
        assert math.isfinite(float(ours.t)) and ours.f <= f
        assert bool(torch.isfinite(ours.g).all())
        return
    assert float(ours.t) == float(t_t)
    assert ours.f == f_t
    assert torch.equal(ours.g, g_t)
    assert ours.evals == evals_t


@settings(max_examples=200, deadline=None)
@given(*(st.floats(-10, 10) for _ in range(6)))
def test_cubic_interpolate_matches_torch(x1, f1, g1, x2, f2, g2):
    if x1 == x2:
        return
    values = [torch.tensor(v, dtype=torch.float64) for v in (g1, g2)]
    ours = cubic_interpolate(x1, f1, values[0], x2, f2, values[1])
    theirs = torch_cubic(x1, f1, values[0], x2, f2, values[1])
    if math.isnan(float(theirs)):
        # A flat cubic: torch divides 0 by 0; descend takes the midpoint.
        assert float(ours) == (x1 + x2) / 2
        return
    assert float(ours) == float(theirs)
    # The NumPy form (plain floats, math.sqrt) agrees to rounding.
    plain = cubic_interpolate(x1, f1, g1, x2, f2, g2)
    assert float(plain) == pytest.approx(float(theirs), rel=1e-9, abs=1e-9)


def numpy_phi(f, x: np.ndarray, d: np.ndarray):
    def phi(t):
        value, grad = f(x + t * d)
        return value, grad, float(grad @ d)

    return phi


@settings(max_examples=100, deadline=None)
@given(st.floats(0.1, 100.0), st.floats(-5, 5), st.floats(1e-3, 100.0))
def test_returned_step_satisfies_strong_wolfe(curvature, quartic, t0):
    # A smooth function bounded below along the line: the search must meet both conditions.
    def f(x):
        return (
            0.5 * curvature * x @ x + 0.1 * quartic**2 * (x @ x) ** 2 + x.sum(),
            curvature * x + 0.4 * quartic**2 * (x @ x) * x + 1.0,
        )

    x = np.array([1.0, -2.0])
    f0, g0 = f(x)
    d = -g0
    gtd = float(g0 @ d)
    result = strong_wolfe(numpy_phi(f, x, d), t0, f0, g0, gtd, float(np.abs(d).max()))
    assert result.wolfe
    assert result.f <= f0 + 1e-4 * result.t * gtd
    assert abs(result.gtd) <= -0.9 * gtd
    value, grad = f(x + result.t * d)
    assert result.f == value and np.array_equal(result.g, grad)


def test_non_finite_trial_points_shrink_the_step():
    # Finite only for |x| < 1, like a log barrier; the first trial lands far outside.
    def f(x):
        if abs(x[0]) >= 1:
            return math.inf, np.array([math.nan])
        return -math.log(1 - x[0] ** 2) + x[0], np.array([2 * x[0] / (1 - x[0] ** 2) + 1])

    x = np.array([0.0])
    f0, g0 = f(x)
    d = -g0
    result = strong_wolfe(numpy_phi(f, x, d), 50.0, f0, g0, float(g0 @ d), 1.0)
    assert math.isfinite(result.f) and np.isfinite(result.g).all()
    assert 0 < result.t < 1
    assert result.f < f0
    assert result.wolfe


def test_nan_everywhere_returns_the_start():
    x = np.array([0.0])
    g0 = np.array([1.0])

    def phi(t):
        return math.nan, np.array([math.nan]), math.nan

    result = strong_wolfe(phi, 1.0, 0.0, g0, -1.0, 1.0)
    assert result.t == 0 and result.f == 0.0 and result.g is g0
    assert not result.wolfe
    assert np.isfinite(x).all()


def test_unbounded_line_reports_unmet_conditions_and_keeps_the_lowest_point():
    # f(x) = -x along d = 1: every step lowers f but the curvature condition never holds, so
    # the search spends its budget extrapolating and returns the lowest point, flagged.
    def phi(t):
        return -float(t), np.array([-1.0]), -1.0

    result = strong_wolfe(phi, 1.0, 0.0, np.array([-1.0]), -1.0, 1.0, max_ls=5)
    assert not result.wolfe
    assert result.f < 0 and result.t > 1
    assert result.evals == 6


def test_inconsistent_gradient_finds_no_lower_point():
    # The gradient claims descent along d, but the loss rises: no step satisfies Armijo, and
    # the search returns t = 0 with the starting values rather than a worse point.
    def phi(t):
        return float(t), np.array([-1.0]), -1.0

    result = strong_wolfe(phi, 1.0, 0.0, np.array([-1.0]), -1.0, 1.0)
    assert not result.wolfe
    assert result.t == 0 and result.f == 0.0
