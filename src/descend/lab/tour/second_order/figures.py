"""The figures of the first-order against second-order section: gradient norms against
iteration and wall time, a close-up of the first iterations, and the minibatch runs against the
gradient computation spent."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from descend.lab import plots
from descend.lab.palette import family_of
from descend.lab.report import Claim, Figure, Report
from descend.lab.tour.second_order import studies as orders


def method_family(method: str) -> str | None:
    """The palette's family of a study's method: a rule, a functional update's name (such as
    ``nesterov_momentum``) or a second-order method."""
    return family_of(method) or family_of(f"functional.{method}")


def convergence_panels(studies: Sequence[orders.FullBatchStudy]) -> list[plots.Panel]:
    """Relative gradient norm against iteration and against wall time, one row per problem."""
    panels = []
    for study in studies:
        by_iteration, by_time = [], []
        for run in study.runs:
            history = run.result.history
            y = np.asarray(history.grad_norm) / study.grad_norm0
            markers = run.second_order and len(y) < 40
            family = method_family(run.method)
            by_iteration.append(
                plots.Line(run.label, np.arange(len(y)), y, family, markers=markers)
            )
            by_time.append(
                plots.Line(run.label, np.asarray(history.time), y, family, markers=markers)
            )
        panels += [
            plots.Panel(
                f"{study.name}: against iteration",
                "iteration",
                "||g|| / ||g_0||",
                by_iteration,
                xscale="symlog",
                linthresh=1.0,
                hline=study.tolerance,
            ),
            plots.Panel(
                f"{study.name}: against wall time",
                "seconds",
                "||g|| / ||g_0||",
                by_time,
                xscale="symlog",
                linthresh=1e-4,
                hline=study.tolerance,
            ),
        ]
    return panels


def orders_figures(
    report: Report,
    studies: Sequence[orders.FullBatchStudy],
    noisy: orders.MinibatchStudy,
    claims: Sequence[Claim],
) -> list[Figure]:
    """The section's three figures, written to the report's images folder.

    Their captions quote the evidence of ``claims``, the section's claims from
    :func:`~descend.lab.tour.second_order.text.orders_claims`.
    """
    digits = studies[1]
    figures = [
        Figure(
            plots.line_panels(
                convergence_panels(studies), report.image_path("orders_convergence.png")
            ).name,
            "Gradient norm relative to the start, on log scales, against iteration (left) "
            f"and wall time (right); the {plots.THRESHOLD.dash_name} line is the tolerance of "
            "the table. The "
            "first-order runs stop there; Newton, BFGS and L-BFGS are cheap enough to go on. "
            f"{claims[0].evidence} On the digits Newton's curve bends down ever more steeply "
            "(quadratic convergence) but each of its points costs a Hessian, which the time "
            "axis shows.",
        ),
    ]
    shown = 31  # iterations 0 to 30
    close_up = [
        plots.Line(
            run.label,
            np.arange(len(run.result.history.grad_norm))[:shown],
            np.asarray(run.result.history.grad_norm)[:shown] / digits.grad_norm0,
            method_family(run.method),
            markers=True,
        )
        for run in digits.runs
    ]
    figures.append(
        Figure(
            plots.line_panels(
                [
                    plots.Panel(
                        "digits: the first 30 iterations",
                        "iteration",
                        "||g|| / ||g_0||",
                        close_up,
                        hline=digits.tolerance,
                    )
                ],
                report.image_path("orders_close_up.png"),
                columns=1,
                size=(7.5, 4.0),
            ).name,
            "A close-up of the first 30 iterations on the digits. Gradient descent and Nesterov "
            "shrink the gradient by a roughly constant factor per step (a straight line on this "
            "scale). BFGS and L-BFGS speed up as their curvature estimate improves. "
            f"{claims[1].evidence}",
        )
    )
    reference = plots.reference_style(method_family(noisy.reference.method))
    panels = []
    for title, second in (
        ("first-order methods on minibatches", False),
        ("second-order methods on minibatches", True),
    ):
        lines = [
            plots.Line(run.label, run.passes, noisy.gap(run), method_family(run.method))
            for run in noisy.runs
            if run.second_order == second
        ]
        most = max(float(run.passes[-1]) for run in noisy.runs)
        shown = noisy.reference.passes <= most
        lines.append(
            plots.Line(
                noisy.reference.label,
                noisy.reference.passes[shown],
                noisy.gap(noisy.reference)[shown],
                method_family(noisy.reference.method),
                dashed=True,
            )
        )
        panels.append(
            plots.Panel(title, "passes over the data computed", "f - f* (full data)", lines)
        )
    figures.append(
        Figure(
            plots.line_panels(panels, report.image_path("orders_minibatch.png")).name,
            f"The loss above the minimum on the full digits data while each method steps on "
            f"batches of {noisy.batch_size}, against the gradient computation spent. The "
            f"{reference.color_name} {reference.dash_name} line is full-batch L-BFGS, whose "
            "every step costs a whole pass. " + claims[2].evidence,
        )
    )
    return figures
