"""Test problems with exact gradients and Hessians: quadratics, Rosenbrock, least squares and
multinomial logistic regression (the last two also as finite sums for minibatch runs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def log_spaced_spectrum(dimension: int, condition_number: float,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues log-spaced from 1 to ``condition_number``, and a random orthonormal basis.

    The spectrum of the lecture's ill-conditioned ravine in any dimension.
    """
    if dimension < 1:
        raise ValueError(f"dimension={dimension!r} is invalid: expected >= 1")
    if not condition_number >= 1:
        raise ValueError(f"condition_number={condition_number!r} is invalid: expected >= 1")
    basis, _ = np.linalg.qr(rng.standard_normal((dimension, dimension)))
    return np.geomspace(1.0, condition_number, dimension), basis


@dataclass(frozen=True)
class Quadratic:
    """``f(x) = 1/2 x^T A x - b^T x`` with symmetric positive definite ``A``; minimizer ``A^-1 b``.

    Newton's method reaches the minimizer in one step from anywhere; gradient descent needs a
    number of steps that grows with the condition number of ``A``.
    """

    A: np.ndarray
    b: np.ndarray

    @classmethod
    def ill_conditioned(cls, dimension: int = 20, condition_number: float = 1e4,
                        seed: int = 0) -> Quadratic:
        """Eigenvalues log-spaced from 1 to ``condition_number`` in a random basis; random ``b``."""
        rng = np.random.default_rng(seed)
        eigenvalues, basis = log_spaced_spectrum(dimension, condition_number, rng)
        matrix = (basis * eigenvalues) @ basis.T
        return cls(0.5 * (matrix + matrix.T), rng.standard_normal(dimension))

    @property
    def solution(self) -> np.ndarray:
        """The minimizer ``A^-1 b``."""
        return np.linalg.solve(self.A, self.b)

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(1/2 x^T A x - b^T x, A x - b)``."""
        ax = self.A @ x
        return float(0.5 * x @ ax - self.b @ x), ax - self.b

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """``A``."""
        return self.A.copy()


@dataclass(frozen=True)
class Rosenbrock:
    """The chained Rosenbrock function ``sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2``.

    Minimizer: all ones, loss 0. Its curved valley makes the Hessian indefinite away from it.
    """

    dimension: int = 2

    def __post_init__(self) -> None:
        if self.dimension < 2:
            raise ValueError(f"dimension={self.dimension!r} is invalid: expected >= 2")

    @property
    def solution(self) -> np.ndarray:
        """The minimizer, all ones."""
        return np.ones(self.dimension)

    def start(self) -> np.ndarray:
        """The classic start ``(-1.2, 1, -1.2, 1, ...)``."""
        x = np.ones(self.dimension)
        x[::2] = -1.2
        return x

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient."""
        head, tail = x[:-1], x[1:]
        valley = tail - head**2
        loss = float(np.sum(100.0 * valley**2 + (1.0 - head) ** 2))
        grad = np.zeros_like(x)
        grad[:-1] = -400.0 * head * valley - 2.0 * (1.0 - head)
        grad[1:] += 200.0 * valley
        return loss, grad

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The tridiagonal Hessian."""
        head, tail = x[:-1], x[1:]
        diagonal = np.zeros_like(x)
        diagonal[:-1] = 1200.0 * head**2 - 400.0 * tail + 2.0
        diagonal[1:] += 200.0
        off = -400.0 * head
        return np.diag(diagonal) + np.diag(off, 1) + np.diag(off, -1)


@dataclass(frozen=True)
class LeastSquares:
    """``f(w) = 1/(2 n) ||X w - y||^2 + l2/2 ||w||^2``, a finite sum over the ``n`` rows.

    :meth:`batch` gives the same loss on a subset of rows, for minibatch runs.
    """

    X: np.ndarray
    y: np.ndarray
    l2: float = 0.0

    @classmethod
    def random(cls, samples: int = 500, features: int = 20, noise: float = 0.1,
               condition_number: float = 100.0, l2: float = 0.0, seed: int = 0) -> LeastSquares:
        """Gaussian rows with feature scales spread over ``sqrt(condition_number)``."""
        rng = np.random.default_rng(seed)
        scales = np.geomspace(1.0, np.sqrt(condition_number), features)
        X = rng.standard_normal((samples, features)) * scales
        w = rng.standard_normal(features) / scales
        return cls(X, X @ w + noise * rng.standard_normal(samples), l2)

    @property
    def n_samples(self) -> int:
        """Rows in the data."""
        return len(self.y)

    @property
    def dimension(self) -> int:
        """Length of the weight vector."""
        return self.X.shape[1]

    @property
    def solution(self) -> np.ndarray:
        """The minimizer from the normal equations."""
        n = self.n_samples
        gram = self.X.T @ self.X / n + self.l2 * np.eye(self.dimension)
        return np.linalg.solve(gram, self.X.T @ self.y / n)

    def batch(self, indices: np.ndarray) -> LeastSquares:
        """The same loss over the rows ``indices``."""
        return LeastSquares(self.X[indices], self.y[indices], self.l2)

    def value_and_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient."""
        residual = self.X @ w - self.y
        n = self.n_samples
        loss = 0.5 * residual @ residual / n + 0.5 * self.l2 * w @ w
        return float(loss), self.X.T @ residual / n + self.l2 * w

    def hessian(self, w: np.ndarray) -> np.ndarray:
        """``X^T X / n + l2 I``."""
        return self.X.T @ self.X / self.n_samples + self.l2 * np.eye(self.dimension)


