"""The loop every full-batch method shares: direction, strong-Wolfe line search, update, stop.

A method supplies a :class:`Direction`: how to turn the gradient into a search direction, the first
trial step, and what to learn from each step ``s = x_{k+1} - x_k`` and gradient change
``y = g_{k+1} - g_k``. The loop owns evaluation counting, the history, the stopping rules and the
fallbacks for bad input.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from descend.rules.spec import Hyper
from descend.secondorder.line_search import LineSearchResult, is_finite, strong_wolfe
from descend.secondorder.objective import Objective, as_objective
from descend.secondorder.result import (
    History,
    LineSearchError,
    NonFiniteError,
    OptimizeResult,
)


class Direction(Protocol):
    """A method's search direction and the memory behind it."""

    name: str
    extras: dict[str, Any]

    def direction(self, x: np.ndarray, g: np.ndarray, objective: Objective) -> np.ndarray:
        """The search direction at ``x`` with gradient ``g``."""

    def initial_step(self, g: np.ndarray) -> float:
        """The first trial step of the line search."""

    def update(self, s: np.ndarray, y: np.ndarray) -> None:
        """Learn from one step: ``s = x_{k+1} - x_k``, ``y = g_{k+1} - g_k``."""

    def reset(self) -> None:
        """Forget the curvature memory, so that the next direction is ``-g``."""


def first_step(g: np.ndarray) -> float:
    """``min(1, 1 / ||g||_1)``: a first trial step that moves no coordinate by more than 1, as
    ``torch.optim.LBFGS`` starts."""
    return min(1.0, 1.0 / float(np.abs(g).sum()))


def curvature_ok(s: np.ndarray, y: np.ndarray) -> bool:
    """Whether ``y^T s`` is positive beyond rounding, so a quasi-Newton update keeps its matrix
    positive definite (the strong Wolfe conditions guarantee it in exact arithmetic)."""
    return float(y @ s) > np.finfo(np.float64).eps * float(np.linalg.norm(s) * np.linalg.norm(y))


LINE_SEARCH_HYPERS = (
    Hyper("c1", 1e-4, "sufficient-decrease constant", low=0, high=1, low_open=True, high_open=True),
    Hyper("c2", 0.9, "curvature constant", low=0, high=1, low_open=True, high_open=True),
    Hyper("gtol", 1e-5, "stop when max |g_i| <= gtol", low=0),
    Hyper("ftol", 0.0, "stop when the loss falls by <= ftol * max(|f|, 1)", low=0),
    Hyper("max_iter", 1000, "most iterations", low=0),
    Hyper("max_ls", 25, "most extra evaluations per line search", low=1),
    Hyper("tolerance_change", 1e-12, "smallest bracket width (times max |d_i|)", low=0),
)


def check_options(**options: Any) -> dict[str, Any]:
    """Validate the shared options; ``ValueError`` names the bad value and the allowed range."""
    hypers = {hyper.name: hyper for hyper in LINE_SEARCH_HYPERS}
    for name, value in options.items():
        hypers[name].check(value)
        if name in ("max_iter", "max_ls") and int(value) != value:
            raise ValueError(f"{name}={value!r} is invalid: expected an integer")
    if not options["c1"] < options["c2"]:
        raise ValueError(
            f"c1={options['c1']!r}, c2={options['c2']!r} are invalid: expected c1 < c2"
        )
    return options


