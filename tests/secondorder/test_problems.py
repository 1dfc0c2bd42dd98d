"""The shared Quadratic and Rosenbrock: one definition, checked against their closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descend.lab.problems import Ravine, RosenbrockValley
from descend.secondorder.problems import Quadratic, Rosenbrock


def test_a_quadratic_from_its_matrix_equals_the_same_one_from_its_spectrum():
    rng = np.random.default_rng(4)
    rotation, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    eigenvalues = np.geomspace(0.5, 40.0, 5)
    optimum = rng.standard_normal(5)
    spectral = Quadratic.from_spectrum(eigenvalues, rotation, optimum)
    plain = Quadratic((rotation * eigenvalues) @ rotation.T, spectral.b)
    np.testing.assert_allclose(plain.eigenvalues, eigenvalues, rtol=1e-12)
    np.testing.assert_allclose(plain.solution, optimum, rtol=1e-10)
    x = rng.standard_normal(5)
    expanded = 0.5 * x @ plain.A @ x - plain.b @ x  # the textbook form
    for quadratic in (spectral, plain):
        loss, grad = quadratic.value_and_grad(x)
        assert loss == pytest.approx(expanded, rel=1e-12)
        np.testing.assert_allclose(grad, plain.A @ x - plain.b, rtol=1e-10, atol=1e-12)
        assert quadratic.loss(quadratic.solution) == pytest.approx(quadratic.minimum_value)
    assert spectral.condition_number == pytest.approx(80.0)


def test_the_lab_ravine_is_the_shared_quadratic():
    ravine = Ravine(kappa=30, dim=4, seed=1)
    assert isinstance(ravine.quadratic, Quadratic)
    x = ravine.start() * 0.3
    assert ravine.loss(x) == ravine.quadratic.loss(x)
    assert ravine.quadratic.minimum_value == 0.0 and not ravine.quadratic.solution.any()


def test_a_non_positive_definite_matrix_is_refused():
    with pytest.raises(ValueError, match="positive definite"):
        Quadratic(np.diag([1.0, -1.0]), np.zeros(2))


@pytest.mark.parametrize("dimension, a, b", [(2, 1.0, 100.0), (2, 0.5, 10.0), (5, 1.0, 100.0)])
def test_rosenbrock_gradient_and_hessian_match_autograd(dimension, a, b):
    function = Rosenbrock(dimension, a, b)
    x = np.random.default_rng(dimension).uniform(-1.5, 1.5, dimension)
    point = torch.tensor(x, requires_grad=True)
    value = function.value(point)
    (grad,) = torch.autograd.grad(value, point)
    hessian = torch.autograd.functional.hessian(function.value, torch.tensor(x))
    assert function.value_and_grad(x)[0] == pytest.approx(value.item(), rel=1e-12)
    np.testing.assert_allclose(function.grad(x), grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(function.hessian(x), hessian.numpy(), rtol=1e-10, atol=1e-10)
    assert function.value(function.solution) == 0.0


def test_the_lab_rosenbrock_valley_is_the_shared_function():
    valley = RosenbrockValley(a=0.5, b=10.0)
    assert valley.function == Rosenbrock(2, 0.5, 10.0)
    np.testing.assert_array_equal(valley.minima[0], [0.5, 0.25])
    with pytest.raises(ValueError, match="a=0.5 is invalid in 3 dimensions"):
        Rosenbrock(3, 0.5)
