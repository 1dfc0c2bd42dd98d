"""Noisy gradients: data fits whose minibatch gradients carry noise, :class:`NoisyLeastSquares`
and :class:`NoisyLogistic`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from descend.lab.problems.base import Param, Problem
from descend.secondorder.problems import Quadratic

#: Most values (examples x dimension) a minibatch problem's data may hold: 256 MiB of float64.
MAX_DATA = 2**25


class _Minibatch(Problem):
    """Shared parts of the data-fitting problems: data, minibatches, the full-data optimum."""

    stochastic = True
    log_levels = True
    #: The tolerance as a fraction of ``f*``: minibatch noise keeps a run's ``f - f*`` near a
    #: floor (about 1e-3 to 1e-2 at the defaults), far above 1e-6, so it is measured against
    #: the loss the data itself leaves.
    relative_tolerance: ClassVar[float] = 0.1

    @property
    def tolerance(self) -> float:
        """The ``f - f*`` a run counts as having reached: 10% of ``f*`` (at least 1e-6)."""
        return max(self.relative_tolerance * (self.minimum_value or 0.0), 1e-6)

    def _make_data(self, n: int, dim: int, batch_size: int, seed: int) -> np.random.Generator:
        if batch_size > n:
            raise ValueError(
                f"batch_size={batch_size!r} is invalid: expected an integer in [1, n={n}]"
            )
        if n * dim > MAX_DATA:
            # Checked here, not as a failed allocation of n x dim floats (a traceback).
            raise ValueError(
                f"n={n!r} with dim={dim!r} is too large: the data would hold "
                f"n x dim = {n * dim} values; expected n x dim <= {MAX_DATA}"
            )
        rng = np.random.default_rng(seed)
        # Correlated features make the problem mildly ill-conditioned, as real data is.
        mixing = np.eye(dim) + 0.6 * np.tril(np.ones((dim, dim)), -1)
        self.features = rng.standard_normal((n, dim)) @ mixing.T
        self.n, self.dimension, self.batch_size = n, dim, batch_size
        return rng

    def _batch_grad(self, x: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        raise NotImplementedError

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The full-data gradient."""
        return self._batch_grad(np.asarray(x, dtype=float), slice(None))

    def stochastic_grad(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The gradient on ``batch_size`` rows drawn without replacement."""
        if self.batch_size >= self.n:
            return self.grad(x)
        rows = rng.choice(self.n, size=self.batch_size, replace=False)
        return self._batch_grad(np.asarray(x, dtype=float), rows)

    def gradient_noise(self, x: np.ndarray, batch_size: int | None = None) -> float:
        """Predicted ``E ||g_batch - g||^2`` at ``x`` for sampling without replacement:

        ``(n - B) / (B (n - 1)) * mean_i ||g_i - g||^2`` over the per-example gradients ``g_i``.
        """
        batch = self.batch_size if batch_size is None else batch_size
        per_example = np.stack(
            [self._batch_grad(np.asarray(x, dtype=float), np.array([i])) for i in range(self.n)]
        )
        spread = float(np.mean(np.sum((per_example - per_example.mean(0)) ** 2, axis=1)))
        return (self.n - batch) / (batch * (self.n - 1)) * spread


class NoisyLeastSquares(_Minibatch):
    """Linear regression, ``f(w) = 1/(2n) ||X w - y||^2``, fit by minibatches of ``batch_size``.

    The smaller the batch, the noisier the gradient: its variance scales like ``1 / batch_size``.
    """

    name = "least_squares"
    title = "noisy least squares"
    params = (
        Param("n", 256, "examples in the data", low=2, kind=int),
        Param("dim", 2, "dimension", low=1, kind=int),
        Param(
            "batch_size",
            4,
            "examples per minibatch gradient (256: the full data)",
            low=1,
            kind=int,
            log=True,
            slider=(1, 256),
        ),
        Param("noise", 0.5, "noise in the targets", low=0.0, slider=(0.0, 2.0)),
        Param("seed", 0, "seed of the data", low=0, kind=int),
    )
    playground: ClassVar[dict[str, Any]] = {}

    def __init__(
        self, n: int = 256, dim: int = 2, batch_size: int = 4, noise: float = 0.5, seed: int = 0
    ) -> None:
        rng = self._make_data(n, dim, batch_size, seed)
        truth = np.linspace(1.0, -1.0, dim) if dim > 1 else np.ones(1)
        self.targets = self.features @ truth + noise * rng.standard_normal(n)
        solution, *_ = np.linalg.lstsq(self.features, self.targets, rcond=None)
        #: The full-data loss is a quadratic, ``1/2 w^T (X^T X / n) w - (X^T y / n)^T w`` plus
        #: a constant: its Hessian gives the theory of the noise-free runs.
        self.quadratic = Quadratic(
            self.features.T @ self.features / n, self.features.T @ self.targets / n
        )
        self.minima = solution[None, :]
        self.minimum_value = self.loss(solution)
        self.x0 = solution + np.linspace(-2.5, 2.0, dim) if dim > 1 else solution - 2.0
        self.bounds = (
            ((solution[0] - 3.2, solution[0] + 1.5), (solution[-1] - 1.5, solution[-1] + 2.7))
            if dim == 2
            else None
        )

    def _value(self, x: Any, xp: Any) -> Any:
        features = self.features if xp is np else xp.as_tensor(self.features, dtype=x.dtype)
        targets = self.targets if xp is np else xp.as_tensor(self.targets, dtype=x.dtype)
        residual = features @ x - targets
        return 0.5 * (residual * residual).mean()

    def _batch_grad(self, x: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        features = self.features[rows]
        return features.T @ (features @ x - self.targets[rows]) / len(features)

    def describe(self) -> str:
        """Data size, dimension, batch size."""
        return (
            f"least squares, {self.n} examples, dimension {self.dimension}, "
            f"batch size {self.batch_size}"
        )


class NoisyLogistic(_Minibatch):
    """L2-regularized logistic regression on labels drawn from a logistic model.

    ``f(w) = mean log(1 + exp(-y_i x_i . w)) + l2 / 2 ||w||^2`` with ``y_i`` in {-1, +1}; the
    regularizer makes the minimum unique. Minibatches of ``batch_size`` give the noise.
    """

    name = "logistic"
    title = "noisy logistic regression"
    params = (
        Param("n", 256, "examples in the data", low=2, kind=int),
        Param("dim", 2, "dimension", low=1, kind=int),
        Param("batch_size", 4, "examples per minibatch gradient", low=1, kind=int, log=True),
        Param("l2", 0.05, "weight of the L2 penalty", low=0.0, log=True),
        Param("seed", 0, "seed of the data", low=0, kind=int),
    )

    def __init__(
        self, n: int = 256, dim: int = 2, batch_size: int = 4, l2: float = 0.05, seed: int = 0
    ) -> None:
        rng = self._make_data(n, dim, batch_size, seed)
        self.l2 = float(l2)
        truth = np.linspace(2.0, -1.0, dim) if dim > 1 else np.full(1, 2.0)
        probability = 1 / (1 + np.exp(-self.features @ truth))
        self.labels = np.where(rng.random(n) < probability, 1.0, -1.0)
        # Newton's method finds the full-data optimum to machine precision in a few steps.
        w = np.zeros(dim)
        for _ in range(50):
            margins = self.labels * (self.features @ w)
            weights = 1 / (1 + np.exp(-margins))
            hessian = (self.features.T * (weights * (1 - weights))) @ self.features / n
            hessian += self.l2 * np.eye(dim)
            step = np.linalg.solve(hessian, self.grad(w))
            w = w - step
            if np.linalg.norm(step) < 1e-14:
                break
        self.minima = w[None, :]
        self.minimum_value = self.loss(w)
        self.x0 = w + np.linspace(-3.0, 3.0, dim) if dim > 1 else w - 3.0
        self.bounds = ((w[0] - 3.5, w[0] + 2.0), (w[-1] - 2.0, w[-1] + 3.5)) if dim == 2 else None

    def _value(self, x: Any, xp: Any) -> Any:
        features = self.features if xp is np else xp.as_tensor(self.features, dtype=x.dtype)
        labels = self.labels if xp is np else xp.as_tensor(self.labels, dtype=x.dtype)
        margins = labels * (features @ x)
        data = np.logaddexp(0.0, -margins) if xp is np else xp.nn.functional.softplus(-margins)
        return data.mean() + 0.5 * self.l2 * (x * x).sum()

    def _batch_grad(self, x: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        features, labels = self.features[rows], self.labels[rows]
        margins = labels * (features @ x)
        # d/dm log(1 + e^-m) = -1 / (1 + e^m), written to avoid overflow for large |m|.
        slope = -np.exp(-np.logaddexp(0.0, margins))
        return features.T @ (slope * labels) / len(features) + self.l2 * x

    def describe(self) -> str:
        """Data size, dimension, batch size."""
        return (
            f"logistic regression, {self.n} examples, dimension {self.dimension}, "
            f"batch size {self.batch_size}"
        )
