"""RMSProp: AdaGrad with a leaky (exponentially decaying) sum of squares."""

from __future__ import annotations

from descend.rules.common import (
    MAXIMIZE,
    decay_rate,
    epsilon,
    l2_gradient,
    learning_rate,
    momentum,
    weight_decay,
)
from descend.rules.elementwise import fma, lerp, sqrt
from descend.rules.spec import CourseForm, Element, Hyper, Listing, Rule, Slot


def rmsprop_update(
    p: Element,
    g: Element,
    square_avg: Element,
    grad_avg: Element,
    momentum_buffer: Element,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> tuple[Element, ...]:
    """One RMSProp step, with the notes' decay rate ``rho`` named ``alpha`` as in torch::

        h <- rho * h + (1 - rho) * g * g
        x <- x - alpha_lr * g / (sqrt(h) + eps)

    ``centered`` subtracts the squared running mean of g inside the root (an estimate of the
    variance); ``momentum > 0`` accumulates ``b <- mu * b + g / (sqrt(h) + eps)`` and steps
    ``x <- x - lr * b``. Each step rounds as ``torch.optim.RMSprop``'s operations do
    (``addcmul_``, ``lerp_`` and ``add_(b, alpha=-lr)`` round once: ``fma``, ``lerp``).
    """
    g = l2_gradient(p, g, weight_decay, maximize)
    square_avg = fma((1 - alpha) * g, g, alpha * square_avg)
    if centered:
        grad_avg = lerp(grad_avg, g, 1 - alpha)
        avg = sqrt(fma(-grad_avg, grad_avg, square_avg)) + eps
    else:
        avg = sqrt(square_avg) + eps
    if momentum > 0:
        momentum_buffer = momentum * momentum_buffer + g / avg
        p = fma(-lr, momentum_buffer, p)
    else:
        p = p - lr * g / avg
    return p, square_avg, grad_avg, momentum_buffer


RMSPROP = Rule(
    name="rmsprop",
    update=rmsprop_update,
    hypers=(
        learning_rate(1e-2),
        decay_rate("alpha", 0.99, "decay rate rho of the squared-gradient average"),
        epsilon(1e-8),
        weight_decay(),
        momentum(0.0, "momentum coefficient of the step buffer"),
        Hyper(
            "centered",
            False,
            "normalize by the variance estimate, not the raw second moment",
            kind=bool,
        ),
        MAXIMIZE,
    ),
    slots=(
        Slot("square_avg"),
        Slot("grad_avg", active=lambda h: h["centered"]),
        Slot("momentum_buffer", active=lambda h: h["momentum"] > 0),
    ),
    listing=Listing(
        summary="h <- rho h + (1 - rho) g^2 ; x <- x - lr g / (sqrt(h) + eps)",
        reference="Tieleman & Hinton (2012), Coursera lecture 6.5; centered: Graves (2013)",
        year=2012,
        colour="#999933",
        course=CourseForm(
            "rmsprop",
            renames={
                "learning_rate": "lr",
                "decay_rate": "alpha",
                "epsilon": "eps",
                "cache": "square_avg",
            },
            defaults={"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
        ),
        lr_range=(1e-5, 1e-1),
        lecture=True,
        option_grid=dict(
            lr=(0.01,),
            centered=(False, True),
            momentum=(0.0, 0.5),
            weight_decay=(0.0, 0.1),
            maximize=(False, True),
        ),
    ),
)
