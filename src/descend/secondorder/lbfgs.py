"""L-BFGS: the BFGS direction from the last m curvature pairs, by the two-loop recursion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from descend.secondorder._descent import curvature_ok, descend_with, first_step
from descend.secondorder.objective import Objective
from descend.secondorder.result import OptimizeResult


def _add_scaled_(target: Any, alpha: Any, other: Any) -> None:
    # target += alpha * other, in place. Tensors use add_(alpha=...), the exact operation
    # torch.optim.LBFGS performs (one rounding per element); NumPy arrays the plain expression.
    add_ = getattr(target, "add_", None)
    if add_ is not None:
        add_(other, alpha=alpha)
    else:
        target += alpha * other


def two_loop(
    grad: Any,
    steps: Sequence[Any],
    diffs: Sequence[Any],
    rhos: Sequence[Any],
    h_diag: Any,
    alphas: list[Any] | None = None,
) -> Any:
    """The L-BFGS direction ``d = -H_k g`` without forming ``H_k``.

    With pairs ``(s_i, y_i)``, ``rho_i = 1 / (y_i^T s_i)``, oldest first, and
    ``gamma = h_diag`` (usually ``s^T y / y^T y`` of the newest pair)::

        q = -g
        for i = newest .. oldest:   a_i = rho_i s_i^T q;   q <- q - a_i y_i
        r = gamma q
        for i = oldest .. newest:   b_i = rho_i y_i^T r;   r <- r + (a_i - b_i) s_i
        d = r

    ``grad`` and the pairs are NumPy vectors or torch tensors (all the same kind); ``alphas``,
    if given, is a list of at least ``len(steps)`` slots that receives the ``a_i`` (torch keeps
    it in its state). Work ``O(m n)``.
    """
    count = len(diffs)
    al = alphas if alphas is not None else [None] * count
    q = -grad
    for i in range(count - 1, -1, -1):
        al[i] = steps[i].dot(q) * rhos[i]
        _add_scaled_(q, -al[i], diffs[i])
    r = q * h_diag
    for i in range(count):
        be_i = diffs[i].dot(r) * rhos[i]
        _add_scaled_(r, al[i] - be_i, steps[i])
    return r


class LBFGSDirection:
    """The two-loop direction over the last ``history_size`` pairs (see :func:`lbfgs`)."""

    name = "lbfgs"

    def __init__(self, history_size: int = 10) -> None:
        if not (isinstance(history_size, int | np.integer) and history_size >= 1):
            raise ValueError(f"history_size={history_size!r} is invalid: expected an integer >= 1")
        self.history_size = int(history_size)
        self.steps: list[np.ndarray] = []
        self.diffs: list[np.ndarray] = []
        self.rhos: list[float] = []
        self.h_diag = 1.0
        self.extras: dict[str, Any] = {"skipped_updates": 0}

    def direction(self, x: np.ndarray, g: np.ndarray, objective: Objective) -> np.ndarray:
        """``-H g`` by :func:`two_loop` (``-g`` with an empty memory)."""
        return two_loop(g, self.steps, self.diffs, self.rhos, self.h_diag)

    def initial_step(self, g: np.ndarray) -> float:
        """1 once the memory holds a pair; ``min(1, 1/||g||_1)`` before."""
        return 1.0 if self.steps else first_step(g)

    def update(self, s: np.ndarray, y: np.ndarray) -> None:
        """Store the pair (dropping the oldest beyond ``history_size``) and set
        ``gamma = s^T y / y^T y``; skip (and count) a pair without positive curvature."""
        if not curvature_ok(s, y):
            self.extras["skipped_updates"] += 1
            return
        if len(self.steps) == self.history_size:
            self.steps.pop(0)
            self.diffs.pop(0)
            self.rhos.pop(0)
        ys = float(y @ s)
        self.steps.append(s)
        self.diffs.append(y)
        self.rhos.append(1.0 / ys)
        self.h_diag = ys / float(y @ y)

    def reset(self) -> None:
        """Forget every pair."""
        self.steps.clear()
        self.diffs.clear()
        self.rhos.clear()
        self.h_diag = 1.0


def lbfgs(
    problem: Any,
    x0: Any,
    *,
    history_size: int = 10,
    gtol: float = 1e-5,
    ftol: float = 2.2e-9,
    max_iter: int = 15000,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_ls: int = 25,
    tolerance_change: float = 1e-12,
    keep_x: bool = True,
    raise_on_failure: bool = False,
) -> OptimizeResult:
    """Minimize with L-BFGS::

        d_k = -H_k g_k         (two-loop recursion over the last m pairs, H_0 = gamma_k I)
        x_{k+1} = x_k + t_k d_k        (t_k: strong-Wolfe search, first trying 1)
        s_k = x_{k+1} - x_k,   y_k = g_{k+1} - g_k,   gamma_k = s_k^T y_k / y_k^T y_k

    ``H_k`` is the BFGS matrix built from ``gamma_k I`` and only the ``m`` newest pairs, so memory
    and work are ``O(m n)`` per iteration: the quasi-Newton method for large problems.

    Args:
        problem: anything :func:`~descend.secondorder.objective.as_objective` accepts.
        x0: the starting point.
        history_size: m, the pairs kept (default 10, like SciPy's L-BFGS-B, ``>= 1``).
        gtol: stop when ``max |g_i| <= gtol`` (default 1e-5, like L-BFGS-B's ``pgtol``).
        ftol: stop when the loss falls by ``<= ftol * max(|f_k|, |f_k+1|, 1)`` (default 2.2e-9,
            L-BFGS-B's ``factr * eps``).
        max_iter, c1, c2, max_ls, tolerance_change, keep_x, raise_on_failure: as for
            :func:`~descend.secondorder.newton.newton` (``max_iter`` default 15000).
    """
    return descend_with(
        problem,
        x0,
        LBFGSDirection(history_size),
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
