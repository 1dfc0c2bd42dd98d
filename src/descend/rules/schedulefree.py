"""Schedule-Free SGD and AdamW: averaging in place of a learning-rate schedule (Defazio et al.).

The method keeps two sequences and evaluates at a third. ``z`` takes plain (or Adam-normalized)
gradient steps; ``x`` is a weighted running average of the ``z`` iterates; the gradient is taken
at ``y``, an interpolation between the two::

    y_t     = (1 - beta) z_t + beta x_t
    z_{t+1} = z_t - gamma_t g(y_t)
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1},   c_{t+1} = w_{t+1} / sum_{i<=t+1} w_i

with weights ``w_t = t^r * (max lr so far)^weight_lr_power``. As the reference implementation
does, the parameter holds ``y`` while training and ``x`` while evaluating, and the state holds
``z``; :func:`evaluation_point` and :func:`training_point` move between the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from descend.rules.elementwise import lerp, sqrt
from descend.rules.spec import CourseForm, Element, GroupState, Hyper, Listing, Rule, Slot


def sf_sgd_update(
    p: Element,
    g: Element,
    z: Element,
    *,
    lr: float,
    weight_decay: float,
    ckp1: float,
    y_coefficient: float,
) -> tuple[Element, ...]:
    """One Schedule-Free SGD step on the training point y (the parameter)::

        g <- g + lambda * y                          (if weight_decay)
        y <- (1 - c) y + c z                         (c = c_{t+1}: ckp1)
        y <- y + gamma (beta (1 - c) - 1) * g        (y_coefficient)
        z <- z - gamma * g

    The two y lines are ``y_{t+1} = (1 - beta) z_{t+1} + beta x_{t+1}`` written without x.
    ``gamma`` is the learning rate after warmup (``lr`` here).
    """
    if weight_decay != 0:
        g = g + weight_decay * p
    p = lerp(p, z, ckp1)
    p = p + y_coefficient * g
    z = z - lr * g
    return p, z


def sf_adamw_update(
    p: Element,
    g: Element,
    z: Element,
    exp_avg_sq: Element,
    *,
    lr: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    bias_correction2: float,
    ckp1: float,
    y_coefficient: float,
) -> tuple[Element, ...]:
    """One Schedule-Free AdamW step on the training point y (the parameter)::

    v <- beta2 * v + (1 - beta2) * g * g
    g <- g / (sqrt(v / (1 - beta2^t)) + eps)
    g <- g + lambda * y                          (if weight_decay; decay at y)
    y <- (1 - c) y + c z                         (c = c_{t+1}: ckp1)
    y <- y + gamma (beta1 (1 - c) - 1) * g       (y_coefficient)
    z <- z - gamma * g
    """
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
    g = g / (sqrt(exp_avg_sq / bias_correction2) + eps)
    if weight_decay != 0:
        g = g + weight_decay * p
    p = lerp(p, z, ckp1)
    p = p + y_coefficient * g
    z = z - lr * g
    return p, z, exp_avg_sq


def evaluation_point(y: Element, z: Element, *, beta: float) -> Element:
    """``x = (y - (1 - beta) z) / beta``: the averaged point, from the training point::

    x <- y + (1 - 1 / beta) * (z - y)
    """
    return lerp(y, z, 1 - 1 / beta)


def training_point(x: Element, z: Element, *, beta: float) -> Element:
    """``y = (1 - beta) z + beta x``: where the gradient is taken, from the averaged point::

    y <- x + (1 - beta) * (z - x)
    """
    return lerp(x, z, 1 - beta)


def advance(values: Mapping[str, Any]) -> dict[str, Any]:
    """One step of the group's running scalars: the step count k, the warmed-up learning rate,
    the largest learning rate so far and the sum of the averaging weights."""
    k = values["k"]
    warmup = values["warmup_steps"]
    lr = values["lr"] * ((k + 1) / warmup if k < warmup else 1.0)
    lr_max = max(lr, values["lr_max"])
    weight = ((k + 1) ** values["r"]) * (lr_max ** values["weight_lr_power"])
    return {
        "k": k + 1,
        "scheduled_lr": lr,
        "lr_max": lr_max,
        "weight_sum": values["weight_sum"] + weight,
    }


def averaging_weight(values: Mapping[str, Any]) -> float:
    """``c_{t+1} = w_{t+1} / sum w``, from the advanced group state (0 while every weight is
    0, as the reference does)."""
    weight = (values["k"] ** values["r"]) * (values["lr_max"] ** values["weight_lr_power"])
    return weight / values["weight_sum"] if values["weight_sum"] != 0 else 0.0


def _sf_sgd_step_scalars(values: Mapping[str, Any], step: int) -> dict[str, float]:
    ckp1 = averaging_weight(values)
    lr = values["scheduled_lr"]
    return {"lr": lr, "ckp1": ckp1, "y_coefficient": lr * (values["momentum"] * (1 - ckp1) - 1)}


def _sf_adamw_step_scalars(values: Mapping[str, Any], step: int) -> dict[str, float]:
    ckp1 = averaging_weight(values)
    lr = values["scheduled_lr"]
    return {
        "lr": lr,
        "ckp1": ckp1,
        "y_coefficient": lr * (values["beta1"] * (1 - ckp1) - 1),
        "bias_correction2": 1 - values["beta2"] ** values["k"],
    }


#: Per-group state, with the reference's keys and starting values.
GROUP_STATE = GroupState({"k": 0, "weight_sum": 0.0, "lr_max": -1.0, "scheduled_lr": 0.0}, advance)

_SHARED = (
    Hyper("weight_decay", 0.0, "lambda: L2 term added to the step direction, at y", low=0.0),
    Hyper(
        "warmup_steps",
        0,
        "linear warmup of the learning rate over this many steps",
        low=0.0,
        kind=int,
    ),
    Hyper("r", 0.0, "power of t in the averaging weights (0: uniform)", low=0.0),
    Hyper(
        "weight_lr_power", 2.0, "power of the largest lr so far in the averaging weights", low=0.0
    ),
)

SF_SGD = Rule(
    name="sf_sgd",
    update=sf_sgd_update,
    hypers=(
        Hyper("lr", 1.0, "learning rate gamma of the z steps", low=0.0),
        Hyper(
            "momentum",
            0.9,
            "beta: how far y sits from z towards x",
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        ),
        *_SHARED,
    ),
    slots=(Slot("z", from_parameter=True),),
    group_state=GROUP_STATE,
    step_scalars=_sf_sgd_step_scalars,
    counts_steps=False,
    listing=Listing(
        summary="Schedule-Free SGD: z takes SGD steps, x averages z, gradients taken between them",
        aliases=("sgd_schedulefree",),
        reference="Defazio et al. (2024), The Road Less Scheduled; schedulefree.SGDScheduleFree",
        year=2024,
        colour="#BBCC33",
        course=CourseForm(
            "sf_sgd",
            renames={"learning_rate": "lr"},
            defaults={"learning_rate": 1.0, "momentum": 0.9},
        ),
        lr_range=(1e-3, 10.0),
    ),
)

SF_ADAMW = Rule(
    name="sf_adamw",
    update=sf_adamw_update,
    hypers=(
        Hyper("lr", 0.0025, "learning rate gamma of the z steps", low=0.0),
        Hyper(
            "beta1",
            0.9,
            "beta: how far y sits from z towards x",
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        ),
        Hyper(
            "beta2", 0.999, "decay rate of the second moment v", low=0.0, high=1.0, high_open=True
        ),
        Hyper("eps", 1e-8, "added to the denominator for numerical stability", low=0.0),
        *_SHARED,
    ),
    slots=(Slot("z", from_parameter=True), Slot("exp_avg_sq")),
    group_state=GROUP_STATE,
    step_scalars=_sf_adamw_step_scalars,
    counts_steps=False,
    listing=Listing(
        summary="Schedule-Free AdamW: z takes Adam-normalized steps, x averages z",
        aliases=("adamw_schedulefree",),
        reference="Defazio et al. (2024), The Road Less Scheduled; schedulefree.AdamWScheduleFree",
        year=2024,
        colour="#FFAABB",
        group_keys={"betas": ("beta1", "beta2")},
        course=CourseForm(
            "sf_adamw",
            renames={"learning_rate": "lr", "epsilon": "eps", "v": "exp_avg_sq"},
            defaults={"learning_rate": 0.0025, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
        ),
        lr_range=(1e-5, 1e-1),
    ),
)
