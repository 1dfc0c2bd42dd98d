"""Objectives the second-order methods minimize: loss, gradient and (for Newton) Hessian.

Every method takes anything :func:`as_objective` accepts and works on 1-D float64 NumPy vectors:

- an object with ``value_and_grad(x) -> (loss, grad)`` and, for Newton, ``hessian(x)``
  (the problems in :mod:`descend.secondorder.problems`);
- an object with ``loss(x)`` and ``grad(x)`` methods (and optionally ``hessian(x)``), such as
  the lab's toy problems;
- a callable ``fun(x) -> (loss, grad)``, with the Hessian passed separately as ``hess``;
- a :class:`TorchObjective`, which derives gradient and Hessian of a torch function by autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

# torch loads when a TorchObjective is made: the NumPy methods and problems run without it.


@runtime_checkable
class Objective(Protocol):
    """A function to minimize: its loss and gradient together at a point. What every
    first-order method calls (the lab's loop, :func:`descend.lab.loop.follow`, too); Newton's
    method also calls ``hessian`` (see :class:`HessianObjective`)."""

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(f(x), grad f(x))``."""


@runtime_checkable
class HessianObjective(Objective, Protocol):
    """An :class:`Objective` that also gives its Hessian, as Newton's method needs."""

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The ``n x n`` matrix of second derivatives at ``x``."""


class FunctionObjective:
    """An :class:`Objective` from plain functions.

    Args:
        fun: ``fun(x) -> (loss, grad)``.
        hess: ``hess(x) -> (n, n) array``, or None when only first-order methods will call it.
    """

    def __init__(
        self,
        fun: Callable[[np.ndarray], tuple[Any, Any]],
        hess: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self._fun = fun
        self._hess = hess

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(f(x), grad f(x))`` as a Python float and a float64 vector."""
        loss, grad = self._fun(x)
        return float(loss), np.asarray(grad, dtype=np.float64).reshape(-1)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The Hessian from ``hess``; ``TypeError`` when none was given."""
        if self._hess is None:
            raise TypeError(
                "this objective has no Hessian: pass hess=... to as_objective, or use "
                "a quasi-Newton method (bfgs, lbfgs)"
            )
        return np.asarray(self._hess(x), dtype=np.float64)


class TorchObjective:
    """An :class:`Objective` from a torch function of one vector, differentiated by autograd.

    ``fn(x)`` takes a 1-D tensor and returns a scalar tensor; gradient and Hessian come from
    ``torch.autograd`` in ``dtype`` (float64 by default, so that the methods' tolerances hold).
    """

    def __init__(
        self, fn: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype | None = None
    ) -> None:
        import torch

        self.fn = fn
        self.dtype = torch.float64 if dtype is None else dtype

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        import torch

        return torch.as_tensor(np.asarray(x), dtype=self.dtype).detach().clone()

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(f(x), grad f(x))`` by one forward and one backward pass."""
        import torch

        xt = self._tensor(x).requires_grad_(True)
        with torch.enable_grad():
            loss = self.fn(xt)
            (grad,) = torch.autograd.grad(loss, xt)
        return loss.item(), grad.detach().to(torch.float64).numpy().copy()

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The exact Hessian by ``torch.autograd.functional.hessian``."""
        import torch

        with torch.enable_grad():
            matrix = torch.autograd.functional.hessian(self.fn, self._tensor(x))
        return matrix.detach().to(torch.float64).numpy().copy()


def as_objective(problem: Any, hess: Callable[[np.ndarray], Any] | None = None) -> Objective:
    """Wrap ``problem`` (see the module docstring) as an :class:`Objective`.

    ``hess`` overrides or supplies the Hessian. Raises ``TypeError`` naming what is accepted.
    """
    if hasattr(problem, "value_and_grad"):
        if hess is None:
            return problem
        return FunctionObjective(problem.value_and_grad, hess)
    if hasattr(problem, "loss") and hasattr(problem, "grad"):
        hessian = hess if hess is not None else getattr(problem, "hessian", None)
        return FunctionObjective(lambda x: (problem.loss(x), problem.grad(x)), hessian)
    if callable(problem):
        return FunctionObjective(problem, hess)
    raise TypeError(
        f"cannot minimize {type(problem).__name__}: expected an object with "
        "value_and_grad(x), an object with loss(x) and grad(x), or a callable "
        "fun(x) -> (loss, grad)"
    )
