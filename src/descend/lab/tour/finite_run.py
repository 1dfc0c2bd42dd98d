"""Why a grid learning rate can settle sooner than theory's optimal 2/(L+mu) on a finite run.

Theory's optimal step for gradient descent on a quadratic minimises the *worst* per-step factor
over the Hessian's eigendirections, ``max_i |1 - lr lambda_i|``: it is the rate the error
shrinks by from the worst start, after every other direction has died out. A finite run from a
particular start is counted by each direction's own factor, weighted by how much of the
starting loss lies along it:

    f(x_k) - f* = sum_i 1/2 lambda_i e_i^2 (1 - lr lambda_i)^(2k)

so a step a little below 2/(L+mu) can win when the start holds little of its loss along the
slow direction (it shrinks the steep direction much faster and the slow one only a little
slower). From a start on the slow eigenvector, the worst case, theory's step wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from descend.lab import demo, theory
from descend.secondorder.problems import Quadratic


class SlowStartQuadratic(Quadratic):
    """The same quadratic, started on its slow eigenvector (the smallest eigenvalue's) with the
    same starting loss as :meth:`Quadratic.start`: the start theory's worst case is about."""

    def start(self) -> np.ndarray:
        """All of the starting loss along the slow eigenvector."""
        slow = int(np.argmin(self.eigenvalues))
        scale = np.sqrt(np.sum(self.eigenvalues) / self.eigenvalues[slow])
        return self.solution + self.rotation[:, slow] * scale


def slow_start(problem: Quadratic) -> SlowStartQuadratic:
    """``problem`` started on its slow eigenvector."""
    return SlowStartQuadratic.from_spectrum(problem.eigenvalues, problem.rotation, problem.solution)


def counted_steps(problem: Quadratic, lr: float, tolerance: float, max_steps: int) -> int | None:
    """The first step at which gradient descent's loss is at or below ``tolerance``, counted
    from each eigendirection's own factor ``(1 - lr lambda_i)`` and its share of the start's
    loss (None: not within ``max_steps``, or a factor of 1 or more)."""
    errors = problem.errors(problem.start())
    factors = 1.0 - lr * problem.eigenvalues
    if np.any(np.abs(factors) >= 1.0):
        return None
    steps = np.arange(max_steps + 1)[:, None]
    losses = np.sum(0.5 * problem.eigenvalues * errors**2 * factors ** (2 * steps), axis=1)
    hits = np.flatnonzero(losses <= tolerance)
    return int(hits[0]) if hits.size else None


@dataclass(frozen=True)
class StartRun:
    """Gradient descent from one start, at theory's step and at the grid's best.

    ``slow_share`` is the part of the starting loss along the slow eigendirection;
    ``*_steps`` are measured (the step from which the loss stays below the tolerance), and
    ``*_counted`` from each direction's factor (:func:`counted_steps`); ``predicted`` is
    theory's worst-case count, ``*_factors`` the per-step factors (slow, steep) of each rate.
    """

    start: str
    slow_share: float
    theory_lr: float
    theory_steps: int | None
    theory_counted: int | None
    theory_factors: tuple[float, float]
    predicted: float
    grid_lr: float | None
    grid_steps: int | None
    grid_counted: int | None
    grid_factors: tuple[float, float] | None

    @property
    def grid_wins(self) -> bool:
        """The grid's best rate settles strictly sooner than theory's."""
        return self.grid_steps is not None and (
            self.theory_steps is None or self.grid_steps < self.theory_steps
        )

    @property
    def explained(self) -> bool:
        """Each measured count is the one its directions' factors give (to within a step)."""
        pairs = [(self.theory_steps, self.theory_counted), (self.grid_steps, self.grid_counted)]
        return all(
            (measured is None and counted is None)
            or (measured is not None and counted is not None and abs(measured - counted) <= 1)
            for measured, counted in pairs
        )


def _factors(problem: Quadratic, lr: float) -> tuple[float, float]:
    slow, steep = int(np.argmin(problem.eigenvalues)), int(np.argmax(problem.eigenvalues))
    return (
        float(abs(1 - lr * problem.eigenvalues[slow])),
        float(abs(1 - lr * problem.eigenvalues[steep])),
    )


def study_start(
    problem: Quadratic,
    start: str,
    tolerance: float,
    max_steps: int,
    grid: np.ndarray,
    grid_best: tuple[float | None, int | None] | None = None,
) -> StartRun:
    """Gradient descent on ``problem`` from its start (described as ``start``), at theory's
    optimal step and at the grid's best (tuned here unless ``grid_best`` gives it)."""
    mu, L = problem.strong_convexity, problem.smoothness
    setting = theory.gd_optimal(mu, L)
    errors = problem.errors(problem.start())
    parts = 0.5 * problem.eigenvalues * errors**2
    initial = float(np.sum(parts))
    lr, steps = grid_best or demo.tune_learning_rate(problem, "sgd", {}, tolerance, max_steps, grid)
    return StartRun(
        start=start,
        slow_share=float(parts[int(np.argmin(problem.eigenvalues))] / initial),
        theory_lr=setting.lr,
        theory_steps=demo.steps_to_tolerance(
            problem, "sgd", {"learning_rate": setting.lr}, tolerance, max_steps
        ),
        theory_counted=counted_steps(problem, setting.lr, tolerance, max_steps),
        theory_factors=_factors(problem, setting.lr),
        predicted=theory.steps_to_tolerance(setting.rate, initial, tolerance),
        grid_lr=lr,
        grid_steps=steps,
        grid_counted=None if lr is None else counted_steps(problem, lr, tolerance, max_steps),
        grid_factors=None if lr is None else _factors(problem, lr),
    )
