"""The race: run several optimizer configurations on one problem and record every step.

Each :class:`Contender` is an optimizer spec (a descend or ``torch.optim`` class, or a
``functional.<name>`` NumPy update) under an optional learning-rate schedule, the
:class:`~descend.specs.ContenderSpec` the benchmark tunes too, plus optional weight averaging.
:func:`race` runs each for a number of steps from the problem's start and returns a
:class:`Trace` per contender: loss, gradient norm, distance to the optimum, learning rate and
position at every step (step 0 is the start).

On noisy problems every contender sees the same sequence of minibatches (one seed per race), so
differences come from the optimizers, not the draw.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from descend.lab.loop import (
    FunctionalStepper,
    RuleStepper,
    Stepper,
    TorchStepper,
    follow,
    settled_step,
)
from descend.lab.palette import family_of
from descend.lab.problems import Problem
from descend.optim.base import RuleOptimizer
from descend.specs import (
    ContenderSpec,
    FunctionalOptimizerSpec,
    OptimizerSpec,
    ScheduleSpec,
)

#: Optimizer arguments that change what the torch class does beyond its rule's math.
TORCH_SIDE = frozenset({"nonfinite", "backend"})


@dataclass(frozen=True)
class Contender:
    """One runner in a race: an optimizer under a schedule (a :class:`ContenderSpec`),
    optionally with weight averaging.

    ``average`` is an exponential-moving-average decay in [0, 1) (the notes'
    ``x_test = 0.995 x_test + 0.005 x``) or ``"polyak"`` for the plain running mean, the same
    formulas as :class:`descend.WeightAverage`.
    """

    spec: ContenderSpec
    average: float | str | None = None

    def __post_init__(self) -> None:
        if (
            self.average is not None
            and self.average != "polyak"
            and not (isinstance(self.average, int | float) and 0 <= self.average < 1)
        ):
            raise ValueError(
                f"average={self.average!r} is invalid: expected a decay in [0, 1) or 'polyak'"
            )

    @classmethod
    def parse(
        cls,
        method: str,
        schedule: str | None = None,
        average: float | str | None = None,
        name: str | None = None,
    ) -> Contender:
        """Build from spec strings: ``Contender.parse("adam:lr=1e-2", "exponential:k=0.01")``."""
        return cls(ContenderSpec.parse(method, schedule, name), average)

    @property
    def optimizer(self) -> OptimizerSpec | FunctionalOptimizerSpec:
        """The optimizer spec: a descend or ``torch.optim`` class, or a functional update."""
        return self.spec.optimizer

    @property
    def schedule(self) -> ScheduleSpec | None:
        """The learning-rate schedule (None: the optimizer's own constant rate)."""
        return self.spec.schedule

    @property
    def family(self) -> str | None:
        """Which optimizer this is, for its colour in every figure (see :func:`family_of`)."""
        return family_of(self.optimizer.name, self.optimizer.arguments)

    @property
    def label(self) -> str:
        """The legend label: the spec's (see :attr:`ContenderSpec.label`), with
        ``+average(decay)`` when the weights are averaged."""
        if self.average is None:
            return self.spec.label
        return self.spec.labelled(f"average({self.average})")


@dataclass
class Trace:
    """Everything recorded for one contender; arrays have one entry per step, step 0 the start.

    ``diverged_at`` is the step at which the loss became non-finite or blew up (the arrays end
    with it); ``averaged_losses`` holds the loss at the averaged weights when averaging was on.
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
    family: str | None = None
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
        """The step from which the excess loss ``loss - f*`` stays at or below ``tolerance``
        to the end of the run; None if it ends above it, or if the problem has no minimum."""
        if self.minimum_value is None:
            return None
        return settled_step(self.excess, tolerance)

    def settled_below(self, loss: float) -> int | None:
        """The step from which the loss stays at or below ``loss`` to the end of the run (the
        escape time from a saddle); None if it ends above it."""
        return settled_step(self.losses, loss)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists, for results files."""
        out: dict[str, Any] = {
            "label": self.label,
            "family": self.family,
            "steps": self.steps,
            "diverged_at": self.diverged_at,
            "minimum_value": self.minimum_value,
            "loss": self.losses.tolist(),
            "grad_norm": self.grad_norms.tolist(),
            "distance": self.distances.tolist(),
            "lr": self.lrs.tolist(),
            "trajectory": self.trajectory.tolist() if self.trajectory.shape[1] <= 10 else None,
        }
        if self.averaged_losses is not None:
            out["averaged_loss"] = self.averaged_losses.tolist()
        out.update(self.extra)
        return finite_json(out)


def finite_json(value: Any) -> Any:
    """``value`` (nested lists and dicts) with NaN and infinities, not valid JSON, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    return value


def stepper_for(contender: Contender, x0: np.ndarray) -> Stepper:
    """The loop's front end for a contender, with its schedule built from the spec's learning
    rate: a functional update for ``functional.<name>``; for a descend optimizer its rule on
    NumPy arrays (the class's own iterates; torch's per-step overhead dwarfs a 2-D problem),
    unless it asks for torch-side behaviour (``nonfinite``, ``backend``); any other torch
    optimizer itself. A descend rule's ``lab_hypers`` fill what the spec leaves out; a rule
    with matrix state (Shampoo, SOAP, PSGD-Kron) is refused by :class:`RuleStepper`."""
    method = contender.optimizer
    schedule = contender.schedule.build(method.lr) if contender.schedule is not None else None
    if isinstance(method, FunctionalOptimizerSpec):
        return FunctionalStepper(method.update, method.config(), x0, schedule, method.lr)
    build = method.build
    if issubclass(method.cls, RuleOptimizer):
        rule = method.cls.rule
        lab = {k: v for k, v in rule.listing.lab_hypers.items() if k not in method.arguments}
        if lab:  # the point is the whole model (see Listing.lab_hypers)
            build = method.with_arguments(**lab).build
        if not set(method.arguments) & TORCH_SIDE:
            optimizer = build([torch.zeros(len(x0), dtype=torch.float64, requires_grad=True)])
            return RuleStepper.from_optimizer(optimizer, x0, schedule)
    return TorchStepper(build, x0, schedule)


def averaged_points(points: np.ndarray, average: float | str) -> np.ndarray:
    """The averaged weights after each point: an EMA with decay ``average``
    (``x_avg <- decay x_avg + (1 - decay) x``) or, for ``"polyak"``, the running mean."""
    out = np.empty_like(points)
    out[0] = points[0]
    for k in range(1, len(points)):
        weight = 1.0 / (k + 1) if average == "polyak" else 1.0 - float(average)
        out[k] = out[k - 1] + weight * (points[k] - out[k - 1])
    return out


def run(
    problem: Problem,
    contender: Contender,
    steps: int,
    *,
    seed: int = 0,
    start: np.ndarray | None = None,
    stop_below: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Trace:
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
    rng = np.random.default_rng(seed)
    f_star = problem.minimum_value or 0.0
    path = follow(
        problem,
        stepper_for(contender, x),
        x,
        steps,
        sample=(lambda point: problem.stochastic_grad(point, rng)) if problem.stochastic else None,
        stop=None if stop_below is None else (lambda loss, _: loss - f_star <= stop_below),
        progress=progress,
    )
    points = path.points
    averaged = averaged_losses = None
    if contender.average is not None:
        averaged = averaged_points(points, contender.average)
        averaged_losses = np.array([problem.loss(point) for point in averaged])
    return Trace(
        label=contender.label,
        losses=path.losses,
        grad_norms=path.grad_norms,
        distances=np.array([problem.distance(point) for point in points]),
        lrs=path.lrs,
        trajectory=points,
        minimum_value=problem.minimum_value,
        diverged_at=path.diverged_at,
        averaged_losses=averaged_losses,
        averaged_trajectory=averaged,
        family=contender.family,
    )


def memory_bytes() -> int:
    """This machine's physical memory in bytes (16 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 16 * 2**30


#: The share of the machine's memory a race's traces may take.
MEMORY_SHARE = 0.5


def bytes_per_step(problem: Problem, contenders: Sequence[Contender]) -> int:
    """Bytes the traces of ``contenders`` on ``problem`` hold per recorded step: the position
    (and the averaged one), loss, gradient norm, rate, time and distance as float64, and the
    Python floats of the distances while they are gathered."""
    total = 0
    for contender in contenders:
        averaged = contender.average is not None
        total += 8 * (problem.dimension * (2 if averaged else 1) + 5 + averaged) + 32
    return total


def most_steps(problem: Problem, contenders: Sequence[Contender]) -> int:
    """The most steps a race of ``contenders`` on ``problem`` can record within
    :data:`MEMORY_SHARE` of this machine's memory (every trace is kept to the end)."""
    return max(
        0, int(MEMORY_SHARE * memory_bytes()) // max(1, bytes_per_step(problem, contenders)) - 1
    )


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.3g} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def steps_memory_text(problem: Problem, contenders: Sequence[Contender], steps: int) -> str:
    """What ``steps`` steps of ``contenders`` need, against what this machine has."""
    needed = (steps + 1) * bytes_per_step(problem, contenders)
    return (
        f"{len(contenders)} run(s) of {steps} steps would record about {_size(needed)} "
        f"(position, loss and gradient norm at every step), more than "
        f"{MEMORY_SHARE:.0%} of this machine's {_size(memory_bytes())}"
    )


def race(
    problem: Problem,
    contenders: Sequence[Contender | str],
    steps: int,
    *,
    seed: int = 0,
    start: np.ndarray | None = None,
    stop_below: float | None = None,
    progress: Callable[[int], None] | None = None,
    on_trace: Callable[[Trace], None] | None = None,
) -> list[Trace]:
    """Run every contender (a :class:`Contender` or a method spec string) on ``problem``.

    ``on_trace`` is called with each trace as soon as it is complete (to save it before the next
    one starts); the other arguments are as for :func:`run`.
    """
    contenders = [Contender.parse(c) if isinstance(c, str) else c for c in contenders]
    # Checked before the first run, not as an allocation failure in the middle of the race.
    if isinstance(steps, int) and steps > most_steps(problem, contenders):
        raise ValueError(
            f"steps={steps} is too many for this machine's memory: "
            f"{steps_memory_text(problem, contenders, steps)}; expected at most "
            f"{most_steps(problem, contenders)}"
        )
    traces = []
    for contender in contenders:
        trace = run(
            problem,
            contender,
            steps,
            seed=seed,
            start=start,
            stop_below=stop_below,
            progress=progress,
        )
        if on_trace is not None:
            on_trace(trace)
        traces.append(trace)
    return traces
