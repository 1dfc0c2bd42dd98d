"""The runs of the section: every method on the matrix ravine at each kappa, and Shampoo's
preconditioner built from exact statistics, read from the optimizer's own state.

What is exact, on ``H = A (x) B`` (:mod:`~descend.lab.tour.curvature.problem`): Shampoo's
direction ``L^(-1/4) G R^(-1/4)`` is ``(L^(-1/4) (x) R^(-1/4)) vec(G)``, a Kronecker product
acting on the gradient, and Newton's ``A^-1 G B^-1`` is ``H^-1 vec(G)``. They agree up to a
scalar exactly when ``L ~ A^4`` and ``R ~ B^4``. Shampoo's statistics are sums of ``G G^T`` and
``G^T G``; summed over gradients ``H u`` of an orthonormal basis of errors ``u`` (isotropic
errors) they are ``tr(B^2) A^2`` and ``tr(A^2) B^2``, the preconditioner is ``H^(-1/2)`` up to
a scalar, and the preconditioned Hessian has condition number ``sqrt(kappa)``, not 1. Over the
gradients ``H^2 u`` (errors ``H u``) they are ``tr(B^4) A^4`` and ``tr(A^4) B^4``, and the
step at ``lr = tr(H^4)^(1/4)`` is Newton's: it lands on the minimum. Neither holds on a
Hessian that is no Kronecker product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import descend
from descend.lab import theory
from descend.lab.tour.base import Progress, TourSettings, display_name, noop
from descend.lab.tour.curvature.problem import MatrixQuadratic
from descend.lab.tour.newer.common import one_torch_thread, steps_to_stay
from descend.optim.generated import optimizer_class
from descend.optim.shampoo import PYTORCH_OPTIMIZER_ARGUMENTS
from descend.rules import RULES
from descend.secondorder import newton

#: Shampoo as the paper (and ``pytorch_optimizer``) states it: summed statistics, no filter, no
#: grafting (which would rescale each step to Adam's norm), no blocks, roots every step. Its
#: direction is the Kronecker product of the roots applied to the gradient, which is what the
#: section's claims of exactness are about.
PAPER_SHAMPOO: dict[str, Any] = {
    name: value for name, value in PYTORCH_OPTIMIZER_ARGUMENTS.items() if name != "lr"
}
#: Condition numbers of the study.
KAPPAS = (1e2, 1e3, 1e4)
#: The weight matrix's shape.
SHAPE = (8, 4)
#: A run has converged once its loss stays below this fraction of the starting loss.
TOLERANCE = 1e-6
#: The longest gradient-descent run (its count is predicted, and it settles well before).
GD_LIMIT = 200_000
#: A run whose loss grows past this multiple of its start has diverged.
DIVERGED = 1e6
#: The two problems: a Kronecker-structured Hessian and its rotated twin.
CASES = ("kronecker", "rotated")
#: The executor every run uses. On a 32-entry matrix the reference executor (torch operations)
#: is as quick per step as a compiled kernel, and has no compile to wait for on first use.
BACKEND = "reference"


def matrix_methods() -> list[str]:
    """The registry's preconditioners that keep matrices of their own (Kronecker factors,
    eigenbases): every rule whose stage has matrix state, in the registry's order."""
    return [
        rule.name
        for rule in RULES.values()
        if rule.stage is not None and rule.stage.matrices is not None
    ]


def tuned_methods() -> list[str]:
    """The methods whose learning rate the study tunes: Adam (diagonal), then the matrix
    methods."""
    return ["adam", *matrix_methods()]


def arguments_of(name: str) -> dict[str, Any]:
    """Each method at its defaults, without weight decay (it would move the minimum); Shampoo
    as the paper states it (:data:`PAPER_SHAMPOO`), the form the section's theory is about."""
    arguments: dict[str, Any] = (
        {"weight_decay": 0.0} if any(h.name == "weight_decay" for h in RULES[name].hypers) else {}
    )
    return {**arguments, **PAPER_SHAMPOO} if name == "shampoo" else arguments


