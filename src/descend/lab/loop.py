"""The one loop of the lab: step an optimizer from a start and record every point it visits.

Everything in the lab that runs a first-order method goes through :func:`follow`: the race
(:mod:`descend.lab.runner`), the demo's steps-to-tolerance table, the first-order runs of the
first- against second-order study and the playground. What steps is a *stepper*, one of three
front ends over the same rules:

- :class:`RuleStepper`: a rule of :mod:`descend.rules` executed directly on NumPy arrays: how
  the lab runs descend's optimizers and the playground runs every rule (on a 2-vector a torch
  step costs about 30 times as much, all of it overhead);
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

from descend.kernels import numpy_update
from descend.rules.spec import Rule
from descend.schedules import Schedule

#: A run stops (as diverged) once its loss exceeds the start's by this factor, or is not finite.
DIVERGENCE_FACTOR = 1e8


class Objective(Protocol):
    """What the loop needs of a problem: the loss and its gradient at a point."""

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(f(x), grad f(x))``."""


class Stepper(Protocol):
    """One optimizer front end: it knows its next learning rate and makes one update."""

    @property
    def lr(self) -> float:
        """The learning rate the next update uses."""

    def step(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """The point after one update from ``x`` with gradient ``grad``."""


#: Up to this many coordinates, :class:`RuleStepper` applies the rule to one coordinate at a
#: time as Python floats: the same function and the same IEEE operations, without NumPy's
#: per-call overhead on tiny arrays (three times faster on a 2-D problem).
SCALAR_SIZE = 4


class RuleStepper:
    """A rule's own ``update`` on NumPy arrays (on floats, one coordinate at a time, for up to
    :data:`SCALAR_SIZE` coordinates), its state kept between steps: slots (a slot that starts
    from the parameter starts as ``x0``), running products and group state.

    ``hypers`` are checked once by :meth:`Rule.validate` (a ``ValueError`` names a bad value and
    the valid range); with a ``schedule`` the learning rate of update ``k`` (from 1) is
    ``schedule(k - 1)``, the convention of :class:`descend.ScheduledLR`. The points are vectors,
    so a rule with a matrix stage (Muon) is refused.
    """

    def __init__(self, rule: Rule, hypers: Mapping[str, Any], x0: np.ndarray,
                 schedule: Schedule | None = None) -> None:
        if rule.stage is not None:
            raise ValueError(f"rule {rule.name!r} needs {rule.stage.ndim}-D parameters (a "
                             "matrix stage); the lab's points are vectors")
        self.rule = rule
        self.hypers = rule.validate(hypers)
        self.schedule = schedule
        self.update = numpy_update(rule)
        active = {slot.name for slot in rule.active_slots(self.hypers)}
        start = np.array(x0, dtype=np.float64)
        self.slots = [slot.initial(start, self.hypers) if slot.name in active else None
                      for slot in rule.slots]
        self.running: dict[str, Any] = {}
        self.by_coordinate = np.size(x0) <= SCALAR_SIZE
        if self.by_coordinate:
            self.slots = [None if slot is None else slot.tolist() for slot in self.slots]
        self.count = 0

    @classmethod
    def from_functional(cls, update: Any, config: Mapping[str, Any], x0: np.ndarray,
                        schedule: Schedule | None = None) -> RuleStepper:
        """The rule of a ``descend.functional`` update (a :class:`FunctionalSpec`) with the
        hyperparameters of ``config`` in the course's names: the iterates of calling the
        update every step, without re-reading the config dict every step."""
        return cls(update.rule, functional_hypers(update, config), x0, schedule)

    @classmethod
    def from_optimizer(cls, optimizer: Any, x0: np.ndarray,
                       schedule: Schedule | None = None) -> RuleStepper:
        """The rule of a descend optimizer (a :class:`~descend.optim.base.RuleOptimizer`) with
        the hyperparameters of its first param group: the iterates the torch class makes."""
        return cls(optimizer.rule, optimizer.rule_hypers(optimizer.param_groups[0]), x0,
                   schedule)

    @property
    def lr(self) -> float:
        """The learning rate of the next update."""
        if self.schedule is not None:
            return float(self.schedule(self.count))
        return float(self.hypers.get("lr", math.nan))

    def scalars(self) -> dict[str, Any]:
        """The keyword arguments of the rule's ``update`` for the next step."""
        return self._next()[0]

    def _next(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The next step's scalars and the running state after it."""
        hypers = self.hypers
        if self.schedule is not None:
            hypers = {**hypers, "lr": float(self.schedule(self.count))}
        step = self.count + 1
        running = self.running
        if self.rule.state_names():
            running = self.rule.next_state(hypers, step, running)
            hypers = {**hypers, **running}
        return self.rule.scalars(hypers, step), running

    def step(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """One update."""
        scalars, self.running = self._next()
        self.count += 1
        if not self.by_coordinate:
            new_x, *slots = self.update(x, grad, *self.slots, **scalars)
            self.slots = [new if old is not None else None
                          for old, new in zip(self.slots, slots, strict=True)]
            return np.asarray(new_x, dtype=np.float64)
        points = x.tolist()
        grads = np.asarray(grad, dtype=np.float64).tolist()
        slots = self.slots
        for i in range(len(points)):
            new_p, *new_slots = self.update(points[i], grads[i], *[
                None if slot is None else slot[i] for slot in slots], **scalars)
            points[i] = float(new_p)
            for slot, value in zip(slots, new_slots, strict=True):
                if slot is not None:
                    slot[i] = float(value)
        return np.array(points)


def functional_hypers(update: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """The rule hyperparameters a ``descend.functional`` update (a :class:`FunctionalSpec`)
    runs with for ``config``: the course's defaults filled in, renamed to the rule's names, and
    the values the update pins."""
    merged = {**update.defaults, **config}
    hypers = dict(update.fixed)
    hypers.update((update.renames.get(key, key), value) for key, value in merged.items())
    return hypers


class FunctionalStepper:
    """A ``descend.functional`` update, setting ``learning_rate`` from the schedule each step."""

    def __init__(self, update: Callable, config: Mapping[str, Any], x0: np.ndarray,
                 schedule: Schedule | None = None, base_lr: float | None = None) -> None:
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
        return float(self.config.get("learning_rate",
                                     default if self.base_lr is None else self.base_lr))

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

    def __init__(self, build: Callable[[list], Any], x0: np.ndarray,
                 schedule: Schedule | None = None) -> None:
        import torch  # noqa: PLC0415  (kept local: only this front end needs it)

        from descend.optim import ScheduledLR  # noqa: PLC0415

        self.torch = torch
        self.param = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        self.optimizer = build([self.param])
        self.scheduler = (ScheduledLR(self.optimizer, schedule) if schedule is not None
                          else None)

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


def follow(objective: Objective, stepper: Stepper, x0: np.ndarray, steps: int, *,
           sample: Callable[[np.ndarray], np.ndarray] | None = None,
           stop: Callable[[float, float], bool] | None = None, keep_points: bool = True,
           progress: Callable[[int], None] | None = None) -> Path:
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
    return Path(None if points is None else points[:end], losses[:end], grad_norms[:end],
                lrs[:end], seconds[:end], diverged_at, stopped, x, grad)


def settled_step(values: np.ndarray, tolerance: float) -> int | None:
    """The step from which ``values`` stays at or below ``tolerance`` to the end of the run:
    the first index ``k`` with ``values[k:] <= tolerance``; None when the last value is above
    it (or there are none)."""
    above = np.flatnonzero(~(np.asarray(values, dtype=float) <= tolerance))
    if len(values) == 0 or (above.size and above[-1] == len(values) - 1):
        return None
    return int(above[-1]) + 1 if above.size else 0


__all__ = ["DIVERGENCE_FACTOR", "FunctionalStepper", "Objective", "Path", "RuleStepper",
           "Stepper", "TorchStepper", "follow", "functional_hypers", "settled_step"]
