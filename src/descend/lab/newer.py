"""What the newer methods change on the problems of SGD, measured beside theory.

Three studies, each on a problem the lecture's tour already uses:

1. **Lion's sign step on the ravine.** A sign step moves every coordinate by the learning rate
   whatever its curvature, so on an axis-aligned ravine the steps to reach the minimum do not
   grow with the condition number kappa (for sign descent they are predicted exactly), while
   gradient descent's grow like kappa (predicted exactly too). Rotate the ravine and the sign
   step loses its footing: it evens out the axes, not the curvature.
2. **Schedule-Free against step decay on the noisy fit.** Constant-step SGD stalls at a noise
   floor that theory gives (the stationary solution of the iteration's covariance); a step
   decay schedule gets below it, and so does Schedule-Free SGD, evaluated at its average, with
   no schedule; the asymptotic limit of any method that sees T minibatches sits beside them.
3. **Muon on an ill-conditioned matrix problem.** A linear layer fit under an ill-conditioned
   input covariance: gradient descent's step count grows with kappa (predicted exactly), Muon's
   does not, because its direction has every singular value near 1 whatever the gradient's
   spread (the Newton-Schulz quintic predicts the band).

:func:`run_newer` runs the three studies and returns their numbers, figures and captions;
every number in a caption or paragraph comes from the run it describes. :func:`newer_section`
is the same as a section of the tour's report.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import descend
from descend import schedules
from descend.lab import plots
from descend.lab.problems import NoisyLeastSquares, Ravine
from descend.lab.report import Figure, Report, Section, Table
from descend.lab.runner import Contender, Trace, run
from descend.optim import ScheduledLR, evaluation_mode
from descend.rules.muon import NS_COEFFICIENTS, NS_STEPS, lr_ratio, newton_schulz
from descend.specs import ContenderSpec, OptimizerSpec

#: ``progress(description, advance)``: called as runs finish; advance counts runs.
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class NewerSettings:
    """Knobs of the section. ``quick`` shortens every run (for tests); ``seed`` fixes the data
    and the minibatches."""

    quick: bool = False
    seed: int = 0


def _noop(description: str, advance: int) -> None:
    return None


def _spec(cls: type[torch.optim.Optimizer], name: str, **arguments: Any) -> OptimizerSpec:
    body = ",".join(f"{key}={value!r}" for key, value in arguments.items())
    return OptimizerSpec(f"{name}:{body}", name, cls, arguments)


def steps_to_stay(values: np.ndarray, tolerance: float) -> int | None:
    """The first step from which ``values`` stay at or below ``tolerance`` (None if the run
    ends above it)."""
    above = np.flatnonzero(~(np.asarray(values) <= tolerance))
    if above.size == 0:
        return 0
    last = int(above[-1])
    return last + 1 if last + 1 < len(values) else None


def _count(value: int | None, horizon: int) -> int | str:
    return value if value is not None else f"> {horizon}"


def _span(values: Sequence[int | str]) -> str:
    """``"446 at every kappa"`` when every value is the same, else ``"223 to 241"`` (the
    smallest to the largest; a count past the horizon, ``"> 500"``, counts as the largest)."""
    texts = [str(value) for value in values]
    if len(set(texts)) == 1:
        return f"{texts[0]} at every kappa"
    numbers = [value for value in values if isinstance(value, int)]
    beyond = [value for value in values if not isinstance(value, int)]
    largest = beyond[0] if beyond else max(numbers)
    return f"{min(numbers)} to {largest}" if numbers else f"{texts[0]} to {texts[-1]}"


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: these problems are tiny, and a second
    thread only costs synchronization (tens of times more beside a busy neighbour)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# -- 1. Lion's sign step on the ravine ------------------------------------------------------------

LION_KAPPAS = (10.0, 100.0, 1000.0)
LION_ANGLE = 30.0
LION_LR = 0.04
LION_RADIUS = 0.15


def sign_descent_distances(start: np.ndarray, lr: float, steps: int) -> np.ndarray:
    """Distances to the minimum of sign descent, ``x <- x - lr sign(x)``, in closed form.

    Each coordinate shrinks by ``lr`` per step until it crosses zero, then alternates between
    ``r`` and ``r - lr`` (``r`` its remainder): ``steps + 1`` distances, step 0 the start.
    """
    magnitude = np.abs(np.asarray(start, dtype=float))
    t = np.arange(steps + 1)[:, None]
    crossings = np.floor(magnitude / lr)
    remainder = magnitude - crossings * lr
    settled = np.where((t - crossings) % 2 == 1, remainder - lr, remainder)
    coordinates = np.where(t <= crossings, magnitude - lr * t, settled)
    return np.sqrt(np.sum(coordinates**2, axis=1))


@dataclass
class LionRow:
    """Steps until the distance to the minimum stays within the radius, on one ravine."""

    kappa: float
    gd_predicted: int
    gd_measured: int | None
    sign_predicted: int
    sign_measured: int | None
    lion_measured: int | None
    sign_rotated: int | None
    lion_rotated: int | None


@dataclass
class LionStudy:
    """Gradient descent, sign descent and Lion on 2-D ravines, aligned and rotated."""

    rows: list[LionRow]
    lr: float
    radius: float
    angle: float
    steps: int
    traces: dict[str, list[Trace]] = field(default_factory=dict)
    ravines: dict[str, Ravine] = field(default_factory=dict)


def lion_study(settings: NewerSettings, progress: Progress = _noop) -> LionStudy:
    """Steps to the minimum on ravines of each kappa, against the predictions."""
    steps = 500 if settings.quick else 3000
    rows = []
    study = LionStudy([], LION_LR, LION_RADIUS, LION_ANGLE, steps)
    for kappa in LION_KAPPAS:
        measured: dict[tuple[str, float], int | None] = {}
        for angle in (0.0, LION_ANGLE):
            ravine = Ravine(kappa=kappa, dim=2, angle=angle, picture=True)
            contenders = [
                Contender(ContenderSpec(_spec(descend.SGD, "sgd", lr=2 / (kappa + 1)),
                                        name="GD, lr 2/(L+mu)")),
                Contender(ContenderSpec(_spec(descend.Lion, "lion", lr=LION_LR,
                                              betas=(0.0, 0.0)),
                                        name="sign descent (Lion, betas 0, 0)")),
                Contender(ContenderSpec(_spec(descend.Lion, "lion", lr=LION_LR),
                                        name="Lion, betas 0.9, 0.99")),
            ]
            traces = [run(ravine, contender, steps, seed=settings.seed)
                      for contender in contenders]
            progress("newer: Lion on the ravine", len(contenders))
            for label, trace in zip(("gd", "sign", "lion"), traces, strict=True):
                measured[label, angle] = steps_to_stay(trace.distances, LION_RADIUS)
            if kappa == 100.0:
                key = "aligned" if angle == 0 else "rotated"
                study.traces[key], study.ravines[key] = traces, ravine
        ravine = Ravine(kappa=kappa, dim=2, picture=True)
        start = ravine.quadratic.rotation.T @ ravine.x0
        rate = (kappa - 1) / (kappa + 1)
        gd_predicted = math.ceil(math.log(LION_RADIUS / np.linalg.norm(start)) / math.log(rate))
        horizon = max(steps, int(np.abs(start).max() / LION_LR) + 2)
        sign_predicted = steps_to_stay(sign_descent_distances(start, LION_LR, horizon),
                                       LION_RADIUS)
        rows.append(LionRow(kappa, gd_predicted, measured["gd", 0.0], sign_predicted,
                            measured["sign", 0.0], measured["lion", 0.0],
                            measured["sign", LION_ANGLE], measured["lion", LION_ANGLE]))
    study.rows = rows
    return study


def _lion_outputs(study: LionStudy, image: Callable[[str], Path]
                  ) -> tuple[list[str], list[tuple[Path, str]], Table]:
    first, last = study.rows[0], study.rows[-1]
    h = study.steps
    table = Table(
        f"Steps until the distance to the minimum stays below {study.radius:g} (2-D ravines "
        f"started at distance {_start_distance():.2f}; sign steps of {study.lr:g})",
        ["kappa", "GD predicted", "GD measured", "sign descent predicted",
         "sign descent measured", "Lion measured", f"sign descent, rotated {study.angle:g} deg",
         f"Lion, rotated {study.angle:g} deg"],
        [[int(r.kappa), r.gd_predicted, _count(r.gd_measured, h), r.sign_predicted,
          _count(r.sign_measured, h), _count(r.lion_measured, h), _count(r.sign_rotated, h),
          _count(r.lion_rotated, h)] for r in study.rows],
        "GD at lr 2/(L+mu) contracts the distance by (kappa-1)/(kappa+1) per step in 2-D; sign "
        "descent's coordinates shrink by the step size until they cross zero (both counts "
        "exact). Lion is the sign step of its moving averages, with its default betas.")
    gd_checked = [(r.gd_predicted, r.gd_measured) for r in study.rows
                  if r.gd_measured is not None]
    sign_exact = all(r.sign_measured == r.sign_predicted for r in study.rows)
    paragraphs = [
        "Lion (2023) steps along the sign of a moving average of gradients: every coordinate "
        "moves by exactly the learning rate, whatever the gradient's size. On the ravine that "
        "is a direct answer to ill-conditioning along the axes, and theory predicts both "
        "counts in the table: gradient descent at its best fixed step needs "
        f"{first.gd_predicted} steps at kappa {first.kappa:g} and {last.gd_predicted} at "
        f"kappa {last.kappa:g} (measured: {_count(first.gd_measured, h)} and "
        f"{_count(last.gd_measured, h)}), while sign descent needs "
        f"{_span([r.sign_predicted for r in study.rows])} (measured: "
        f"{_span([_count(r.sign_measured, h) for r in study.rows])}). Lion with its default "
        f"betas measured {_span([_count(r.lion_measured, h) for r in study.rows])}"
        f"{_compared(study.rows[1].lion_measured, study.rows[1].sign_measured)}.",
        f"Rotate the ravine by {study.angle:g} degrees and the axes no longer follow the "
        f"curvature: at kappa {last.kappa:g} sign descent {_reached(last.sign_rotated, h)} "
        f"and Lion {_reached(last.lion_rotated, h)}. Like AdaGrad and Adam, a sign step "
        "rescales the coordinates, so it helps as far as the coordinates line up with the "
        "ravine.",
    ]
    contour_path = plots.panels(
        [(study.ravines["aligned"], study.traces["aligned"]),
         (study.ravines["rotated"], study.traces["rotated"])], image("newer_lion_contours.png"),
        titles=["kappa = 100, axis-aligned", f"kappa = 100, rotated {study.angle:g} deg"])
    kappas = np.array([r.kappa for r in study.rows])

    def line(label: str, values: Sequence[int | None], color: int, dashed: bool = False):
        y = np.array([np.nan if v is None else v for v in values], dtype=float)
        return plots.Line(label, kappas, y, color, dashed=dashed, markers=True)

    steps_path = plots.line_panels([plots.Panel(
        "steps to the minimum against the condition number", "kappa",
        f"steps until distance < {study.radius:g}", [
            line("GD, predicted", [r.gd_predicted for r in study.rows], 0, dashed=True),
            line("GD, measured", [r.gd_measured for r in study.rows], 0),
            line("sign descent, predicted", [r.sign_predicted for r in study.rows], 1,
                 dashed=True),
            line("sign descent, measured", [r.sign_measured for r in study.rows], 1),
            line("Lion, measured", [r.lion_measured for r in study.rows], 2),
            line(f"Lion, rotated {study.angle:g} deg", [r.lion_rotated for r in study.rows], 3),
        ], xscale="log")], image("newer_lion_steps.png"), columns=1)
    aligned = study.rows[1]
    checked = ("matching every measured count" if all(p == m for p, m in gd_checked)
               else f"measured {', '.join(str(m) for _, m in gd_checked)}")
    figures = [
        (contour_path,
         "Gradient descent (blue), sign descent (orange) and Lion (green) on a kappa = 100 "
         f"ravine. Axis-aligned, sign descent settles within {study.radius:g} of the minimum "
         f"after {_count(aligned.sign_measured, h)} steps and Lion after "
         f"{_count(aligned.lion_measured, h)}; rotated by {study.angle:g} degrees, sign "
         f"descent {_reached(aligned.sign_rotated, h)} and Lion "
         f"{_reached(aligned.lion_rotated, h)}."),
        (steps_path,
         "Steps to the minimum against kappa (log scale). Theory's count for gradient "
         f"descent grows from {first.gd_predicted} to {last.gd_predicted} ({checked}); for "
         f"sign descent it is {_span([r.sign_predicted for r in study.rows])}"
         f"{' and the runs match it' if sign_exact else ''}."),
    ]
    return paragraphs, figures, table


def _compared(lion: int | None, sign: int | None) -> str:
    """How Lion's count compares with sign descent's at kappa 100, in words."""
    if lion is None or sign is None or lion == sign:
        return ""
    return (", slower than sign descent: its moving averages keep pushing after the gradient "
            "has turned" if lion > sign else ", faster than sign descent")


def _start_distance() -> float:
    return float(np.linalg.norm(Ravine(picture=True).x0))


def _reached(steps: int | None, horizon: int) -> str:
    if steps is None:
        return f"never settles within {horizon} steps"
    return f"needs {steps} steps"


# -- 2. Schedule-Free against step decay on the noisy fit -----------------------------------------

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
    covariance = np.linalg.solve(np.eye(dimension**2) - np.kron(shrink, shrink),
                                 (lr**2 * noise).reshape(-1)).reshape(dimension, dimension)
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
    """One method's excess loss at its evaluation weights, per step, averaged over seeds."""

    label: str
    excess: np.ndarray

    def tail(self) -> float:
        """Mean over the last quarter of the run."""
        return float(np.mean(self.excess[-max(1, len(self.excess) // 4):]))


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


def _excess_curve(problem: NoisyLeastSquares, make: Callable[[list], torch.optim.Optimizer],
                  steps: int, seed: int, schedule: schedules.Schedule | None) -> np.ndarray:
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


def schedule_free_study(settings: NewerSettings, progress: Progress = _noop
                        ) -> ScheduleFreeStudy:
    """The noisy least-squares fit (batch 4) under each method, over several seeds."""
    problem = NoisyLeastSquares(n=256, dim=2, batch_size=4, seed=settings.seed)
    steps, seeds = (200, 2) if settings.quick else (400, 8)
    every = steps // 4
    methods: list[tuple[str, Callable[[list], torch.optim.Optimizer],
                        schedules.Schedule | None]] = [
        (f"SGD, lr {SGD_LR:g}", lambda p: descend.SGD(p, lr=SGD_LR), None),
        (f"SGD, lr {SGD_LR:g} halved every {every}", lambda p: descend.SGD(p, lr=SGD_LR),
         schedules.step_decay(SGD_LR, every, 0.5)),
    ]
    methods += [(f"Schedule-Free SGD, lr {lr:g}",
                 lambda p, lr=lr: descend.SGDScheduleFree(p, lr=lr, momentum=0.9), None)
                for lr in SF_LRS]
    runs = []
    for label, make, schedule in methods:
        curves = [_excess_curve(problem, make, steps, settings.seed + seed, schedule)
                  for seed in range(seeds)]
        runs.append(ScheduleFreeRun(label, np.mean(curves, axis=0)))
        progress("newer: Schedule-Free on the noisy fit", seeds)
    best = min(runs[2:], key=lambda r: r.excess[-1])
    return ScheduleFreeStudy(runs, best, steps, seeds, every,
                             constant_step_floor(problem, SGD_LR), averaging_limit(problem, steps))


def _schedule_free_outputs(study: ScheduleFreeStudy, image: Callable[[str], Path]
                           ) -> tuple[list[str], list[tuple[Path, str]], Table]:
    constant, decayed = study.runs[0], study.runs[1]
    best = study.best
    table = Table(
        f"Noisy least squares (batch 4): excess loss at the evaluation weights, mean of "
        f"{study.seeds} seeds",
        ["method", "last quarter", f"after {study.steps} steps"],
        [[r.label, r.tail(), float(r.excess[-1])] for r in study.runs]
        + [["theory: constant step's floor", study.floor, study.floor],
           [f"theory: limit for {study.steps} minibatches", "", study.limit]],
        "Schedule-Free SGD is evaluated at its averaged point x (descend.optim.evaluation_mode)"
        " and runs with momentum 0.9 and no schedule. The floor solves P = A P A + lr^2 C for "
        "the iterates' covariance (C the minibatch noise at the minimum); the limit is "
        "tr(H^-1 C) / (2 T).")
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
    lines = [plots.Line(run.label, steps, run.excess, index)
             for index, run in enumerate(study.runs)]
    lines.append(plots.Line("theory: constant step's floor", steps,
                            np.full(len(steps), study.floor), -1, dashed=True))
    path = plots.line_panels([plots.Panel(
        "noisy least squares, batch 4: loss above the minimum", "step",
        "loss - f* (evaluation weights)", lines)], image("newer_schedule_free.png"), columns=1)
    figures = [(path,
                f"Excess loss per step, mean of {study.seeds} seeds. Constant-step SGD's last "
                f"quarter averages {constant.tail():.2g} against the predicted floor of "
                f"{study.floor:.2g} (dotted); step decay ends at {decayed.excess[-1]:.2g}, "
                f"Schedule-Free SGD's average at {best.excess[-1]:.2g} "
                f"({best.label.split(', ')[-1]}).")]
    return paragraphs, figures, table


# -- 3. Muon on an ill-conditioned matrix problem -------------------------------------------------

MUON_KAPPAS = (10.0, 100.0, 1000.0)
MUON_SHAPE = (16, 8)
MUON_LRS = (0.1, 0.3, 1.0)
MUON_TOLERANCE = 1e-3


@dataclass
class MatrixProblem:
    """``f(W) = 1/2 tr((W - W*)^T S (W - W*))``: a linear layer fit to a linear teacher when the
    inputs have covariance S (eigenvalues log-spaced in [1, kappa], in a random basis)."""

    covariance: np.ndarray
    eigenvalues: np.ndarray
    basis: np.ndarray
    target: np.ndarray

    @classmethod
    def make(cls, kappa: float, shape: tuple[int, int], seed: int) -> MatrixProblem:
        """A problem of condition number ``kappa`` for a ``shape`` weight matrix."""
        rng = np.random.default_rng(seed)
        eigenvalues = np.geomspace(1.0, kappa, shape[0])
        basis, _ = np.linalg.qr(rng.standard_normal((shape[0], shape[0])))
        return cls((basis * eigenvalues) @ basis.T, eigenvalues, basis,
                   rng.standard_normal(shape))

    def loss(self, weights: np.ndarray) -> float:
        """f(W)."""
        error = weights - self.target
        return 0.5 * float(np.sum(error * (self.covariance @ error)))

    def gradient(self, weights: np.ndarray) -> np.ndarray:
        """``S (W - W*)``."""
        return self.covariance @ (weights - self.target)

    def gd_losses(self, lr: float, steps: int) -> np.ndarray:
        """Gradient descent from W = 0 in closed form: along eigendirection i the error
        shrinks by ``1 - lr lambda_i`` per step."""
        error = self.basis.T @ (-self.target)
        weights = 0.5 * self.eigenvalues * np.sum(error**2, axis=1)
        shrink = (1 - lr * self.eigenvalues) ** 2
        return np.array([float(np.sum(weights * shrink**t)) for t in range(steps + 1)])


@dataclass
class MuonRow:
    """One condition number: steps to the tolerance, and the spectra of the first step."""

    kappa: float
    gd_predicted: int | None
    gd_measured: int | None
    muon_measured: int | None
    muon_lr: float
    adam_measured: int | None
    adam_lr: float
    gradient_spread: float
    predicted_band: tuple[float, float]
    measured_band: tuple[float, float]


@dataclass
class MuonStudy:
    """Gradient descent, Muon and Adam on matrix problems of growing condition number."""

    rows: list[MuonRow]
    steps: int
    curves: dict[str, np.ndarray]
    spectra: dict[str, np.ndarray]


def _train_matrix(problem: MatrixProblem, make: Callable[[list], torch.optim.Optimizer],
                  steps: int, decay: bool) -> np.ndarray:
    weights = torch.zeros(problem.target.shape, dtype=torch.float64, requires_grad=True)
    optimizer = make([weights])
    base = float(optimizer.param_groups[0]["lr"])
    scheduler = (ScheduledLR(optimizer, lambda t: base * max(0.0, 1 - t / steps))
                 if decay else None)
    losses = [problem.loss(weights.detach().numpy())]
    for _ in range(steps):
        weights.grad = torch.from_numpy(problem.gradient(weights.detach().numpy()))
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(problem.loss(weights.detach().numpy()))
    return np.array(losses)


def quintic_band(singular_values: np.ndarray) -> tuple[float, float]:
    """Where the Newton-Schulz quintic sends the singular values of a matrix (normalized by its
    Frobenius norm, then ``s <- a s + b s^3 + c s^5`` five times): the band of Muon's
    direction, in exact arithmetic."""
    s = np.asarray(singular_values, dtype=float) / np.linalg.norm(singular_values)
    a, b, c = NS_COEFFICIENTS
    for _ in range(NS_STEPS):
        s = a * s + b * s**3 + c * s**5
    return float(s.min()), float(s.max())


def muon_study(settings: NewerSettings, progress: Progress = _noop) -> MuonStudy:
    """Steps to a relative tolerance for each kappa, and the first step's spectra."""
    steps = 150 if settings.quick else 300
    rows, curves, spectra = [], {}, {}
    for kappa in MUON_KAPPAS:
        problem = MatrixProblem.make(kappa, MUON_SHAPE, settings.seed)
        initial = problem.loss(np.zeros(MUON_SHAPE))
        tolerance = MUON_TOLERANCE * initial
        gd_lr = 2 / (problem.eigenvalues.max() + problem.eigenvalues.min())
        gd = _train_matrix(problem, lambda p, lr=gd_lr: descend.SGD(p, lr=lr), steps, False)
        predicted = problem.gd_losses(gd_lr, 100 * steps)
        tuned = {}
        for name, make in (("muon", lambda p, lr: descend.Muon(p, lr=lr, weight_decay=0.0)),
                           ("adam", lambda p, lr: descend.Adam(p, lr=lr))):
            candidates = {lr: _train_matrix(problem, lambda p, lr=lr, make=make: make(p, lr),
                                            steps, True) for lr in MUON_LRS}
            best = min(candidates, key=lambda lr: candidates[lr][-1])
            tuned[name] = (best, candidates[best])
        progress("newer: Muon on the matrix problem", 1 + 2 * len(MUON_LRS))
        gradient = problem.gradient(np.zeros(MUON_SHAPE))
        singular = np.linalg.svd(gradient, compute_uv=False)
        direction = newton_schulz(torch.from_numpy(gradient).float(),
                                  descend.rules.MUON.validate({}))
        measured = np.linalg.svd(direction.double().numpy(), compute_uv=False) / lr_ratio(
            None, MUON_SHAPE)
        rows.append(MuonRow(
            kappa, steps_to_stay(predicted, tolerance), steps_to_stay(gd, tolerance),
            steps_to_stay(tuned["muon"][1], tolerance), tuned["muon"][0],
            steps_to_stay(tuned["adam"][1], tolerance), tuned["adam"][0],
            float(singular.max() / singular.min()), quintic_band(singular),
            (float(measured.min()), float(measured.max()))))
        if kappa == MUON_KAPPAS[-1]:
            curves = {"GD": gd / initial, "Muon": tuned["muon"][1] / initial,
                      "Adam": tuned["adam"][1] / initial}
            spectra = {"gradient": singular / singular.max(), "Muon": measured}
    return MuonStudy(rows, steps, curves, spectra)


def _muon_outputs(study: MuonStudy, image: Callable[[str], Path]
                  ) -> tuple[list[str], list[tuple[Path, str]], Table]:
    h = study.steps
    first, last = study.rows[0], study.rows[-1]
    table = Table(
        f"Linear layer {MUON_SHAPE[0]} x {MUON_SHAPE[1]} under input covariance of condition "
        f"number kappa: steps until the loss stays below {MUON_TOLERANCE:g} of its start",
        ["kappa", "GD predicted", "GD measured", "Muon measured", "Muon lr", "Adam measured",
         "Adam lr", "gradient's singular-value ratio", "Muon direction, predicted band",
         "measured band"],
        [[int(r.kappa), _count(r.gd_predicted, 100 * h), _count(r.gd_measured, h),
          _count(r.muon_measured, h), r.muon_lr, _count(r.adam_measured, h), r.adam_lr,
          r.gradient_spread, f"{r.predicted_band[0]:.2f} - {r.predicted_band[1]:.2f}",
          f"{r.measured_band[0]:.2f} - {r.measured_band[1]:.2f}"] for r in study.rows],
        f"GD runs at lr 2/(L+mu) and is predicted in closed form. Muon (momentum 0.95, "
        f"Nesterov) and Adam decay their learning rate linearly to zero over the {h} steps; "
        f"each takes the best of lr {', '.join(f'{lr:g}' for lr in MUON_LRS)}. The bands are "
        "the singular values of Muon's first direction (without the shape's lr ratio): "
        "predicted by the quintic in exact arithmetic, measured from the bfloat16 iteration.",
        summary_columns=[0, 1, 2, 3, 5, 7, 9])
    paragraphs = [
        "Muon (2024) is made for the weight matrices of hidden layers: it orthogonalizes the "
        "momentum with a few Newton-Schulz iterations, so the step has every singular value "
        "near 1. Ill-conditioned inputs stretch a layer's gradient: here its singular values "
        f"spread by a factor of {first.gradient_spread:.3g} at kappa {first.kappa:g} and "
        f"{last.gradient_spread:.3g} at kappa {last.kappa:g}, while Muon's direction stays "
        f"between {last.measured_band[0]:.2f} and {last.measured_band[1]:.2f} (the quintic "
        f"predicts {last.predicted_band[0]:.2f} to {last.predicted_band[1]:.2f}).",
        "Gradient descent pays for the spread: it needs "
        f"{_count(first.gd_measured, h)} steps at kappa {first.kappa:g} and "
        f"{_count(last.gd_measured, h)} at kappa {last.kappa:g} (theory: "
        f"{_count(first.gd_predicted, 100 * h)} and {_count(last.gd_predicted, 100 * h)}). "
        f"Muon needs {_span([_count(r.muon_measured, h) for r in study.rows])}"
        f"{_flatness([r.muon_measured for r in study.rows])}. Adam, which rescales "
        "coordinates rather than directions, needs "
        f"{_span([_count(r.adam_measured, h) for r in study.rows])} on this problem.",
    ]
    steps = np.arange(h + 1)
    colors = {"GD": 0, "Muon": 1, "Adam": 2}
    kappas = np.array([r.kappa for r in study.rows])

    def counts(values: Sequence[int | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    rank = np.arange(1, len(study.spectra["gradient"]) + 1)
    path = plots.line_panels([
        plots.Panel(f"kappa = {last.kappa:g}: loss / initial loss", "step", "relative loss",
                    [plots.Line(name, steps, curve, colors[name])
                     for name, curve in study.curves.items()], hline=MUON_TOLERANCE),
        plots.Panel("steps to the tolerance against kappa", "kappa", "steps", [
            plots.Line("GD, predicted", kappas, counts([r.gd_predicted for r in study.rows]), 0,
                       dashed=True, markers=True),
            plots.Line("GD, measured", kappas, counts([r.gd_measured for r in study.rows]), 0,
                       markers=True),
            plots.Line("Muon", kappas, counts([r.muon_measured for r in study.rows]), 1,
                       markers=True),
            plots.Line("Adam", kappas, counts([r.adam_measured for r in study.rows]), 2,
                       markers=True)], xscale="log"),
        plots.Panel(f"kappa = {last.kappa:g}: singular values of the first step", "index",
                    "singular value (gradient: / largest)", [
                        plots.Line("gradient", rank, study.spectra["gradient"], 0,
                                   markers=True),
                        plots.Line("Muon's direction", rank, study.spectra["Muon"], 1,
                                   markers=True)]),
    ], image("newer_muon.png"), columns=3, size=(4.6, 3.6))
    figures = [(path,
                f"Left: the kappa = {last.kappa:g} run; the dotted line is the tolerance. "
                "Middle: steps to the tolerance against kappa; gradient descent's count grows "
                f"from {_count(first.gd_measured, h)} to {_count(last.gd_measured, h)}, Muon's "
                f"is {_span([_count(r.muon_measured, h) for r in study.rows])}. Right: the "
                "gradient's singular values fall "
                f"by a factor of {last.gradient_spread:.3g}; Muon's direction has them all "
                f"between {last.measured_band[0]:.2f} and {last.measured_band[1]:.2f}.")]
    return paragraphs, figures, table


def _flatness(counts: Sequence[int | None]) -> str:
    """A clause on how much a count varies across kappa, from the counts themselves."""
    if any(count is None for count in counts):
        return ""
    spread = max(counts) / max(min(counts), 1)
    return (f": a change of {100 * (spread - 1):.0f}% over a thousandfold range of kappa"
            if spread < 1.5 else "")


# -- the section ----------------------------------------------------------------------------------


#: The section's anchor and heading in the tour's report.
SECTION_SLUG = "newer"
SECTION_TITLE = "What the newer methods change"


@dataclass
class NewerResults:
    """The three studies, with the section's generated text, figures and tables.

    ``figures`` pairs each image's path with its caption; ``data`` is JSON-ready.
    """

    lion: LionStudy
    schedule_free: ScheduleFreeStudy
    muon: MuonStudy
    paragraphs: list[str]
    figures: list[tuple[Path, str]]
    tables: list[Table]
    data: dict[str, Any]

    def section(self) -> Section:
        """The results as a section of the tour's report (figures named within its images
        folder)."""
        return Section(SECTION_SLUG, SECTION_TITLE, self.paragraphs,
                       [Figure(path.name, caption) for path, caption in self.figures],
                       self.tables, self.data)


def run_count(settings: NewerSettings) -> int:
    """How many runs :func:`run_newer` makes (for a progress bar)."""
    lion = len(LION_KAPPAS) * 2 * 3
    schedule_free = (2 + len(SF_LRS)) * (2 if settings.quick else 8)
    muon = len(MUON_KAPPAS) * (1 + 2 * len(MUON_LRS))
    return lion + schedule_free + muon


def run_newer(out: Path | str, settings: NewerSettings | None = None,
              progress: Progress | None = None) -> NewerResults:
    """Run the three studies, writing their figures into the folder ``out``."""
    settings = settings or NewerSettings()
    progress = progress or _noop
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)

    def image(name: str) -> Path:
        return folder / name

    with _one_torch_thread():
        lion = lion_study(settings, progress)
        schedule_free = schedule_free_study(settings, progress)
        muon = muon_study(settings, progress)
    paragraphs, figures, tables = [], [], []
    for text, images, table in (_lion_outputs(lion, image),
                                _schedule_free_outputs(schedule_free, image),
                                _muon_outputs(muon, image)):
        paragraphs += text
        figures += images
        tables.append(table)
    data = {
        "lion": [vars(row) for row in lion.rows],
        "schedule_free": {"floor": schedule_free.floor, "limit": schedule_free.limit,
                          "runs": {r.label: r.excess.tolist() for r in schedule_free.runs}},
        "muon": [{**vars(row), "predicted_band": list(row.predicted_band),
                  "measured_band": list(row.measured_band)} for row in muon.rows],
    }
    return NewerResults(lion, schedule_free, muon, paragraphs, figures, tables, data)


def newer_section(report: Report, settings: Any, progress: Progress) -> Section:
    """The studies as a section of the tour: ``settings`` needs ``quick`` and ``seed`` (the
    tour's settings have both); figures go to the report's images folder."""
    results = run_newer(report.images, NewerSettings(settings.quick, settings.seed), progress)
    return results.section()


__all__ = ["NewerResults", "NewerSettings", "constant_step_floor", "averaging_limit",
           "lion_study", "muon_study", "newer_section", "quintic_band", "run_count",
           "run_newer", "schedule_free_study", "sign_descent_distances", "steps_to_stay"]
