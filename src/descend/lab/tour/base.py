"""What the sections of the tour share: settings, progress reports, contenders, words."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from descend.lab.palette import family_of
from descend.lab.runner import Contender
from descend.optim.generated import optimizer_class
from descend.rules import RULES

#: ``progress(description, advance)``: called as runs finish; advance counts runs.
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class TourSettings:
    """Knobs of the tour. ``quick`` shrinks the expensive parts (learning-rate grids, second-
    order studies, animation frames) for tests; the cheap races run in full either way, so a
    quick report makes the same claims from the same kind of evidence."""

    quick: bool = False
    seed: int = 0


def named(pairs: Sequence[tuple[str, str]]) -> list[Contender]:
    """Contenders from ``(legend name, spec)`` pairs."""
    return [Contender.parse(spec, name=name) for name, spec in pairs]


def display_name(name: str, arguments: dict | None = None) -> str:
    """The one name the report gives an optimizer, whatever name it was run by (a spec name,
    an alias, a functional API name): its class's name in descend (``Momentum`` for
    ``momentum``, ``sgd_momentum`` and ``functional.sgd_momentum``), read from the registry.
    A name the registry does not know is returned as it is."""
    family = family_of(name, arguments) or family_of(f"functional.{name}", arguments)
    return optimizer_class(RULES[family]).__name__ if family in RULES else name


def registered(specs: Sequence[str]) -> list[Contender]:
    """Contenders from spec strings, each named by its optimizer's :func:`display_name`."""
    contenders = [Contender.parse(spec) for spec in specs]
    return [
        Contender.parse(spec, name=display_name(c.optimizer.name, c.optimizer.arguments))
        for spec, c in zip(specs, contenders, strict=True)
    ]


def tail_mean(values: np.ndarray, fraction: float = 0.25) -> float:
    """Mean of the last ``fraction`` of a run: the level it settles to under noise."""
    count = max(1, int(len(values) * fraction))
    return float(np.mean(values[-count:]))


def listing(names: Sequence[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``; ``none`` for no names."""
    names = list(names)
    if not names:
        return "none"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def steps_text(step: int | None, steps: int) -> str:
    """A step count for a sentence: ``step 57``, or ``not within 100 steps``."""
    return f"step {step}" if step is not None else f"not within {steps} steps"


def noop(description: str, advance: int) -> None:
    """A progress callback that does nothing."""
    return None
