"""Saddle points: :class:`Saddle` in the plane and :class:`HighDimSaddle` in many dimensions."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from descend.lab.problems.base import Param, Problem


class Saddle(Problem):
    """``f(x, y) = x^2 - y^2``: the gradient vanishes at the origin, which is no minimum.

    The start ``(1, y0)`` sits almost on the ridge: the gradient along y is tiny (``2 y0``), so
    plain gradient descent first slides to the saddle and only slowly falls off it. The function
    has no minimum; a run has escaped once its loss is at most ``escape_loss = -1``.
    """

    name = "saddle"
    title = "saddle x^2 - y^2"
    log_levels = False
    params = (
        Param("y0", 1e-3, "how far off the ridge the run starts", log=True, slider=(1e-6, 0.5)),
    )
    playground: ClassVar[dict[str, Any]] = {}

    def __init__(self, y0: float = 1e-3) -> None:
        self.dimension = 2
        self.x0 = np.array([1.0, float(y0)])
        self.minima = np.zeros((0, 2))
        self.minimum_value = None
        self.bounds = ((-1.5, 1.5), (-1.5, 1.5))
        self.escape_loss = -1.0

    def _value(self, x: Any, xp: Any) -> Any:
        return x[0] ** 2 - x[1] ** 2

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``(2x, -2y)``."""
        return np.array([2 * x[0], -2 * x[1]])

    def distance(self, x: np.ndarray) -> float:
        """Distance from the saddle point (there is no minimum)."""
        return float(np.linalg.norm(x))


class HighDimSaddle(Problem):
    """A saddle in ``dim`` dimensions: many curving up, a few (``negative``) curving down.

    ``f(z) = 1/2 sum_i lambda_i z_i^2 + 1/4 sum_{i negative} z_i^4`` with ``z = Q^T x`` for a
    random rotation Q. Positive eigenvalues are log-spaced in [1, 10], negative ones in
    [-0.5, -0.05]; the quartic term gives each negative direction two minima at
    ``z_i = +-sqrt(-lambda_i)``, so the problem has minima to escape to. The start sits close to
    the saddle (``1e-3`` along the positive directions, ``y0`` along the negative ones), where the
    gradient is tiny. Escaped means the loss is at or below half the depth of the shallowest
    well, ``-min(lambda^2) / 8``.
    """

    name = "saddle_nd"
    title = "high-dimensional saddle"
    log_levels = False
    params = (
        Param("dim", 100, "dimension", low=2, kind=int),
        Param("negative", 5, "directions curving down (fewer than dim)", low=1, kind=int),
        Param("y0", 1e-6, "the start's offset along the directions curving down", log=True),
        Param("seed", 0, "seed of the rotation and the start's signs", low=0, kind=int),
    )

    def __init__(self, dim: int = 100, negative: int = 5, y0: float = 1e-6, seed: int = 0) -> None:
        if negative >= dim:
            raise ValueError(f"negative={negative!r} is invalid: expected 1 <= negative < dim")
        rng = np.random.default_rng(seed)
        positive = dim - negative
        self.eigenvalues = np.concatenate(
            [np.geomspace(1.0, 10.0, positive), -np.geomspace(0.5, 0.05, negative)]
        )
        self.is_negative = self.eigenvalues < 0
        self.rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        self.dimension = dim
        signs = rng.choice([-1.0, 1.0], size=dim)
        z0 = np.where(self.is_negative, y0, 1e-3) * signs
        self.x0 = self.rotation @ z0
        wells = np.sqrt(-self.eigenvalues[self.is_negative])
        self.minimum_value = float(-np.sum(self.eigenvalues[self.is_negative] ** 2) / 4)
        z_min = np.zeros(dim)
        z_min[self.is_negative] = wells
        self.minima = (self.rotation @ z_min)[None, :]  # one of the 2^negative minimizers
        self.escape_loss = float(-np.min(self.eigenvalues[self.is_negative] ** 2) / 8)

    def _value(self, x: Any, xp: Any) -> Any:
        rotation = self.rotation if xp is np else xp.as_tensor(self.rotation, dtype=x.dtype)
        eig = self.eigenvalues if xp is np else xp.as_tensor(self.eigenvalues, dtype=x.dtype)
        negative = (
            self.is_negative.astype(float)
            if xp is np
            else xp.as_tensor(self.is_negative, dtype=x.dtype)
        )
        z = rotation.T @ x
        return 0.5 * (eig * z * z).sum() + 0.25 * (negative * z**4).sum()

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``Q (lambda z + [negative] z^3)``."""
        z = self.rotation.T @ x
        return self.rotation @ (self.eigenvalues * z + self.is_negative * z**3)

    def distance(self, x: np.ndarray) -> float:
        """Distance to the nearest of the 2^negative minimizers."""
        z = self.rotation.T @ np.asarray(x)
        wells = np.sqrt(np.maximum(-self.eigenvalues, 0.0))
        return float(np.linalg.norm(np.where(self.is_negative, np.abs(z) - wells, z)))

    def describe(self) -> str:
        """Dimension and number of descending directions."""
        return (
            f"saddle in {self.dimension} dimensions, {int(self.is_negative.sum())} "
            "directions curving down"
        )
