"""The one loop of the lab: step an optimizer from a start and record every point it visits.

Everything in the lab that runs a first-order method goes through :func:`follow`: the race
(:mod:`descend.lab.runner`), the demo's steps-to-tolerance table, the first-order runs of the
first- against second-order study and the playground. What steps is a *stepper*, one of three
front ends over the same rules:

- :class:`RuleStepper` (the NumPy executor's, :mod:`descend.kernels.numpy`): a rule of
  :mod:`descend.rules` executed directly on NumPy arrays: how the lab runs descend's
  optimizers and the playground runs every rule (on a 2-vector a torch step costs about 30
  times as much, all of it overhead);
- :class:`FunctionalStepper`: a ``descend.functional`` update with its config dict;
- :class:`TorchStepper`: a ``torch.optim.Optimizer`` (descend's or torch's) on a float64
  tensor.

The loop evaluates the loss and the gradient once per point: the recorded full gradient is also
the one the next step uses, unless a ``sample`` function gives minibatch gradients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from descend.kernels.numpy import SCALAR_SIZE, RuleStepper
from descend.schedules import Schedule
from descend.secondorder.objective import Objective

#: A run stops (as diverged) once its loss exceeds the start's by this factor, or is not finite.
DIVERGENCE_FACTOR = 1e8


class Stepper(Protocol):
    """One optimizer front end: it knows its next learning rate and makes one update."""

    @property
    def lr(self) -> float:
        """The learning rate the next update uses."""

    def step(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """The point after one update from ``x`` with gradient ``grad``."""


def functional_hypers(update: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """The rule hyperparameters a ``descend.functional`` update (a :class:`FunctionalSpec`)
    runs with for ``config``: the course's defaults filled in, renamed to the rule's names, and
    the values the update pins."""
    return dict(update.rule_hypers(config))


class FunctionalStepper:
    """A ``descend.functional`` update, setting ``learning_rate`` from the schedule each step."""

    def __init__(
        self,
        update: Callable,
        config: Mapping[str, Any],
        x0: np.ndarray,
        schedule: Schedule | None = None,
        base_lr: float | None = None,
    ) -> None:
        self.update = update
        self.config = dict(config)
        self.schedule = schedule
        self.count = 0
        self.base_lr = base_lr
        if self.schedule is not None:
            self.config["learning_rate"] = self.schedule(0)

    @property
    def lr(self) -> float:
        """The learning rate of the next update."""
        default = getattr(self.update, "defaults", {}).get("learning_rate", math.nan)
        return float(
            self.config.get("learning_rate", default if self.base_lr is None else self.base_lr)
        )

    def step(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """One update."""
        x, self.config = self.update(x, grad, self.config)
        self.count += 1
        if self.schedule is not None:
            self.config["learning_rate"] = self.schedule(self.count)
        return x


class TorchStepper:
    """A torch optimizer (descend's or ``torch.optim``'s) on one float64 parameter, with an
    optional :class:`descend.ScheduledLR`."""

    def __init__(
        self, build: Callable[[list], Any], x0: np.ndarray, schedule: Schedule | None = None
    ) -> None:
        import torch  # (kept local: only this front end needs it)

        from descend.optim import ScheduledLR

        self.torch = torch
        self.param = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        self.optimizer = build([self.param])
        self.scheduler = ScheduledLR(self.optimizer, schedule) if schedule is not None else None

    @property
    def lr(self) -> float:
        """The learning rate of the next update."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """One update (``x`` is the parameter's current value, kept in the tensor)."""
        self.param.grad = self.torch.from_numpy(np.array(grad, dtype=np.float64))
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return self.param.detach().numpy().copy()


@dataclass
class Path:
    """Every point of one run; arrays have one entry per point, the start first.

    ``lrs[k]`` is the learning rate of the update that reached point ``k`` (``lrs[0]``: the
    first update's); ``seconds[k]`` the wall time from the start until point ``k`` was
    evaluated; ``points`` is None when not kept. ``diverged_at`` is the update at which the
    loss blew up or stopped being finite (the arrays end with that point); ``stopped`` says
    whether ``stop`` ended the run; ``last_point`` and ``last_grad`` are the last point and its
    gradient.
    """

    points: np.ndarray | None
    losses: np.ndarray
    grad_norms: np.ndarray
    lrs: np.ndarray
    seconds: np.ndarray
    diverged_at: int | None
    stopped: bool
    last_point: np.ndarray
    last_grad: np.ndarray

    @property
    def steps(self) -> int:
        """Updates made."""
        return len(self.losses) - 1


def follow(
    objective: Objective,
    stepper: Stepper,
    x0: np.ndarray,
    steps: int,
    *,
    sample: Callable[[np.ndarray], np.ndarray] | None = None,
    stop: Callable[[float, float], bool] | None = None,
    keep_points: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Run ``stepper`` for up to ``steps`` updates from ``x0``; record every point.

    ``sample(x)`` gives the gradient each update uses (a minibatch gradient); without it the
    update uses the full gradient recorded at ``x``. ``stop(loss, grad_norm)`` ends the run at
    the first recorded point (the start included) where it is true. The run also ends when the
    loss is not finite or exceeds ``DIVERGENCE_FACTOR * (|f(x0)| + 1)``. ``progress(n)`` is
    called with the number of updates just made, about 50 times per run.
    """
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps={steps!r} is invalid: expected an integer >= 0")
    x = np.array(x0, dtype=np.float64)
    points = np.empty((steps + 1, x.size)) if keep_points else None
    losses = np.empty(steps + 1)
    grad_norms = np.empty(steps + 1)
    lrs = np.empty(steps + 1)
    seconds = np.empty(steps + 1)
    started = time.perf_counter()

    def record(index: int, point: np.ndarray) -> tuple[float, float, np.ndarray]:
        loss, grad = objective.value_and_grad(point)
        grad = np.asarray(grad, dtype=np.float64)
        norm = math.sqrt(float(grad @ grad))
        losses[index], grad_norms[index] = loss, norm
        if points is not None:
            points[index] = point
        seconds[index] = time.perf_counter() - started
        return float(loss), norm, grad

    loss, norm, grad = record(0, x)
    lrs[0] = stepper.lr
    limit = DIVERGENCE_FACTOR * (abs(loss) + 1.0)
    diverged_at, stopped, count = None, False, 0
    report_every = max(1, steps // 50)
    reported = 0
    if stop is not None and stop(loss, norm):
        stopped = True
    with np.errstate(over="ignore", invalid="ignore"):
        while not stopped and count < steps:
            lr = stepper.lr
            x = stepper.step(x, grad if sample is None else sample(x))
            count += 1
            loss, norm, grad = record(count, x)
            lrs[count] = lr
            if not (math.isfinite(loss) and math.isfinite(norm)) or abs(loss) > limit:
                diverged_at = count
                break
            if progress is not None and count - reported >= report_every:
                progress(count - reported)
                reported = count
            if stop is not None and stop(loss, norm):
                stopped = True
    if progress is not None and steps > reported:
        progress(steps - reported)  # a run that ends early still counts its whole budget
    end = count + 1
    return Path(
        None if points is None else points[:end],
        losses[:end],
        grad_norms[:end],
        lrs[:end],
        seconds[:end],
        diverged_at,
        stopped,
        x,
        grad,
    )


def settled_step(values: np.ndarray, tolerance: float) -> int | None:
    """The step from which ``values`` stays at or below ``tolerance`` to the end of the run:
    the first index ``k`` with ``values[k:] <= tolerance``; None when the last value is above
    it (or there are none)."""
    above = np.flatnonzero(~(np.asarray(values, dtype=float) <= tolerance))
    if len(values) == 0 or (above.size and above[-1] == len(values) - 1):
        return None
    return int(above[-1]) + 1 if above.size else 0


__all__ = [
    "DIVERGENCE_FACTOR",
    "SCALAR_SIZE",
    "FunctionalStepper",
    "Objective",
    "Path",
    "RuleStepper",
    "Stepper",
    "TorchStepper",
    "follow",
    "functional_hypers",
    "settled_step",
]
