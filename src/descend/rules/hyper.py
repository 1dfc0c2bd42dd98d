"""One hyperparameter of a rule: its name, default, valid range and meaning, and its check; and
how a hyperparameter's value (a number, a 0-d tensor or array) reaches a step as a scalar."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter: its name, default, valid range and meaning.

    ``low``/``high`` bound the value (``None`` means unbounded); ``low_open``/``high_open`` say
    whether the bound itself is excluded. ``kind`` is ``float``, ``int`` or ``bool``; a
    hyperparameter with ``choices`` takes exactly one of those values (strings or ``None``).
    Only ``float`` and ``bool`` hyperparameters may reach an elementwise ``update``; the others
    configure step scalars or a :class:`MatrixStage`. An ``optional`` one also takes ``None``
    (its doc says what that means), so it configures step scalars only.
    """

    name: str
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    kind: type = float
    choices: tuple[Any, ...] | None = None
    optional: bool = False

    def describe(self, shown: str | None = None) -> str:
        """The valid range in words, e.g. ``0 <= lr < inf`` or ``True or False``.

        ``shown`` is the name the user wrote, when it differs from the hyperparameter's.
        """
        if self.kind is bool:
            return "True or False"
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        left = "<" if self.low_open or self.low is None else "<="
        right = "<" if self.high_open or self.high is None else "<="
        interval = f"{low} {left} {shown or self.name} {right} {high}"
        return f"None or {interval}" if self.optional else interval

    def check(self, value: Any, shown: str | None = None) -> Any:
        """Return ``value`` in the hyperparameter's kind, or raise ``ValueError`` naming it.

        A flag accepts what ``torch.optim`` treats as one in a valid setting: ``True``/``False``,
        NumPy booleans and the integers 0 and 1 (as written in config files); it becomes a
        Python ``bool``. A number accepts any real number or one-element tensor or array, but
        not a string or a flag. ``shown`` is the name used in the message.
        """
        shown = shown or self.name
        if value is None and self.optional:
            return None
        if self.kind is bool:
            flag = _as_flag(value)
            if flag is None:
                raise ValueError(f"{shown}={value!r} is invalid: expected True or False")
            return flag
        if self.choices is not None:
            if not any(
                value is choice or (isinstance(value, str) and value == choice)
                for choice in self.choices
            ):
                raise ValueError(f"{shown}={value!r} is invalid: expected {self.describe(shown)}")
            return value
        if self.kind is int and not (
            isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
        ):
            raise ValueError(
                f"{shown}={value!r} is invalid: expected an integer with {self.describe(shown)}"
            )
        number = _as_float(value)
        if number is None or math.isnan(number):
            raise ValueError(
                f"{shown}={value!r} is invalid: expected a number with {self.describe(shown)}"
            )
        too_low = self.low is not None and (
            number < self.low or (self.low_open and number == self.low)
        )
        too_high = self.high is not None and (
            number > self.high or (self.high_open and number == self.high)
        )
        if too_low or too_high or (self.high is None and math.isinf(number)):
            raise ValueError(f"{shown}={value!r} is out of range: expected {self.describe(shown)}")
        return value


def _as_flag(value: Any) -> bool | None:
    """``value`` as a ``bool`` if it is a boolean or the integer 0 or 1, else ``None``."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    return None


def _as_float(value: Any) -> float | None:
    """``value`` as a float if it is a real number (or a one-element tensor/array of one)."""
    if isinstance(value, bool | np.bool_ | str | bytes):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    numel = getattr(value, "numel", None) or getattr(value, "size", None)
    try:
        count = numel() if callable(numel) else numel
        if count != 1 or getattr(value, "dtype", None) is None or _is_complex_or_bool(value):
            return None
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _is_complex_or_bool(value: Any) -> bool:
    dtype = value.dtype
    is_complex = getattr(dtype, "is_complex", None)
    if is_complex is not None:  # a torch dtype
        return bool(is_complex) or str(dtype) == "torch.bool"
    kind = np.dtype(dtype).kind
    return kind in "cb"


#: The plain scalar types, as a tuple and as a set of exact types: every step converts each
#: hyperparameter and scalar, and a set lookup of ``type(value)`` is the cheapest test for the
#: usual case (a union in ``isinstance`` costs several times more).
_PLAIN = (bool, int, float)
_PLAIN_TYPES = frozenset(_PLAIN)
#: Types whose values :func:`plain_value` returns as they are (told by exact type, a C-level
#: set test: ``isinstance`` against ``torch.Tensor`` costs about 150 ns a value).
SCALAR_TYPES = frozenset({*_PLAIN, str, type(None)})


def as_step_input(value: Any, differentiable: bool = False) -> Any:
    """A 0-d tensor for a one-element tensor (detached unless ``differentiable``), else the
    plain scalar."""
    if type(value) in _PLAIN_TYPES or isinstance(value, _PLAIN):
        return value
    if hasattr(value, "detach") and hasattr(value, "reshape"):
        return (value if differentiable else value.detach()).reshape(())
    return plain_value(value)


def plain_value(value: Any) -> Any:
    """A Python scalar for a hyperparameter that may arrive as a 0-d tensor or array."""
    if type(value) in _PLAIN_TYPES or isinstance(value, _PLAIN):
        return value
    item = getattr(value, "item", None)
    return item() if item is not None else value


def all_plain(values: Iterable[Any]) -> bool:
    """Whether every value is one of :data:`SCALAR_TYPES` (by exact type, one C-level pass):
    then neither :func:`plain_value` nor :func:`as_step_input` changes any of them, and none is
    a tensor."""
    return SCALAR_TYPES.issuperset(map(type, values))


def _each_value(
    values: Mapping[str, Any], convert: Callable[..., Any], *options: Any
) -> dict[str, Any]:
    """``convert(value, *options)`` of every value of a mapping, as a new dict: a plain copy
    where :func:`all_plain` (the usual step), since neither conversion changes a plain
    scalar."""
    if all_plain(values.values()):
        return dict(values)
    return {name: convert(value, *options) for name, value in values.items()}


def plain_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`plain_value` of every value of a mapping, as a new dict."""
    return _each_value(values, plain_value)


def step_inputs(values: Mapping[str, Any], differentiable: bool = False) -> dict[str, Any]:
    """:func:`as_step_input` of every value of a mapping, as a new dict."""
    return _each_value(values, as_step_input, differentiable)
