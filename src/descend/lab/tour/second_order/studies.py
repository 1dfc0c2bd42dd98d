"""First-order against second-order methods: iterations, wall time and cost per iteration.

Two full-batch studies (an ill-conditioned quadratic, the "ravine", and multinomial logistic
regression on the 8x8 digits) run gradient descent, Nesterov and Adam next to Newton, BFGS and
L-BFGS from :mod:`descend.secondorder`, and record the gradient norm, the loss and the wall time
of every iteration. A minibatch study runs the same methods on noisy batch gradients of the
digits problem (:func:`descend.secondorder.minibatch`) next to full-batch L-BFGS given the same
number of passes over the data. :func:`hessian_cost_rows` says what a dense Hessian would cost at
larger sizes.

Timed runs use one BLAS thread (when ``threadpoolctl`` is installed): the problems are small,
and on a busy machine a second thread makes small matrix products slower, not faster, so one
thread gives timings that compare like with like.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from descend import functional
from descend.lab.loop import FunctionalStepper, follow
from descend.secondorder import (
    History,
    LogisticRegression,
    OptimizeResult,
    Quadratic,
    bfgs,
    damped_newton_step,
    lbfgs,
    minibatch,
    newton,
)

#: Bytes in one float64 number.
FLOAT_BYTES = 8
#: L-BFGS's history size in every run here (SciPy's default too).
HISTORY_SIZE = 10
#: The memory a dense Hessian is compared against in :func:`hessian_cost_rows`.
MEMORY_BUDGET = 16e9


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Limit BLAS (and OpenMP) to one thread inside the block, if ``threadpoolctl`` is there."""
    try:
        from threadpoolctl import threadpool_limits  # (optional)
    except ImportError:  # pragma: no cover - depends on the environment
        yield
        return
    with threadpool_limits(1):
        yield


# -- problems --------------------------------------------------------------------------------


def digits_problem(seed: int = 0) -> tuple[LogisticRegression, str]:
    """Logistic regression on scikit-learn's digits and its description; without scikit-learn,
    a stand-in of the same shape (1797 samples of 64 features in [0, 1], 10 classes) drawn
    around random class prototypes, so that the tour still runs."""
    try:
        return LogisticRegression.digits(), "logistic regression on the 8x8 digits"
    except ImportError:
        rng = np.random.default_rng(seed)
        prototypes = rng.uniform(0.0, 1.0, (10, 64))
        labels = rng.integers(0, 10, 1797)
        features = np.clip(prototypes[labels] + 0.3 * rng.standard_normal((1797, 64)), 0, 1)
        return (
            LogisticRegression.from_data(features, labels, classes=10),
            "logistic regression on synthetic digit-shaped data (scikit-learn is not installed)",
        )


def curvature_bounds(problem: Quadratic | LogisticRegression) -> tuple[float, float]:
    """``(mu, L)``: the smallest and largest curvature, exact for a quadratic; for logistic
    regression ``mu = l2`` and ``L = lambda_max(X^T X / n) / 2 + l2`` (the softmax's Hessian
    in the logits is at most ``I / 2``)."""
    if isinstance(problem, Quadratic):
        return problem.strong_convexity, problem.smoothness
    gram = problem.X.T @ problem.X / problem.n_samples
    return problem.l2, 0.5 * float(np.linalg.eigvalsh(gram)[-1]) + problem.l2


# -- runs ------------------------------------------------------------------------------------


@dataclass
class MethodRun:
    """One method on one problem: its legend label, its settings in words, and the result
    (whose ``history`` has one entry per iteration, or per recorded minibatch iteration)."""

    label: str
    method: str
    setting: str
    result: OptimizeResult
    #: Minibatch runs: passes over the data computed by each recorded point (batch gradient
    #: evaluations times the batch size, over the number of samples).
    passes: np.ndarray | None = None

    @property
    def second_order(self) -> bool:
        """Whether the method uses curvature (Newton, BFGS, L-BFGS)."""
        return self.method in ("newton", "bfgs", "lbfgs")

    @property
    def iterations(self) -> int:
        """Iterations run."""
        return self.result.nit

    def first_at_or_below(self, values: np.ndarray, threshold: float) -> int | None:
        """Index of the first history entry where ``values`` is at most ``threshold``."""
        hits = np.flatnonzero(np.asarray(values) <= threshold)
        return int(hits[0]) if hits.size else None


