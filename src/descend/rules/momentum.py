"""The notes' velocity forms of momentum: SGD+Momentum and Nesterov momentum."""

from __future__ import annotations

from descend.rules.common import MAXIMIZE, learning_rate, momentum, weight_decay
from descend.rules.spec import Rule, Slot


def sgd_momentum_update(p, g, velocity, *, lr, momentum, weight_decay, maximize):
    """One step of SGD+Momentum in the notes' velocity form::

        v <- rho * v - alpha * g
        x <- x + v

    The learning rate is folded into the velocity when each gradient arrives, so changing
    alpha affects only future gradients. (``torch.optim.SGD`` keeps ``b = sum of mu^k g`` and
    multiplies by the current alpha, so a change of alpha rescales the whole history at once;
    with a constant alpha the two forms give the same iterates, ``v = -alpha * b``.)
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    velocity = momentum * velocity - lr * g
    p = p + velocity
    return p, velocity


def nesterov_update(p, g, velocity, *, lr, momentum, weight_decay, maximize):
    """One step of Nesterov momentum in the notes' change-of-variables form.

    The gradient is taken at the tracked variable ``x~ = x + rho * v``::

        v_new <- rho * v - alpha * g(x~)
        x~    <- x~ + v_new + rho * (v_new - v)

    With a constant alpha this equals ``torch.optim.SGD(nesterov=True)`` with ``v = -alpha * b``.
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    previous = velocity
    velocity = momentum * velocity - lr * g
    p = p + velocity + momentum * (velocity - previous)
    return p, velocity


def _velocity_rule(name: str, update, summary: str) -> Rule:
    return Rule(
        name=name,
        summary=summary,
        update=update,
        hypers=(
            learning_rate(1e-3),
            momentum(0.9, "momentum (friction) coefficient rho"),
            weight_decay(),
            MAXIMIZE,
        ),
        slots=(Slot("velocity"),),
    )


SGD_MOMENTUM = _velocity_rule(
    "sgd_momentum", sgd_momentum_update, "v <- rho v - lr g ; x <- x + v")
NESTEROV = _velocity_rule(
    "nesterov", nesterov_update, "v' <- rho v - lr g ; x <- x + v' + rho (v' - v)")
