"""Test problems with exact gradients and Hessians: quadratics, Rosenbrock, least squares and
multinomial logistic regression (the last two also as finite sums for minibatch runs).

:class:`Quadratic` and :class:`Rosenbrock` are also the lab's ravine and Rosenbrock valley
(:mod:`descend.lab.problems` adds a start, a plotting window and a title to each): one
definition of each function for both layers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def log_spaced_spectrum(
    dimension: int, condition_number: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues log-spaced from 1 to ``condition_number``, and a random orthonormal basis.

    The spectrum of the lecture's ill-conditioned ravine in any dimension.
    """
    if dimension < 1:
        raise ValueError(f"dimension={dimension!r} is invalid: expected >= 1")
    if not condition_number >= 1:
        raise ValueError(f"condition_number={condition_number!r} is invalid: expected >= 1")
    basis, _ = np.linalg.qr(rng.standard_normal((dimension, dimension)))
    return np.geomspace(1.0, condition_number, dimension), basis


@dataclass(frozen=True, eq=False)
class Quadratic:
    """``f(x) = 1/2 x^T A x - b^T x`` with symmetric positive definite ``A``; minimizer ``A^-1 b``.

    The one quadratic of the project: the second-order methods minimize it, and the lab's
    ill-conditioned ravine is one. It is evaluated in its eigenbasis, ``A = Q diag(lambda) Q^T``,
    as ``1/2 (x - x*)^T A (x - x*) + f*`` (the same function, without the cancellation of the
    expanded form near the minimum). The condition number ``kappa = L / mu`` (largest over
    smallest eigenvalue) sets how badly gradient descent zig-zags; Newton's method reaches the
    minimizer in one step from anywhere.

    Build it from ``A`` and ``b`` (the eigenbasis is computed) or from a spectrum with
    :meth:`from_spectrum` (kept exactly as given).
    """

    A: np.ndarray
    b: np.ndarray
    eigenvalues: np.ndarray = field(default=None, repr=False)
    rotation: np.ndarray = field(default=None, repr=False)

    def __post_init__(self) -> None:
        matrix = np.asarray(self.A, dtype=np.float64)
        linear = np.asarray(self.b, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape != (linear.size, linear.size) or linear.ndim != 1:
            raise ValueError(
                f"A has shape {matrix.shape} and b {linear.shape}; expected (n, n) and (n,)"
            )
        if self.eigenvalues is None:
            eigenvalues, rotation = np.linalg.eigh(0.5 * (matrix + matrix.T))
        else:
            eigenvalues = np.asarray(self.eigenvalues, dtype=np.float64)
            rotation = np.asarray(self.rotation, dtype=np.float64)
        if not eigenvalues.min() > 0:
            raise ValueError(
                f"A has eigenvalue {eigenvalues.min():.3g}; expected a positive definite matrix"
            )
        optimum = rotation @ ((rotation.T @ linear) / eigenvalues)
        for name, value in (
            ("A", matrix),
            ("b", linear),
            ("eigenvalues", eigenvalues),
            ("rotation", rotation),
            ("solution", optimum),
            ("minimum_value", float(-0.5 * linear @ optimum)),
        ):
            object.__setattr__(self, name, value)

    #: The minimizer ``A^-1 b`` (set on construction).
    solution: np.ndarray = field(init=False, default=None, repr=False)
    #: ``f* = -1/2 b^T A^-1 b`` (set on construction).
    minimum_value: float = field(init=False, default=0.0, repr=False)

    @classmethod
    def from_spectrum(
        cls, eigenvalues: np.ndarray, rotation: np.ndarray, optimum: np.ndarray | None = None
    ) -> Quadratic:
        """``A = Q diag(eigenvalues) Q^T`` for the orthonormal ``rotation`` Q, minimizer
        ``optimum`` (the origin by default)."""
        eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
        rotation = np.asarray(rotation, dtype=np.float64)
        matrix = (rotation * eigenvalues) @ rotation.T
        optimum = np.zeros(len(eigenvalues)) if optimum is None else np.asarray(optimum, float)
        return cls(0.5 * (matrix + matrix.T), matrix @ optimum, eigenvalues, rotation)

    @classmethod
    def ill_conditioned(
        cls, dimension: int = 20, condition_number: float = 1e4, seed: int = 0
    ) -> Quadratic:
        """Eigenvalues log-spaced from 1 to ``condition_number`` in a random basis; random ``b``."""
        rng = np.random.default_rng(seed)
        eigenvalues, basis = log_spaced_spectrum(dimension, condition_number, rng)
        matrix = (basis * eigenvalues) @ basis.T
        return cls(0.5 * (matrix + matrix.T), rng.standard_normal(dimension), eigenvalues, basis)

    @classmethod
    def ravine(
        cls, condition_number: float = 100.0, dimension: int = 2, seed: int = 0, rotate: bool = True
    ) -> Quadratic:
        """The lecture's ravine: eigenvalues log-spaced from 1 to ``condition_number``, a random
        rotation (unless ``rotate=False``), the minimum ``f = 0`` at the origin."""
        eigenvalues, rotation = log_spaced_spectrum(
            dimension, condition_number, np.random.default_rng(seed)
        )
        return cls.from_spectrum(eigenvalues, rotation if rotate else np.eye(dimension))

    @property
    def dimension(self) -> int:
        """Length of ``x``."""
        return len(self.b)

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

    def errors(self, x: np.ndarray) -> np.ndarray:
        """The error ``x - x*`` in the eigenbasis, ``Q^T (x - x*)`` (rows of ``x`` too)."""
        return (np.asarray(x, dtype=np.float64) - self.solution) @ self.rotation

    def loss(self, x: np.ndarray) -> float:
        """f(x)."""
        d = self.errors(x)
        return 0.5 * float(d @ (self.eigenvalues * d)) + self.minimum_value

    def values(self, points: np.ndarray) -> np.ndarray:
        """f at each row of ``points``."""
        d = self.errors(points)
        return 0.5 * np.sum(self.eigenvalues * d * d, axis=-1) + self.minimum_value

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The gradient ``A x - b = A (x - x*)``."""
        return self.rotation @ (self.eigenvalues * self.errors(x))

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(f(x), A x - b)``."""
        d = self.errors(x)
        scaled = self.eigenvalues * d
        return 0.5 * float(d @ scaled) + self.minimum_value, self.rotation @ scaled

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """``A``."""
        return self.A.copy()

    def start(self) -> np.ndarray:
        """A starting point with unit error along every eigendirection
        (``f - f* = sum(eigenvalues) / 2``)."""
        return self.solution + self.rotation @ np.ones_like(self.eigenvalues)


@dataclass(frozen=True)
class Rosenbrock:
    """The (chained) Rosenbrock function ``sum_i b (x_{i+1} - x_i^2)^2 + (a - x_i)^2``.

    A curved, flat-bottomed valley, easy to find and hard to follow; the Hessian is indefinite
    away from it. The minimum is ``f = 0`` at ``(a, a^2)`` in 2-D and at all ones in more
    dimensions (where ``a`` must be 1). ``value`` also evaluates torch tensors, for autograd.
    """

    dimension: int = 2
    a: float = 1.0
    b: float = 100.0

    def __post_init__(self) -> None:
        if not (isinstance(self.dimension, int) and self.dimension >= 2):
            raise ValueError(f"dimension={self.dimension!r} is invalid: expected an integer >= 2")
        if self.dimension > 2 and self.a != 1:
            raise ValueError(
                f"a={self.a!r} is invalid in {self.dimension} dimensions: expected "
                "1 (other values have a closed-form minimizer in 2-D only)"
            )
        if not self.b > 0:
            raise ValueError(f"b={self.b!r} is invalid: expected b > 0")

    @property
    def solution(self) -> np.ndarray:
        """The minimizer: ``(a, a^2)`` in 2-D, all ones otherwise."""
        if self.dimension == 2:
            return np.array([self.a, self.a**2])
        return np.ones(self.dimension)

    def start(self) -> np.ndarray:
        """The classic start ``(-1.2, 1, -1.2, 1, ...)``."""
        x = np.ones(self.dimension)
        x[::2] = -1.2
        return x

    def value(self, x):
        """f(x) for a NumPy array or a torch tensor."""
        head, tail = x[:-1], x[1:]
        return (self.b * (tail - head**2) ** 2 + (self.a - head) ** 2).sum()

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The analytic gradient."""
        head, tail = x[:-1], x[1:]
        valley = tail - head**2
        grad = np.zeros_like(x, dtype=np.float64)
        grad[:-1] = -4.0 * self.b * head * valley - 2.0 * (self.a - head)
        grad[1:] += 2.0 * self.b * valley
        return grad

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient."""
        x = np.asarray(x, dtype=np.float64)
        return float(self.value(x)), self.grad(x)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The tridiagonal Hessian."""
        head, tail = x[:-1], x[1:]
        diagonal = np.zeros_like(x, dtype=np.float64)
        diagonal[:-1] = 12.0 * self.b * head**2 - 4.0 * self.b * tail + 2.0
        diagonal[1:] += 2.0 * self.b
        off = -4.0 * self.b * head
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
    def random(
        cls,
        samples: int = 500,
        features: int = 20,
        noise: float = 0.1,
        condition_number: float = 100.0,
        l2: float = 0.0,
        seed: int = 0,
    ) -> LeastSquares:
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
    def from_data(
        cls, features: np.ndarray, labels: np.ndarray, l2: float = 1e-3, classes: int | None = None
    ) -> LogisticRegression:
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
            raise ImportError(
                "LogisticRegression.digits needs scikit-learn: pip install scikit-learn"
            ) from error
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