def first_order(
    problem: Any,
    x0: np.ndarray,
    method: str,
    config: dict[str, float],
    *,
    gtol: float,
    max_iter: int,
) -> OptimizeResult:
    """Full-batch ``descend.functional`` updates until ``||g|| <= gtol`` or ``max_iter``.

    The same history as the second-order methods (loss, gradient norm, evaluations, wall time
    per iteration), so that the two kinds can be tabulated and drawn together.
    """
    x0 = np.array(x0, dtype=np.float64)
    stepper = FunctionalStepper(functional.UPDATES[method], config, x0)
    path = follow(
        problem, stepper, x0, max_iter, stop=lambda _, norm: norm <= gtol, keep_points=False
    )
    iterations = path.steps
    if path.diverged_at is not None:
        status, message = "diverged", f"non-finite loss or gradient at iteration {iterations}"
    elif path.stopped:
        status, message = "converged", f"||g|| <= gtol={gtol:g}"
    else:
        status, message = "max_iter", f"reached max_iter={max_iter} iterations"
    history = History(
        loss=path.losses.tolist(),
        grad_norm=path.grad_norms.tolist(),
        nfev=list(range(1, iterations + 2)),
        time=path.seconds.tolist(),
        step=[0.0, *path.lrs[1:].tolist()],
    )
    return OptimizeResult(
        x=path.last_point,
        fun=history.loss[-1],
        jac=path.last_grad,
        nit=iterations,
        nfev=iterations + 1,
        nhev=0,
        status=status,
        message=message,
        history=history,
        method=method,
    )


# -- full batch ------------------------------------------------------------------------------


@dataclass
class FullBatchStudy:
    """Every method on one problem, full batch, from the same start.

    ``tolerance`` is relative: a run has converged once ``||g_k|| <= tolerance * ||g_0||``.
    ``f_star`` is the lowest loss any run reached (Newton's, to rounding).
    """

    name: str
    title: str
    dimension: int
    mu: float
    L: float
    grad_norm0: float
    tolerance: float
    cap: int
    f_star: float
    runs: list[MethodRun]

    @property
    def kappa(self) -> float:
        """``L / mu``: the condition number (a bound on it for logistic regression)."""
        return self.L / self.mu

    def run(self, method: str) -> MethodRun:
        """The run of ``method`` (a functional or second-order name)."""
        return next(run for run in self.runs if run.method == method)

    def iterations_to_tolerance(self, run: MethodRun) -> int | None:
        """Iterations until ``||g|| <= tolerance * ||g_0||``; None if the run never got there."""
        return run.first_at_or_below(run.result.history.grad_norm, self.tolerance * self.grad_norm0)

    def seconds_to_tolerance(self, run: MethodRun) -> float | None:
        """Wall time until the tolerance; None if never."""
        index = self.iterations_to_tolerance(run)
        return None if index is None else run.result.history.time[index]


FIRST_ORDER_LABELS = {"sgd": "GD", "nesterov_momentum": "Nesterov", "adam": "Adam"}
SECOND_ORDER_LABELS = {"newton": "Newton", "bfgs": "BFGS", "lbfgs": "L-BFGS"}


def full_batch_study(
    problem: Quadratic | LogisticRegression,
    name: str,
    title: str,
    *,
    adam_lr: float,
    tolerance: float = 1e-6,
    cap: int = 2000,
    deep_tolerance: float = 1e-10,
) -> FullBatchStudy:
    """GD, Nesterov and Adam (until the tolerance or ``cap`` iterations) and Newton, BFGS and
    L-BFGS (on to ``deep_tolerance``, cheap for them, to show how they finish) from ``x = 0``.

    GD uses theory's best constant step ``2 / (L + mu)``; Nesterov ``1 / L`` with momentum
    ``(sqrt(kappa) - 1) / (sqrt(kappa) + 1)``; Adam the given learning rate.
    """
    dimension = problem.dimension
    x0 = np.zeros(dimension)
    mu, L = curvature_bounds(problem)
    kappa = L / mu
    momentum = (np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)
    grad_norm0 = float(np.linalg.norm(problem.value_and_grad(x0)[1]))
    gtol = tolerance * grad_norm0
    first = [
        ("sgd", {"learning_rate": 2 / (L + mu)}, f"lr 2/(L+mu) = {2 / (L + mu):.3g}"),
        (
            "nesterov_momentum",
            {"learning_rate": 1 / L, "momentum": momentum},
            f"lr 1/L = {1 / L:.3g}, momentum {momentum:.3g}",
        ),
        ("adam", {"learning_rate": adam_lr}, f"lr {adam_lr:g}"),
    ]
    runs = []
    with one_thread():
        for method, config, setting in first:
            result = first_order(problem, x0, method, config, gtol=gtol, max_iter=cap)
            runs.append(MethodRun(FIRST_ORDER_LABELS[method], method, setting, result))
        # max |g_i| <= ||g||, so this stops no earlier than ||g|| <= deep_tolerance * ||g_0||.
        deep = deep_tolerance * grad_norm0 / np.sqrt(dimension)
        second = [
            ("newton", newton(problem, x0, gtol=deep, max_iter=100, keep_x=False), "exact Hessian"),
            (
                "bfgs",
                bfgs(problem, x0, gtol=deep, max_iter=10 * cap, keep_x=False),
                "dense inverse-Hessian estimate",
            ),
            (
                "lbfgs",
                lbfgs(
                    problem,
                    x0,
                    history_size=HISTORY_SIZE,
                    gtol=deep,
                    ftol=0.0,
                    max_iter=10 * cap,
                    keep_x=False,
                ),
                f"m = {HISTORY_SIZE} pairs",
            ),
        ]
    for method, result, setting in second:
        runs.append(MethodRun(SECOND_ORDER_LABELS[method], method, setting, result))
    f_star = min(min(run.result.history.loss) for run in runs)
    return FullBatchStudy(name, title, dimension, mu, L, grad_norm0, tolerance, cap, f_star, runs)


