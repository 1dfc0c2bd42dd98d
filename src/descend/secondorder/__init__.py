"""Second-order and quasi-Newton methods on NumPy vectors: Newton, BFGS and L-BFGS.

Each method minimizes an objective (loss and gradient, plus the Hessian for Newton; see
:mod:`descend.secondorder.objective`) with a strong-Wolfe line search and returns an
:class:`OptimizeResult` whose ``history`` holds loss, gradient norm, iterate, evaluations and
wall time per iteration. :func:`minibatch` runs the same methods, and first-order ones for
comparison, on noisy minibatch gradients of a finite-sum problem.

The line search (:func:`strong_wolfe`) and the two-loop recursion (:func:`two_loop`) are written
once and also drive :class:`descend.LBFGS`, the ``torch.optim.LBFGS`` drop-in.
"""

from descend.secondorder.bfgs import BFGSDirection, bfgs
from descend.secondorder.lbfgs import LBFGSDirection, lbfgs, two_loop
from descend.secondorder.line_search import LineSearchResult, cubic_interpolate, strong_wolfe
from descend.secondorder.minibatch import FiniteSum, minibatch
from descend.secondorder.newton import NewtonDirection, damped_newton_step, newton
from descend.secondorder.objective import (
    FunctionObjective,
    Objective,
    TorchObjective,
    as_objective,
)
from descend.secondorder.problems import LeastSquares, LogisticRegression, Quadratic, Rosenbrock
from descend.secondorder.result import (
    History,
    LineSearchError,
    NonFiniteError,
    OptimizeResult,
)

#: The full-batch methods by name.
METHODS = {"newton": newton, "bfgs": bfgs, "lbfgs": lbfgs}


def minimize(problem, x0, method: str = "lbfgs", **options) -> OptimizeResult:
    """Minimize ``problem`` from ``x0`` with ``method`` (``"newton"``, ``"bfgs"`` or
    ``"lbfgs"``); ``options`` go to that function."""
    try:
        run = METHODS[method]
    except KeyError:
        raise ValueError(
            f"method={method!r} is invalid: expected one of {', '.join(map(repr, METHODS))}"
        ) from None
    return run(problem, x0, **options)


__all__ = [
    "METHODS",
    "BFGSDirection",
    "FiniteSum",
    "FunctionObjective",
    "History",
    "LBFGSDirection",
    "LeastSquares",
    "LineSearchError",
    "LineSearchResult",
    "LogisticRegression",
    "NewtonDirection",
    "NonFiniteError",
    "Objective",
    "OptimizeResult",
    "Quadratic",
    "Rosenbrock",
    "TorchObjective",
    "as_objective",
    "bfgs",
    "cubic_interpolate",
    "damped_newton_step",
    "lbfgs",
    "minibatch",
    "minimize",
    "newton",
    "strong_wolfe",
    "two_loop",
]
