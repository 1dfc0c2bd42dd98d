"""Learning-rate schedules: pure callables ``schedule(step) -> learning rate``.

Each is a small frozen dataclass, so it can be printed, compared, pickled into a checkpoint and
checked for bad values when built. ``step`` counts from 0 (the first update uses
``schedule(0)``); whether a step is one update or one epoch is up to the caller. To drive a
``torch.optim`` optimizer with one of these, see :class:`descend.ScheduledLR`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_rate(name: str, value: float) -> None:
    _check(
        isinstance(value, int | float) and math.isfinite(value) and value >= 0,
        f"{name}={value!r} is invalid: expected a finite number >= 0",
    )


def _check_count(name: str, value: int, minimum: int) -> None:
    _check(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{name}={value!r} is invalid: expected an integer >= {minimum}",
    )


def _check_step(step: int) -> None:
    _check(step >= 0, f"step={step!r} is invalid: expected step >= 0")


class Schedule:
    """Base of the schedules: a callable from step number to learning rate.

    Subclasses define :meth:`value`; calling the schedule checks the step first.
    """

    def __call__(self, step: int) -> float:
        _check_step(step)
        return self.value(step)

    def value(self, step: int) -> float:
        """The learning rate at ``step`` (already checked to be >= 0)."""
        raise NotImplementedError


@dataclass(frozen=True)
class constant(Schedule):
    """``alpha_t = lr`` for every step."""

    lr: float

    def __post_init__(self) -> None:
        _check_rate("lr", self.lr)

    def value(self, step: int) -> float:
        return float(self.lr)


@dataclass(frozen=True)
class step_decay(Schedule):
    """Step decay: ``alpha_t = alpha_0 * gamma ** floor(t / step_size)`` (halve every few epochs).

    ``base_lr >= 0``; ``step_size >= 1`` steps between drops; ``0 < gamma <= 1`` (default 0.5).
    """

    base_lr: float
    step_size: int
    gamma: float = 0.5

    def __post_init__(self) -> None:
        _check_rate("base_lr", self.base_lr)
        _check_count("step_size", self.step_size, 1)
        _check(
            isinstance(self.gamma, int | float) and 0 < self.gamma <= 1,
            f"gamma={self.gamma!r} is out of range: expected 0 < gamma <= 1",
        )

    def value(self, step: int) -> float:
        return self.base_lr * self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class _RateDecay(Schedule):
    """A decay from ``base_lr >= 0`` governed by one rate ``k >= 0``."""

    base_lr: float
    k: float

    def __post_init__(self) -> None:
        _check_rate("base_lr", self.base_lr)
        _check_rate("k", self.k)


@dataclass(frozen=True)
class exponential_decay(_RateDecay):
    """Exponential decay: ``alpha_t = alpha_0 * exp(-k t)``, with ``base_lr >= 0``, ``k >= 0``."""

    def value(self, step: int) -> float:
        return self.base_lr * math.exp(-self.k * step)


@dataclass(frozen=True)
class inverse_time_decay(_RateDecay):
    """1/t decay: ``alpha_t = alpha_0 / (1 + k t)``, with ``base_lr >= 0``, ``k >= 0``."""

    def value(self, step: int) -> float:
        return self.base_lr / (1 + self.k * step)


@dataclass(frozen=True)
class cosine_decay(Schedule):
    """Cosine decay from ``base_lr`` to ``final_lr`` over ``total_steps``, then ``final_lr``::

    alpha_t = final + (base - final) * (1 + cos(pi * t / total_steps)) / 2
    """

    base_lr: float
    total_steps: int
    final_lr: float = 0.0

    def __post_init__(self) -> None:
        _check_rate("base_lr", self.base_lr)
        _check_count("total_steps", self.total_steps, 1)
        _check_rate("final_lr", self.final_lr)

    def value(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        cosine = (1 + math.cos(math.pi * progress)) / 2
        return self.final_lr + (self.base_lr - self.final_lr) * cosine


@dataclass(frozen=True)
class linear_warmup(Schedule):
    """Linear warmup from ``start_lr`` to ``peak_lr`` over ``warmup_steps``, then ``peak_lr``."""

    peak_lr: float
    warmup_steps: int
    start_lr: float = 0.0

    def __post_init__(self) -> None:
        _check_rate("peak_lr", self.peak_lr)
        _check_count("warmup_steps", self.warmup_steps, 0)
        _check_rate("start_lr", self.start_lr)

    def value(self, step: int) -> float:
        if step >= self.warmup_steps:
            return float(self.peak_lr)
        return self.start_lr + (self.peak_lr - self.start_lr) * step / self.warmup_steps


@dataclass(frozen=True)
class join(Schedule):
    """Schedules one after another: ``schedules[i]`` runs from ``boundaries[i-1]``.

    Each schedule sees its own step count, starting from 0 at its boundary. ``boundaries`` are
    strictly increasing steps, one fewer than the schedules.
    """

    schedules: tuple[Callable[[int], float], ...]
    boundaries: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedules", tuple(self.schedules))
        object.__setattr__(self, "boundaries", tuple(self.boundaries))
        _check(len(self.schedules) >= 1, "join needs at least one schedule")
        _check(
            len(self.boundaries) == len(self.schedules) - 1,
            f"join got {len(self.schedules)} schedules and {len(self.boundaries)} boundaries;"
            " expected one boundary fewer than schedules",
        )
        for boundary in self.boundaries:
            _check_count("boundary", boundary, 1)
        _check(
            all(a < b for a, b in zip(self.boundaries, self.boundaries[1:], strict=False)),
            f"boundaries={self.boundaries!r} must be strictly increasing",
        )

    def value(self, step: int) -> float:
        start = 0
        for schedule, boundary in zip(self.schedules, self.boundaries, strict=False):
            if step < boundary:
                return schedule(step - start)
            start = boundary
        return self.schedules[-1](step - start)


def warmup_then(
    decay: Callable[[int], float], warmup_steps: int, start_lr: float = 0.0
) -> Schedule:
    """Linear warmup up to ``decay(0)`` over ``warmup_steps``, then ``decay`` from its step 0."""
    _check_count("warmup_steps", warmup_steps, 1)
    return join((linear_warmup(decay(0), warmup_steps, start_lr), decay), (warmup_steps,))


def evaluate(schedule: Callable[[int], float], steps: int) -> list[float]:
    """The schedule's learning rates for steps ``0 .. steps - 1``."""
    return [schedule(step) for step in range(steps)]


__all__: Sequence[str] = [
    "Schedule",
    "constant",
    "cosine_decay",
    "evaluate",
    "exponential_decay",
    "inverse_time_decay",
    "join",
    "linear_warmup",
    "step_decay",
    "warmup_then",
]