# -- minibatch -------------------------------------------------------------------------------


@dataclass
class MinibatchStudy:
    """The methods on minibatch gradients of a finite sum, and full-batch L-BFGS for reference.

    ``epochs`` counts batches drawn (every run draws the same batches, one per iteration);
    ``passes`` counts the work: batch gradient evaluations (line searches included) times the
    batch size over the number of samples.
    """

    batch_size: int
    epochs: int
    newton_epochs: int
    n_samples: int
    f_star: float
    runs: list[MethodRun]
    reference: MethodRun

    def gap(self, run: MethodRun) -> np.ndarray:
        """``f - f*`` on the full data at each recorded point."""
        return np.asarray(run.result.history.loss) - self.f_star

    def reference_gap_at(self, passes: float) -> float:
        """Full-batch L-BFGS's ``f - f*`` after at most ``passes`` passes over the data."""
        evaluations = np.asarray(self.reference.passes)
        index = int(np.flatnonzero(evaluations <= passes + 1e-9)[-1])
        return float(self.gap(self.reference)[index])

    def tail_gap(self, run: MethodRun, fraction: float = 0.25) -> float:
        """Mean ``f - f*`` over the last ``fraction`` of the run: where it settles."""
        gap = self.gap(run)
        return float(np.mean(gap[-max(1, int(len(gap) * fraction)) :]))


@dataclass(frozen=True)
class MinibatchMethod:
    """One line of the minibatch study: a method, its :func:`minibatch` options, its label."""

    label: str
    method: str
    setting: str
    options: dict[str, Any] = field(default_factory=dict)


def minibatch_methods(mu: float, L: float) -> list[MinibatchMethod]:
    """The minibatch line-up: SGD, Nesterov, Adam, Newton on the batch Hessian, BFGS and three
    ways to run L-BFGS on batches. Learning rates: SGD keeps the full-batch ``2 / (L + mu)``;
    Nesterov's and Adam's come from a small sweep on this problem."""
    lr = 2 / (L + mu)
    return [
        MinibatchMethod("SGD", "sgd", f"lr {lr:.3g}", {"config": {"learning_rate": lr}}),
        MinibatchMethod(
            "Nesterov",
            "nesterov_momentum",
            "lr 0.05, momentum 0.9",
            {"config": {"learning_rate": 0.05, "momentum": 0.9}},
        ),
        MinibatchMethod("Adam", "adam", "lr 0.03", {"config": {"learning_rate": 0.03}}),
        MinibatchMethod("Newton", "newton", "batch Hessian, line search on the batch"),
        MinibatchMethod("BFGS", "bfgs", "line search on the batch"),
        MinibatchMethod(
            "L-BFGS, fixed step",
            "lbfgs",
            "step 1, pairs across batches (torch.optim.LBFGS, max_iter=1)",
            {"line_search": False},
        ),
        MinibatchMethod(
            "L-BFGS + line search", "lbfgs", "line search on the batch, pairs across batches"
        ),
        MinibatchMethod(
            "L-BFGS, same-batch pairs",
            "lbfgs",
            "line search, both gradients of a pair on one batch",
            {"pairs": "same-batch"},
        ),
    ]


