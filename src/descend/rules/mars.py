"""MARS: AdamW on a variance-reduced gradient (Yuan et al., 2024), in its ``adamw`` form.

A minibatch gradient is noisy; variance reduction (STORM) corrects it with the change of the
gradient since the last step. MARS scales that correction, clips the corrected gradient to
norm 1 per tensor (the correction can be large) and feeds it to AdamW in place of the
gradient. The correction needs the whole tensor's norm, so it is a per-tensor stage
(:class:`~descend.rules.spec.MatrixStage` with ``ndim=None``): an elementwise ``prepare``
(the corrected gradient and the stored previous gradient), the norm clip in torch, then the
elementwise AdamW update. Vectors and scalars (biases, norms) run plain AdamW with their own
rates unless ``optimize_1d`` (the stage's ``tensor_hypers``), as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from descend.rules.common import (
    FIXED_DECAY,
    MAXIMIZE,
    adam_moments,
    decay_rate,
    decoupled_decay,
    epsilon,
    learning_rate,
    weight_decay,
    weight_decouple,
)
from descend.rules.elementwise import fma, maximum, sqrt
from descend.rules.spec import CourseForm, Element, Hyper, Listing, MatrixStage, Rule, Slot

if TYPE_CHECKING:
    import torch


def mars_correction(
    u: Element,
    g: Element,
    exp_avg: Element,
    exp_avg_sq: Element,
    last_grad: Element,
    max_exp_avg_sq: Element,
    *,
    maximize: bool,
    correction: float,
) -> tuple[Element, ...]:
    """The corrected gradient c (the stage's elementwise part), and the gradient kept for the
    next step::

        c      <- g + gamma * beta1 / (1 - beta1) * (g - g_prev)      (c <- g for AdamW's vectors)
        g_prev <- g

    ``correction = gamma * beta1 / (1 - beta1)`` is a step scalar (0 for a tensor that runs
    plain AdamW); ``g <- -g`` first with ``maximize``.
    """
    if maximize:
        g = -g
    u = g if correction == 0 else (g - last_grad) * correction + g
    return u, exp_avg, exp_avg_sq, g, max_exp_avg_sq


def clip_to_unit_norm(update: torch.Tensor, hypers: Mapping[str, Any]) -> torch.Tensor:
    """``c <- c / max(1, ||c||)`` over the whole tensor (its Frobenius norm), for the tensors
    MARS corrects; the others (vectors without ``optimize_1d``) pass unchanged."""
    if update.ndim < 2 and not hypers["optimize_1d"]:
        return update
    import torch  # here, not at the top: the rules load without torch (the command line's help)

    clipped: torch.Tensor = update / torch.linalg.vector_norm(update).clamp_min(1.0)
    return clipped


def mars_update(
    p: Element,
    g: Element,
    exp_avg: Element,
    exp_avg_sq: Element,
    last_grad: Element,
    max_exp_avg_sq: Element,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    coupled: bool,
    decay: float,
    ams_bound: bool,
    bias_correction1: float,
    bc2_sqrt: float,
) -> tuple[Element, ...]:
    """One MARS-AdamW step, with c the clipped corrected gradient (``g`` here) and t from 1::

        m <- beta1 m + (1 - beta1) c
        v <- beta2 v + (1 - beta2) c c
        x <- x (1 - lr lambda)                                      (decoupled weight decay)
        x <- x - lr (m / (1 - beta1^t)) / ((sqrt(v + 1e-15) + eps) / sqrt(1 - beta2^t))

    ``ams_bound`` divides by the running maximum of v; 1e-15 under the root is the
    reference's floor. ``decay`` is ``1 - lr lambda`` (``1 -
    lambda`` with ``fixed_decay``, 1 when coupled). With coupled weight decay the reference adds
    ``lambda x`` to the gradient only after its update is computed, so the term reaches just
    the stored previous gradient (``g_prev <- g + lambda x``): so does this rule. Each operation
    rounds as the reference's torch calls.
    """
    exp_avg, exp_avg_sq = adam_moments(g, exp_avg, exp_avg_sq, beta1, beta2)
    if ams_bound:
        max_exp_avg_sq = maximum(max_exp_avg_sq, exp_avg_sq)
        denom = sqrt(max_exp_avg_sq + 1e-15) + eps
    else:
        denom = sqrt(exp_avg_sq + 1e-15) + eps
    denom = denom / bc2_sqrt * bias_correction1
    if coupled:
        last_grad = fma(weight_decay, p, last_grad)
    p = fma(-lr, exp_avg / denom, p * decay)
    return p, exp_avg, exp_avg_sq, last_grad, max_exp_avg_sq


def vector_hypers(hypers: Mapping[str, Any], ndim: int) -> dict[str, Any]:
    """What a tensor of ``ndim`` dimensions runs with instead of its group's hyperparameters:
    nothing for a matrix or higher (or with ``optimize_1d``); for a vector or scalar, AdamW
    with the 1-D rates and no correction (``lr * lr_1d_factor``, ``betas_1d``,
    ``weight_decay_1d``)."""
    if ndim >= 2 or hypers["optimize_1d"]:
        return {}
    return {
        "lr": hypers["lr"] * hypers["lr_1d_factor"],
        "beta1": hypers["beta1_1d"],
        "beta2": hypers["beta2_1d"],
        "weight_decay": hypers["weight_decay_1d"],
        "gamma": 0.0,
    }


def _mars_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, Any]:
    beta1, beta2, decay = hypers["beta1"], hypers["beta2"], hypers["weight_decay"]
    decoupled = hypers["weight_decouple"] and decay != 0
    return {
        "correction": hypers["gamma"] * beta1 / (1.0 - beta1),
        "coupled": not hypers["weight_decouple"] and decay > 0,
        "decay": decoupled_decay(hypers) if decoupled else 1.0,
        "bias_correction1": 1.0 - math.pow(beta1, step),
        "bc2_sqrt": math.sqrt(1.0 - math.pow(beta2, step)),
    }


MARS = Rule(
    name="mars",
    update=mars_update,
    hypers=(
        learning_rate(3e-3),
        decay_rate("beta1", 0.95, "decay rate of the momentum m (of c)"),
        decay_rate("beta2", 0.99, "decay rate of the second moment v (of c)"),
        Hyper("gamma", 0.025, "strength of the correction by g - g_prev", low=0.0),
        Hyper("mars_type", "adamw", "the form of MARS (AdamW's, here)", choices=("adamw",)),
        Hyper("optimize_1d", False, "correct vectors too (else they run plain AdamW)", kind=bool),
        Hyper("lr_1d_factor", 1.0, "vectors' learning rate, as a multiple of lr", low=0.0),
        decay_rate("beta1_1d", 0.9, "vectors' AdamW beta1"),
        decay_rate("beta2_1d", 0.95, "vectors' AdamW beta2"),
        weight_decay(),
        Hyper("weight_decay_1d", 0.1, "vectors' weight decay", low=0.0),
        weight_decouple(True),
        FIXED_DECAY,
        Hyper("ams_bound", False, "divide by the running maximum of v (AMSGrad)", kind=bool),
        epsilon(1e-8),
        MAXIMIZE,
    ),
    slots=(
        Slot("exp_avg"),
        Slot("exp_avg_sq"),
        Slot("last_grad"),
        Slot("max_exp_avg_sq", active=lambda hypers: bool(hypers["ams_bound"])),
    ),
    stage=MatrixStage(
        prepare=mars_correction,
        function=clip_to_unit_norm,
        ndim=None,
        tensor_hypers=vector_hypers,
    ),
    step_scalars=_mars_step_scalars,
    listing=Listing(
        summary="AdamW on g + gamma beta1/(1 - beta1) (g - g_prev), clipped to norm 1",
        reference="Yuan, Liu, Wu, Zhou, Gu (2024), MARS: Unleashing the Power of Variance "
        "Reduction for Training Large Models; pytorch_optimizer.MARS",
        year=2024,
        equation="""\
c <- g + gamma * beta1 / (1 - beta1) * (g - g_prev);  c <- c / max(1, ||c||);  g_prev <- g
m <- beta1 * m + (1 - beta1) * c
v <- beta2 * v + (1 - beta2) * c * c
x <- x * (1 - lr * lambda) - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)""",
        colour="#EE99AA",
        group_keys={"betas": ("beta1", "beta2"), "betas_1d": ("beta1_1d", "beta2_1d")},
        lr_range=(1e-4, 1e-1),
        course=CourseForm(
            "mars",
            renames={
                "learning_rate": "lr",
                "epsilon": "eps",
                "m": "exp_avg",
                "v": "exp_avg_sq",
                "g_prev": "last_grad",
                "v_max": "max_exp_avg_sq",
            },
            defaults={"learning_rate": 3e-3, "beta1": 0.95, "beta2": 0.99, "epsilon": 1e-8},
            counts_steps=True,
        ),
        # The lab's point is the whole model, not a bias vector: correct and clip it.
        lab_hypers={"optimize_1d": True},
    ),
)
