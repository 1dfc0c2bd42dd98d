"""Objective adapters and the test problems' derivatives against autograd and finite
differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from descend import secondorder


def torch_rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**16))
def test_rosenbrock_derivatives_match_autograd(dimension, seed):
    x = np.random.default_rng(seed).uniform(-2, 2, dimension)
    problem = secondorder.Rosenbrock(dimension)
    wrapped = secondorder.TorchObjective(torch_rosenbrock)
    loss, grad = problem.value_and_grad(x)
    torch_loss, torch_grad = wrapped.value_and_grad(x)
    assert loss == pytest.approx(torch_loss, rel=1e-12)
    np.testing.assert_allclose(grad, torch_grad, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(problem.hessian(x), wrapped.hessian(x), rtol=1e-12, atol=1e-9)


def finite_difference_check(problem, w: np.ndarray, step: float = 1e-6) -> None:
    _, grad = problem.value_and_grad(w)
    hessian = problem.hessian(w)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-12)
    rng = np.random.default_rng(1)
    for _ in range(3):
        v = rng.standard_normal(len(w))
        plus, minus = (problem.value_and_grad(w + s * step * v) for s in (1, -1))
        assert (plus[0] - minus[0]) / (2 * step) == pytest.approx(grad @ v, rel=1e-6, abs=1e-8)
        np.testing.assert_allclose(
            (plus[1] - minus[1]) / (2 * step), hessian @ v, rtol=1e-5, atol=1e-7
        )


def test_logistic_regression_derivatives():
    rng = np.random.default_rng(0)
    problem = secondorder.LogisticRegression.from_data(
        rng.standard_normal((40, 5)), rng.integers(0, 3, 40), l2=0.1
    )
    finite_difference_check(problem, 0.5 * rng.standard_normal(problem.dimension))


def test_least_squares_derivatives_and_solution():
    problem = secondorder.LeastSquares.random(samples=60, features=6, l2=0.01)
    finite_difference_check(problem, np.random.default_rng(2).standard_normal(6))
    assert np.abs(problem.value_and_grad(problem.solution)[1]).max() < 1e-10
    part = problem.batch(np.arange(10))
    np.testing.assert_array_equal(part.X, problem.X[:10])


def test_adapters_accept_lab_style_objects_callables_and_torch_functions():
    matrix = np.array([[3.0, 1.0], [1.0, 2.0]])
    target = np.array([1.0, -1.0])

    class LabStyle:  # loss(x) and grad(x), as the lab's problems have
        def loss(self, x):
            return 0.5 * (x - target) @ matrix @ (x - target)

        def grad(self, x):
            return matrix @ (x - target)

    def fun(x):
        return LabStyle().loss(x), LabStyle().grad(x)

    def torch_fn(x):
        shifted = x - torch.as_tensor(target)
        return 0.5 * shifted @ torch.as_tensor(matrix) @ shifted

    for problem, hess in [
        (LabStyle(), lambda x: matrix),
        (fun, lambda x: matrix),
        (secondorder.TorchObjective(torch_fn), None),
    ]:
        for method in ("newton", "bfgs", "lbfgs"):
            result = secondorder.minimize(
                secondorder.as_objective(problem, hess=hess), np.zeros(2), method, gtol=1e-10
            )
            assert result.success, (method, result.message)
            np.testing.assert_allclose(result.x, target, atol=1e-9)
