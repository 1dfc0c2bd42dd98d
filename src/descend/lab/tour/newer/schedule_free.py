"""Schedule-Free against step decay on the noisy fit: each method's floor beside the floor
theory gives constant-step SGD and the limit of any method that sees the same minibatches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import descend
from descend import schedules
from descend.lab import plots
from descend.lab.problems import NoisyLeastSquares
from descend.lab.report import Table
from descend.lab.tour.base import Progress, TourSettings, noop
from descend.optim import ScheduledLR, evaluation_mode

SF_LRS = (0.1, 0.3, 1.0)
SGD_LR = 0.1


def constant_step_floor(problem: NoisyLeastSquares, lr: float) -> float:
    """The stationary excess loss of constant-step SGD on a least-squares problem.

    With the minibatch noise's covariance ``C`` at the minimum and ``A = I - lr H``, the
    iterates' covariance solves ``P = A P A + lr^2 C``; the excess loss is ``tr(H P) / 2``
    (about ``lr tr(C) / 4`` for a small step).
    """
    hessian, noise = _curvature_and_noise(problem)
    dimension = hessian.shape[0]
    shrink = np.eye(dimension) - lr * hessian
    covariance = np.linalg.solve(
        np.eye(dimension**2) - np.kron(shrink, shrink), (lr**2 * noise).reshape(-1)
    ).reshape(dimension, dimension)
    return 0.5 * float(np.trace(hessian @ covariance))


def averaging_limit(problem: NoisyLeastSquares, steps: int) -> float:
    """``tr(H^-1 C) / (2 T)``: the excess loss that the best use of T minibatches reaches
    asymptotically (Polyak and Juditsky's averaged SGD attains it)."""
    hessian, noise = _curvature_and_noise(problem)
    return 0.5 * float(np.trace(np.linalg.solve(hessian, noise))) / steps


def _curvature_and_noise(problem: NoisyLeastSquares) -> tuple[np.ndarray, np.ndarray]:
    """The Hessian and the covariance of a minibatch gradient at the minimum."""
    features, targets = problem.features, problem.targets
    residual = features @ problem.minima[0] - targets
    per_example = features * residual[:, None]
    spread = np.cov(per_example.T, bias=True).reshape(problem.dimension, problem.dimension)
    n, batch = problem.n, problem.batch_size
    return features.T @ features / n, (n - batch) / (batch * (n - 1)) * spread


@dataclass
class ScheduleFreeRun:
    """One method's excess loss at its evaluation weights, per step, averaged over seeds;
    ``family`` is its optimizer's, for its colour."""

    label: str
    excess: np.ndarray
    family: str

    def tail(self) -> float:
        """Mean over the last quarter of the run."""
        return float(np.mean(self.excess[-max(1, len(self.excess) // 4) :]))


@dataclass
class ScheduleFreeStudy:
    """SGD with a constant step and with step decay against Schedule-Free SGD."""

    runs: list[ScheduleFreeRun]
    best: ScheduleFreeRun
    steps: int
    seeds: int
    decay_every: int
    floor: float
    limit: float


def _excess_curve(
    problem: NoisyLeastSquares,
    make: Callable[[list], torch.optim.Optimizer],
    steps: int,
    seed: int,
    schedule: schedules.Schedule | None,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    param = problem.torch_parameter()
    optimizer = make([param])
    scheduler = ScheduledLR(optimizer, schedule) if schedule is not None else None
    losses = [problem.loss(param.detach().numpy())]
    for _ in range(steps):
        problem.backward(param, rng)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        with evaluation_mode(optimizer):
            losses.append(problem.loss(param.detach().numpy()))
    return np.array(losses) - problem.minimum_value


def schedule_free_study(settings: TourSettings, progress: Progress = noop) -> ScheduleFreeStudy:
    """The noisy least-squares fit (batch 4) under each method, over several seeds."""
    problem = NoisyLeastSquares(n=256, dim=2, batch_size=4, seed=settings.seed)
    steps, seeds = (200, 2) if settings.quick else (400, 8)
    every = steps // 4
    methods: list[
        tuple[str, str, Callable[[list], torch.optim.Optimizer], schedules.Schedule | None]
    ] = [
        (f"SGD, lr {SGD_LR:g}", "sgd", lambda p: descend.SGD(p, lr=SGD_LR), None),
        (
            f"SGD, lr {SGD_LR:g} halved every {every}",
            "sgd",
            lambda p: descend.SGD(p, lr=SGD_LR),
            schedules.step_decay(SGD_LR, every, 0.5),
        ),
    ]
    methods += [
        (
            f"Schedule-Free SGD, lr {lr:g}",
            "sf_sgd",
            lambda p, lr=lr: descend.SGDScheduleFree(p, lr=lr, momentum=0.9),
            None,
        )
        for lr in SF_LRS
    ]
    runs = []
    for label, family, make, schedule in methods:
        curves = [
            _excess_curve(problem, make, steps, settings.seed + seed, schedule)
            for seed in range(seeds)
        ]
        runs.append(ScheduleFreeRun(label, np.mean(curves, axis=0), family))
        progress("newer: Schedule-Free on the noisy fit", seeds)
    best = min(runs[2:], key=lambda r: r.excess[-1])
    return ScheduleFreeStudy(
        runs,
        best,
        steps,
        seeds,
        every,
        constant_step_floor(problem, SGD_LR),
        averaging_limit(problem, steps),
    )


def schedule_free_outputs(
    study: ScheduleFreeStudy, image: Callable[[str], Path]
) -> tuple[list[str], list[tuple[Path, str]], Table]:
    """The study's paragraphs, figures (drawn into ``image(name)``, with captions built from
    the measurements) and table."""
    constant, decayed = study.runs[0], study.runs[1]
    best = study.best
    table = Table(
        f"Noisy least squares (batch 4): excess loss at the evaluation weights, mean of "
        f"{study.seeds} seeds",
        ["method", "last quarter", f"after {study.steps} steps"],
        [[r.label, r.tail(), float(r.excess[-1])] for r in study.runs]
        + [
            ["theory: constant step's floor", study.floor, study.floor],
            [f"theory: limit for {study.steps} minibatches", "", study.limit],
        ],
        "Schedule-Free SGD is evaluated at its averaged point x (descend.optim.evaluation_mode)"
        " and runs with momentum 0.9 and no schedule. The floor solves P = A P A + lr^2 C for "
        "the iterates' covariance (C the minibatch noise at the minimum); the limit is "
        "tr(H^-1 C) / (2 T).",
    )
    paragraphs = [
        "Schedule-Free methods (2024) replace the learning-rate schedule by an average: the "
        "gradient is taken at y, between a fast SGD sequence z and the running average x of "
        "z, and the model is evaluated at x. On the noisy fit, constant-step SGD settles at "
        f"an excess loss of {constant.tail():.2g} over the last quarter of the run, where "
        f"theory puts its floor at {study.floor:.2g}. Halving the step every "
        f"{study.decay_every} steps, a schedule fitted to this run's length, ends at "
        f"{decayed.excess[-1]:.2g}; Schedule-Free SGD at {best.label.split(', ')[-1]}, with "
        f"no schedule and no horizon to choose, ends at {best.excess[-1]:.2g} (the best of lr "
        f"{', '.join(f'{lr:g}' for lr in SF_LRS)}).",
        f"For scale, the asymptotic limit for {study.steps} minibatches, which averaged SGD "
        f"reaches as T grows, is {study.limit:.2g}: step decay ends at "
        f"{decayed.excess[-1] / study.limit:.2f} times it and Schedule-Free SGD at "
        f"{best.excess[-1] / study.limit:.2f} times. What Schedule-Free changes is that an "
        "average, not a decaying step, removes the noise, so the run can stop at any step.",
    ]
    steps = np.arange(study.steps + 1)
    lines = [plots.Line(run.label, steps, run.excess, run.family) for run in study.runs]
    lines.append(
        plots.Line(
            "theory: constant step's floor",
            steps,
            np.full(len(steps), study.floor),
            "theory",
            theory=True,
        )
    )
    path = plots.line_panels(
        [
            plots.Panel(
                "noisy least squares, batch 4: loss above the minimum",
                "step",
                "loss - f* (evaluation weights)",
                lines,
            )
        ],
        image("newer_schedule_free.png"),
        columns=1,
    )
    figures = [
        (
            path,
            f"Excess loss per step, mean of {study.seeds} seeds. Constant-step SGD's last "
            f"quarter averages {constant.tail():.2g} against the predicted floor of "
            f"{study.floor:.2g} ({plots.THEORY.dash_name}); runs of one "
            f"method differ in lightness. Step decay ends at {decayed.excess[-1]:.2g}, "
            f"Schedule-Free SGD's average at {best.excess[-1]:.2g} "
            f"({best.label.split(', ')[-1]}).",
        )
    ]
    return paragraphs, figures, table
