"""Prodigy: Adam whose step size d is learned from the run (Mishchenko and Defazio, 2023).

Adam's learning rate must be tuned; D-Adaptation and Prodigy estimate it. ``d`` estimates the
distance from the start ``x0`` to a solution: since ``g . (x0 - x)`` summed along the run
lower-bounds ``D`` times the length of the weighted gradient sum ``s``, the ratio of the two
sums, taken over the whole model, is a lower bound of ``D`` that only grows. Each step is then
Adam's with the moments weighted by ``d`` and the step size ``d lr`` (so ``lr = 1`` is the
intended setting; ``d_coef`` scales the estimate). Both sums run over every parameter, so the
estimate is a :class:`~descend.rules.reduction.GroupReduction`; the update that uses it is
elementwise, compiled by every executor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from descend.rules.common import decay_rate, weight_decay
from descend.rules.elementwise import bind, fma, helper, sqrt
from descend.rules.reduction import GroupReduction
from descend.rules.spec import Element, Hyper, Listing, Rule, Slot

if TYPE_CHECKING:
    import torch


@helper
def prodigy_weighted_sum(s: Element, g: Element, beta3: float, s_coef: float) -> Element:
    """The weighted gradient sum s, as ``s.mul_(beta3).add_(g, alpha=s_coef)`` rounds::

    s <- beta3 * s + (d / d0) * d lr * g        ((d / d0) * d with safeguard_warmup)
    """
    return fma(s_coef, g, s * beta3)


def prodigy_update(
    p: Element,
    g: Element,
    exp_avg: Element,
    exp_avg_sq: Element,
    s: Element,
    p0: Element,
    *,
    weight_decay: float,
    coupled: bool,
    decoupled: bool,
    accumulates: bool,
    moved: bool,
    beta1: float,
    beta2: float,
    beta3: float,
    m_coef: float,
    v_coef: float,
    s_coef: float,
    d_eps: float,
    decay_coef: float,
    dlr: float,
    dlr_d: float,
) -> tuple[Element, ...]:
    """One Prodigy step, with d the estimate the step starts from and d' the one it ends at::

        g  <- g + lambda x                                  (coupled weight decay)
        m  <- beta1 m + d (1 - beta1) g
        v  <- beta2 v + d^2 (1 - beta2) g^2
        s  <- beta3 s + (d / d0) d lr g
        d' <- from the sums over the model, sum g.(x0 - x) and sum |s| (step scalars)
        x  <- x - d lr lambda x                             (decoupled weight decay)
        x  <- x - d lr m / (sqrt(v) + d' eps)

    ``lr`` here is the largest learning rate of the groups, times Adam's bias correction with
    ``use_bias_correction``; ``dlr = d lr``, ``m_coef = d (1 - beta1)``, ``v_coef = d^2 (1 -
    beta2)``, ``s_coef = (d / d0) d lr``, ``d_eps = d' eps``, ``decay_coef = -lambda d lr``
    and ``dlr_d = d lr d'`` are per-step scalars (see :func:`estimate_d` for d'). With
    ``beta1 = 0`` there is no m and x moves along ``d' g``. A group with ``lr = 0``
    (``accumulates`` false) keeps its moments; a step whose sum of ``|s|`` is zero (``moved``
    false) moves no parameter, as the reference's. Each operation rounds as the reference's
    in-place torch calls.
    """
    if coupled:
        g = fma(weight_decay, p, g)
    if accumulates:
        if beta1 > 0:
            exp_avg = fma(m_coef, g, exp_avg * beta1)
        exp_avg_sq = fma(v_coef * g, g, exp_avg_sq * beta2)
        s = prodigy_weighted_sum(s, g, beta3, s_coef)
    if moved:
        denom = sqrt(exp_avg_sq) + d_eps
        if decoupled:
            p = fma(decay_coef, p, p)
        p = p - dlr * exp_avg / denom if beta1 > 0 else p - dlr_d * g / denom
    return p, exp_avg, exp_avg_sq, s, p0


def _beta3(hypers: Mapping[str, Any]) -> float:
    beta3 = hypers["beta3"]
    return math.sqrt(hypers["beta2"]) if beta3 is None else float(beta3)


def step_start(values: Mapping[str, Any]) -> tuple[float, float, float]:
    """``(d, dlr, s_coef)`` at the start of a step, from the hyperparameters, the group state
    before the step and the shared largest learning rate (``lr_max``; the group's own ``lr``
    without one)::

        dlr    = d lr_max bc,  bc = sqrt(1 - beta2^(k+1)) / (1 - beta1^(k+1))  (or 1)
        s_coef = (d / d0) dlr        ((d / d0) d with safeguard_warmup)
    """
    d0 = values["d0"]
    d = d0 if values["d"] is None else values["d"]
    k = values["k"]
    lr = values.get("lr_max", values["lr"])
    beta1, beta2 = values["beta1"], values["beta2"]
    bias_correction = 1.0
    if values["use_bias_correction"]:
        bias_correction = ((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1))
    dlr = d * lr * bias_correction
    return d, dlr, _s_coef(d, dlr, values)


def _s_coef(d: float, dlr: float, hypers: Mapping[str, Any]) -> float:
    """The weight of g in s: ``(d / d0) dlr``, or ``(d / d0) d`` with ``safeguard_warmup``."""
    d0 = float(hypers["d0"])
    return (d / d0) * d if hypers["safeguard_warmup"] else (d / d0) * dlr


def estimate_d(values: Mapping[str, Any]) -> dict[str, Any]:
    """The group state after one step, from the sums over the model (``delta_numerator``:
    ``sum (d / d0) dlr g.(x0 - x)``; ``d_denom``: ``sum |s|`` after the step's s)::

        r     <- beta3 r + delta_numerator                  (``d_numerator``)
        d_hat  = d_coef r / d_denom
        d      = max(d, d_hat)   on steps where d is still d0
        d_max <- max(d_max, d_hat)
        d     <- min(d_max, d growth_rate)

    It also records the step's ``d_prev`` and ``dlr`` for the update. A step with
    ``d_denom = 0`` (no gradient yet) changes no estimate and moves nothing; without the sums
    (the rule evaluated alone) d is held and the step is Adam's with step size ``d lr``.
    """
    d, dlr, _ = step_start(values)
    d0, k = values["d0"], values["k"]
    recorded = {"d_prev": d, "dlr": dlr}
    if "d_denom" not in values:
        return {**recorded, "k": k + 1}
    d_denom = values["d_denom"]
    if d_denom == 0:
        return {**recorded, "d_denom": 0.0}
    numerator = values["d_numerator"] * _beta3(values) + values["delta_numerator"]
    d_hat = values["d_coef"] * numerator / d_denom
    if d == d0:
        d = max(d, d_hat)
    d_max = max(d0 if values["d_max"] is None else values["d_max"], d_hat)
    growth_rate = values["growth_rate"]
    d = d_max if growth_rate is None else min(d_max, d * growth_rate)
    return {
        **recorded,
        "d": d,
        "d_max": d_max,
        "d_numerator": numerator,
        "d_denom": d_denom,
        "d_hat": d_hat,
        "k": k + 1,
    }


def prodigy_terms(
    p: torch.Tensor, g: torch.Tensor, state: Mapping[str, Any], values: Mapping[str, Any]
) -> dict[str, float]:
    """One parameter's contributions to the sums, in torch, as the reference computes them:
    ``(d / d0) dlr g.(x0 - x)`` and ``sum |s|`` with s after this step (nothing changes)."""
    if values["lr"] == 0:
        return {}
    d, dlr, s_coef = step_start(values)
    if values["weight_decay"] != 0 and not values["decouple"]:
        g = g.add(p, alpha=values["weight_decay"])
    dot = float((g.flatten() @ (state["p0"] - p).flatten()).item())
    weighted_sum = bind(prodigy_weighted_sum, "torch")
    s = weighted_sum(state["s"], g, _beta3(values), s_coef)
    return {
        "delta_numerator": (d / values["d0"]) * dlr * dot,
        "d_denom": float(s.abs().sum().item()),
    }


#: Hyperparameters that set the one estimate of d of the whole model: equal in every group.
MODEL_WIDE = (
    "beta1",
    "beta2",
    "beta3",
    "use_bias_correction",
    "growth_rate",
    "decouple",
    "d0",
    "d_coef",
)


def prodigy_shared(groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The largest learning rate of the groups (``lr_max``). ``ValueError`` when a group's
    learning rate is neither it nor 0, or a model-wide hyperparameter differs between groups
    (the reference reads those from the first group alone)."""
    lr_max = max(float(group["lr"]) for group in groups)
    for index, group in enumerate(groups):
        if float(group["lr"]) not in (lr_max, 0.0):
            raise ValueError(
                f"Prodigy: group {index} has lr={group['lr']!r}; every group's lr must be the "
                f"largest ({lr_max!r}) or 0, as one d is estimated for the whole model"
            )
        for name in MODEL_WIDE:
            if group[name] != groups[0][name]:
                raise ValueError(
                    f"Prodigy: group {index} has {name}={group[name]!r} but group 0 has "
                    f"{groups[0][name]!r}; {', '.join(MODEL_WIDE)} must be equal in every group"
                )
    return {"lr_max": lr_max}


def _prodigy_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, Any]:
    d0 = hypers["d0"]
    d = d0 if hypers["d"] is None else hypers["d"]
    d_prev, dlr = hypers.get("d_prev", d), hypers.get("dlr", d * hypers["lr"])
    beta1, beta2, decay = hypers["beta1"], hypers["beta2"], hypers["weight_decay"]
    return {
        "coupled": decay != 0 and not hypers["decouple"],
        "decoupled": decay != 0 and hypers["decouple"],
        "accumulates": hypers["lr"] != 0,
        "moved": hypers.get("d_denom") != 0.0,
        "beta3": _beta3(hypers),
        "m_coef": d_prev * (1 - beta1),
        "v_coef": d_prev * d_prev * (1 - beta2),
        "s_coef": _s_coef(d_prev, dlr, hypers),
        "d_eps": d * hypers["eps"],
        "decay_coef": -decay * dlr,
        "dlr": dlr,
        "dlr_d": dlr * d,
    }


