"""First-order against second-order: iterations, wall time and cost per iteration, full batch
and on minibatches.

The section is split by what each part makes: :mod:`~descend.lab.tour.second_order.studies`
runs the optimizers, :mod:`~descend.lab.tour.second_order.plan` sizes the studies and runs them
for the tour, :mod:`~descend.lab.tour.second_order.figures`,
:mod:`~descend.lab.tour.second_order.tables` and :mod:`~descend.lab.tour.second_order.text` turn
their results into the report's figures, tables and words; :func:`build` puts them together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from descend.lab.report import Report, Section
from descend.lab.sections import title_of
from descend.lab.tour.base import Progress, TourSettings
from descend.lab.tour.second_order import studies as orders
from descend.lab.tour.second_order.figures import orders_figures
from descend.lab.tour.second_order.plan import ORDERS_ADAM_LR, OrdersSettings, orders_studies
from descend.lab.tour.second_order.tables import (
    hessian_cost_table,
    minibatch_table,
    newton_table,
    orders_table,
)
from descend.lab.tour.second_order.text import (
    ROUNDING,
    newton_digit_gains,
    orders_claims,
    orders_paragraphs,
)

__all__ = [
    "ORDERS_ADAM_LR",
    "ROUNDING",
    "SLUG",
    "TITLE",
    "OrdersSettings",
    "build",
    "newton_digit_gains",
    "orders_studies",
    "runs",
]

SLUG = "orders"
TITLE = title_of(SLUG)


def runs(settings: TourSettings) -> int:
    """Runs this section makes: every method on each full-batch problem, the minibatch
    line-up and its full-batch reference."""
    methods = len(orders.FIRST_ORDER_LABELS) + len(orders.SECOND_ORDER_LABELS)
    return 2 * methods + len(orders.minibatch_methods(1.0, 1.0)) + 1


def build(report: Report, settings: TourSettings, progress: Progress) -> Section:
    """First-order against second-order: iterations, wall time and cost per iteration, full
    batch and on minibatches."""
    studies, noisy, solve = orders_studies(settings)
    progress(
        "first-order against second-order",
        sum(len(study.runs) for study in studies) + len(noisy.runs) + 1,
    )
    _ravine, digits = studies
    claims = orders_claims(studies, noisy)
    figures = orders_figures(report, studies, noisy, claims)
    tables = [
        orders_table(studies),
        newton_table(digits),
        hessian_cost_table(digits.dimension, solve),
        minibatch_table(noisy),
    ]
    return Section(
        SLUG,
        TITLE,
        orders_paragraphs(studies, noisy),
        figures,
        tables,
        claims=claims,
        data={
            study.name: {
                "dimension": study.dimension,
                "kappa": study.kappa,
                "f_star": study.f_star,
                "runs": {
                    run.label: _thinned(
                        iteration=np.arange(len(run.result.history.loss)),
                        grad_norm=run.result.history.grad_norm,
                        loss=run.result.history.loss,
                        time=run.result.history.time,
                    )
                    for run in study.runs
                },
            }
            for study in studies
        }
        | {
            "minibatch": {
                run.label: _thinned(passes=run.passes, gap=noisy.gap(run))
                for run in (*noisy.runs, noisy.reference)
            }
        },
    )


def _thinned(points: int = 400, **series: Sequence[float]) -> dict[str, list[float]]:
    """Equal-length series cut to about ``points`` entries, first and last kept, for
    results.json (gradient descent's thousands of iterations would swell the file)."""
    length = len(next(iter(series.values())))
    keep = np.unique(np.linspace(0, length - 1, min(points, length)).round().astype(int))
    return {name: np.asarray(values)[keep].tolist() for name, values in series.items()}
