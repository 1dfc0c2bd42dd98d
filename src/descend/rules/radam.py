"""RAdam: Adam whose adaptive step is switched on only once the variance of v is tractable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from descend.rules.common import (
    MAXIMIZE,
    adam_moments,
    decay_rate,
    decayed,
    epsilon,
    learning_rate,
    weight_decay,
)
from descend.rules.elementwise import sqrt
from descend.rules.spec import CourseForm, Element, Hyper, Listing, Rule, Slot


def radam_update(
    p: Element,
    g: Element,
    exp_avg: Element,
    exp_avg_sq: Element,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
    bias_correction1: float,
    bc2_sqrt: float,
    rectify: bool,
    rect: float,
) -> tuple[Element, ...]:
    """One RAdam step, in Liu et al.'s notation, with the step counter t starting at 1::

        m      <- beta1 * m + (1 - beta1) * g
        v      <- beta2 * v + (1 - beta2) * g * g
        rho_inf = 2 / (1 - beta2) - 1,   rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        r_t     = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        x      <- x - alpha * r_t * (m / (1 - beta1^t)) * sqrt(1 - beta2^t) / (sqrt(v) + eps)
                                                                       if rho_t > 5
        x      <- x - alpha * m / (1 - beta1^t)                        otherwise (SGD+momentum)

    ``rectify`` (rho_t > 5) and ``rect`` (r_t) are per-step scalars; weight decay is coupled
    (``g <- g + lambda x``) or decoupled (``x <- x (1 - alpha lambda)``; ``decay`` is that
    factor).
    """
    p, g = decayed(p, g, weight_decay, decoupled_weight_decay, decay, maximize)
    exp_avg, exp_avg_sq = adam_moments(g, exp_avg, exp_avg_sq, beta1, beta2)
    if rectify:
        adaptive = bc2_sqrt * (1 / (sqrt(exp_avg_sq) + eps))
        p = p - exp_avg / bias_correction1 * lr * adaptive * rect
    else:
        p = p - exp_avg / bias_correction1 * lr
    return p, exp_avg, exp_avg_sq


def _radam_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, Any]:
    beta1, beta2 = hypers["beta1"], hypers["beta2"]
    bias_correction2 = 1 - beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
    rectify = rho_t > 5.0
    rect = 1.0
    if rectify:
        rect = (
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        ) ** 0.5
    return {
        "bias_correction1": 1 - beta1**step,
        "bc2_sqrt": bias_correction2**0.5,
        "rectify": rectify,
        "rect": rect,
        "decay": 1 - hypers["lr"] * hypers["weight_decay"],
    }


RADAM = Rule(
    name="radam",
    update=radam_update,
    hypers=(
        learning_rate(1e-3),
        decay_rate("beta1", 0.9, "decay rate of the first moment m"),
        decay_rate("beta2", 0.999, "decay rate of the second moment v"),
        epsilon(1e-8),
        weight_decay(),
        Hyper(
            "decoupled_weight_decay",
            False,
            "decay x directly (as AdamW) instead of adding lambda * x to g",
            kind=bool,
        ),
        MAXIMIZE,
    ),
    slots=(Slot("exp_avg"), Slot("exp_avg_sq")),
    step_scalars=_radam_step_scalars,
    listing=Listing(
        summary="Adam with the adaptive step rectified (off while the variance of v is too large)",
        reference="Liu et al. (2020), On the Variance of the Adaptive Learning Rate and Beyond; "
        "torch.optim.RAdam",
        year=2020,
        colour="#EE3377",
        group_keys={"betas": ("beta1", "beta2")},
        course=CourseForm(
            "radam",
            renames={"learning_rate": "lr", "epsilon": "eps", "m": "exp_avg", "v": "exp_avg_sq"},
            defaults={"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
            counts_steps=True,
        ),
        lr_range=(1e-5, 1e-1),
        option_grid=dict(
            lr=(0.01,),
            weight_decay=(0.0, 0.1),
            decoupled_weight_decay=(False, True),
            maximize=(False, True),
        ),
    ),
)