PRODIGY = Rule(
    name="prodigy",
    update=prodigy_update,
    hypers=(
        Hyper("lr", 1.0, "multiplier of the estimated step size d (1: as estimated)", low=0.0),
        decay_rate("beta1", 0.9, "decay rate of the first moment m (0: no m)"),
        decay_rate("beta2", 0.999, "decay rate of the second moment v"),
        Hyper(
            "beta3",
            None,
            "decay rate of the sums behind d (None: sqrt(beta2))",
            low=0.0,
            high=1.0,
            optional=True,
        ),
        Hyper("eps", 1e-8, "added to sqrt(v) (times d)", low=0.0),
        weight_decay(),
        Hyper("decouple", True, "decay x directly (AdamW's way), not through g", kind=bool),
        Hyper("use_bias_correction", False, "Adam's bias correction in the step size", kind=bool),
        Hyper(
            "safeguard_warmup",
            False,
            "leave lr out of s's weight (steadier d during a learning-rate warm-up)",
            kind=bool,
        ),
        Hyper("d0", 1e-6, "initial estimate of d", low=0.0, low_open=True),
        Hyper("d_coef", 1.0, "scale of the estimate d_hat", low=0.0, low_open=True),
        Hyper(
            "growth_rate",
            None,
            "largest factor d may grow by per step (None: unbounded)",
            low=1.0,
            optional=True,
        ),
    ),
    slots=(
        Slot("exp_avg", active=lambda hypers: hypers["beta1"] > 0),
        Slot("exp_avg_sq"),
        Slot("s"),
        Slot("p0", from_parameter=True),
    ),
    step_scalars=_prodigy_step_scalars,
    group_state=GroupReduction(
        initial={"d": None, "d_max": None, "d_numerator": 0.0, "k": 0},
        advance=estimate_d,
        terms=prodigy_terms,
        totals=("delta_numerator", "d_denom"),
        shared=prodigy_shared,
    ),
    listing=Listing(
        summary="Adam with step size d lr, d a lower bound of the distance to the solution",
        reference="Mishchenko and Defazio (2023), Prodigy: An Expeditiously Adaptive "
        "Parameter-Free Learner; prodigyopt.Prodigy",
        year=2023,
        colour="#44BB99",
        group_keys={"betas": ("beta1", "beta2")},
        lr_range=(0.1, 10.0),
    ),
)