def horizon(settings: TourSettings) -> int:
    """Steps each tuned run may take."""
    return 150 if settings.quick else 600


def lr_grid(settings: TourSettings) -> np.ndarray:
    """The learning rates tried for every tuned method, log-spaced."""
    return np.geomspace(0.1, 10.0, 2) if settings.quick else np.geomspace(1e-3, 10.0, 9)


def make_problem(case: str, kappa: float, seed: int) -> MatrixQuadratic:
    """The ``case`` problem (one of :data:`CASES`) at condition number ``kappa``."""
    if case not in CASES:
        raise ValueError(f"case={case!r} is invalid: expected one of {', '.join(CASES)}")
    make = MatrixQuadratic.kronecker if case == "kronecker" else MatrixQuadratic.rotated
    return make(kappa, SHAPE, seed)


def train(
    problem: MatrixQuadratic,
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    steps: int,
    cut: int | None = None,
) -> np.ndarray | None:
    """The loss relative to the start after each step of the optimizer ``make([W])`` on the
    matrix parameter W (float64), from W = 0; None if it diverges. With ``cut``, a run that
    has not once reached :data:`TOLERANCE` by step ``cut`` stops there (it cannot settle
    sooner)."""
    weights = torch.zeros(problem.shape, dtype=torch.float64, requires_grad=True)
    optimizer = make([weights])
    initial = problem.loss(problem.start())
    losses, crossed = [1.0], False
    for step in range(1, steps + 1):
        weights.grad = torch.from_numpy(problem.gradient(weights.detach().numpy()))
        optimizer.step()
        loss = problem.loss(weights.detach().numpy()) / initial
        if not np.isfinite(loss) or loss > DIVERGED:
            return None
        losses.append(loss)
        crossed = crossed or loss <= TOLERANCE
        if cut is not None and not crossed and step >= cut:
            break
    return np.array(losses)


@dataclass
class Tuned:
    """A method's best learning rate of the grid: the one whose loss settles soonest (the
    largest on a tie; None when none settles), its count and its curve (when none settles,
    the curve that ends lowest)."""

    name: str
    lr: float | None
    steps: int | None
    curve: np.ndarray

    @property
    def label(self) -> str:
        """The method's name in the report."""
        return display_name(self.name)


def tune(problem: MatrixQuadratic, name: str, grid: np.ndarray, steps: int) -> Tuned:
    """Run ``name`` at every learning rate of ``grid``, largest first, each cut short once it
    can no longer beat the best so far."""
    cls, arguments = optimizer_class(RULES[name]), arguments_of(name)
    best = Tuned(name, None, None, np.array([1.0]))
    for lr in sorted(map(float, grid), reverse=True):
        curve = train(
            problem,
            lambda params, lr=lr: cls(params, lr=lr, backend=BACKEND, **arguments),
            steps,
            None if best.steps is None else best.steps - 1,
        )
        if curve is None:
            continue
        settled = steps_to_stay(curve, TOLERANCE) if len(curve) == steps + 1 else None
        if settled is not None and (best.steps is None or settled < best.steps):
            best = Tuned(name, lr, settled, curve)
        elif best.steps is None and len(curve) == steps + 1 and curve[-1] < best.curve[-1]:
            best = Tuned(name, None, None, curve)  # the lowest end, while none settles
    return best


@dataclass
class GradientDescent:
    """Gradient descent at theory's step ``2/(L+mu)``: steps to the tolerance measured and
    counted from each eigendirection's factor ``1 - lr lambda``, and the per-step rate of the
    distance to the minimum, theory's ``(kappa-1)/(kappa+1)`` and measured over the run."""

    lr: float
    predicted: int | None
    measured: int | None
    rate: float
    measured_rate: float
    curve: np.ndarray