def minibatch_study(
    problem: LogisticRegression,
    f_star: float,
    *,
    batch_size: int = 128,
    epochs: int = 30,
    newton_epochs: int = 8,
    seed: int = 0,
) -> MinibatchStudy:
    """Run :func:`minibatch_methods` for ``epochs`` passes of batches (Newton, whose every step
    factorizes a dense batch Hessian, for ``newton_epochs``), and full-batch L-BFGS for as many
    passes as the most expensive run made."""
    n = problem.n_samples
    x0 = np.zeros(problem.dimension)
    mu, L = curvature_bounds(problem)
    per_epoch = n / batch_size
    runs = []
    with one_thread():
        for entry in minibatch_methods(mu, L):
            count = newton_epochs if entry.method == "newton" else epochs
            result = minibatch(
                problem,
                x0,
                entry.method,
                iterations=round(count * per_epoch),
                batch_size=batch_size,
                seed=seed,
                history_size=HISTORY_SIZE,
                **entry.options,
            )
            passes = np.asarray(result.history.nfev) * batch_size / n
            runs.append(MethodRun(entry.label, entry.method, entry.setting, result, passes))
        most = max(float(run.passes[-1]) for run in runs)
        # Every full-batch iteration costs at least one pass, so this many iterations suffice.
        full = lbfgs(
            problem,
            x0,
            history_size=HISTORY_SIZE,
            gtol=0.0,
            ftol=0.0,
            max_iter=int(np.ceil(most)),
            keep_x=False,
        )
    reference = MethodRun(
        "L-BFGS, full batch",
        "lbfgs",
        "every sample, strong-Wolfe search",
        full,
        np.asarray(full.history.nfev, dtype=float),
    )
    return MinibatchStudy(batch_size, epochs, newton_epochs, n, f_star, runs, reference)


# -- what a Hessian costs --------------------------------------------------------------------


def newton_solve_seconds(hessian: np.ndarray, grad: np.ndarray, repeats: int = 3) -> float:
    """The fastest of ``repeats`` timings of one damped Newton solve (on one thread)."""
    best = np.inf
    with one_thread():
        for _ in range(repeats):
            began = time.perf_counter()
            damped_newton_step(hessian, grad)
            best = min(best, time.perf_counter() - began)
    return float(best)


def format_bytes(count: float) -> str:
    """``3.4 MB``, ``80 GB``, ``80 PB``: decimal units, three significant digits."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB"):
        if count < 1000 or unit == "EB":
            return f"{count:.3g} {unit}"
        count /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def format_seconds(seconds: float) -> str:
    """A duration in the largest unit that keeps it readable: ``4.2 ms``, ``3.1 h``, ``12
    years``."""
    for limit, unit, size in (
        (1e-3, "us", 1e-6),
        (1.0, "ms", 1e-3),
        (60, "s", 1.0),
        (3600, "min", 60.0),
        (86400, "h", 3600.0),
        (365.25 * 86400, "days", 86400.0),
    ):
        if seconds < limit:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds / (365.25 * 86400):.3g} years"


def hessian_cost_rows(
    dimension: int, solve_seconds: float, sizes: tuple[float, ...] = (1e4, 1e5, 1e6, 1e8)
) -> list[list[Any]]:
    """Per size: parameters, the gradient's, L-BFGS's and a dense Hessian's float64 memory,
    whether the Hessian fits in :data:`MEMORY_BUDGET`, and one Newton solve's time
    extrapolated as ``N^3`` from ``solve_seconds`` measured at ``dimension``."""
    rows = []
    for size in (dimension, *sizes):
        hessian = FLOAT_BYTES * size * size
        label = f"{int(size)} (this problem)" if size == dimension else f"{size:.0e}"
        rows.append(
            [
                label,
                format_bytes(FLOAT_BYTES * size),
                format_bytes(2 * HISTORY_SIZE * FLOAT_BYTES * size),
                format_bytes(hessian),
                hessian <= MEMORY_BUDGET,
                format_seconds(solve_seconds * (size / dimension) ** 3),
            ]
        )
    return rows


__all__ = [
    "FullBatchStudy",
    "MethodRun",
    "MinibatchMethod",
    "MinibatchStudy",
    "curvature_bounds",
    "digits_problem",
    "first_order",
    "format_bytes",
    "format_seconds",
    "full_batch_study",
    "hessian_cost_rows",
    "minibatch_methods",
    "minibatch_study",
    "newton_solve_seconds",
    "one_thread",
]
