"""Learning-rate decay: step, exponential and 1/t decay for Momentum and Adam."""

from __future__ import annotations

import numpy as np

from descend.lab.problems import NoisyLeastSquares
from descend.lab.report import Claim, Figure, Report, Section, Table
from descend.lab.runner import Contender, Trace, race
from descend.lab.sections import title_of
from descend.lab.tour.base import Progress, TourSettings, display_name, listing, tail_mean
from descend.lab.tour.noisy_figures import SMOOTHING, NoisyRun, small_multiples

SLUG = "decay"
TITLE = title_of(SLUG)

SCHEDULES = (
    ("constant", None),
    ("step", "step:step_size=100,gamma=0.5"),
    ("exponential", "exponential:k=0.005"),
    ("1/t", "1/t:k=0.02"),
)
OPTIMIZERS = ("momentum:lr=0.01,momentum=0.9", "adam:lr=0.05")
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
    """Step, exponential and 1/t decay for Momentum and Adam on noisy least squares."""
    problem = NoisyLeastSquares(n=SAMPLES, dim=2, batch_size=BATCH, seed=settings.seed)
    groups, rows = [], []
    below, above, ahead, helped = [], [], [], []
    for spec in OPTIMIZERS:
        name = display_name(Contender.parse(spec).optimizer.name)
        contenders = [Contender.parse(spec, schedule, name=label) for label, schedule in SCHEDULES]
        traces = race(problem, contenders, STEPS, seed=settings.seed)
        groups.append((name, contenders, traces))
        for (_, schedule), contender, trace in zip(SCHEDULES, contenders, traces, strict=True):
            rows.append(
                [
                    name,
                    contender.optimizer.label,
                    contender.label if schedule is None else f"{contender.label} ({schedule})",
                    early_mean(trace),
                    tail_mean(trace.excess),
                    trace.steps_to(TOLERANCE),
                    float(trace.lrs[-1]),
                ]
            )
        progress("learning-rate decay", len(contenders))
        constant, decayed = traces[0], traces[1:]
        floor = tail_mean(constant.excess)
        for trace in decayed:
            run = f"{name} with {trace.label} decay"
            (below if tail_mean(trace.excess) < floor else above).append(run)
            if early_mean(trace) < early_mean(constant):
                ahead.append(run)
        helped.append(min(tail_mean(t.excess) for t in decayed) < floor)
    claims = [
        Claim(
            "a decayed learning rate ends below the constant rate's noise floor",
            all(helped),
            f"Below the constant rate's floor over the last quarter: {listing(below)}; "
            f"above it (decayed too fast, stalled): {listing(above)}. The values are in the "
            "table.",
        ),
        Claim(
            "decay costs speed early: no decayed run is ahead of the constant rate early on",
            not ahead,
            f"Ahead of the constant rate over steps {EARLY[0]} to {EARLY[1]}: "
            f"{listing(ahead)} (the table's early column).",
        ),
    ]
    panels = [
        (
            f"{name}: {trace.label} decay",
            [
                NoisyRun(traces[0].label, traces[0].excess, contenders[0].family),
                NoisyRun(trace.label, trace.excess, contender.family),
            ],
        )
        for name, contenders, traces in groups
        for contender, trace in zip(contenders[1:], traces[1:], strict=True)
    ]
    first = groups[0][2]
    figure = Figure(
        small_multiples(
            panels,
            report.image_path("decay.png"),
            columns=len(SCHEDULES) - 1,
            lr_row=[(first[0].lrs, trace.lrs) for trace in first[1:]],
        ).name,
        f"Loss above the minimum on minibatch least squares (batch {BATCH}), one panel per "
        "optimizer and schedule, each against the same optimizer at a constant rate (see "
        "each legend). The faint lines are the loss at every step, the clear ones its "
        f"geometric mean over {SMOOTHING} steps. Where the decayed run's clear line ends "
        "below the constant rate's, decay has lowered the noise floor; where it runs above "
        "it early on, decay has cost speed. The bottom row is each schedule's learning rate "
        "as a fraction of its start. The table below has the numbers.",
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
                    "spec",
                    "schedule",
                    f"mean loss above minimum, steps {EARLY[0]}-{EARLY[1]}",
                    "loss above minimum, last quarter",
                    f"steps until the loss above the minimum stays below {TOLERANCE:g}",
                    "final lr",
                ],
                rows,
                "'-': the run ends above the tolerance.",
            )
        ],
        data={name: [t.to_dict() for t in traces] for name, _, traces in groups},
        claims=claims,
    )