def predicted_gd_steps(problem: MatrixQuadratic, lr: float) -> int | None:
    """The first step at which gradient descent's loss is at most :data:`TOLERANCE` of the
    start's, counted from each eigendirection's factor: the loss after k steps is
    ``sum_i 1/2 lambda_i e_i^2 (1 - lr lambda_i)^(2k)`` (None: not within
    :data:`GD_LIMIT`)."""
    q = problem.quadratic
    parts = 0.5 * q.eigenvalues * q.errors(np.reshape(problem.start(), -1)) ** 2
    factors = (1.0 - lr * q.eigenvalues) ** 2
    steps = np.arange(GD_LIMIT + 1)
    for chunk in np.array_split(steps, 40):
        losses = (parts * factors ** chunk[:, None]).sum(axis=1)
        hits = np.flatnonzero(losses <= TOLERANCE * parts.sum())
        if hits.size:
            return int(chunk[hits[0]])
    return None


def gradient_descent(problem: MatrixQuadratic) -> GradientDescent:
    """Gradient descent ``x <- x - lr H (x - x*)`` at ``2/(L+mu)`` until the tolerance, in
    NumPy (tens of thousands of steps at kappa 10^4). At that step every factor is below 1 in
    size, so the loss falls monotonically and the first step below the tolerance is the step
    it stays there from."""
    q = problem.quadratic
    setting = theory.gd_optimal(q.strong_convexity, q.smoothness)
    hessian, error = q.A, np.reshape(problem.start(), -1) - q.solution
    initial = 0.5 * float(error @ (hessian @ error))
    losses, distances = [1.0], [float(np.linalg.norm(error))]
    for _ in range(GD_LIMIT):
        gradient = hessian @ error
        error = error - setting.lr * gradient
        losses.append(0.5 * float(error @ (hessian @ error)) / initial)
        distances.append(float(np.sqrt(error @ error)))
        if losses[-1] <= TOLERANCE:
            break
    curve = np.array(losses)
    return GradientDescent(
        setting.lr,
        predicted_gd_steps(problem, setting.lr),
        steps_to_stay(curve, TOLERANCE),
        setting.rate,
        theory.measured_rate(np.array(distances)),
        curve,
    )


def newton_steps(problem: MatrixQuadratic) -> tuple[int | None, np.ndarray]:
    """Newton's method (exact Hessian, line search trying the full step first): the step
    from which its loss stays below the tolerance, and its relative losses."""
    result = newton(problem.quadratic, np.reshape(problem.start(), -1), max_iter=5)
    losses = np.asarray(result.history.loss) - problem.quadratic.minimum_value
    curve = np.maximum(losses, 0.0) / losses[0]
    return steps_to_stay(curve, TOLERANCE), curve


def probed_shampoo(problem: MatrixQuadratic, matched: bool) -> tuple[torch.optim.Optimizer, Any]:
    """``descend.Shampoo`` on W = 0 whose statistics are the sums over
    :meth:`~MatrixQuadratic.probes`' gradients: one step with learning rate 0 per probe, the
    inverse roots computed once, at the last probe (``preconditioning_compute_steps`` is the
    probe count, so the next step uses them unchanged), statistics without the ``eps I``
    floor, no grafting (:data:`PAPER_SHAMPOO`). Returns the optimizer and its parameter."""
    weights = torch.zeros(problem.shape, dtype=torch.float64, requires_grad=True)
    optimizer = descend.Shampoo(
        [weights],
        **{**PAPER_SHAMPOO, "matrix_eps": 0.0, "preconditioning_compute_steps": problem.size},
        lr=0.0,
        backend=BACKEND,
    )
    for probe in problem.probes(matched):
        weights.grad = torch.from_numpy(probe.copy())
        optimizer.step()
    return optimizer, weights


