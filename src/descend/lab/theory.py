"""Convergence theory on quadratics: optimal settings and linear rates of first-order methods.

For ``f`` with Hessian eigenvalues in ``[mu, L]`` and ``kappa = L / mu``:

- gradient descent with step alpha contracts the error by ``max |1 - alpha lambda|`` per step;
  the best alpha is ``2 / (L + mu)``, giving ``(kappa - 1) / (kappa + 1)``;
- heavy-ball momentum (Polyak) with ``alpha = 4 / (sqrt(L) + sqrt(mu))^2`` and
  ``beta = ((sqrt(kappa) - 1) / (sqrt(kappa) + 1))^2`` contracts by
  ``(sqrt(kappa) - 1) / (sqrt(kappa) + 1)``;
- Nesterov's method with ``alpha = 4 / (3 L + mu)`` and
  ``beta = (sqrt(3 kappa + 1) - 2) / (sqrt(3 kappa + 1) + 2)`` contracts by
  ``1 - 2 / sqrt(3 kappa + 1)`` (Lessard, Recht and Packard, 2016).

The general-setting rates are spectral radii of each method's two-step iteration on every
eigenvalue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Setting:
    """A step size, a momentum coefficient and the linear rate they give."""

    lr: float
    momentum: float
    rate: float


def _check_curvature(mu: float, L: float) -> None:
    if not 0 < mu <= L:
        raise ValueError(f"curvatures mu={mu!r}, L={L!r} are invalid: expected 0 < mu <= L")


def gd_optimal(mu: float, L: float) -> Setting:
    """Gradient descent at its best constant step size."""
    _check_curvature(mu, L)
    kappa = L / mu
    return Setting(2.0 / (L + mu), 0.0, (kappa - 1) / (kappa + 1))


def heavy_ball_optimal(mu: float, L: float) -> Setting:
    """Polyak's heavy-ball momentum at its optimal step size and momentum."""
    _check_curvature(mu, L)
    root = math.sqrt(L / mu)
    rate = (root - 1) / (root + 1)
    return Setting(4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2, rate * rate, rate)


def nesterov_optimal(mu: float, L: float) -> Setting:
    """Nesterov's accelerated method at its optimal constant parameters for quadratics."""
    _check_curvature(mu, L)
    root = math.sqrt(3 * L / mu + 1)
    return Setting(4.0 / (3 * L + mu), (root - 2) / (root + 2), 1 - 2 / root)


def iteration_matrices(
    method: str, eigenvalues: np.ndarray, lr: np.ndarray | float, momentum: np.ndarray | float = 0.0
) -> np.ndarray:
    """Each method's two-step iteration on the error along one eigendirection, ``(e_k,
    e_(k-1)) -> (e_(k+1), e_k)``, as 2x2 matrices of shape ``broadcast(lr, momentum) +
    (len(eigenvalues), 2, 2)``:

    - ``"gradient descent"``: ``e+ = (1 - lr lambda) e``;
    - ``"heavy ball"``: ``x+ = x - lr g(x) + momentum (x - x-)``;
    - ``"Nesterov"``: ``x+ = y - lr g(y)``, ``y+ = x+ + momentum (x+ - x)``.
    """
    lam = np.asarray(eigenvalues, dtype=float)
    lr = np.asarray(lr, dtype=float)[..., None]
    momentum = (
        np.zeros(()) if method == "gradient descent" else np.asarray(momentum, dtype=float)
    )[..., None]
    shape = np.broadcast_shapes(lr.shape, momentum.shape, lam.shape)
    matrices = np.zeros((*shape, 2, 2))
    shrink = 1 - lr * lam
    if method == "gradient descent":
        matrices[..., 0, 0] = shrink
    elif method == "heavy ball":
        matrices[..., 0, 0] = 1 + momentum - lr * lam
        matrices[..., 0, 1] = -momentum
    elif method == "Nesterov":
        matrices[..., 0, 0] = (1 + momentum) * shrink
        matrices[..., 0, 1] = -momentum * shrink
    else:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    matrices[..., 1, 0] = 1
    return matrices


#: The methods :func:`iteration_matrices` knows.
METHODS = ("gradient descent", "heavy ball", "Nesterov")


def direction_rates(
    method: str, eigenvalues: np.ndarray, lr: np.ndarray | float, momentum: np.ndarray | float = 0.0
) -> np.ndarray:
    """The contraction per step of the error along each eigendirection (the spectral radius of
    its 2x2 iteration), shape ``broadcast(lr, momentum) + (len(eigenvalues),)``."""
    matrices = iteration_matrices(method, eigenvalues, lr, momentum)
    return np.abs(np.linalg.eigvals(matrices)).max(axis=-1)


def rate(
    method: str, eigenvalues: np.ndarray, lr: np.ndarray | float, momentum: np.ndarray | float = 0.0
) -> np.ndarray | float:
    """The method's linear rate: the slowest direction's contraction (an array over a grid of
    ``lr`` and ``momentum``, or a number)."""
    rates = direction_rates(method, eigenvalues, lr, momentum).max(axis=-1)
    return float(rates) if np.ndim(rates) == 0 else rates


def gd_rate(eigenvalues: np.ndarray, lr: float) -> float:
    """Per-step contraction of gradient descent: ``max |1 - lr * lambda|``."""
    return rate("gradient descent", eigenvalues, lr)


def heavy_ball_rate(eigenvalues: np.ndarray, lr: float, momentum: float) -> float:
    """Spectral radius of ``x+ = x - lr g(x) + momentum (x - x-)`` over the eigenvalues."""
    return rate("heavy ball", eigenvalues, lr, momentum)


def nesterov_rate(eigenvalues: np.ndarray, lr: float, momentum: float) -> float:
    """Spectral radius of Nesterov's ``x+ = y - lr g(y)``, ``y+ = x+ + momentum (x+ - x)``."""
    return rate("Nesterov", eigenvalues, lr, momentum)


def steps_to_tolerance(rate: float, initial_loss: float, tolerance: float) -> float:
    """Steps until the loss reaches ``tolerance`` when the error contracts by ``rate`` per step

    (``math.inf`` when it does not contract).

    The loss of a quadratic is quadratic in the error, so it contracts by ``rate ** 2``.
    """
    if not 0 <= rate < 1:
        return math.inf
    if initial_loss <= tolerance:
        return 0
    if rate == 0:
        return 1
    return math.ceil(math.log(tolerance / initial_loss) / (2 * math.log(rate)))


def measured_rate(distances: np.ndarray, floor: float = 1e-280) -> float:
    """The per-step contraction a run actually showed, from its distances to the optimum.

    Momentum methods carry two steps of state, and a single distance can dip near zero as the
    error rotates; the norm of the pair ``(e_k, e_(k-1))``, ``sqrt(d_k^2 + d_(k-1)^2)``, does
    not. The rate is the geometric mean contraction of that norm over the second half of the
    steps whose distance stays above ``floor`` (so early transients from the faster directions
    have died out and underflow never enters).
    """
    d = np.asarray(distances, dtype=float)
    valid = np.flatnonzero(~(np.isfinite(d) & (d > floor)))
    end = int(valid[0]) if valid.size else len(d)
    if end < 4:
        raise ValueError(
            f"need at least 4 distances above floor={floor!r} to measure a rate, got {end}"
        )
    pair = np.sqrt(d[1:end] ** 2 + d[: end - 1] ** 2)
    first = len(pair) // 2
    return float((pair[-1] / pair[first]) ** (1.0 / (len(pair) - 1 - first)))
