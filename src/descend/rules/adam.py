"""Adam (RMSProp with momentum and bias correction) and AdamW (decoupled weight decay)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
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
from descend.rules.elementwise import maximum, sqrt
from descend.rules.spec import CourseForm, Element, Hyper, Listing, Rule, Slot


def adam_update(
    p: Element,
    g: Element,
    exp_avg: Element,
    exp_avg_sq: Element,
    max_exp_avg_sq: Element,
    *,
    step_size: float,
    bc2_sqrt: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
) -> tuple[Element, ...]:
    """One Adam step, with the step counter t starting at 1::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g * g
        x <- x - alpha * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    The bias corrections are per-step scalars: ``step_size = alpha / (1 - beta1^t)`` and
    ``bc2_sqrt = sqrt(1 - beta2^t)``. ``amsgrad`` normalizes by the running maximum of v.
    Weight decay is either coupled (``g <- g + lambda * x``, Adam) or decoupled
    (``x <- x * (1 - alpha * lambda)`` before the step, AdamW; ``decay`` is that factor).
    The moments round as ``torch.optim.Adam``'s ``m.lerp_(g, 1 - beta1)`` and
    ``v.mul_(beta2).addcmul_(g, g, value=1 - beta2)`` do.
    """
    p, g = decayed(p, g, weight_decay, decoupled_weight_decay, decay, maximize)
    exp_avg, exp_avg_sq = adam_moments(g, exp_avg, exp_avg_sq, beta1, beta2)
    if amsgrad:
        max_exp_avg_sq = maximum(max_exp_avg_sq, exp_avg_sq)
        denom = sqrt(max_exp_avg_sq) / bc2_sqrt + eps
    else:
        denom = sqrt(exp_avg_sq) / bc2_sqrt + eps
    p = p - step_size * exp_avg / denom
    return p, exp_avg, exp_avg_sq, max_exp_avg_sq


def _adam_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, float]:
    return {
        "step_size": hypers["lr"] / (1 - hypers["beta1"] ** step),
        "bc2_sqrt": (1 - hypers["beta2"] ** step) ** 0.5,
        "decay": 1 - hypers["lr"] * hypers["weight_decay"],
    }


#: The course's config keys for Adam's hyperparameters and moments.
_COURSE_NAMES = {
    "learning_rate": "lr",
    "epsilon": "eps",
    "m": "exp_avg",
    "v": "exp_avg_sq",
    "v_max": "max_exp_avg_sq",
}
_COURSE_DEFAULTS = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}


#: The options on which the drop-in classes are held to ``torch.optim.Adam`` and ``AdamW``.
_OPTION_GRID = dict(
    lr=(0.01,),
    amsgrad=(False, True),
    weight_decay=(0.0, 0.1),
    decoupled_weight_decay=(False, True),
    maximize=(False, True),
)


def _adam_rule(name: str, default_weight_decay: float, decoupled: bool, listing: Listing) -> Rule:
    course_defaults = dict(_COURSE_DEFAULTS)
    if default_weight_decay:
        course_defaults["weight_decay"] = default_weight_decay
    # AdamW's decay is always decoupled: its grid has no switch for it.
    grid = {
        key: values
        for key, values in _OPTION_GRID.items()
        if not (decoupled and key == "decoupled_weight_decay")
    }
    return Rule(
        name=name,
        update=adam_update,
        listing=replace(
            listing,
            group_keys={"betas": ("beta1", "beta2")},
            lr_range=(1e-5, 1e-1),
            course=CourseForm(
                name,
                renames=_COURSE_NAMES,
                defaults=course_defaults,
                fixed={"decoupled_weight_decay": decoupled},
                counts_steps=True,
            ),
            option_grid=grid,
        ),
        hypers=(
            learning_rate(1e-3),
            decay_rate("beta1", 0.9, "decay rate of the first moment m"),
            decay_rate("beta2", 0.999, "decay rate of the second moment v"),
            epsilon(1e-8),
            weight_decay(default_weight_decay),
            Hyper(
                "decoupled_weight_decay",
                decoupled,
                "decay x directly (AdamW) instead of adding lambda * x to g",
                kind=bool,
            ),
            Hyper("amsgrad", False, "normalize by the running maximum of v", kind=bool),
            MAXIMIZE,
        ),
        slots=(
            Slot("exp_avg"),
            Slot("exp_avg_sq"),
            Slot("max_exp_avg_sq", active=lambda h: h["amsgrad"]),
        ),
        step_scalars=_adam_step_scalars,
    )


ADAM = _adam_rule(
    "adam",
    0.0,
    False,
    Listing(
        summary="m, v moving averages of g, g^2 with bias correction; x <- x - lr m^ / "
        "(sqrt(v^) + eps)",
        reference="Kingma & Ba (2015); amsgrad: Reddi et al. (2018)",
        year=2015,
        colour="#CC6677",
        lecture=True,
    ),
)
ADAMW = _adam_rule(
    "adamw",
    1e-2,
    True,
    Listing(
        summary="Adam with decoupled weight decay",
        reference="Loshchilov & Hutter (2019)",
        year=2019,
        colour="#882255",
    ),
)
