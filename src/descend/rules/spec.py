"""What a rule is: an elementwise update function plus the spec of its hyperparameters.

A rule's ``update`` is a pure function of one parameter element (or an array of them):

    update(p, g, *slots, **scalars) -> (p, *slots)

``slots`` are the per-element state tensors (momentum buffers, second-moment sums, ...) in the
order the rule declares them; ``scalars`` are hyperparameters and values that depend only on the
step (bias corrections, decayed learning rates), computed once per step by ``Rule.scalars``.
The function uses only arithmetic, comparisons of Python scalars, and the ``sqrt``/``maximum``
names from :mod:`descend.rules.elementwise`, so that NumPy arrays, torch tensors and compiled
scalar loops can all execute it unchanged.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter: its name, default, valid range and meaning.

    ``low``/``high`` bound the value (``None`` means unbounded); ``low_open``/``high_open`` say
    whether the bound itself is excluded. ``kind`` is ``float`` or ``bool``.
    """

    name: str
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    kind: type = float

    def describe(self) -> str:
        """The valid range in words, e.g. ``0 <= lr < inf`` or ``True or False``."""
        if self.kind is bool:
            return "True or False"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        left = "<" if self.low_open or self.low is None else "<="
        right = "<" if self.high_open or self.high is None else "<="
        return f"{low} {left} {self.name} {right} {high}"

    def check(self, value: Any) -> Any:
        """Return ``value`` converted to the hyperparameter's kind, or raise ``ValueError``."""
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            raise ValueError(f"{self.name}={value!r} is invalid: expected True or False")
        number = _as_float(value)
        if number is None or math.isnan(number):
            raise ValueError(f"{self.name}={value!r} is invalid: expected a number with "
                             f"{self.describe()}")
        too_low = self.low is not None and (
            number < self.low or (self.low_open and number == self.low))
        too_high = self.high is not None and (
            number > self.high or (self.high_open and number == self.high))
        if too_low or too_high or (self.high is None and math.isinf(number)):
            raise ValueError(f"{self.name}={value!r} is out of range: expected {self.describe()}")
        return value


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


@dataclass(frozen=True)
class Slot:
    """A per-element state tensor of a rule.

    ``name`` is the key in an optimizer's per-parameter state (the same key ``torch.optim``
    uses where one exists). ``fill`` is the initial value: a number, or the name of a
    hyperparameter holding it. ``active`` says, from the hyperparameters, whether the slot exists
    at all (a momentum buffer exists only when momentum is non-zero).
    """

    name: str
    fill: float | str = 0.0
    active: Callable[[Mapping[str, Any]], bool] = field(default=lambda h: True)

    def initial_value(self, hypers: Mapping[str, Any]) -> float:
        """The value every element of this slot starts from."""
        return float(hypers[self.fill]) if isinstance(self.fill, str) else float(self.fill)


@dataclass(frozen=True)
class Constraint:
    """A condition across hyperparameters, with the message shown when it fails."""

    holds: Callable[[Mapping[str, Any]], bool]
    message: str


def _no_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class Rule:
    """An optimizer's update rule: the elementwise math plus everything needed to run it.

    ``step_scalars(hypers, step)`` returns the values that depend only on the step number
    (``step`` counts updates including the current one, so the first update has ``step == 1``).
    """

    name: str
    update: Callable[..., tuple]
    hypers: tuple[Hyper, ...]
    slots: tuple[Slot, ...] = ()
    step_scalars: Callable[[Mapping[str, Any], int], dict[str, float]] = _no_step_scalars
    constraints: tuple[Constraint, ...] = ()
    summary: str = ""

    def __post_init__(self) -> None:
        signature = inspect.signature(self.update)
        positional = [
            name for name, parameter in signature.parameters.items()
            if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        ]
        expected = ["p", "g", *(slot.name for slot in self.slots)]
        if positional != expected:
            raise TypeError(f"rule {self.name!r}: update takes {positional}, expected {expected}")

    @property
    def scalar_names(self) -> tuple[str, ...]:
        """Keyword-only arguments of ``update``: the scalars it reads, in signature order."""
        return tuple(
            name for name, parameter in inspect.signature(self.update).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        )

    @property
    def defaults(self) -> dict[str, Any]:
        """Every hyperparameter at its default value."""
        return {hyper.name: hyper.default for hyper in self.hypers}

    def hyper(self, name: str) -> Hyper:
        """The spec of one hyperparameter."""
        for hyper in self.hypers:
            if hyper.name == name:
                return hyper
        raise KeyError(name)

    def validate(self, hypers: Mapping[str, Any]) -> dict[str, Any]:
        """Fill defaults, check every value and constraint; return the complete mapping.

        Raises ``ValueError`` naming the first bad value and what is allowed.
        """
        known = {hyper.name for hyper in self.hypers}
        unknown = sorted(set(hypers) - known)
        if unknown:
            raise ValueError(f"{self.name}: unknown hyperparameter(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(sorted(known))}")
        complete = self.defaults | dict(hypers)
        for hyper in self.hypers:
            complete[hyper.name] = hyper.check(complete[hyper.name])
        for constraint in self.constraints:
            if not constraint.holds(complete):
                raise ValueError(f"{self.name}: {constraint.message}")
        return complete

    def active_slots(self, hypers: Mapping[str, Any]) -> tuple[Slot, ...]:
        """The slots that exist under these hyperparameters."""
        return tuple(slot for slot in self.slots if slot.active(hypers))

    def scalars(self, hypers: Mapping[str, Any], step: int) -> dict[str, Any]:
        """Every keyword argument ``update`` takes, for this step."""
        values = {name: _plain(value) for name, value in hypers.items()}
        values.update(self.step_scalars(values, step))
        return {name: values[name] for name in self.scalar_names}

    def describe(self) -> str:
        """A table of the hyperparameters: name, default, valid range, meaning."""
        lines = [f"{self.name}: {self.summary}"]
        for hyper in self.hypers:
            lines.append(f"  {hyper.name}={hyper.default!r}  ({hyper.describe()})  {hyper.doc}")
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    """A Python scalar for a hyperparameter that may arrive as a 0-d tensor or array."""
    if isinstance(value, bool | int | float):
        return value
    item = getattr(value, "item", None)
    return item() if item is not None else value
