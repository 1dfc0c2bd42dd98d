"""Ill-conditioning: :class:`Ravine`, the quadratic whose curvatures differ by kappa."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from descend.lab.problems.base import Param, Problem
from descend.secondorder.problems import Quadratic

#: How the eigenvalues of an n-dimensional ravine are spread between 1 and kappa.
SPREADS = ("geometric", "linear", "extremes")


class Ravine(Problem):
    """An ill-conditioned quadratic: slow progress along the shallow direction, jitter across.

    ``kappa`` is the condition number (eigenvalues between 1 and kappa), ``dim`` the dimension.
    In 2-D, ``angle`` (degrees) rotates the valley; in more dimensions ``seed`` draws a random
    rotation (``rotate=False`` keeps the axes) and ``spread`` places the eigenvalues:
    ``geometric`` (log-spaced), ``linear`` or ``extremes`` (half at 1, half at kappa).
    The start has unit weight on every eigendirection, scaled by ``scale``, unless the 2-D
    picture's start (far along the shallow direction) is asked with ``picture=True``.
    """

    name = "ravine"
    title = "ravine (ill-conditioned quadratic)"
    log_levels = True
    params = (
        Param(
            "kappa",
            20.0,
            "condition number: largest over smallest curvature",
            low=1.0,
            log=True,
            slider=(1.0, 1000.0),
        ),
        Param("dim", 2, "dimension", low=1, kind=int),
        Param("angle", 0.0, "rotation of the 2-D valley, in degrees"),
        Param("seed", 0, "seed of the random rotation in more than 2 dimensions", low=0, kind=int),
        Param("rotate", True, "rotate the axes at random (more than 2 dimensions)", kind=bool),
        Param(
            "spread", "geometric", "how the eigenvalues lie between 1 and kappa", choices=SPREADS
        ),
        Param("scale", 1.0, "the start's distance from the minimum, per eigendirection"),
        Param("picture", False, "start far along the shallow direction (2-D)", kind=bool),
    )
    playground = {"picture": True}

    def __init__(
        self,
        kappa: float = 20.0,
        dim: int = 2,
        angle: float = 0.0,
        seed: int = 0,
        rotate: bool = True,
        spread: str = "geometric",
        scale: float = 1.0,
        picture: bool = False,
    ) -> None:
        if spread == "geometric":
            eigenvalues = np.geomspace(1.0, kappa, dim)
        elif spread == "linear":
            eigenvalues = np.linspace(1.0, kappa, dim)
        else:
            eigenvalues = np.where(np.arange(dim) < dim // 2, 1.0, float(kappa))
            eigenvalues[-1] = kappa
        if dim == 2:
            theta = math.radians(angle)
            rotation = np.array(
                [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]
            )
        elif rotate:
            rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
        else:
            rotation = np.eye(dim)
        self.quadratic = Quadratic.from_spectrum(eigenvalues, rotation)
        self.kappa = float(kappa)
        self.dimension = dim
        if picture and dim == 2:
            self.x0 = rotation @ np.array([-9.0, 1.5]) * scale
            self.bounds = ((-10.0, 3.0), (-2.5, 2.5))
        else:
            self.x0 = self.quadratic.start() * scale
            self.bounds = ((-1.5 * scale, 1.5 * scale),) * 2 if dim == 2 else None
        self.minima = np.zeros((1, dim))
        self.minimum_value = 0.0

    def _value(self, x: Any, xp: Any) -> Any:
        if xp is np:
            return self.quadratic.loss(x)
        matrix = xp.as_tensor(self.quadratic.A, dtype=x.dtype)
        return 0.5 * x @ (matrix @ x)  # the minimum is at the origin: b = 0

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``A x``."""
        return self.quadratic.grad(x)

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(f(x), A x)`` from one change of basis."""
        return self.quadratic.value_and_grad(x)

    @property
    def eigenvalues(self) -> np.ndarray:
        """The Hessian's eigenvalues (for the theory)."""
        return self.quadratic.eigenvalues

    def describe(self) -> str:
        """Condition number and dimension."""
        return f"ravine, kappa = {self.kappa:g}, dimension {self.dimension}"
