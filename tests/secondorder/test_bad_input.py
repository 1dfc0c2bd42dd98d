"""Non-finite values, failed line searches and invalid options: clear errors or documented
fallbacks, never a silent corrupt step."""

from __future__ import annotations

import math

import numpy as np
import pytest

from descend import secondorder
from descend.secondorder import LineSearchError, NonFiniteError

METHODS = ["newton", "bfgs", "lbfgs"]


class Barrier:
    """``sum -log(1 - x_i^2) + c^T x``: finite only inside the unit box, where it has one
    minimizer; outside, loss inf and gradient NaN."""

    def __init__(self, c: np.ndarray) -> None:
        self.c = c

    def value_and_grad(self, x):
        if np.any(np.abs(x) >= 1):
            return math.inf, np.full_like(x, math.nan)
        return (float(-np.log(1 - x * x).sum() + self.c @ x), 2 * x / (1 - x * x) + self.c)

    def hessian(self, x):
        return np.diag(2 * (1 + x * x) / (1 - x * x) ** 2)


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_loss_at_the_start_raises(method):
    problem = Barrier(np.ones(3))
    with pytest.raises(NonFiniteError, match="x0 is not finite"):
        secondorder.minimize(problem, np.full(3, 2.0), method)


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_trial_points_are_stepped_back_from(method):
    # Large first steps leave the domain; the search shrinks them and every iterate stays finite.
    c = np.array([30.0, -20.0, 5.0])
    problem = Barrier(c)
    result = secondorder.minimize(problem, np.zeros(3), method, gtol=1e-6, ftol=0.0)
    assert result.success, result.message
    assert all(np.isfinite(x).all() and np.abs(x).max() < 1 for x in result.history.x)
    assert np.all(np.isfinite(result.history.loss))
    # The minimizer solves 2 x / (1 - x^2) = -c componentwise; the Hessian is at least 2 I,
    # so |x - x*| <= |g| / 2.
    expected = (1 - np.sqrt(1 + c * c)) / c
    assert np.linalg.norm(result.x - expected) <= np.linalg.norm(result.jac) / 2 + 1e-12


def test_non_finite_hessian_raises_before_stepping():
    calls = []

    class BadHessian:
        def value_and_grad(self, x):
            calls.append(x.copy())
            return float(x @ x), 2 * x

        def hessian(self, x):
            return np.array([[np.nan, 0.0], [0.0, 2.0]])

    with pytest.raises(NonFiniteError, match="Hessian at iteration 0 holds inf or NaN"):
        secondorder.newton(BadHessian(), np.array([1.0, 1.0]))
    assert len(calls) == 1  # only x0 was evaluated: no step was taken


@pytest.mark.parametrize("method", METHODS)
def test_a_wrong_gradient_stops_with_a_failed_line_search(method):
    # The gradient has the wrong sign, so every "descent" direction climbs: the search finds no
    # lower point, retries along -g with the memory reset, and the run stops where it began.
    def fun(x):
        return float(x @ x), -2 * x

    problem = secondorder.as_objective(fun, hess=lambda x: 2 * np.eye(len(x)))
    x0 = np.array([1.0, -2.0])
    result = secondorder.minimize(problem, x0, method)
    assert result.status == "line_search_failed" and not result.success
    assert "no point lower" in result.message
    np.testing.assert_array_equal(result.x, x0)
    assert result.nit == 0
    with pytest.raises(LineSearchError, match="no point lower"):
        secondorder.minimize(problem, x0, method, raise_on_failure=True)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("gtol", -1.0, "gtol=-1.0 is out of range"),
        ("c1", 0.0, "c1=0.0 is out of range"),
        ("c2", 1.0, "c2=1.0 is out of range"),
        ("c1", 0.95, "expected c1 < c2"),
        ("max_iter", 2.5, "max_iter=2.5 is invalid"),
        ("max_ls", 0, "max_ls=0 is out of range"),
        ("ftol", math.nan, "ftol=nan is invalid"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_invalid_options_raise_value_error(method, option, value, message):
    problem = secondorder.Rosenbrock(2)
    with pytest.raises(ValueError, match=message):
        secondorder.minimize(problem, problem.start(), method, **{option: value})


def test_invalid_method_specific_options():
    problem = secondorder.Rosenbrock(2)
    with pytest.raises(ValueError, match="history_size=0 is invalid"):
        secondorder.lbfgs(problem, problem.start(), history_size=0)
    with pytest.raises(ValueError, match="beta=0 is invalid"):
        secondorder.newton(problem, problem.start(), beta=0)
    with pytest.raises(ValueError, match="method='cg' is invalid"):
        secondorder.minimize(problem, problem.start(), "cg")
    with pytest.raises(TypeError, match="has no Hessian"):
        secondorder.newton(lambda x: (float(x @ x), 2 * x), np.ones(2))
    with pytest.raises(TypeError, match="cannot minimize"):
        secondorder.bfgs(42, np.ones(2))
    with pytest.raises(ValueError, match="gradient has shape"):
        secondorder.bfgs(lambda x: (float(x @ x), np.ones(3)), np.ones(2))
