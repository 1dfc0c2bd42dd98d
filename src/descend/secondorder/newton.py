"""Newton's method with the exact Hessian, damped for indefinite Hessians, and a line search."""

from __future__ import annotations

from typing import Any

import numpy as np

from descend.secondorder._descent import descend_with
from descend.secondorder.objective import HessianObjective, Objective
from descend.secondorder.result import NonFiniteError, OptimizeResult


def damped_newton_step(
    hessian: np.ndarray, grad: np.ndarray, beta: float = 1e-3
) -> tuple[np.ndarray, float]:
    """Solve ``(H + tau I) p = -g`` with the smallest tried ``tau >= 0`` that makes the matrix
    positive definite; return ``(p, tau)``.

    ``tau = 0`` (the pure Newton step) whenever ``H`` is positive definite. Otherwise ``tau``
    starts at ``beta * s - min_i H_ii`` (``s`` the mean |H_ii|, so ``beta`` is relative to the
    Hessian's scale) and doubles until a Cholesky factorization succeeds (Nocedal and Wright,
    Algorithm 3.3). The shifted matrix is positive definite, so ``p`` is a descent direction;
    a large ``tau`` turns the step towards ``-g / tau``, a short gradient step.
    """
    n = len(grad)
    scale = float(np.mean(np.abs(np.diag(hessian)))) or 1.0
    floor = beta * scale
    smallest = float(np.min(np.diag(hessian)))
    tau = 0.0 if smallest > 0 else floor - smallest
    identity = np.eye(n)
    for _ in range(200):
        shifted = hessian + tau * identity if tau else hessian
        try:
            # Cholesky succeeds exactly when the matrix is positive definite.
            np.linalg.cholesky(shifted)
            break
        except np.linalg.LinAlgError:
            tau = max(2.0 * tau, floor)
    else:  # pragma: no cover - 200 doublings exceed any finite Hessian's spectrum
        raise NonFiniteError("could not make the Hessian positive definite by shifting it")
    # NumPy has no triangular solve, so one LU solve is cheaper than two through the factor.
    return np.linalg.solve(shifted, -grad), tau


class NewtonDirection:
    """``p_k = -(H_k + tau_k I)^-1 g_k`` from the exact Hessian (see :func:`damped_newton_step`)."""

    name = "newton"

    def __init__(self, beta: float = 1e-3) -> None:
        if not beta > 0:
            raise ValueError(f"beta={beta!r} is invalid: expected beta > 0")
        self.beta = beta
        self.extras: dict[str, Any] = {"nhev": 0, "damped_steps": 0, "shifts": []}

    def direction(self, x: np.ndarray, g: np.ndarray, objective: Objective) -> np.ndarray:
        """The damped Newton direction; ``NonFiniteError`` if the Hessian holds inf or NaN,
        ``TypeError`` if ``objective`` is no :class:`HessianObjective`."""
        # Any Direction is handed a plain Objective; whether it has a Hessian is known only now.
        if not isinstance(objective, HessianObjective):
            raise TypeError(
                f"Newton's method needs the Hessian, and the objective "
                f"({type(objective).__name__}) has no hessian(x) method: give it "
                "one, or use a quasi-Newton method (bfgs, lbfgs)"
            )
        hessian = np.asarray(objective.hessian(x), dtype=np.float64)
        self.extras["nhev"] += 1
        if hessian.shape != (len(x), len(x)):
            raise ValueError(
                f"the Hessian has shape {hessian.shape}, expected "
                f"{(len(x), len(x))} for x of length {len(x)}"
            )
        if not np.isfinite(hessian).all():
            raise NonFiniteError(
                f"the Hessian at iteration {len(self.extras['shifts'])} holds inf or NaN; no "
                "step was taken (use bfgs or lbfgs, which need only gradients)"
            )
        # Rounding can leave a computed Hessian slightly asymmetric; Cholesky reads one triangle.
        p, tau = damped_newton_step(0.5 * (hessian + hessian.T), g, self.beta)
        self.extras["shifts"].append(tau)
        self.extras["damped_steps"] += tau > 0
        return p

    def initial_step(self, g: np.ndarray) -> float:
        """1: the full Newton step, which the search accepts near a minimizer."""
        return 1.0

    def update(self, s: np.ndarray, y: np.ndarray) -> None:
        """Nothing to learn: the Hessian is recomputed at every iterate."""

    def reset(self) -> None:
        """No memory to forget."""


def newton(
    problem: Any,
    x0: Any,
    *,
    gtol: float = 1e-8,
    ftol: float = 0.0,
    max_iter: int = 200,
    beta: float = 1e-3,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_ls: int = 25,
    tolerance_change: float = 1e-12,
    keep_x: bool = True,
    raise_on_failure: bool = False,
) -> OptimizeResult:
    """Minimize with Newton's method::

        (H_k + tau_k I) p_k = -g_k        (tau_k = 0 when H_k is positive definite)
        x_{k+1} = x_k + t_k p_k           (t_k from the strong-Wolfe search, first trying 1)

    One step solves a quadratic exactly; near a minimizer with a positive definite Hessian the
    full step is accepted and the error squares at each iteration. Each iteration costs a
    Hessian (``n^2`` numbers) and an ``O(n^3)`` factorization, so it suits small problems.

    Args:
        problem: anything :func:`~descend.secondorder.objective.as_objective` accepts, with a
            Hessian.
        x0: the starting point.
        gtol: stop when ``max |g_i| <= gtol`` (default 1e-8, ``>= 0``).
        ftol: stop when the loss falls by ``<= ftol * max(|f|, 1)`` (default 0, off).
        max_iter: most iterations (default 200).
        beta: relative shift of an indefinite Hessian (default 1e-3, ``> 0``).
        c1, c2: strong-Wolfe constants (defaults 1e-4 and 0.9, ``0 < c1 < c2 < 1``).
        max_ls: most extra evaluations per line search (default 25).
        tolerance_change: smallest line-search bracket (default 1e-12).
        keep_x: keep every iterate in ``history.x`` (default True).
        raise_on_failure: raise ``LineSearchError`` instead of stopping when no lower point
            is found (default False).

    Raises:
        NonFiniteError: the loss or gradient at ``x0``, or a Hessian, holds inf or NaN.
    """
    return descend_with(
        problem,
        x0,
        NewtonDirection(beta),
        gtol=gtol,
        ftol=ftol,
        max_iter=max_iter,
        c1=c1,
        c2=c2,
        max_ls=max_ls,
        tolerance_change=tolerance_change,
        keep_x=keep_x,
        raise_on_failure=raise_on_failure,
    )
