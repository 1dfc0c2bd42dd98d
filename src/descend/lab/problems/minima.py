"""Local minima: :class:`TiltedDoubleWell`, :class:`Himmelblau` and :class:`Rastrigin`."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from descend.lab.problems.base import Param, Problem


class TiltedDoubleWell(Problem):
    """``f(x, y) = (x^2 - 1)^2 + tilt x + y^2 / 2``: a shallow well on the right, a deeper one

    on the left, a barrier between. Started on the right, plain gradient descent settles in the
    shallow (local) minimum; enough momentum carries a run over the barrier into the global one.
    """

    name = "double_well"
    title = "tilted double well"
    log_levels = False
    params = (
        Param(
            "tilt",
            0.5,
            "how much deeper the left well is",
            low=0.0,
            high=1.5,
            low_open=True,
            high_open=True,
            slider=(0.05, 1.4),
        ),
        Param("x0", 2.0, "the start's x"),
        Param("y0", 1.5, "the start's y"),
    )
    playground: ClassVar[dict[str, Any]] = {}

    def __init__(self, tilt: float = 0.5, x0: float = 2.0, y0: float = 1.5) -> None:
        self.tilt = float(tilt)
        self.dimension = 2
        self.x0 = np.array([float(x0), float(y0)])
        # Stationary points in x solve 4x^3 - 4x + tilt = 0; the leftmost root is the global
        # minimum, the rightmost the local one.
        roots = np.sort(np.roots([4.0, 0.0, -4.0, self.tilt]).real)
        self.global_x, self.barrier_x, self.local_x = (float(r) for r in roots)
        self.minima = np.array([[self.global_x, 0.0]])
        self.minimum_value = self.loss(self.minima[0])
        self.local_value = self.loss(np.array([self.local_x, 0.0]))
        self.bounds = ((-2.0, 2.3), (-1.7, 1.7))

    def _value(self, x: Any, xp: Any) -> Any:
        return (x[0] ** 2 - 1) ** 2 + self.tilt * x[0] + 0.5 * x[1] ** 2

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``(4x(x^2 - 1) + tilt, y)``."""
        return np.array([4 * x[0] * (x[0] ** 2 - 1) + self.tilt, x[1]])

    def basin(self, x: np.ndarray) -> str:
        """``"global"`` or ``"local"``: which side of the barrier ``x`` is on."""
        return "global" if x[0] < self.barrier_x else "local"


class Himmelblau(Problem):
    """``f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2``: four minima, all with ``f = 0``.

    Which one a run ends in depends on the optimizer's path, not on depth.
    """

    name = "himmelblau"
    title = "Himmelblau's function"
    params = (Param("x0", -0.3, "the start's x"), Param("y0", -0.9, "the start's y"))
    playground: ClassVar[dict[str, Any]] = {}

    MINIMA = np.array(
        [[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]]
    )

    def __init__(self, x0: float = -0.3, y0: float = -0.9) -> None:
        self.dimension = 2
        self.x0 = np.array([float(x0), float(y0)])
        self.minima = np.array([self._polish(m) for m in self.MINIMA])
        self.minimum_value = 0.0
        self.bounds = ((-5.0, 5.0), (-5.0, 5.0))

    def _polish(self, point: np.ndarray) -> np.ndarray:
        """Newton steps from the tabulated minimum (6 digits) to machine precision."""
        for _ in range(5):
            x, y = point
            hessian = np.array(
                [[12 * x * x + 4 * y - 42, 4 * x + 4 * y], [4 * x + 4 * y, 12 * y * y + 4 * x - 26]]
            )
            point = point - np.linalg.solve(hessian, self.grad(point))
        return point

    def _value(self, x: Any, xp: Any) -> Any:
        return (x[0] ** 2 + x[1] - 11) ** 2 + (x[0] + x[1] ** 2 - 7) ** 2

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The analytic gradient."""
        a = x[0] ** 2 + x[1] - 11
        b = x[0] + x[1] ** 2 - 7
        return np.array([4 * x[0] * a + 2 * b, 2 * a + 4 * x[1] * b])


class Rastrigin(Problem):
    """``f(x) = A n + sum(x_i^2 - A cos(2 pi x_i))``: a bowl covered in local minima.

    The only global minimum is ``x = 0`` with ``f = 0``; near every integer point sits a local
    one. ``dim`` sets the dimension, ``a`` the height of the ripples.
    """

    name = "rastrigin"
    title = "Rastrigin's function"
    params = (
        Param("dim", 2, "dimension", low=1, kind=int),
        Param("a", 10.0, "height of the ripples", low=0.0, slider=(0.5, 20.0)),
        Param("start", 2.7, "the start's first coordinate"),
    )
    playground: ClassVar[dict[str, Any]] = {}

    def __init__(self, dim: int = 2, a: float = 10.0, start: float = 2.7) -> None:
        self.a = float(a)
        self.dimension = dim
        self.x0 = np.full(dim, float(start))
        if dim >= 2:
            self.x0[1] = -0.8 * start
        self.minima = np.zeros((1, dim))
        self.minimum_value = 0.0
        self.bounds = ((-4.0, 4.0), (-4.0, 4.0)) if dim == 2 else None

    def _value(self, x: Any, xp: Any) -> Any:
        return self.a * x.shape[0] + (x * x - self.a * xp.cos(2 * math.pi * x)).sum()

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``2 x + 2 pi A sin(2 pi x)``."""
        return 2 * x + 2 * math.pi * self.a * np.sin(2 * math.pi * x)
