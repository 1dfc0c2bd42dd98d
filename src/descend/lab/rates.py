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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from descend.lab import theory
from descend.lab.loop import functional_hypers
from descend.lab.problems import Ravine
from descend.lab.runner import Contender, run
from descend.optim.base import RuleOptimizer
from descend.specs import FunctionalOptimizerSpec, OptimizerSpec

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


def predicted_rate(
    method: str, eigenvalues: Sequence[float], lr: float, momentum: float = 0.0
) -> float:
    """Theory's rate of ``method`` (a key of :data:`METHODS`) at the given settings."""
    return theory.rate(method, eigenvalues, lr, momentum)


def rule_method(rule: str, hypers: Mapping[str, Any]) -> tuple[str, float, float] | None:
    """``(method, lr, momentum)`` when theory covers the rule ``rule`` at these hyperparameters
    (at a constant learning rate), else None.

    Covered: ``sgd`` (plain, with momentum: heavy ball, with ``nesterov``: Nesterov; with a
    constant rate torch's buffer form makes the same iterates), ``sgd_momentum`` (heavy ball)
    and ``nesterov``, without weight decay, dampening or ``maximize``.
    """
    if hypers.get("weight_decay", 0) or hypers.get("maximize") or hypers.get("dampening", 0):
        return None
    lr = float(hypers["lr"])
    if rule == "sgd":
        momentum = float(hypers.get("momentum", 0.0))
        if momentum == 0:
            return "gradient descent", lr, 0.0
        return ("Nesterov" if hypers.get("nesterov") else "heavy ball"), lr, momentum
    if rule in ("sgd_momentum", "nesterov"):
        method = "Nesterov" if rule == "nesterov" else "heavy ball"
        return method, lr, float(hypers["momentum"])
    return None


def theory_method(contender: Contender) -> tuple[str, float, float] | None:
    """``(method, lr, momentum)`` when theory covers this contender on a quadratic, else None.

    Covered: the rules of :func:`rule_method`, run as descend's classes, as
    ``torch.optim.SGD`` or through the functional API, at a constant learning rate.
    """
    if contender.schedule is not None and not contender.schedule.constant:
        return None
    spec = contender.optimizer
    if isinstance(spec, FunctionalOptimizerSpec):
        return rule_method(spec.update.rule.name, functional_hypers(spec.update, spec.arguments))
    assert isinstance(spec, OptimizerSpec)
    if spec.name == "torch.optim.SGD":
        return rule_method("sgd", {"lr": spec.lr, **spec.arguments})
    if issubclass(spec.cls, RuleOptimizer):
        optimizer = spec.build([torch.zeros(1, requires_grad=True)])
        return rule_method(optimizer.rule.name, optimizer.rule_hypers(optimizer.param_groups[0]))
    return None


def compare_rates(
    kappas: Sequence[float] = KAPPAS,
    dim: int = 10,
    steps: int = 1500,
    given_lr: float | None = None,
    given_momentum: float = 0.9,
    seed: int = 0,
) -> list[RateRow]:
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
        optimal = {
            "gradient descent": theory.gd_optimal(mu, L),
            "heavy ball": theory.heavy_ball_optimal(mu, L),
            "Nesterov": theory.nesterov_optimal(mu, L),
        }
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
                rows.append(
                    RateRow(
                        float(kappa),
                        method,
                        label,
                        step_size,
                        momentum,
                        predicted_rate(method, eigenvalues, step_size, momentum),
                        theory.measured_rate(trace.distances),
                    )
                )
    return rows