@dataclass
class Exactness:
    """Shampoo with exact statistics, against theory.

    ``newton_mismatch`` is ``1 - cos`` of the angle between Shampoo's first direction (matched
    statistics) and Newton's, ``newton_lr`` theory's scalar ``tr(H^4)^(1/4)`` and
    ``one_step_distance`` the distance to W* after one Shampoo step at that learning rate,
    relative to the start's; ``preconditioned_kappa`` is the condition number of the
    Hessian under Shampoo's preconditioner from isotropic statistics, against
    ``sqrt(kappa)``."""

    newton_mismatch: float
    newton_lr: float
    one_step_distance: float
    preconditioned_kappa: float
    root_kappa: float


def exactness(problem: MatrixQuadratic) -> Exactness:
    """Shampoo's step from matched statistics against Newton's, and the conditioning its
    preconditioner from isotropic statistics leaves (both read from the optimizer itself)."""
    q = problem.quadratic
    lr = float(np.sum(q.eigenvalues**4) ** 0.25)
    optimizer, weights = probed_shampoo(problem, matched=True)
    start = problem.start()
    weights.grad = torch.from_numpy(problem.gradient(start))
    optimizer.param_groups[0]["lr"] = lr
    optimizer.step()
    reached = weights.detach().numpy()
    shampoo = np.reshape(reached - start, -1)
    newton_step = np.reshape(problem.newton_direction(start), -1)
    cosine = shampoo @ newton_step / (np.linalg.norm(shampoo) * np.linalg.norm(newton_step))
    distance = np.linalg.norm(reached - problem.target) / np.linalg.norm(start - problem.target)

    optimizer, weights = probed_shampoo(problem, matched=False)
    state = optimizer.state[weights]
    roots = [state[f"inv_pre_cond_{k}"].numpy() for k in range(2)]
    preconditioner = np.kron(*roots)  # acts on vec(G), rows first, as H does
    spectrum = np.sort(np.linalg.eigvals(preconditioner @ problem.hessian).real)
    return Exactness(
        float(1.0 - cosine),
        lr,
        float(distance),
        float(spectrum[-1] / spectrum[0]),
        float(np.sqrt(problem.kappa)),
    )


@dataclass
class Row:
    """One problem at one kappa: every method's result."""

    case: str
    kappa: float
    gd: GradientDescent
    tuned: list[Tuned]
    newton: int | None
    newton_curve: np.ndarray
    exact: Exactness

    def of(self, name: str) -> Tuned:
        """The tuned method ``name``."""
        return next(t for t in self.tuned if t.name == name)


@dataclass
class CurvatureStudy:
    """Every row, with the run settings."""

    rows: list[Row]
    horizon: int
    grid: np.ndarray
    methods: list[str] = field(default_factory=tuned_methods)

    def row(self, case: str, kappa: float) -> Row:
        """The row of ``case`` at ``kappa``."""
        return next(r for r in self.rows if r.case == case and r.kappa == kappa)

    def case(self, case: str) -> list[Row]:
        """The rows of one case, kappa ascending."""
        return [r for r in self.rows if r.case == case]


def run_count(settings: TourSettings) -> int:
    """Runs the study makes: per problem, gradient descent, Newton, the two probed Shampoos
    and every tuned method's grid."""
    per_problem = 4 + len(tuned_methods()) * len(lr_grid(settings))
    return len(CASES) * len(KAPPAS) * per_problem


def curvature_study(settings: TourSettings, progress: Progress = noop) -> CurvatureStudy:
    """Every method on both problems at every kappa."""
    grid, steps = lr_grid(settings), horizon(settings)
    rows = []
    with one_torch_thread():
        for case in CASES:
            for kappa in KAPPAS:
                problem = make_problem(case, kappa, settings.seed)
                tuned = [tune(problem, name, grid, steps) for name in tuned_methods()]
                newton_count, newton_curve = newton_steps(problem)
                rows.append(
                    Row(
                        case,
                        kappa,
                        gradient_descent(problem),
                        tuned,
                        newton_count,
                        newton_curve,
                        exactness(problem),
                    )
                )
                progress(f"curvature: {case}, kappa {kappa:g}", 4 + len(tuned) * len(grid))
    return CurvatureStudy(rows, steps, grid)
