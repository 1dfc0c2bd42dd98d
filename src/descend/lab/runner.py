"""The race: run several optimizer configurations on one problem and record every step.

Each :class:`Contender` is an optimizer spec (a descend or ``torch.optim`` class, or a
``functional.<name>`` NumPy update), an optional learning-rate schedule and optional weight
averaging. :func:`race` runs each for a number of steps from the problem's start and returns a
:class:`Trace` per contender: loss, gradient norm, distance to the optimum, learning rate and
position at every step (step 0 is the start).

On noisy problems every contender sees the same sequence of minibatches (one seed per race), so
differences come from the optimizers, not the draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from descend.lab.problems import Problem
from descend.optim import ScheduledLR
from descend.specs import (
    FunctionalOptimizerSpec,
    OptimizerSpec,
    ScheduleSpec,
    parse_method,
    parse_schedule,
)

#: A run stops (as diverged) once its loss exceeds the start's by this factor, or is not finite.
DIVERGENCE_FACTOR = 1e8


@dataclass(frozen=True)
class Contender:
    """One runner in a race: an optimizer spec, optionally a schedule and weight averaging.

    ``average`` is an exponential-moving-average decay in [0, 1) (the notes'
    ``x_test = 0.995 x_test + 0.005 x``) or ``"polyak"`` for the plain running mean, the same
    formulas as :class:`descend.WeightAverage`.
    """

    method: OptimizerSpec | FunctionalOptimizerSpec
    schedule: ScheduleSpec | None = None
    average: float | str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.average is not None and self.average != "polyak" and not (
                isinstance(self.average, int | float) and 0 <= self.average < 1):
            raise ValueError(f"average={self.average!r} is invalid: expected a decay in [0, 1) "
                             "or 'polyak'")

    @classmethod
    def parse(cls, method: str, schedule: str | None = None, average: float | str | None = None,
              name: str | None = None) -> Contender:
        """Build from spec strings: ``Contender.parse("adam:lr=1e-2", "exponential:k=0.01")``."""
        return cls(parse_method(method), parse_schedule(schedule) if schedule else None,
                   average, name)

    @property
    def label(self) -> str:
        """The legend label: the name if given, else the specs."""
        if self.name:
            return self.name
        label = self.method.label
        if self.schedule is not None:
            label += f" + {self.schedule.text}"
        if self.average is not None:
            label += f" + average({self.average})"
        return label


@dataclass
class Trace:
    """Everything recorded for one contender; arrays have one entry per step, step 0 the start.

    ``diverged_at`` is the step at which the loss became non-finite or blew up (the arrays end
    there); ``averaged_losses`` holds the loss at the averaged weights when averaging was on.
    """

    label: str
    losses: np.ndarray
    grad_norms: np.ndarray
    distances: np.ndarray
    lrs: np.ndarray
    trajectory: np.ndarray
    minimum_value: float | None = None
    diverged_at: int | None = None
    averaged_losses: np.ndarray | None = None
    averaged_trajectory: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Number of updates made."""
        return len(self.losses) - 1

    @property
    def excess(self) -> np.ndarray:
        """``loss - f*`` per step (the loss itself when ``f*`` is unknown)."""
        return self.losses - (self.minimum_value or 0.0)

    @property
    def final_loss(self) -> float:
        """The loss after the last step (at the averaged weights when averaging was on)."""
        if self.averaged_losses is not None:
            return float(self.averaged_losses[-1])
        return float(self.losses[-1])

    def steps_to(self, tolerance: float) -> int | None:
        """First step whose excess loss is at most ``tolerance``; None if never or if the

        problem has no minimum.
        """
        if self.minimum_value is None:
            return None
        hits = np.flatnonzero(self.excess <= tolerance)
        return int(hits[0]) if hits.size else None

    def first_below(self, loss: float) -> int | None:
        """First step whose loss is at most ``loss`` (escape time from a saddle); None if never."""
        hits = np.flatnonzero(self.losses <= loss)
        return int(hits[0]) if hits.size else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists, for results files."""
        out: dict[str, Any] = {
            "label": self.label, "steps": self.steps, "diverged_at": self.diverged_at,
            "minimum_value": self.minimum_value,
            "loss": self.losses.tolist(), "grad_norm": self.grad_norms.tolist(),
            "distance": self.distances.tolist(), "lr": self.lrs.tolist(),
            "trajectory": self.trajectory.tolist() if self.trajectory.shape[1] <= 10 else None,
        }
        if self.averaged_losses is not None:
            out["averaged_loss"] = self.averaged_losses.tolist()
        out.update(self.extra)
        return _finite_json(out)


def _finite_json(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    return value


class _TorchStepper:
    """Runs a torch optimizer (descend's or ``torch.optim``'s) on a float64 parameter."""

    def __init__(self, spec: OptimizerSpec, schedule: ScheduleSpec | None, x0: np.ndarray):
        import torch  # noqa: PLC0415  (kept local: only this front end needs it)

        self.torch = torch
        self.param = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        self.optimizer = spec.build([self.param])
        self.scheduler = (ScheduledLR(self.optimizer, schedule.build(spec.lr))
                          if schedule is not None else None)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, grad: np.ndarray) -> np.ndarray:
        self.param.grad = self.torch.from_numpy(np.array(grad, dtype=np.float64))
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return self.param.detach().numpy().copy()


class _FunctionalStepper:
    """Runs a NumPy functional update, setting ``learning_rate`` from the schedule each step."""

    def __init__(self, spec: FunctionalOptimizerSpec, schedule: ScheduleSpec | None,
                 x0: np.ndarray):
        self.update = spec.update
        self.config = spec.config()
        self.schedule = schedule.build(spec.lr) if schedule is not None else None
        self.count = 0
        self.x = np.array(x0, dtype=float)
        if self.schedule is not None:
            self.config["learning_rate"] = self.schedule(0)
        self.base_lr = spec.lr

    @property
    def lr(self) -> float:
        return float(self.config.get("learning_rate", self.base_lr))

    def step(self, grad: np.ndarray) -> np.ndarray:
        self.x, self.config = self.update(self.x, grad, self.config)
        self.count += 1
        if self.schedule is not None:
            self.config["learning_rate"] = self.schedule(self.count)
        return self.x


def run(problem: Problem, contender: Contender, steps: int, *, seed: int = 0,
        start: np.ndarray | None = None, stop_below: float | None = None,
        progress: Callable[[int], None] | None = None) -> Trace:
    """Run one contender for ``steps`` updates (fewer if it diverges or reaches ``stop_below``).

    ``start`` overrides the problem's starting point; ``stop_below`` ends the run once the
    excess loss ``loss - f*`` is at or below it; ``progress(n)`` is called with the number of
    steps just completed, every so often.
    """
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps={steps!r} is invalid: expected an integer >= 0")
    x = problem.start() if start is None else np.array(start, dtype=float)
    if x.shape != (problem.dimension,):
        raise ValueError(f"start has shape {x.shape}; the problem needs ({problem.dimension},)")
    method = contender.method
    stepper: _TorchStepper | _FunctionalStepper
    if isinstance(method, FunctionalOptimizerSpec):
        stepper = _FunctionalStepper(method, contender.schedule, x)
    else:
        stepper = _TorchStepper(method, contender.schedule, x)
    rng = np.random.default_rng(seed)
    f_star = problem.minimum_value or 0.0

    losses, grad_norms, distances, lrs, trajectory = [], [], [], [], []
    averaged, averaged_losses = None, None
    if contender.average is not None:
        averaged, averaged_losses = x.copy(), [problem.loss(x)]

    def record(point: np.ndarray, lr: float) -> float:
        loss = problem.loss(point)
        losses.append(loss)
        grad_norms.append(float(np.linalg.norm(problem.grad(point))))
        distances.append(problem.distance(point))
        lrs.append(lr)
        trajectory.append(point.copy())
        return loss

    initial = record(x, stepper.lr)
    limit = abs(initial) * DIVERGENCE_FACTOR + DIVERGENCE_FACTOR
    diverged_at = None
    averaged_points = [x.copy()] if averaged is not None else None
    report_every = max(1, steps // 50)
    done = 0
    for step in range(1, steps + 1):
        grad = problem.stochastic_grad(x, rng) if problem.stochastic else problem.grad(x)
        lr = stepper.lr
        with np.errstate(over="ignore", invalid="ignore"):
            x = stepper.step(grad)
            if not np.all(np.isfinite(x)):
                diverged_at = step
                break
            loss = record(x, lr)
        if not math.isfinite(loss) or abs(loss) > limit:
            diverged_at = step
            break
        if averaged is not None:
            weight = (1.0 / (step + 1) if contender.average == "polyak"
                      else 1.0 - float(contender.average))
            averaged = averaged + weight * (x - averaged)
            averaged_losses.append(problem.loss(averaged))
            averaged_points.append(averaged.copy())
        if progress is not None and step % report_every == 0:
            progress(step - done)
            done = step
        if stop_below is not None and loss - f_star <= stop_below:
            break
    if progress is not None and steps > done:
        progress(steps - done)
    return Trace(
        label=contender.label, losses=np.array(losses), grad_norms=np.array(grad_norms),
        distances=np.array(distances), lrs=np.array(lrs), trajectory=np.array(trajectory),
        minimum_value=problem.minimum_value, diverged_at=diverged_at,
        averaged_losses=None if averaged_losses is None else np.array(averaged_losses),
        averaged_trajectory=None if averaged_points is None else np.array(averaged_points))


def race(problem: Problem, contenders: Sequence[Contender | str], steps: int, *, seed: int = 0,
         start: np.ndarray | None = None, stop_below: float | None = None,
         progress: Callable[[int], None] | None = None,
         on_trace: Callable[[Trace], None] | None = None) -> list[Trace]:
    """Run every contender (a :class:`Contender` or a method spec string) on ``problem``.

    ``on_trace`` is called with each trace as soon as it is complete (to save it before the next
    one starts); the other arguments are as for :func:`run`.
    """
    traces = []
    for contender in contenders:
        if isinstance(contender, str):
            contender = Contender.parse(contender)
        trace = run(problem, contender, steps, seed=seed, start=start, stop_below=stop_below,
                    progress=progress)
        if on_trace is not None:
            on_trace(trace)
        traces.append(trace)
    return traces
