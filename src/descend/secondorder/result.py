"""What a second-order run returns: the solution, why it stopped, and the history of iterates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class NonFiniteError(FloatingPointError):
    """A loss, gradient or Hessian held inf or NaN where the method cannot step around it."""


class LineSearchError(RuntimeError):
    """The line search found no lower point, and the caller asked for an error instead of a stop."""


@dataclass
class History:
    """One entry per iterate, starting with the initial point (iteration 0).

    ``loss`` f(x_k); ``grad_norm`` the Euclidean norm of the gradient at x_k; ``x`` the iterate
    (empty when the run was asked not to keep them); ``nfev`` loss-and-gradient evaluations so
    far; ``time`` wall-clock seconds since the start; ``step`` the step length t_k of the line
    search that produced x_k (0 for the initial point).
    """

    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    x: list[np.ndarray] = field(default_factory=list)
    nfev: list[int] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    step: list[float] = field(default_factory=list)

    def record(
        self,
        loss: float,
        grad: np.ndarray,
        x: np.ndarray | None,
        nfev: int,
        time: float,
        step: float,
    ) -> None:
        """Append one iterate."""
        self.loss.append(float(loss))
        self.grad_norm.append(float(np.linalg.norm(grad)))
        if x is not None:
            self.x.append(np.array(x, copy=True))
        self.nfev.append(int(nfev))
        self.time.append(float(time))
        self.step.append(float(step))

    def __len__(self) -> int:
        return len(self.loss)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as a NumPy array (``x`` stacked to shape ``(iterations + 1, n)``)."""
        out = {
            name: np.asarray(getattr(self, name))
            for name in ("loss", "grad_norm", "nfev", "time", "step")
        }
        out["x"] = np.stack(self.x) if self.x else np.empty((0, 0))
        return out


#: Why a run stopped: ``converged`` (gradient or loss-change tolerance met), ``max_iter``,
#: ``line_search_failed`` (no lower point along a fresh steepest-descent direction either);
#: minibatch runs end ``completed`` (every iteration ran) or ``diverged`` (a non-finite value).
STATUSES = ("converged", "max_iter", "line_search_failed", "completed", "diverged")


@dataclass
class OptimizeResult:
    """The outcome of a second-order run, with the fields of ``scipy.optimize.OptimizeResult``.

    ``x`` the final iterate, ``fun`` its loss, ``jac`` its gradient, ``nit`` iterations taken,
    ``nfev``/``njev`` loss-and-gradient evaluations, ``nhev`` Hessian evaluations, ``success``
    whether it converged, ``status`` one of :data:`STATUSES`, ``message`` the reason in words,
    ``history`` the iterates, ``method`` the method's name, ``extras`` method-specific counts
    (e.g. how many Newton steps needed a shifted Hessian, how many quasi-Newton updates were
    skipped for lack of curvature).
    """

    x: np.ndarray
    fun: float
    jac: np.ndarray
    nit: int
    nfev: int
    nhev: int
    status: str
    message: str
    history: History
    method: str
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """Whether the run met its convergence tolerance (or, minibatch, ran to the end)."""
        return self.status in ("converged", "completed")

    @property
    def njev(self) -> int:
        """Gradient evaluations; every evaluation returns loss and gradient together."""
        return self.nfev

    @property
    def wall_time(self) -> float:
        """Seconds from the start to the last iterate."""
        return self.history.time[-1] if self.history.time else 0.0
