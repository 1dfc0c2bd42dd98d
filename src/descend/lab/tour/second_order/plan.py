"""What the first-order against second-order section runs: its sizes (smaller when quick),
Adam's learning rates, and the studies themselves (defined in
:mod:`descend.lab.tour.second_order.studies`)."""

from __future__ import annotations

from dataclasses import dataclass

from descend.lab.tour.base import TourSettings
from descend.lab.tour.second_order import studies as orders
from descend.secondorder import Quadratic


@dataclass(frozen=True)
class OrdersSettings:
    """Sizes of the first-order against second-order section (smaller when quick)."""

    ravine_dimension: int
    ravine_kappa: float
    ravine_cap: int
    digits_cap: int
    epochs: int
    newton_epochs: int
    batch_size: int = 128
    tolerance: float = 1e-6

    @classmethod
    def for_tour(cls, settings: TourSettings) -> OrdersSettings:
        """Full sizes, or reduced ones for quick runs."""
        if settings.quick:
            return cls(
                ravine_dimension=30,
                ravine_kappa=100.0,
                ravine_cap=3000,
                digits_cap=300,
                epochs=20,
                newton_epochs=2,
            )
        return cls(
            ravine_dimension=100,
            ravine_kappa=1000.0,
            ravine_cap=20000,
            digits_cap=2000,
            epochs=30,
            newton_epochs=8,
        )


#: Adam's learning rates, from a sweep over 0.003 to 0.3 on each problem.
ORDERS_ADAM_LR = {"ravine": 0.03, "digits": 0.1}


def orders_studies(
    settings: TourSettings,
) -> tuple[list[orders.FullBatchStudy], orders.MinibatchStudy, float]:
    """The section's data: the two full-batch studies (ravine, digits), the minibatch study
    and the measured time of one Newton solve on the digits problem."""
    sizes = OrdersSettings.for_tour(settings)
    ravine = Quadratic.ill_conditioned(
        sizes.ravine_dimension, sizes.ravine_kappa, seed=settings.seed
    )
    studies = [
        orders.full_batch_study(
            ravine,
            "ravine",
            f"ravine: {sizes.ravine_dimension}-dimensional quadratic, "
            f"kappa = {sizes.ravine_kappa:g}",
            adam_lr=ORDERS_ADAM_LR["ravine"],
            tolerance=sizes.tolerance,
            cap=sizes.ravine_cap,
        )
    ]
    digits, description = orders.digits_problem(settings.seed)
    studies.append(
        orders.full_batch_study(
            digits,
            "digits",
            f"{description} ({digits.dimension} weights)",
            adam_lr=ORDERS_ADAM_LR["digits"],
            tolerance=sizes.tolerance,
            cap=sizes.digits_cap,
        )
    )
    noisy = orders.minibatch_study(
        digits,
        studies[1].f_star,
        batch_size=sizes.batch_size,
        epochs=sizes.epochs,
        newton_epochs=sizes.newton_epochs,
        seed=settings.seed,
    )
    newton_run = studies[1].run("newton").result
    solve = orders.newton_solve_seconds(digits.hessian(newton_run.x), newton_run.jac)
    return studies, noisy, solve
