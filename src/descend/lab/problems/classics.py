"""The classic test functions: :class:`RosenbrockValley`, :class:`Beale` and :class:`Booth`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from descend.lab.problems.base import Param, Problem
from descend.secondorder.problems import Rosenbrock


class RosenbrockValley(Problem):
    """Rosenbrock's function in 2-D, ``f(x, y) = (a - x)^2 + b (y - x^2)^2``: a curved,
    flat-bottomed valley with its minimum ``f = 0`` at ``(a, a^2)``.

    The function is :class:`descend.secondorder.problems.Rosenbrock`; this adds the lab's start
    and plotting window.
    """

    name = "rosenbrock"
    title = "Rosenbrock's function"
    params = (
        Param("a", 1.0, "the minimum is at (a, a^2)", slider=(0.5, 1.5)),
        Param("b", 100.0, "steepness of the valley walls", low=0.0, log=True, slider=(1.0, 1000.0)),
    )
    playground: ClassVar[dict[str, Any]] = {}

    def __init__(self, a: float = 1.0, b: float = 100.0) -> None:
        self.function = Rosenbrock(2, float(a), float(b))
        self.a, self.b = self.function.a, self.function.b
        self.dimension = 2
        self.x0 = np.array([-1.5, 2.0])
        self.minima = self.function.solution[None, :]
        self.minimum_value = 0.0
        self.bounds = ((-2.0, 2.0), (-1.0, 3.0))

    def _value(self, x: Any, xp: Any) -> Any:
        return self.function.value(x)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The analytic gradient."""
        return self.function.grad(np.asarray(x, dtype=float))


class Beale(Problem):
    """Beale's function: flat plateaus and sharp ridges; minimum ``f(3, 0.5) = 0``."""

    name = "beale"
    title = "Beale's function"
    playground: ClassVar[dict[str, Any]] = {}
    TERMS = (1.5, 2.25, 2.625)

    def __init__(self) -> None:
        self.dimension = 2
        self.x0 = np.array([1.0, 1.4])
        self.minima = np.array([[3.0, 0.5]])
        self.minimum_value = 0.0
        self.bounds = ((-0.5, 4.0), (-1.5, 2.0))

    def _value(self, x: Any, xp: Any) -> Any:
        return sum((c - x[0] + x[0] * x[1] ** (k + 1)) ** 2 for k, c in enumerate(self.TERMS))

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The analytic gradient."""
        gx = gy = 0.0
        for k, c in enumerate(self.TERMS):
            power = k + 1
            residual = c - x[0] + x[0] * x[1] ** power
            gx += 2 * residual * (x[1] ** power - 1)
            gy += 2 * residual * x[0] * power * x[1] ** (power - 1)
        return np.array([gx, gy])


class Booth(Problem):
    """Booth's function ``(x + 2y - 7)^2 + (2x + y - 5)^2``: a plain quadratic, minimum (1, 3)."""

    name = "booth"
    title = "Booth's function"

    def __init__(self) -> None:
        self.dimension = 2
        self.x0 = np.array([-7.0, 0.0])
        self.minima = np.array([[1.0, 3.0]])
        self.minimum_value = 0.0
        self.bounds = ((-8.0, 6.0), (-6.0, 7.0))

    def _value(self, x: Any, xp: Any) -> Any:
        return (x[0] + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The analytic gradient."""
        a = x[0] + 2 * x[1] - 7
        b = 2 * x[0] + x[1] - 5
        return np.array([2 * a + 4 * b, 4 * a + 2 * b])
