"""The lab's test problems: small objects with a loss and a gradient.

Every problem works with every optimizer front end:

- NumPy (the functional API): ``problem.loss(x)``, ``problem.grad(x)``;
- torch (descend's classes or ``torch.optim``'s): ``p = problem.torch_parameter()`` is a float64
  leaf tensor and ``problem.backward(p)`` sets ``p.grad`` from the NumPy gradient::

      p = problem.torch_parameter()
      optimizer = torch.optim.Adam([p], lr=1e-2)
      for _ in range(100):
          optimizer.zero_grad()
          problem.backward(p)
          optimizer.step()

- autograd: ``problem.torch_loss(x)`` is the same loss written in torch operations (the tests
  check the hand-written gradients against it).

Noisy problems (``problem.stochastic``) also give a minibatch gradient,
``problem.stochastic_grad(x, rng)``, whose noise follows from their batch size.

Problems are grouped by which of the lecture's four problems of SGD they show:
ill-conditioning (:class:`Ravine`), saddle points (:class:`Saddle`, :class:`HighDimSaddle`),
local minima (:class:`TiltedDoubleWell`, :class:`Himmelblau`, :class:`Rastrigin`), noisy
gradients (:class:`NoisyLeastSquares`, :class:`NoisyLogistic`); plus the classics
(:class:`RosenbrockValley`, :class:`Beale`, :class:`Booth`). Build one from a spec with
:func:`make_problem` (``"ravine:kappa=100,dim=10"``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from descend.secondorder.problems import Quadratic, Rosenbrock
from descend.specs import parse_spec
from descend.suggest import unknown_name

Bounds = tuple[tuple[float, float], tuple[float, float]]


class Problem:
    """Base class: subclasses define ``_value(x, xp)`` (xp is numpy or torch) and ``grad``.

    Attributes every problem sets: ``dimension``, ``x0`` (the starting point), ``minima`` (an
    array of global minimizers, one per row; empty when there is none), ``minimum_value``
    (``f*``, or None), ``bounds`` (the plotting window of 2-D problems) and ``escape_loss``
    (saddles only: a run has escaped once its loss is at or below this).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False

    dimension: int
    x0: np.ndarray
    minima: np.ndarray
    minimum_value: float | None
    bounds: Bounds | None = None
    escape_loss: float | None = None
    #: Loss values of the contour levels are spread on a log scale unless this is False.
    log_levels: ClassVar[bool] = True

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
        value = self.start() if x is None else np.array(x, dtype=float)
        return torch.tensor(value, dtype=torch.float64, requires_grad=True)

    def backward(self, param: torch.Tensor, rng: np.random.Generator | None = None) -> float:
        """Set ``param.grad`` to the (minibatch, if ``rng`` is given) gradient; return the loss.

        The gradient comes from NumPy, so every torch optimizer runs on the same numbers as the
        functional API.
        """
        x = param.detach().cpu().numpy()
        g = self.stochastic_grad(x, rng) if (rng is not None and self.stochastic) else self.grad(x)
        param.grad = torch.as_tensor(g, dtype=param.dtype, device=param.device).reshape(
            param.shape)
        return self.loss(x)

    def describe(self) -> str:
        """One line naming the problem and its settings."""
        return self.title


