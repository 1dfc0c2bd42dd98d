"""AdEMAMix: Adam with a second, slow momentum mixed into its numerator (Pagliardini et al., 2024).

A single exponential average of gradients forgets old gradients at one rate: beta1 = 0.9 keeps
about the last ten. AdEMAMix adds a slow average (beta3 = 0.9999, about the last ten thousand)
and steps along ``m1^ + alpha * m2`` over Adam's denominator, so old gradients keep steering
while the fast average still follows the current ones. The slow average is warmed up: alpha
rises linearly and beta3 climbs from beta1 to its final value over ``t_alpha_beta3`` steps
(the paper's schedulers), since a large, stale slow momentum early on destabilizes training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from descend.rules.common import (
    FIXED_DECAY,
    MAXIMIZE,
    adam_moments,
    decay_rate,
    decayed,
    decoupled_decay,
    epsilon,
    learning_rate,
    weight_decay,
    weight_decouple,
)
from descend.rules.elementwise import fma, lerp, sqrt
from descend.rules.spec import CourseForm, Element, Hyper, Listing, Rule, Slot


def ademamix_update(
    p: Element,
    g: Element,
    exp_avg: Element,
    exp_avg_sq: Element,
    exp_avg_slow: Element,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    weight_decouple: bool,
    decay: float,
    maximize: bool,
    bias_correction1: float,
    bc2_sqrt: float,
    alpha_t: float,
    beta3_t: float,
) -> tuple[Element, ...]:
    """One AdEMAMix step, in the paper's notation, with the step counter t starting at 1::

        m1 <- beta1 * m1 + (1 - beta1) * g                   (fast momentum, ``exp_avg``)
        m2 <- beta3_t * m2 + (1 - beta3_t) * g               (slow momentum, ``exp_avg_slow``)
        nu <- beta2 * nu + (1 - beta2) * g * g               (``exp_avg_sq``)
        x  <- x - alpha_lr * (m1 / (1 - beta1^t) + alpha_t * m2) / (sqrt(nu / (1 - beta2^t)) + eps)
        alpha_t = min(t alpha / T, alpha)
        beta3_t = min(exp(ln(beta1) ln(beta3) / ((1 - t/T) ln(beta3) + (t/T) ln(beta1))), beta3)

    The last two lines are the warm-up schedulers of the slow momentum (T = ``t_alpha_beta3``;
    with ``None``, no warm-up: ``alpha_t = alpha`` and ``beta3_t = beta3``).
    ``bias_correction1 = 1 - beta1^t``, ``bc2_sqrt = sqrt(1 - beta2^t)``, ``alpha_t`` and
    ``beta3_t`` are per-step scalars. Weight decay is coupled (``g <- g + lambda x``) or, with
    ``weight_decouple``, decoupled (``x <- x (1 - alpha_lr lambda)`` before the step, or
    ``x (1 - lambda)`` with ``fixed_decay``; ``decay`` is that factor). Each operation rounds
    as ``pytorch_optimizer.AdEMAMix``'s in-place torch calls do.
    """
    p, g = decayed(p, g, weight_decay, weight_decouple, decay, maximize)
    exp_avg, exp_avg_sq = adam_moments(g, exp_avg, exp_avg_sq, beta1, beta2)
    exp_avg_slow = lerp(exp_avg_slow, g, 1 - beta3_t)
    denom = sqrt(exp_avg_sq) / bc2_sqrt + eps
    direction = fma(alpha_t, exp_avg_slow, exp_avg / bias_correction1)  # torch's add_(alpha=)
    p = p - lr * direction / denom
    return p, exp_avg, exp_avg_sq, exp_avg_slow


def alpha_schedule(hypers: Mapping[str, Any], step: int) -> float:
    """``alpha_t``: alpha warmed up linearly over ``t_alpha_beta3`` steps (alpha without it)."""
    alpha, warmup = float(hypers["alpha"]), hypers["t_alpha_beta3"]
    return alpha if warmup is None else min(step * alpha / warmup, alpha)


def beta3_schedule(hypers: Mapping[str, Any], step: int) -> float:
    """``beta3_t``: from beta1 at step 0 to beta3 at ``t_alpha_beta3``, so that the slow
    average's half-life grows linearly (beta3 without a warm-up)."""
    beta1, beta3 = float(hypers["beta1"]), float(hypers["beta3"])
    warmup = hypers["t_alpha_beta3"]
    if warmup is None:
        return beta3
    fraction = step / warmup
    # The formula's limits where a logarithm is -inf (a rate of 0, which the ranges allow).
    if beta3 == 0.0:
        return 0.0
    if beta1 == 0.0:
        return min(float(beta3 ** (1.0 / fraction)), beta3)
    log_beta1, log_beta3 = math.log(beta1), math.log(beta3)
    denominator = (1.0 - fraction) * log_beta3 + fraction * log_beta1
    if denominator == 0.0:  # beta1 = beta3 = 1 at the same time: no decay at all
        return beta3
    return min(math.exp(log_beta1 * log_beta3 / denominator), beta3)


def _ademamix_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, float]:
    return {
        "bias_correction1": 1 - hypers["beta1"] ** step,
        "bc2_sqrt": math.sqrt(1 - hypers["beta2"] ** step),
        "alpha_t": alpha_schedule(hypers, step),
        "beta3_t": beta3_schedule(hypers, step),
        "decay": decoupled_decay(hypers),
    }


ADEMAMIX = Rule(
    name="ademamix",
    update=ademamix_update,
    hypers=(
        learning_rate(1e-3),
        decay_rate("beta1", 0.9, "decay rate of the fast momentum m1"),
        decay_rate("beta2", 0.999, "decay rate of the second moment nu"),
        Hyper(
            "beta3",
            0.9999,
            "decay rate of the slow momentum m2 (after its warm-up)",
            low=0.0,
            high=1.0,
        ),
        Hyper("alpha", 5.0, "weight of the slow momentum in the numerator", low=0.0),
        Hyper(
            "t_alpha_beta3",
            None,
            "T: steps over which alpha and beta3 warm up (None: no warm-up)",
            low=0.0,
            low_open=True,
            optional=True,
        ),
        epsilon(1e-8),
        weight_decay(),
        weight_decouple(False),
        FIXED_DECAY,
        MAXIMIZE,
    ),
    slots=(Slot("exp_avg"), Slot("exp_avg_sq"), Slot("exp_avg_slow")),
    step_scalars=_ademamix_step_scalars,
    listing=Listing(
        summary="Adam whose numerator adds alpha times a slow momentum: m1^ + alpha m2",
        reference="Pagliardini, Ablin and Grangier (2024), The AdEMAMix Optimizer: Better, "
        "Faster, Older; pytorch_optimizer.AdEMAMix",
        year=2024,
        colour="#009988",
        group_keys={"betas": ("beta1", "beta2", "beta3")},
        course=CourseForm(
            "ademamix",
            renames={
                "learning_rate": "lr",
                "epsilon": "eps",
                "m1": "exp_avg",
                "nu": "exp_avg_sq",
                "m2": "exp_avg_slow",
            },
            defaults={
                "learning_rate": 1e-3,
                "beta1": 0.9,
                "beta2": 0.999,
                "beta3": 0.9999,
                "alpha": 5.0,
                "epsilon": 1e-8,
            },
            counts_steps=True,
        ),
        lr_range=(1e-5, 1e-1),
    ),
)
