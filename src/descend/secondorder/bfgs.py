"""BFGS: a dense approximation of the inverse Hessian, updated from gradient changes."""

from __future__ import annotations

from typing import Any

import numpy as np

from descend.secondorder._descent import curvature_ok, descend_with, first_step
from descend.secondorder.objective import Objective
from descend.secondorder.result import OptimizeResult


class BFGSDirection:
    """``p_k = -H_k g_k`` with the BFGS inverse-Hessian update (see :func:`bfgs`)."""

    name = "bfgs"

    def __init__(self) -> None:
        self.inverse_hessian: np.ndarray | None = None
        self.extras: dict[str, Any] = {"skipped_updates": 0}

    def direction(self, x: np.ndarray, g: np.ndarray, objective: Objective) -> np.ndarray:
        """``-H g``, or ``-g`` before the first update."""
        if self.inverse_hessian is None:
            return -g
        return -(self.inverse_hessian @ g)

    def initial_step(self, g: np.ndarray) -> float:
        """1 once ``H`` carries curvature; ``min(1, 1/||g||_1)`` for the first, unscaled step."""
        return first_step(g) if self.inverse_hessian is None else 1.0

    def update(self, s: np.ndarray, y: np.ndarray) -> None:
        """The BFGS update of ``H``; skipped (and counted) when ``y^T s`` is not positive."""
        if not curvature_ok(s, y):
            self.extras["skipped_updates"] += 1
            return
        ys = float(y @ s)
        if self.inverse_hessian is None:
            # Scale H_0 = (y^T s / y^T y) I to the curvature just seen (Nocedal-Wright 6.20).
            self.inverse_hessian = (ys / float(y @ y)) * np.eye(len(s))
        rho = 1.0 / ys
        hy = self.inverse_hessian @ y
        # (I - rho s y^T) H (I - rho y s^T) + rho s s^T, expanded to rank-two corrections.
        self.inverse_hessian = (
            self.inverse_hessian
            - rho * (np.outer(s, hy) + np.outer(hy, s))
            + (rho * rho * float(y @ hy) + rho) * np.outer(s, s)
        )

    def reset(self) -> None:
        """Back to ``H = I`` (steepest descent)."""
        self.inverse_hessian = None


def bfgs(
    problem: Any,
    x0: Any,
    *,
    gtol: float = 1e-5,
    ftol: float = 0.0,
    max_iter: int = 1000,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_ls: int = 25,
    tolerance_change: float = 1e-12,
    keep_x: bool = True,
    raise_on_failure: bool = False,
) -> OptimizeResult:
    """Minimize with BFGS::

        p_k = -H_k g_k,   x_{k+1} = x_k + t_k p_k       (t_k: strong-Wolfe search)
        s_k = x_{k+1} - x_k,   y_k = g_{k+1} - g_k,   rho_k = 1 / (y_k^T s_k)
        H_{k+1} = (I - rho_k s_k y_k^T) H_k (I - rho_k y_k s_k^T) + rho_k s_k s_k^T

    ``H_0 = I`` for the first step, then rescaled to ``(y^T s / y^T y) I`` before the first
    update. The update keeps ``H`` positive definite whenever ``y^T s > 0``, which the strong
    Wolfe conditions guarantee; a pair without positive curvature is skipped. Memory ``n^2``,
    work ``O(n^2)`` per iteration, no Hessian needed; convergence is superlinear.

    Args:
        problem: anything :func:`~descend.secondorder.objective.as_objective` accepts.
        x0: the starting point.
        gtol: stop when ``max |g_i| <= gtol`` (default 1e-5, like SciPy's BFGS).
        ftol, max_iter, c1, c2, max_ls, tolerance_change, keep_x, raise_on_failure: as for
            :func:`~descend.secondorder.newton.newton` (``max_iter`` default 1000).
    """
    return descend_with(
        problem,
        x0,
        BFGSDirection(),
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
