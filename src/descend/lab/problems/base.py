"""What a lab problem is: a loss with its gradient, and the settings it declares once.

A problem is a :class:`Problem` subclass with a ``name``: defining the class registers it in
:data:`PROBLEMS`, so ``descend race``, the playground and the listings in ``--help`` offer it
with nothing else to edit. Its settings are the arguments of its ``__init__``, each declared
once in ``params`` as a :class:`Param` (default, valid range, meaning, and how the playground's
slider reaches); the class is checked against its signature when it is defined, and every
construction (from Python or from a spec) is checked against the declared ranges.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from descend.rules.spec import Hyper
from descend.suggest import unknown_arguments

if TYPE_CHECKING:
    import torch

# torch loads where a problem meets a torch optimizer, not with the module: the command line
# checks problem specs and prints their settings without it.

Bounds = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Param(Hyper):
    """One setting of a problem: a :class:`~descend.rules.spec.Hyper` (name, default, doc,
    valid range ``low``/``high``, ``kind``, ``choices``) plus how it is shown.

    ``log`` says the setting spreads over decades (its slider moves on a log scale);
    ``slider`` is the ``(low, high)`` the playground's slider spans, or None to keep the setting
    off the page. A slider may span less than the valid range (an open-ended condition number
    gets a slider to 1000); the page accepts only what its slider reaches.
    """

    log: bool = False
    slider: tuple[float, float] | None = None

    def summary(self) -> str:
        """``kappa=20 (1 <= kappa < inf)``: the default and what is accepted, in one phrase."""
        default = self.default
        shown = (
            str(default).lower()
            if isinstance(default, bool)
            else f"{default:g}"
            if isinstance(default, float)
            else str(default)
        )
        allowed = self.describe()
        if self.kind is int and self.choices is None:
            allowed = f"integer, {allowed}"
        if self.log:
            allowed += ", log scale"
        return f"{self.name}={shown} ({allowed})"


#: Every problem by spec name, in the order the classes were defined.
PROBLEMS: dict[str, type[Problem]] = {}


class Problem:
    """Base class: subclasses define ``_value(x, xp)`` (xp is numpy or torch) and ``grad``.

    Attributes every problem sets: ``dimension``, ``x0`` (the starting point), ``minima`` (an
    array of global minimizers, one per row; empty when there is none), ``minimum_value``
    (``f*``, or None), ``bounds`` (the plotting window of 2-D problems) and ``escape_loss``
    (saddles only: a run has escaped once its loss is at or below this). ``tolerance`` is the
    ``f - f*`` that counts as reached (1e-6, unless noise keeps every run above that).

    A registered problem (one with a ``name``) declares every ``__init__`` argument in
    ``params``, in the signature's order and with its default; ``playground`` holds the fixed
    settings the playground page builds it with (None keeps it off the page).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    params: ClassVar[tuple[Param, ...]] = ()
    playground: ClassVar[Mapping[str, Any] | None] = None

    dimension: int
    x0: np.ndarray
    minima: np.ndarray
    minimum_value: float | None
    bounds: Bounds | None = None
    escape_loss: float | None = None
    #: The ``f - f*`` a run counts as having reached (``descend race``'s steps column).
    tolerance: float = 1e-6
    #: Loss values of the contour levels are spread on a log scale unless this is False.
    log_levels: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _check_declaration(cls)
            holder = PROBLEMS.get(cls.name)
            if holder is not None and holder.__qualname__ != cls.__qualname__:
                raise TypeError(
                    f"problem name {cls.name!r} of {cls.__qualname__} is taken by "
                    f"{holder.__qualname__}"
                )
            PROBLEMS[cls.name] = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> Problem:
        # Checked here, before __init__ runs, so no constructor restates a declared range.
        if cls.params:
            bound = inspect.signature(cls.__init__).bind_partial(None, *args, **kwargs)
            cls.check_settings(
                {key: value for key, value in bound.arguments.items() if key != "self"}
            )
        return super().__new__(cls)

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> None:
        """``ValueError`` for a setting the problem does not take or a value out of its range,
        naming what is valid."""
        declared = {param.name: param for param in cls.params}
        unknown = sorted(set(settings) - set(declared))
        if unknown:
            raise unknown_arguments(f"problem {cls.name}", unknown, list(declared))
        for key, value in settings.items():
            declared[key].check(value)

    @classmethod
    def sliders(cls) -> tuple[Param, ...]:
        """The settings the playground offers as sliders."""
        return tuple(param for param in cls.params if param.slider is not None)

    def _value(self, x: Any, xp: Any) -> Any:
        raise NotImplementedError

    def loss(self, x: np.ndarray) -> float:
        """f(x) on the full data."""
        return float(self._value(np.asarray(x, dtype=float), np))

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The gradient of :meth:`loss` at ``x``."""
        raise NotImplementedError

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(f(x), grad f(x))`` on the full data: what the lab's loop records."""
        return self.loss(x), self.grad(x)

    def stochastic_grad(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A minibatch gradient (the full gradient for deterministic problems)."""
        return self.grad(x)

    def torch_loss(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) in torch operations, for autograd."""
        import torch

        return self._value(x, torch)

    def start(self) -> np.ndarray:
        """A copy of the starting point."""
        return np.array(self.x0, dtype=float)

    def distance(self, x: np.ndarray) -> float:
        """Distance to the nearest global minimizer (NaN when there is none)."""
        if len(self.minima) == 0:
            return math.nan
        return float(np.min(np.linalg.norm(self.minima - np.asarray(x), axis=1)))

    def excess(self, loss: float) -> float:
        """``loss - f*`` (the loss itself when ``f*`` is unknown)."""
        return loss - (self.minimum_value or 0.0)

    def torch_parameter(self, x: np.ndarray | None = None) -> torch.Tensor:
        """A float64 leaf tensor at ``x`` (default: the start) for torch optimizers."""
        import torch

        value = self.start() if x is None else np.array(x, dtype=float)
        return torch.tensor(value, dtype=torch.float64, requires_grad=True)

    def backward(self, param: torch.Tensor, rng: np.random.Generator | None = None) -> float:
        """Set ``param.grad`` to the (minibatch, if ``rng`` is given) gradient; return the loss.

        The gradient comes from NumPy, so every torch optimizer runs on the same numbers as the
        functional API.
        """
        import torch

        x = param.detach().cpu().numpy()
        g = self.stochastic_grad(x, rng) if (rng is not None and self.stochastic) else self.grad(x)
        param.grad = torch.as_tensor(g, dtype=param.dtype, device=param.device).reshape(param.shape)
        return self.loss(x)

    def describe(self) -> str:
        """One line naming the problem and its settings."""
        return self.title


def _check_declaration(cls: type[Problem]) -> None:
    """``TypeError`` unless ``cls.params`` are its ``__init__`` arguments, in order, each with
    the signature's default, and the playground's fixed settings are among them."""
    signature = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    names = [param.name for param in cls.params]
    if names != [p.name for p in signature]:
        raise TypeError(
            f"{cls.__qualname__}.params declares {names}; its __init__ takes "
            f"{[p.name for p in signature]} (declare each argument once, in order)"
        )
    for param, argument in zip(cls.params, signature, strict=True):
        if argument.default is inspect.Parameter.empty or argument.default != param.default:
            raise TypeError(
                f"{cls.__qualname__}: {param.name} defaults to {param.default!r} in "
                "params but not in __init__"
            )
        param.check(param.default)
        if param.slider is not None:
            for end in param.slider:
                param.check(end)
    if cls.playground is not None:
        cls.check_settings(cls.playground)
