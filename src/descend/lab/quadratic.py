"""Quadratic problems: the ill-conditioned ravine of the lecture, in any dimension."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from descend.secondorder.problems import log_spaced_spectrum


@dataclass(frozen=True)
class Quadratic:
    """``f(x) = 1/2 (x - x*)^T A (x - x*)`` with ``A = Q diag(eigenvalues) Q^T``.

    The condition number ``kappa = max eigenvalue / min eigenvalue`` sets how badly plain
    gradient descent zig-zags: progress along the shallow direction is slow while the steep one
    jitters.
    """

    eigenvalues: np.ndarray
    rotation: np.ndarray
    optimum: np.ndarray

    @classmethod
    def ravine(cls, condition_number: float = 100.0, dimension: int = 2, seed: int = 0,
               rotate: bool = True) -> Quadratic:
        """Eigenvalues log-spaced from 1 to ``condition_number``; a random rotation if asked."""
        eigenvalues, rotation = log_spaced_spectrum(dimension, condition_number,
                                                    np.random.default_rng(seed))
        if not rotate:
            rotation = np.eye(dimension)
        return cls(eigenvalues, rotation, np.zeros(dimension))

    @property
    def matrix(self) -> np.ndarray:
        """The Hessian A."""
        return (self.rotation * self.eigenvalues) @ self.rotation.T

    @property
    def smoothness(self) -> float:
        """L, the largest eigenvalue."""
        return float(self.eigenvalues.max())

    @property
    def strong_convexity(self) -> float:
        """mu, the smallest eigenvalue."""
        return float(self.eigenvalues.min())

    @property
    def condition_number(self) -> float:
        """kappa = L / mu."""
        return self.smoothness / self.strong_convexity

    def loss(self, x: np.ndarray) -> float:
        """f(x)."""
        d = self.rotation.T @ (np.asarray(x) - self.optimum)
        return 0.5 * float(np.sum(self.eigenvalues * d * d))

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The gradient A (x - x*)."""
        d = self.rotation.T @ (np.asarray(x) - self.optimum)
        return self.rotation @ (self.eigenvalues * d)

    def start(self) -> np.ndarray:
        """A starting point with unit weight on every eigendirection (loss = sum(eig) / 2)."""
        return self.optimum + self.rotation @ np.ones_like(self.eigenvalues)