# -- ill-conditioning ------------------------------------------------------------------------

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

    def __init__(self, kappa: float = 20.0, dim: int = 2, angle: float = 0.0, seed: int = 0,
                 rotate: bool = True, spread: str = "geometric", scale: float = 1.0,
                 picture: bool = False) -> None:
        if not (isinstance(kappa, int | float) and kappa >= 1):
            raise ValueError(f"kappa={kappa!r} is invalid: expected a number >= 1")
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"dim={dim!r} is invalid: expected an integer >= 1")
        if spread not in SPREADS:
            raise ValueError(f"spread={spread!r} is invalid: expected one of "
                             f"{', '.join(SPREADS)}")
        if spread == "geometric":
            eigenvalues = np.geomspace(1.0, kappa, dim)
        elif spread == "linear":
            eigenvalues = np.linspace(1.0, kappa, dim)
        else:
            eigenvalues = np.where(np.arange(dim) < dim // 2, 1.0, float(kappa))
            eigenvalues[-1] = kappa
        if dim == 2:
            theta = math.radians(angle)
            rotation = np.array([[math.cos(theta), -math.sin(theta)],
                                 [math.sin(theta), math.cos(theta)]])
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
        matrix = torch.as_tensor(self.quadratic.A, dtype=x.dtype)
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


# -- saddle points ---------------------------------------------------------------------------


class Saddle(Problem):
    """``f(x, y) = x^2 - y^2``: the gradient vanishes at the origin, which is no minimum.

    The start ``(1, y0)`` sits almost on the ridge: the gradient along y is tiny (``2 y0``), so
    plain gradient descent first slides to the saddle and only slowly falls off it. The function
    has no minimum; a run has escaped once its loss is at most ``escape_loss = -1``.
    """

    name = "saddle"
    title = "saddle x^2 - y^2"
    log_levels = False

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

    def __init__(self, dim: int = 100, negative: int = 5, y0: float = 1e-6, seed: int = 0) -> None:
        if not (isinstance(dim, int) and dim >= 2):
            raise ValueError(f"dim={dim!r} is invalid: expected an integer >= 2")
        if not (isinstance(negative, int) and 1 <= negative < dim):
            raise ValueError(f"negative={negative!r} is invalid: expected 1 <= negative < dim")
        rng = np.random.default_rng(seed)
        positive = dim - negative
        self.eigenvalues = np.concatenate([np.geomspace(1.0, 10.0, positive),
                                           -np.geomspace(0.5, 0.05, negative)])
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
        rotation = self.rotation if xp is np else torch.as_tensor(self.rotation, dtype=x.dtype)
        eig = self.eigenvalues if xp is np else torch.as_tensor(self.eigenvalues, dtype=x.dtype)
        negative = (self.is_negative.astype(float) if xp is np
                    else torch.as_tensor(self.is_negative, dtype=x.dtype))
        z = rotation.T @ x
        return 0.5 * (eig * z * z).sum() + 0.25 * (negative * z ** 4).sum()

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``Q (lambda z + [negative] z^3)``."""
        z = self.rotation.T @ x
        return self.rotation @ (self.eigenvalues * z + self.is_negative * z ** 3)

    def distance(self, x: np.ndarray) -> float:
        """Distance to the nearest of the 2^negative minimizers."""
        z = self.rotation.T @ np.asarray(x)
        wells = np.sqrt(np.maximum(-self.eigenvalues, 0.0))
        return float(np.linalg.norm(np.where(self.is_negative, np.abs(z) - wells, z)))

    def describe(self) -> str:
        """Dimension and number of descending directions."""
        return (f"saddle in {self.dimension} dimensions, {int(self.is_negative.sum())} "
                "directions curving down")


# -- local minima ----------------------------------------------------------------------------


class TiltedDoubleWell(Problem):
    """``f(x, y) = (x^2 - 1)^2 + tilt x + y^2 / 2``: a shallow well on the right, a deeper one

    on the left, a barrier between. Started on the right, plain gradient descent settles in the
    shallow (local) minimum; enough momentum carries a run over the barrier into the global one.
    """

    name = "double_well"
    title = "tilted double well"
    log_levels = False

    def __init__(self, tilt: float = 0.5, x0: float = 2.0, y0: float = 1.5) -> None:
        if not (isinstance(tilt, int | float) and 0 < tilt < 1.5):
            raise ValueError(f"tilt={tilt!r} is invalid: expected 0 < tilt < 1.5 (two wells)")
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

    MINIMA = np.array([[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186],
                       [3.584428, -1.848126]])

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
            hessian = np.array([[12 * x * x + 4 * y - 42, 4 * x + 4 * y],
                                [4 * x + 4 * y, 12 * y * y + 4 * x - 26]])
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

    def __init__(self, dim: int = 2, a: float = 10.0, start: float = 2.7) -> None:
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"dim={dim!r} is invalid: expected an integer >= 1")
        self.a = float(a)
        self.dimension = dim
        self.x0 = np.full(dim, float(start))
        if dim >= 2:
            self.x0[1] = -0.8 * start
        self.minima = np.zeros((1, dim))
        self.minimum_value = 0.0
        self.bounds = ((-4.0, 4.0), (-4.0, 4.0)) if dim == 2 else None

    def _value(self, x: Any, xp: Any) -> Any:
        return (self.a * x.shape[0] + (x * x - self.a * xp.cos(2 * math.pi * x)).sum())

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``2 x + 2 pi A sin(2 pi x)``."""
        return 2 * x + 2 * math.pi * self.a * np.sin(2 * math.pi * x)


# -- noisy gradients -------------------------------------------------------------------------


class _Minibatch(Problem):
    """Shared parts of the data-fitting problems: data, minibatches, the full-data optimum."""

    stochastic = True
    log_levels = True

    def _make_data(self, n: int, dim: int, batch_size: int, seed: int) -> np.random.Generator:
        if not (isinstance(n, int) and n >= 2):
            raise ValueError(f"n={n!r} is invalid: expected an integer >= 2")
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"dim={dim!r} is invalid: expected an integer >= 1")
        if not (isinstance(batch_size, int) and 1 <= batch_size <= n):
            raise ValueError(f"batch_size={batch_size!r} is invalid: expected an integer in "
                             f"[1, n={n}]")
        if n * dim > MAX_DATA:
            # Checked here, not as a failed allocation of n x dim floats (a traceback).
            raise ValueError(f"n={n!r} with dim={dim!r} is too large: the data would hold "
                             f"n x dim = {n * dim} values; expected n x dim <= {MAX_DATA}")
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
        per_example = np.stack([self._batch_grad(np.asarray(x, dtype=float), np.array([i]))
                                for i in range(self.n)])
        spread = float(np.mean(np.sum((per_example - per_example.mean(0)) ** 2, axis=1)))
        return (self.n - batch) / (batch * (self.n - 1)) * spread


