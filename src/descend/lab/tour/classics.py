"""The classics: Rosenbrock's, Beale's and Booth's functions with the lecture's optimizers."""

from __future__ import annotations

from descend.lab import plots
from descend.lab.palette import MARK_COLORS, color_name
from descend.lab.problems import Beale, Booth, Problem, RosenbrockValley
from descend.lab.report import Figure, Report, Section, Table
from descend.lab.runner import Trace, race
from descend.lab.sections import title_of
from descend.lab.tour.base import Progress, TourSettings, listing, registered

SLUG = "classics"
TITLE = title_of(SLUG)

CONTENDERS = {
    "rosenbrock": (
        "sgd:lr=0.001",
        "momentum:lr=0.001,momentum=0.9",
        "nesterov:lr=0.001,momentum=0.9",
        "adagrad:lr=0.5",
        "rmsprop:lr=0.01",
        "adam:lr=0.05",
    ),
    "beale": (
        "sgd:lr=0.01",
        "momentum:lr=0.005,momentum=0.9",
        "nesterov:lr=0.005,momentum=0.9",
        "adagrad:lr=0.5",
        "rmsprop:lr=0.01",
        "adam:lr=0.05",
    ),
    "booth": (
        "sgd:lr=0.05",
        "momentum:lr=0.02,momentum=0.8",
        "nesterov:lr=0.02,momentum=0.8",
        "adagrad:lr=2.0",
        "rmsprop:lr=0.1",
        "adam:lr=0.5",
    ),
}
STEPS = 1000
TOLERANCE = 1e-6


def runs(settings: TourSettings) -> int:
    """Optimizer runs this section makes."""
    return sum(len(pairs) for pairs in CONTENDERS.values())


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """Rosenbrock, Beale and Booth with the lecture's optimizers."""
    problems: list[tuple[Problem, list[Trace]]] = []
    rows, reached = [], []
    for problem in (RosenbrockValley(), Beale(), Booth()):
        contenders = registered(CONTENDERS[problem.name])
        traces = race(problem, contenders, STEPS, seed=settings.seed)
        problems.append((problem, traces))
        for contender, trace in zip(contenders, traces, strict=True):
            rows.append(
                [
                    problem.title,
                    contender.label,
                    contender.optimizer.label,
                    trace.steps_to(TOLERANCE),
                    trace.final_loss,
                    float(trace.distances[-1]),
                ]
            )
        progress("classics", len(contenders))
        settled = [t.label for t in traces if t.steps_to(TOLERANCE) is not None]
        reached.append(f"on {problem.title}, {listing(settled)}")
    figure = Figure(
        plots.panels(problems, report.image_path("classics.png")).name,
        "Rosenbrock's curved valley, Beale's plateaus and Booth's plain bowl, with "
        f"each optimizer's path from the {color_name(MARK_COLORS['start'])} dot to the "
        f"{color_name(MARK_COLORS['minimum'])} star; the markers "
        f"show where each run ends. Within {STEPS} steps the loss settles below "
        f"{TOLERANCE:g} {'; '.join(reached)}.",
    )
    return Section(
        SLUG,
        TITLE,
        [
            "Standard test functions for optimizers. Rosenbrock's valley is easy to find and hard "
            "to follow, because it bends; Beale's function has flat plateaus where gradients "
            "nearly vanish and steep walls; Booth's is a simple quadratic bowl for reference."
        ],
        [figure],
        [
            Table(
                f"Steps until the loss stays below {TOLERANCE:g}, and where each run ends "
                f"({STEPS} steps)",
                [
                    "problem",
                    "optimizer",
                    "spec",
                    f"steps until the loss stays below {TOLERANCE:g}",
                    "final loss",
                    "distance to minimum",
                ],
                rows,
                "'-': the run ends above the tolerance.",
            )
        ],
        data={problem.name: [t.to_dict() for t in traces] for problem, traces in problems},
    )
