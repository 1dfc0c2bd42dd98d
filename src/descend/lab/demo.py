"""The seed of the lab: steps each of the lecture's optimizers needs on an ill-conditioned ravine.

Each optimizer runs the rule of its NumPy functional API update, in the course's names and
defaults, on a rotated quadratic with condition number kappa: once at the learning rate of a log
grid after which the loss settles below the tolerance soonest (momentum 0.9 where there is one)
and, for the methods that theory covers, once at the theory's optimal settings, next to the step
count the theory predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from descend import functional
from descend.lab import theory
from descend.lab.loop import RuleStepper, follow, settled_step
from descend.secondorder.problems import Quadratic

#: The lecture's optimizers, by functional name, with the fixed part of their config.
LECTURE_OPTIMIZERS: dict[str, dict[str, float]] = {
    "sgd": {},
    "sgd_momentum": {"momentum": 0.9},
    "nesterov_momentum": {"momentum": 0.9},
    "adagrad": {},
    "rmsprop": {},
    "adam": {},
}


#: The rows at theory's optimal settings: functional name -> (setting in words, theory's
#: optimal setting for curvatures mu and L).
THEORY_SETTINGS = {
    "sgd": ("gradient descent, lr = 2/(L+mu)", theory.gd_optimal),
    "sgd_momentum": ("heavy ball, optimal lr and rho", theory.heavy_ball_optimal),
    "nesterov_momentum": ("Nesterov, optimal lr and rho", theory.nesterov_optimal),
}


def row_count() -> int:
    """How many rows (and runs) :func:`run_demo` makes."""
    return len(LECTURE_OPTIMIZERS) + len(THEORY_SETTINGS)


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo table."""

    optimizer: str
    setting: str
    config: dict
    steps: int | None
    predicted: float | None


def steps_to_tolerance(
    problem: Quadratic,
    name: str,
    config: dict,
    tolerance: float,
    max_steps: int,
    give_up_after: int | None = None,
) -> int | None:
    """The update after which ``loss - f* <= tolerance`` holds through the end of a
    ``max_steps`` run of ``descend.functional.<name>``; None if the run ends above the tolerance
    or diverges.

    ``give_up_after`` ends the run early (returning None) if the loss has not once been at or
    below the tolerance by that update: such a run cannot settle sooner.
    """
    x0 = problem.start()
    crossed, point = False, -1

    def hopeless(loss: float, _: float) -> bool:
        nonlocal crossed, point
        point += 1
        crossed = crossed or loss - problem.minimum_value <= tolerance
        return give_up_after is not None and not crossed and point >= give_up_after

    stepper = RuleStepper.from_functional(functional.UPDATES[name], config, x0)
    path = follow(problem, stepper, x0, max_steps, stop=hopeless)
    if path.diverged_at is not None or path.stopped:
        return None
    return settled_step(path.losses - problem.minimum_value, tolerance)


def tune_learning_rate(
    problem: Quadratic, name: str, config: dict, tolerance: float, max_steps: int, grid: np.ndarray
) -> tuple[float | None, int | None]:
    """The grid learning rate after which the loss settles below the tolerance soonest (the
    largest on a tie); ``(None, None)`` when none settles within ``max_steps``.

    Rates are tried from the largest down; a run whose loss has not reached the tolerance by
    the best count so far is cut short, since it cannot settle sooner.
    """
    best_lr, best_steps = None, None
    for lr in sorted(map(float, grid), reverse=True):
        steps = steps_to_tolerance(
            problem,
            name,
            {**config, "learning_rate": lr},
            tolerance,
            max_steps,
            None if best_steps is None else best_steps - 1,
        )
        if steps is not None and (best_steps is None or steps < best_steps):
            best_lr, best_steps = lr, steps
    return best_lr, best_steps


def run_demo(
    condition_number: float = 100.0,
    tolerance: float = 1e-6,
    max_steps: int = 3000,
    dimension: int = 2,
    seed: int = 0,
    grid_points: int = 31,
) -> tuple[Quadratic, list[DemoRow]]:
    """Every row of the demo table, on a rotated ravine of the given condition number.

    ``grid_points`` learning rates, log-spaced in [1e-4, 2], are tried for the tuned rows.
    """
    if grid_points < 2:
        raise ValueError(f"grid_points={grid_points!r} is invalid: expected >= 2")
    problem = Quadratic.ravine(condition_number, dimension, seed)
    mu, L = problem.strong_convexity, problem.smoothness
    initial = problem.loss(problem.start())
    grid = np.geomspace(1e-4, 2.0, grid_points)
    rows = []
    for name, fixed in LECTURE_OPTIMIZERS.items():
        lr, steps = tune_learning_rate(problem, name, fixed, tolerance, max_steps, grid)
        config = {**fixed, "learning_rate": lr}  # lr None: no rate on the grid settled
        rows.append(DemoRow(name, "best lr on a log grid", config, steps, None))
        if name in THEORY_SETTINGS:
            label, optimal = THEORY_SETTINGS[name]
            setting = optimal(mu, L)
            config = {"learning_rate": setting.lr}
            if name != "sgd":
                config["momentum"] = setting.momentum
            steps = steps_to_tolerance(problem, name, config, tolerance, max_steps)
            predicted = theory.steps_to_tolerance(setting.rate, initial, tolerance)
            rows.append(DemoRow(name, label, config, steps, predicted))
    return problem, rows