class NoisyLeastSquares(_Minibatch):
    """Linear regression, ``f(w) = 1/(2n) ||X w - y||^2``, fit by minibatches of ``batch_size``.

    The smaller the batch, the noisier the gradient: its variance scales like ``1 / batch_size``.
    """

    name = "least_squares"
    title = "noisy least squares"

    def __init__(self, n: int = 256, dim: int = 2, batch_size: int = 4, noise: float = 0.5,
                 seed: int = 0) -> None:
        rng = self._make_data(n, dim, batch_size, seed)
        truth = np.linspace(1.0, -1.0, dim) if dim > 1 else np.ones(1)
        self.targets = self.features @ truth + noise * rng.standard_normal(n)
        solution, *_ = np.linalg.lstsq(self.features, self.targets, rcond=None)
        #: The full-data loss is a quadratic, ``1/2 w^T (X^T X / n) w - (X^T y / n)^T w`` plus
        #: a constant: its Hessian gives the theory of the noise-free runs.
        self.quadratic = Quadratic(self.features.T @ self.features / n,
                                   self.features.T @ self.targets / n)
        self.minima = solution[None, :]
        self.minimum_value = self.loss(solution)
        self.x0 = solution + np.linspace(-2.5, 2.0, dim) if dim > 1 else solution - 2.0
        self.bounds = ((solution[0] - 3.2, solution[0] + 1.5),
                       (solution[-1] - 1.5, solution[-1] + 2.7)) if dim == 2 else None

    def _value(self, x: Any, xp: Any) -> Any:
        features = self.features if xp is np else torch.as_tensor(self.features, dtype=x.dtype)
        targets = self.targets if xp is np else torch.as_tensor(self.targets, dtype=x.dtype)
        residual = features @ x - targets
        return 0.5 * (residual * residual).mean()

    def _batch_grad(self, x: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        features = self.features[rows]
        return features.T @ (features @ x - self.targets[rows]) / len(features)

    def describe(self) -> str:
        """Data size, dimension, batch size."""
        return (f"least squares, {self.n} examples, dimension {self.dimension}, "
                f"batch size {self.batch_size}")


class NoisyLogistic(_Minibatch):
    """L2-regularized logistic regression on labels drawn from a logistic model.

    ``f(w) = mean log(1 + exp(-y_i x_i . w)) + l2 / 2 ||w||^2`` with ``y_i`` in {-1, +1}; the
    regularizer makes the minimum unique. Minibatches of ``batch_size`` give the noise.
    """

    name = "logistic"
    title = "noisy logistic regression"

    def __init__(self, n: int = 256, dim: int = 2, batch_size: int = 4, l2: float = 0.05,
                 seed: int = 0) -> None:
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
        features = self.features if xp is np else torch.as_tensor(self.features, dtype=x.dtype)
        labels = self.labels if xp is np else torch.as_tensor(self.labels, dtype=x.dtype)
        margins = labels * (features @ x)
        data = (np.logaddexp(0.0, -margins) if xp is np
                else torch.nn.functional.softplus(-margins))
        return data.mean() + 0.5 * self.l2 * (x * x).sum()

    def _batch_grad(self, x: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        features, labels = self.features[rows], self.labels[rows]
        margins = labels * (features @ x)
        # d/dm log(1 + e^-m) = -1 / (1 + e^m), written to avoid overflow for large |m|.
        slope = -np.exp(-np.logaddexp(0.0, margins))
        return features.T @ (slope * labels) / len(features) + self.l2 * x

    def describe(self) -> str:
        """Data size, dimension, batch size."""
        return (f"logistic regression, {self.n} examples, dimension {self.dimension}, "
                f"batch size {self.batch_size}")


# -- classics --------------------------------------------------------------------------------


class RosenbrockValley(Problem):
    """Rosenbrock's function in 2-D, ``f(x, y) = (a - x)^2 + b (y - x^2)^2``: a curved,
    flat-bottomed valley with its minimum ``f = 0`` at ``(a, a^2)``.

    The function is :class:`descend.secondorder.problems.Rosenbrock`; this adds the lab's start
    and plotting window.
    """

    name = "rosenbrock"
    title = "Rosenbrock's function"

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


#: Every problem by spec name.
PROBLEMS: dict[str, Callable[..., Problem]] = {
    cls.name: cls for cls in (Ravine, Saddle, HighDimSaddle, TiltedDoubleWell, Himmelblau,
                              Rastrigin, NoisyLeastSquares, NoisyLogistic, RosenbrockValley, Beale,
                              Booth)
}


def problem_names() -> list[str]:
    """Every name :func:`make_problem` accepts."""
    return list(PROBLEMS)


#: The largest ``dim`` a spec may ask for: a dense 4096 x 4096 float64 matrix is 128 MiB.
MAX_DIMENSION = 4096
#: Most values (examples x dimension) a minibatch problem's data may hold: 256 MiB of float64.
MAX_DATA = 2 ** 25


def make_problem(spec: str) -> Problem:
    """Build a problem from ``name[:key=value,...]``, e.g. ``"ravine:kappa=100,dim=10"``.

    Unknown names and arguments fail with a ``ValueError`` listing the valid ones.
    """
    name, arguments = parse_spec(spec)
    if name not in PROBLEMS:
        raise unknown_name("problem", name, list(PROBLEMS), spec)
    dim = arguments.get("dim")
    if isinstance(dim, int) and dim > MAX_DIMENSION:
        raise ValueError(f"dim={dim!r} in spec {spec!r} is too large: expected at most "
                         f"{MAX_DIMENSION} (problems hold dense dim x dim matrices and the "
                         "race records every step's position)")
    cls = PROBLEMS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise ValueError(f"problem {name} does not take {', '.join(unknown)} (spec {spec!r}); "
                         f"valid: {', '.join(accepted) or 'no arguments'}")
    try:
        return cls(**arguments)
    except TypeError as error:
        raise ValueError(f"invalid problem spec {spec!r}: {error}") from None
