"""The notes' velocity forms of momentum: SGD+Momentum and Nesterov momentum."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from descend.rules.common import MAXIMIZE, l2_gradient, learning_rate, momentum, weight_decay
from descend.rules.spec import CourseForm, Element, Listing, Rule, Slot


def sgd_momentum_update(
    p: Element,
    g: Element,
    velocity: Element,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    maximize: bool,
) -> tuple[Element, ...]:
    """One step of SGD+Momentum in the notes' velocity form::

        v <- rho * v - alpha * g
        x <- x + v

    The learning rate is folded into the velocity when each gradient arrives, so changing
    alpha affects only future gradients. (``torch.optim.SGD`` keeps ``b = sum of mu^k g`` and
    multiplies by the current alpha, so a change of alpha rescales the whole history at once;
    with a constant alpha the two forms give the same iterates, ``v = -alpha * b``.)
    """
    g = l2_gradient(p, g, weight_decay, maximize)
    velocity = momentum * velocity - lr * g
    p = p + velocity
    return p, velocity


def nesterov_update(
    p: Element,
    g: Element,
    velocity: Element,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    maximize: bool,
) -> tuple[Element, ...]:
    """One step of Nesterov momentum in the notes' change-of-variables form.

    The gradient is taken at the tracked variable ``x~ = x + rho * v``::

        v_new <- rho * v - alpha * g(x~)
        x~    <- x~ + v_new + rho * (v_new - v)

    With a constant alpha this equals ``torch.optim.SGD(nesterov=True)`` with ``v = -alpha * b``.
    """
    g = l2_gradient(p, g, weight_decay, maximize)
    previous = velocity
    velocity = momentum * velocity - lr * g
    p = p + velocity + momentum * (velocity - previous)
    return p, velocity


def _velocity_rule(
    name: str, update: Callable[..., tuple[Element, Element]], course_name: str, listing: Listing
) -> Rule:
    return Rule(
        name=name,
        update=update,
        listing=replace(
            listing,
            lr_range=(1e-4, 1.0),
            lecture=True,
            course=CourseForm(
                course_name,
                renames={"learning_rate": "lr"},
                defaults={"learning_rate": 1e-2, "momentum": 0.9},
            ),
        ),
        counts_steps=False,
        hypers=(
            learning_rate(1e-3),
            momentum(0.9, "momentum (friction) coefficient rho"),
            weight_decay(),
            MAXIMIZE,
        ),
        slots=(Slot("velocity"),),
    )


SGD_MOMENTUM = _velocity_rule(
    "sgd_momentum",
    sgd_momentum_update,
    "sgd_momentum",
    Listing(
        summary="v <- rho v - lr g ; x <- x + v",
        aliases=("momentum",),
        reference="Polyak (1964), heavy ball; CS231n lecture 7's velocity form",
        year=1964,
        colour="#88CCEE",
    ),
)
NESTEROV = _velocity_rule(
    "nesterov",
    nesterov_update,
    "nesterov_momentum",
    Listing(
        summary="v' <- rho v - lr g ; x <- x + v' + rho (v' - v)",
        reference="Nesterov (1983); Sutskever et al. (2013); CS231n's change of variables",
        year=1983,
        colour="#44AA99",
    ),
)
