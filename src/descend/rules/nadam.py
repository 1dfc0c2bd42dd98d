"""NAdam: Adam with Nesterov momentum and a warming-up momentum schedule (Dozat, 2016)."""

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
from descend.rules.spec import CourseForm, Element, Hyper, Listing, Rule, RunningProduct, Slot


def nadam_update(
    p: Element,
    g: Element,
    exp_avg: Element,
    exp_avg_sq: Element,
    *,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
    bias_correction2: float,
    grad_coefficient: float,
    average_coefficient: float,
) -> tuple[Element, ...]:
    """One NAdam step, in Dozat's notation, with the step counter t starting at 1::

        mu_t  <- beta1 * (1 - 0.5 * 0.96^(t psi))            (psi: momentum_decay)
        m     <- beta1 * m + (1 - beta1) * g
        v     <- beta2 * v + (1 - beta2) * g * g
        m^    <- mu_{t+1} m / (1 - prod_{i<=t+1} mu_i) + (1 - mu_t) g / (1 - prod_{i<=t} mu_i)
        x     <- x - alpha * m^ / (sqrt(v / (1 - beta2^t)) + eps)

    The momentum schedule and the products of mu are per-step scalars; ``prod_{i<=t} mu_i`` is
    the parameter's running product ``mu_product``, kept in its state as torch does:
    ``grad_coefficient = -alpha (1 - mu_t) / (1 - prod_{i<=t} mu_i)`` and
    ``average_coefficient = -alpha mu_{t+1} / (1 - prod_{i<=t+1} mu_i)``. Weight decay is
    coupled (``g <- g + lambda x``) or decoupled (``x <- x (1 - alpha lambda)``, NAdamW;
    ``decay`` is that factor).
    """
    p, g = decayed(p, g, weight_decay, decoupled_weight_decay, decay, maximize)
    exp_avg, exp_avg_sq = adam_moments(g, exp_avg, exp_avg_sq, beta1, beta2)
    denom = sqrt(exp_avg_sq / bias_correction2) + eps
    p = p + grad_coefficient * g / denom
    p = p + average_coefficient * exp_avg / denom
    return p, exp_avg, exp_avg_sq


def momentum_schedule(hypers: Mapping[str, Any], step: int) -> float:
    """``mu_t = beta1 (1 - 0.5 * 0.96^(t psi))``: the momentum of step ``t``."""
    # A tensor hyperparameter keeps its dtype here (as torch.optim.NAdam computes it).
    mu: float = hypers["beta1"] * (1.0 - 0.5 * (0.96 ** (step * hypers["momentum_decay"])))
    return mu


def _nadam_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, float]:
    lr = hypers["lr"]
    mu = momentum_schedule(hypers, step)
    mu_next = momentum_schedule(hypers, step + 1)
    mu_product = hypers["mu_product"]  # prod_{i<=t} mu_i, after this step's factor
    return {
        "bias_correction2": 1 - hypers["beta2"] ** step,
        "grad_coefficient": -lr * (1.0 - mu) / (1.0 - mu_product),
        "average_coefficient": (-lr * mu_next) / (1.0 - mu_product * mu_next),
        "decay": 1 - lr * hypers["weight_decay"],
    }


NADAM = Rule(
    name="nadam",
    update=nadam_update,
    hypers=(
        learning_rate(2e-3),
        decay_rate("beta1", 0.9, "decay rate of the first moment m"),
        decay_rate("beta2", 0.999, "decay rate of the second moment v"),
        epsilon(1e-8),
        weight_decay(),
        Hyper(
            "momentum_decay", 4e-3, "psi: how fast mu_t warms up to beta1 / 2 ... beta1", low=0.0
        ),
        Hyper(
            "decoupled_weight_decay",
            False,
            "decay x directly (NAdamW) instead of adding lambda * x to g",
            kind=bool,
        ),
        MAXIMIZE,
    ),
    slots=(Slot("exp_avg"), Slot("exp_avg_sq")),
    products=(RunningProduct("mu_product", momentum_schedule),),
    step_scalars=_nadam_step_scalars,
    listing=Listing(
        summary="Adam with Nesterov momentum: m^ mixes the next step's momentum with this gradient",
        reference="Dozat (2016), Incorporating Nesterov Momentum into Adam; torch.optim.NAdam",
        year=2016,
        colour="#EE7733",
        group_keys={"betas": ("beta1", "beta2")},
        course=CourseForm(
            "nadam",
            renames={"learning_rate": "lr", "epsilon": "eps", "m": "exp_avg", "v": "exp_avg_sq"},
            defaults={"learning_rate": 2e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
            counts_steps=True,
        ),
        lr_range=(1e-5, 1e-1),
        option_grid=dict(
            lr=(0.01,),
            weight_decay=(0.0, 0.1),
            decoupled_weight_decay=(False, True),
            momentum_decay=(4e-3, 0.05),
            maximize=(False, True),
        ),
    ),
)