@dataclass(frozen=True)
class LogisticRegression:
    """Multinomial logistic regression with an L2 penalty, a finite sum over the samples.

    The weights ``w`` are a flat vector holding a ``(features + 1) x classes`` matrix ``W``
    (the last row is the bias)::

        f(w) = -1/n sum_i log softmax(x_i^T W)_{y_i} + l2/2 ||w||^2

    With ``l2 > 0`` the loss is strongly convex and has one minimizer.
    """

    X: np.ndarray
    y: np.ndarray
    classes: int
    l2: float = 1e-3

    @classmethod
    def from_data(cls, features: np.ndarray, labels: np.ndarray, l2: float = 1e-3,
                  classes: int | None = None) -> LogisticRegression:
        """Append the bias column of ones to ``features``; labels are ``0 .. classes - 1``."""
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels).astype(np.int64)
        if not l2 >= 0:
            raise ValueError(f"l2={l2!r} is invalid: expected l2 >= 0")
        count = int(labels.max()) + 1 if classes is None else classes
        X = np.hstack([features, np.ones((len(features), 1))])
        return cls(X, labels, count, float(l2))

    @classmethod
    def digits(cls, l2: float = 1e-3) -> LogisticRegression:
        """The 8x8 handwritten digits bundled with scikit-learn (1797 samples, 10 classes),
        pixels scaled to [0, 1]; 650 weights. Needs scikit-learn installed."""
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("LogisticRegression.digits needs scikit-learn: "
                              "pip install scikit-learn") from error
        data = load_digits()
        return cls.from_data(data.data / 16.0, data.target, l2=l2, classes=10)

    @property
    def n_samples(self) -> int:
        """Samples in the data."""
        return len(self.y)

    @property
    def dimension(self) -> int:
        """Length of the flat weight vector."""
        return self.X.shape[1] * self.classes

    def batch(self, indices: np.ndarray) -> LogisticRegression:
        """The same loss over the samples ``indices``."""
        return LogisticRegression(self.X[indices], self.y[indices], self.classes, self.l2)

    def _probabilities(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = self.X @ w.reshape(self.X.shape[1], self.classes)
        logits = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1, keepdims=True))
        log_p = logits - log_norm
        return log_p, np.exp(log_p)

    def value_and_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient ``X^T (P - Y) / n + l2 w``."""
        log_p, p = self._probabilities(w)
        n = self.n_samples
        loss = -log_p[np.arange(n), self.y].mean() + 0.5 * self.l2 * w @ w
        p[np.arange(n), self.y] -= 1.0
        grad = (self.X.T @ p).reshape(-1) / n + self.l2 * w
        return float(loss), grad

    def hessian(self, w: np.ndarray) -> np.ndarray:
        """``1/n sum_i (diag(p_i) - p_i p_i^T) (x) x_i x_i^T + l2 I`` in the flat layout."""
        _, p = self._probabilities(w)
        n, features = self.X.shape
        k = self.classes
        # Flat index (a, c) = a * k + c for feature a and class c.
        matrix = np.zeros((features, k, features, k))
        for c in range(k):
            matrix[:, c, :, c] = (self.X.T * p[:, c]) @ self.X / n
        outer = (self.X[:, :, None] * p[:, None, :]).reshape(n, features * k)
        hessian = matrix.reshape(features * k, features * k) - outer.T @ outer / n
        return hessian + self.l2 * np.eye(features * k)

    def accuracy(self, w: np.ndarray) -> float:
        """Fraction of samples whose most probable class is the label."""
        logits = self.X @ w.reshape(self.X.shape[1], self.classes)
        return float(np.mean(logits.argmax(axis=1) == self.y))