def descend_with(
    problem: Any,
    x0: Any,
    method: Direction,
    *,
    gtol: float,
    ftol: float,
    max_iter: int,
    c1: float,
    c2: float,
    max_ls: int,
    tolerance_change: float,
    keep_x: bool,
    raise_on_failure: bool,
) -> OptimizeResult:
    """Minimize ``problem`` from ``x0`` with ``method``'s directions and a strong-Wolfe search.

    Stops when ``max |g_i| <= gtol`` or the loss falls by at most ``ftol * max(|f_k|, |f_k+1|, 1)``
    (``converged``), after ``max_iter`` iterations (``max_iter``), or when no lower point can be
    found even along ``-g`` with the memory reset (``line_search_failed``; ``LineSearchError``
    instead if ``raise_on_failure``).

    Fallbacks, each counted in ``extras``:

    - a direction that does not descend (``g^T d >= 0``, or not finite) is replaced by ``-g``
      and the memory reset (``steepest_fallbacks``);
    - a line search that ends without the Wolfe conditions but with a lower loss is accepted
      (``inexact_steps``); one that found nothing lower is retried along ``-g`` with the memory
      reset (``restarts``) before the run stops;
    - inf or NaN trial losses shrink the step (inside :func:`strong_wolfe`).
    """
    check_options(
        gtol=gtol,
        ftol=ftol,
        max_iter=max_iter,
        c1=c1,
        c2=c2,
        max_ls=max_ls,
        tolerance_change=tolerance_change,
    )
    objective = as_objective(problem)
    x = np.array(x0, dtype=np.float64).reshape(-1)
    started = time.perf_counter()
    nfev = 0

    def evaluate(point: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal nfev
        nfev += 1
        loss, grad = objective.value_and_grad(point)
        return float(loss), np.asarray(grad, dtype=np.float64).reshape(-1)

    f, g = evaluate(x)
    if g.shape != x.shape:
        raise ValueError(f"the gradient has shape {g.shape}, expected {x.shape} like x0")
    if not (is_finite(f) and np.isfinite(g).all()):
        raise NonFiniteError(
            f"the loss ({f}) or gradient at x0 is not finite (inf or NaN); "
            "start from a point where the objective is defined"
        )
    history = History()
    history.record(f, g, x if keep_x else None, nfev, 0.0, 0.0)
    extras = method.extras
    extras.update(steepest_fallbacks=0, inexact_steps=0, restarts=0)
    status, message = "max_iter", f"reached max_iter={max_iter} iterations"
    iteration = 0

    while True:
        if float(np.abs(g).max()) <= gtol:
            status, message = "converged", f"max |g_i| <= gtol={gtol:g}"
            break
        if iteration >= max_iter:
            break

        d = method.direction(x, g, objective)
        steepest = False
        gtd = float(g @ d)
        if not gtd < 0:
            extras["steepest_fallbacks"] += 1
            method.reset()
            d, gtd, steepest = -g, -float(g @ g), True

        search = _search(
            evaluate,
            x,
            f,
            g,
            d,
            gtd,
            first_step(g) if steepest else method.initial_step(g),
            c1,
            c2,
            max_ls,
            tolerance_change,
        )
        if not search.f < f and not steepest:
            extras["restarts"] += 1
            method.reset()
            d, gtd = -g, -float(g @ g)
            search = _search(
                evaluate, x, f, g, d, gtd, first_step(g), c1, c2, max_ls, tolerance_change
            )
        if not search.f < f:
            status = "line_search_failed"
            message = (
                f"the line search found no point lower than f={f:.17g} along -g "
                f"(max |g_i| = {float(np.abs(g).max()):.3g}); x is the lowest point found"
            )
            if raise_on_failure:
                raise LineSearchError(message)
            break
        if not search.wolfe:
            extras["inexact_steps"] += 1

        iteration += 1
        step = float(search.t)
        s = step * d
        x_new = x + s
        y = search.g - g
        method.update(s, y)
        f_old, x, f, g = f, x_new, float(search.f), search.g
        history.record(f, g, x if keep_x else None, nfev, time.perf_counter() - started, step)
        if f_old - f <= ftol * max(abs(f_old), abs(f), 1.0):
            status, message = "converged", f"loss decrease <= ftol={ftol:g}"
            break

    return OptimizeResult(
        x=x,
        fun=f,
        jac=g,
        nit=iteration,
        nfev=nfev,
        nhev=int(extras.get("nhev", 0)),
        status=status,
        message=message,
        history=history,
        method=method.name,
        extras=extras,
    )


def _search(
    evaluate: Any,
    x: np.ndarray,
    f: float,
    g: np.ndarray,
    d: np.ndarray,
    gtd: float,
    t: float,
    c1: float,
    c2: float,
    max_ls: int,
    tolerance_change: float,
) -> LineSearchResult:
    def phi(step: float) -> tuple[float, np.ndarray, float]:
        loss, grad = evaluate(x + step * d)
        return loss, grad, float(grad @ d)

    return strong_wolfe(
        phi,
        t,
        f,
        g,
        gtd,
        float(np.abs(d).max()),
        c1=c1,
        c2=c2,
        tolerance_change=tolerance_change,
        max_ls=max_ls,
    )
