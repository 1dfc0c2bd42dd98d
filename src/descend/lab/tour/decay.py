"""Learning-rate decay: step, exponential and 1/t decay for SGD+Momentum and Adam."""

from __future__ import annotations

import numpy as np

from descend.lab import plots
from descend.lab.problems import NoisyLeastSquares
from descend.lab.report import Claim, Figure, Report, Section, Table
from descend.lab.runner import Contender, Trace, race
from descend.lab.tour.base import Progress, TourSettings, listing, tail_mean

SLUG = "decay"
TITLE = "Learning-rate decay"

SCHEDULES = (
    ("constant", None),
    ("step (halve every 100)", "step:step_size=100,gamma=0.5"),
    ("exponential (k = 0.005)", "exponential:k=0.005"),
    ("1/t (k = 0.02)", "1/t:k=0.02"),
)
OPTIMIZERS = (
    ("SGD+Momentum, lr 0.01, momentum 0.9", "momentum:lr=0.01,momentum=0.9"),
    ("Adam, lr 0.05", "adam:lr=0.05"),
)
SAMPLES, BATCH, STEPS = 256, 4, 400
#: The loss above the minimum the table counts steps to.
TOLERANCE = 1e-3
#: Steps over which early progress is compared (the start's transient excluded).
EARLY = (20, 60)


def runs(settings: TourSettings) -> int:
    """Optimizer runs this section makes."""
    return len(SCHEDULES) * len(OPTIMIZERS)


def early_mean(trace: Trace) -> float:
    """Mean loss above the minimum over the :data:`EARLY` steps."""
    return float(np.mean(trace.excess[EARLY[0] : EARLY[1]]))


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Step, exponential and 1/t decay for SGD+Momentum and Adam on noisy least squares."""
    problem = NoisyLeastSquares(n=SAMPLES, dim=2, batch_size=BATCH, seed=settings.seed)
    groups, rows = [], []
    lower, early, too_fast, floors = [], [], [], []
    for title, spec in OPTIMIZERS:
        contenders = [Contender.parse(spec, schedule, name=name) for name, schedule in SCHEDULES]
        traces = race(problem, contenders, STEPS, seed=settings.seed)
        groups.append((title, traces))
        for contender, trace in zip(contenders, traces, strict=True):
            rows.append(
                [
                    title.split(",")[0],
                    contender.label,
                    tail_mean(trace.excess),
                    trace.steps_to(TOLERANCE),
                    float(trace.lrs[-1]),
                ]
            )
        progress("learning-rate decay", len(contenders))
        name = title.split(",")[0]
        constant, decayed = traces[0], traces[1:]
        floor = tail_mean(constant.excess)
        lower.append(min(tail_mean(t.excess) for t in decayed) < floor)
        early.append(all(early_mean(constant) <= early_mean(t) for t in decayed))
        too_fast += [f"{name} with {t.label}" for t in decayed if tail_mean(t.excess) > floor]
        floors.append(
            f"{name}: constant {floor:.3g}, "
            + ", ".join(f"{t.label} {tail_mean(t.excess):.3g}" for t in decayed)
        )
    claims = [
        Claim(
            "a decayed learning rate ends below the constant rate's noise floor",
            all(lower),
            "Loss above the minimum over the last quarter, "
            + "; ".join(floors)
            + "."
            + (
                f" Decaying too fast stalls {listing(too_fast)} above the constant rate's floor."
                if too_fast
                else ""
            ),
        ),
        Claim(
            "decay costs speed early: no decayed run is ahead of the constant rate early on",
            all(early),
            f"Mean loss above the minimum over steps {EARLY[0]} to {EARLY[1]}: "
            + "; ".join(
                f"{title.split(',')[0]}: "
                + ", ".join(f"{t.label} {early_mean(t):.3g}" for t in traces)
                for title, traces in groups
            )
            + ".",
        ),
    ]
    figure = Figure(
        plots.grid_of_curves(groups, report.image_path("decay.png")).name,
        f"Top: loss above the minimum on minibatch least squares (batch {BATCH}). "
        "Bottom: the learning rate each schedule gives. "
        + " ".join(claim.evidence for claim in claims),
    )
    return Section(
        SLUG,
        TITLE,
        [
            "A large learning rate makes fast progress at first, but under gradient noise it "
            "leaves the weights bouncing at a level set by that rate. Decaying the rate over "
            "time keeps the early speed and then lets the weights settle: step decay (halve it "
            "every so often), exponential decay alpha0 exp(-k t) and 1/t decay "
            "alpha0 / (1 + k t).",
            "Decay too early or too fast and progress stalls before reaching the minimum; too "
            "late and the noise floor remains. Adam adapts per coordinate but still has a global "
            "learning rate, and it benefits from decay in the same way.",
        ],
        [figure],
        [
            Table(
                f"Schedules on minibatch least squares (batch {BATCH}, {STEPS} steps)",
                [
                    "optimizer",
                    "schedule",
                    "loss above minimum, last quarter",
                    f"steps until the loss above the minimum stays below {TOLERANCE:g}",
                    "final lr",
                ],
                rows,
                "'-': the run ends above the tolerance.",
            )
        ],
        data={title: [t.to_dict() for t in traces] for title, traces in groups},
        claims=claims,
    )
