"""Problems and SciPy reference runs shared by the second-order tests."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.optimize import minimize

from descend import secondorder


@functools.cache
def digits() -> secondorder.LogisticRegression:
    """Multinomial logistic regression on scikit-learn's digits, l2 = 1e-3 (650 weights)."""
    pytest.importorskip("sklearn")
    return secondorder.LogisticRegression.digits(l2=1e-3)


def scipy_run(problem, x0: np.ndarray, method: str, **options):
    """``scipy.optimize.minimize`` with the problem's gradient (and Hessian where used)."""
    hess = problem.hessian if method in ("trust-exact", "Newton-CG") else None
    return minimize(problem.value_and_grad, x0, jac=True, hess=hess, method=method, options=options)


def rosenbrock5() -> tuple[secondorder.Rosenbrock, np.ndarray]:
    """5-D Rosenbrock from SciPy's tutorial start, from which every method finds (1, ..., 1)."""
    return secondorder.Rosenbrock(5), np.array([1.3, 0.7, 0.8, 1.9, 1.2])
