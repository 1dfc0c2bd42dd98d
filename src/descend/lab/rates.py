"""Theory next to measurement: linear rates of GD, heavy ball and Nesterov on quadratics.

For a quadratic with Hessian eigenvalues in ``[mu, L]`` each method runs (as a descend torch
optimizer) at the theory's optimal settings and at given ones, and the rate it shows
(:func:`descend.lab.theory.measured_rate`) is set beside the one theory predicts (the spectral
radius of its iteration, :mod:`descend.lab.theory`).

The run starts 1e100 from the optimum, which sits at the origin: the iteration is linear and
floating point is relative, so hundreds of orders of magnitude of contraction are measurable
and the slow transient of a repeated eigenvalue (``k r^k``) no longer blurs the rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from descend.lab import theory
from descend.lab.problems import Ravine
from descend.lab.runner import Contender, run
from descend.lab.specs import FunctionalOptimizerSpec, OptimizerSpec

#: Methods theory covers: label, descend spec name, predicted-rate function.
METHODS = {
    "gradient descent": "sgd",
    "heavy ball": "momentum",
    "Nesterov": "nesterov",
}


#: The condition numbers :func:`compare_rates` measures by default.
KAPPAS = (10, 100, 1000)
#: The settings each method runs at: theory's optimal ones and everyday ones.
SETTINGS = ("optimal", "given")


def row_count(kappas: Sequence[float] = KAPPAS) -> int:
    """How many rows (and runs) :func:`compare_rates` makes for these condition numbers."""
    return len(kappas) * len(METHODS) * len(SETTINGS)


@dataclass(frozen=True)
class RateRow:
    """One method at one setting on one quadratic: predicted and measured rate."""

    kappa: float
    method: str
    setting: str
    lr: float
    momentum: float
    predicted: float
    measured: float

    @property
    def relative_error(self) -> float:
        """``|measured - predicted| / predicted``."""
        return abs(self.measured - self.predicted) / self.predicted


def predicted_rate(method: str, eigenvalues: Sequence[float], lr: float,
                   momentum: float = 0.0) -> float:
    """Theory's rate of ``method`` (a key of :data:`METHODS`) at the given settings."""
    if method == "gradient descent":
        return theory.gd_rate(eigenvalues, lr)
    if method == "heavy ball":
        return theory.heavy_ball_rate(eigenvalues, lr, momentum)
    if method == "Nesterov":
        return theory.nesterov_rate(eigenvalues, lr, momentum)
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")


def theory_method(contender: Contender) -> tuple[str, float, float] | None:
    """``(method, lr, momentum)`` when theory covers this contender on a quadratic, else None.

    Covered: plain and momentum SGD (descend's, ``torch.optim``'s and the functional API's),
    descend's Momentum and Nesterov, at a constant learning rate without weight decay or
    dampening.
    """
    if contender.schedule is not None:
        return None
    spec = contender.method
    args = dict(spec.arguments)
    if isinstance(spec, FunctionalOptimizerSpec):
        name = spec.name.removeprefix("functional.")
        names = {"sgd": "gradient descent", "sgd_momentum": "heavy ball",
                 "nesterov_momentum": "Nesterov"}
        if name not in names or args.get("weight_decay", 0) or args.get("maximize"):
            return None
        default_momentum = spec.update.defaults.get("momentum", 0.0)
        return names[name], spec.lr, float(args.get("momentum", default_momentum))
    assert isinstance(spec, OptimizerSpec)
    if args.get("weight_decay", 0) or args.get("maximize") or args.get("dampening", 0):
        return None
    if spec.name in ("sgd", "torch.optim.SGD"):
        momentum = float(args.get("momentum", 0.0))
        if momentum == 0:
            return "gradient descent", spec.lr, 0.0
        return ("Nesterov" if args.get("nesterov") else "heavy ball"), spec.lr, momentum
    if spec.name in ("momentum", "sgd_momentum", "nesterov"):
        momentum = float(args.get("momentum", 0.9))
        return ("Nesterov" if spec.name == "nesterov" else "heavy ball"), spec.lr, momentum
    return None


def compare_rates(kappas: Sequence[float] = KAPPAS, dim: int = 10, steps: int = 1500,
                  given_lr: float | None = None, given_momentum: float = 0.9,
                  seed: int = 0) -> list[RateRow]:
    """Predicted and measured rates for each method, at optimal and at given settings.

    The given setting is ``lr = 1/L`` (or ``given_lr``) with ``momentum = given_momentum``.
    Each run uses a rotated ``dim``-dimensional ravine with log-spaced eigenvalues in
    ``[1, kappa]``.
    """
    rows = []
    for kappa in kappas:
        problem = Ravine(kappa=float(kappa), dim=dim, seed=seed)
        eigenvalues = problem.eigenvalues
        mu, L = float(eigenvalues.min()), float(eigenvalues.max())
        optimal = {"gradient descent": theory.gd_optimal(mu, L),
                   "heavy ball": theory.heavy_ball_optimal(mu, L),
                   "Nesterov": theory.nesterov_optimal(mu, L)}
        lr = 1.0 / L if given_lr is None else given_lr
        for method, name in METHODS.items():
            best = optimal[method]
            given = (lr, 0.0 if method == "gradient descent" else given_momentum)
            settings = list(zip(SETTINGS, ((best.lr, best.momentum), given), strict=True))
            for label, (step_size, momentum) in settings:
                spec = f"{name}:lr={step_size!r}"
                if method != "gradient descent":
                    spec += f",momentum={momentum!r}"
                trace = run(problem, Contender.parse(spec), steps, start=problem.start() * 1e100)
                rows.append(RateRow(float(kappa), method, label, step_size, momentum,
                                    predicted_rate(method, eigenvalues, step_size, momentum),
                                    theory.measured_rate(trace.distances)))
    return rows
