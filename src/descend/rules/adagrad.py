"""AdaGrad: per-element step sizes from the historical sum of squared gradients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from descend.rules.common import MAXIMIZE, epsilon, l2_gradient, learning_rate, weight_decay
from descend.rules.elementwise import fma, sqrt
from descend.rules.spec import CourseForm, Element, Hyper, Listing, Rule, Slot


def adagrad_update(
    p: Element,
    g: Element,
    sum: Element,
    *,
    clr: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> tuple[Element, ...]:
    """One AdaGrad step::

        h <- h + g * g
        x <- x - alpha_t * g / (sqrt(h) + eps)

    ``h`` is ``torch.optim.Adagrad``'s ``sum``; ``alpha_t = lr / (1 + (t - 1) * lr_decay)``.
    ``h + g * g`` rounds once, as torch's ``h.addcmul_(g, g)``.
    """
    g = l2_gradient(p, g, weight_decay, maximize)
    sum = fma(g, g, sum)
    p = p - clr * g / (sqrt(sum) + eps)
    return p, sum


def _adagrad_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, float]:
    return {"clr": hypers["lr"] / (1 + (step - 1) * hypers["lr_decay"])}


ADAGRAD = Rule(
    name="adagrad",
    update=adagrad_update,
    hypers=(
        learning_rate(1e-2),
        Hyper("lr_decay", 0.0, "1/t decay of the learning rate", low=0.0),
        weight_decay(),
        Hyper("initial_accumulator_value", 0.0, "starting value of h", low=0.0),
        epsilon(1e-10),
        MAXIMIZE,
    ),
    slots=(Slot("sum", fill="initial_accumulator_value"),),
    step_scalars=_adagrad_step_scalars,
    listing=Listing(
        summary="h <- h + g^2 ; x <- x - lr g / (sqrt(h) + eps)",
        reference="Duchi, Hazan & Singer (2011)",
        year=2011,
        colour="#117733",
        course=CourseForm(
            "adagrad",
            renames={"learning_rate": "lr", "epsilon": "eps", "cache": "sum"},
            defaults={"learning_rate": 1e-2, "epsilon": 1e-8},
            counts_steps=True,
        ),
        lr_range=(1e-3, 1.0),
        lecture=True,
        option_grid=dict(
            lr=(0.1,),
            lr_decay=(0.0, 0.01),
            weight_decay=(0.0, 0.1),
            initial_accumulator_value=(0.0, 0.1),
            maximize=(False, True),
        ),
    ),
)
