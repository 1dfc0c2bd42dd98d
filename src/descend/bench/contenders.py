"""What the benchmark races: an optimizer under a schedule, and the hyperparameters to tune.

A :class:`BenchContender` is a :class:`~descend.specs.ContenderSpec` (the optimizer and its
schedule, as typed) plus a search space. Schedules are typed without what depends on the
run's length (a cosine's ``total_steps``); :func:`schedule_over` fills that in for each task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from descend.bench.search import Dimension, parse_dimension
from descend.specs import (
    ContenderSpec,
    OptimizerSpec,
    ScheduleSpec,
    default_lr_range,
    parse_optimizer,
    parse_schedule,
)


def schedule_defaults(name: str, epochs: int) -> dict[str, Any]:
    """Default arguments of a schedule over ``epochs`` epochs (stepped once per epoch).

    Each decaying schedule ends the run about ten times below its base rate, except step
    decay, which halves the rate every third of the run as the lecture suggests.
    """
    if name in ("step",):
        return {"step_size": max(1, epochs // 3), "gamma": 0.5}
    if name == "exponential":
        return {"k": math.log(10.0) / max(epochs - 1, 1)}
    if name in ("inverse_time", "1/t"):
        return {"k": 9.0 / max(epochs - 1, 1)}
    if name == "cosine":
        return {"total_steps": epochs}
    if name == "warmup_cosine":
        return {"warmup_steps": max(1, epochs // 10), "total_steps": epochs}
    return {}


def schedule_over(schedule: ScheduleSpec | None, epochs: int) -> ScheduleSpec | None:
    """A schedule as typed over a run of ``epochs`` epochs: ``None`` for a constant rate, else
    with every argument the text leaves out taken from :func:`schedule_defaults`."""
    if schedule is None or schedule.constant:
        return None
    return schedule.completed(schedule_defaults(schedule.name, epochs))


def build_schedule(text: str, epochs: int) -> ScheduleSpec | None:
    """The schedule for ``text`` (``constant`` gives ``None``), defaults filled in from the run
    length for any argument the text leaves out."""
    return schedule_over(parse_schedule(text, complete=False), epochs)


@dataclass(frozen=True)
class BenchContender:
    """One contender of the benchmark: an optimizer under a schedule (a
    :class:`ContenderSpec`) and the hyperparameters to tune (its search space).

    The schedule is kept as typed and may leave out what depends on the run's length (a
    cosine's ``total_steps``); :meth:`schedule_for` fills that in for each task. The lab's
    races use :class:`descend.lab.runner.Contender`, which has no search space.
    """

    spec: ContenderSpec
    space: tuple[Dimension, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.spec.optimizer, OptimizerSpec):
            raise ValueError(
                f"{self.spec.optimizer.text!r} cannot be benchmarked: it is not a torch optimizer"
            )

    @property
    def label(self) -> str:
        """Name in tables, results and study names (see :attr:`ContenderSpec.label`)."""
        return self.spec.label

    @property
    def optimizer(self) -> OptimizerSpec:
        """The optimizer spec as given (tuned values not filled in)."""
        assert isinstance(self.spec.optimizer, OptimizerSpec)
        return self.spec.optimizer

    @property
    def schedule_text(self) -> str:
        """The schedule as typed (``constant`` when there is none), as studies record it."""
        return "constant" if self.spec.schedule is None else self.spec.schedule.text

    def schedule_for(self, epochs: int) -> ScheduleSpec | None:
        """The schedule over a run of ``epochs`` epochs (``None``: constant rate)."""
        return schedule_over(self.spec.schedule, epochs)

    def optimizer_for(self, params: dict[str, float]) -> OptimizerSpec:
        """The optimizer spec with tuned values filled in."""
        return self.optimizer.with_arguments(**params) if params else self.optimizer


def make_contender(
    optimizer: str | OptimizerSpec,
    schedule: str = "constant",
    lr_range: tuple[float, float] | None = None,
    tune: Sequence[str | Dimension] = (),
) -> BenchContender:
    """A contender from spec texts, checking every part before anything runs.

    The learning rate is tuned unless the spec fixes it (``adam:lr=1e-3``); ``tune`` adds
    dimensions such as ``"momentum=0.5:0.99:linear"``. Both ends of every range are tried on
    a dummy parameter, so a range the optimizer refuses fails here.
    """
    spec = parse_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    space: list[Dimension] = []
    if "lr" not in spec.arguments:
        low, high = lr_range or default_lr_range(spec.name)
        space.append(Dimension("lr", low, high, log=True))
    for item in tune:
        dimension = parse_dimension(item) if isinstance(item, str) else item
        if dimension.name in spec.arguments:
            raise ValueError(
                f"{dimension.name} is both fixed in spec {spec.text!r} and tuned; drop one"
            )
        space.append(dimension)
    names = [dimension.name for dimension in space]
    if len(set(names)) != len(names):
        raise ValueError(f"a hyperparameter is tuned twice in {', '.join(names)}")
    for dimension in space:
        for value in (dimension.low, dimension.high):
            parse_optimizer(spec.with_arguments(**{dimension.name: value}).text)
    schedule_spec = parse_schedule(schedule, complete=False)
    schedule_over(schedule_spec, 10)
    return BenchContender(ContenderSpec(spec, schedule_spec), tuple(space))
