"""Hyperparameters that several rules share, specified once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from descend.rules.elementwise import fma, helper, lerp
from descend.rules.spec import Element, Hyper


def learning_rate(default: float) -> Hyper:
    """The step size alpha (``lr``), non-negative."""
    return Hyper("lr", default, "learning rate (step size alpha)", low=0.0)


def epsilon(default: float) -> Hyper:
    """The ``eps`` added to a root-mean-square denominator, non-negative."""
    return Hyper("eps", default, "added to the denominator for numerical stability", low=0.0)


def weight_decay(default: float = 0.0) -> Hyper:
    """L2 penalty coefficient, non-negative."""
    return Hyper("weight_decay", default, "L2 penalty: g <- g + weight_decay * x", low=0.0)


def momentum(default: float, doc: str = "momentum coefficient rho") -> Hyper:
    """A momentum (friction) coefficient, non-negative."""
    return Hyper("momentum", default, doc, low=0.0)


def decay_rate(name: str, default: float, doc: str) -> Hyper:
    """A moving-average decay rate in [0, 1)."""
    return Hyper(name, default, doc, low=0.0, high=1.0, high_open=True)


MAXIMIZE = Hyper("maximize", False, "ascend instead of descend (g <- -g)", kind=bool)


def weight_decouple(default: bool) -> Hyper:
    """``pytorch_optimizer``'s switch between coupled and decoupled weight decay."""
    return Hyper(
        "weight_decouple",
        default,
        "decay x directly (x <- x (1 - lr lambda)) instead of adding lambda x to g",
        kind=bool,
    )


#: ``pytorch_optimizer``'s decoupled decay not scaled by the learning rate.
FIXED_DECAY = Hyper(
    "fixed_decay",
    False,
    "with weight_decouple: x <- x (1 - lambda), not scaled by the learning rate",
    kind=bool,
)


def decoupled_decay(hypers: Mapping[str, Any]) -> float:
    """The factor ``pytorch_optimizer``'s decoupled weight decay shrinks the weights by:
    ``1 - lambda lr``, or ``1 - lambda`` with ``fixed_decay``."""
    rate = 1.0 if hypers["fixed_decay"] else hypers["lr"]
    factor: float = 1.0 - hypers["weight_decay"] * rate
    return factor


@helper
def l2_gradient(p: Element, g: Element, weight_decay: float, maximize: bool) -> Element:
    """The gradient a rule steps along: ``g <- -g`` to ascend, then the L2 term.

    ::

        g <- -g                      if maximize
        g <- g + weight_decay * x    if weight_decay != 0

    The L2 term rounds once, as torch's ``g.add(x, alpha=weight_decay)``.
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        g = fma(weight_decay, p, g)
    return g


@helper
def decayed(
    p: Element,
    g: Element,
    weight_decay: float,
    decoupled_weight_decay: bool,
    decay: float,
    maximize: bool,
) -> tuple[Element, Element]:
    """The weights and gradient of the Adam family's step: ``g <- -g`` to ascend, then weight
    decay, coupled (the L2 term in the gradient, Adam) or decoupled (the weights shrink before
    the step, AdamW; ``decay = 1 - alpha * lambda``). Returns ``(p, g)``.

    ::

        g <- -g                                          if maximize
        x <- x * decay                                   if weight_decay != 0 and decoupled
        g <- g + weight_decay * x                        if weight_decay != 0 and coupled

    The L2 term rounds once, as torch's ``g.add(x, alpha=weight_decay)``.
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled_weight_decay:
            p = p * decay
        else:
            g = fma(weight_decay, p, g)
    return p, g


@helper
def adam_moments(
    g: Element, exp_avg: Element, exp_avg_sq: Element, beta1: float, beta2: float
) -> tuple[Element, Element]:
    """Adam's two moving averages of the gradient, as every rule of the Adam family keeps them.
    Returns ``(m, v)``.

    ::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g * g

    Rounded as torch's ``m.lerp_(g, 1 - beta1)`` and ``v.mul_(beta2).addcmul_(g, g, value=1 -
    beta2)`` round.
    """
    exp_avg = lerp(exp_avg, g, 1 - beta1)
    exp_avg_sq = fma((1 - beta2) * g, g, beta2 * exp_avg_sq)
    return exp_avg, exp_avg_sq
