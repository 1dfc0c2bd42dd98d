"""Stochastic gradient descent in ``torch.optim.SGD``'s buffer form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from descend.rules.common import MAXIMIZE, l2_gradient, learning_rate, momentum, weight_decay
from descend.rules.elementwise import fma
from descend.rules.spec import Constraint, CourseForm, Element, Hyper, Listing, Rule, Slot


def sgd_update(
    p: Element,
    g: Element,
    momentum_buffer: Element,
    *,
    lr: float,
    momentum: float,
    keep: float,
    gain: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> tuple[Element, ...]:
    """One SGD step, in ``torch.optim.SGD``'s form.

    With ``mu = momentum`` and ``tau = dampening``::

        g <- g + weight_decay * x
        b <- mu * b + (1 - tau) * g          (b <- g on the first step)
        g <- g + mu * b   if nesterov  else  g <- b
        x <- x - alpha * g

    With ``momentum = 0`` this is the notes' plain SGD, ``x <- x - alpha * g``.
    ``keep``/``gain`` are ``mu``/``1 - tau`` except on the buffer's first step (0 and 1), when
    it starts as a copy of the gradient (also when momentum is switched on mid-run, as in torch).
    Each ``a + s * b`` rounds once (``fma``), as torch's ``a.add(b, alpha=s)`` does.
    """
    g = l2_gradient(p, g, weight_decay, maximize)
    if momentum != 0:
        momentum_buffer = fma(gain, g, keep * momentum_buffer)
        g = fma(momentum, momentum_buffer, g) if nesterov else momentum_buffer
    p = fma(-lr, g, p)
    return p, momentum_buffer


def _sgd_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, float]:
    first = step <= 1
    return {
        "keep": 0.0 if first else hypers["momentum"],
        "gain": 1.0 if first else 1.0 - hypers["dampening"],
    }


SGD = Rule(
    name="sgd",
    update=sgd_update,
    hypers=(
        learning_rate(1e-3),
        momentum(0.0, "momentum coefficient mu (0 disables the buffer)"),
        Hyper("dampening", 0.0, "dampening tau of the buffer's gradient term", low=0.0, high=1.0),
        weight_decay(),
        Hyper("nesterov", False, "use Nesterov momentum (torch.optim.SGD's form)", kind=bool),
        MAXIMIZE,
    ),
    slots=(Slot("momentum_buffer", active=lambda h: h["momentum"] != 0),),
    step_scalars=_sgd_step_scalars,
    counts_steps=False,
    constraints=(
        Constraint(
            lambda h: not h["nesterov"] or (h["momentum"] > 0 and h["dampening"] == 0),
            "nesterov=True requires momentum > 0 and dampening = 0",
        ),
    ),
    listing=Listing(
        summary="x <- x - lr * g, with torch.optim.SGD's momentum buffer, dampening and nesterov",
        reference="Robbins & Monro (1951); momentum: Polyak (1964); torch.optim.SGD's buffer form",
        year=1951,
        colour="#332288",
        course=CourseForm(
            "sgd",
            renames={"learning_rate": "lr"},
            defaults={"learning_rate": 1e-2},
            fixed={"momentum": 0.0, "dampening": 0.0, "nesterov": False},
        ),
        lr_range=(1e-3, 3.0),
        lecture=True,
        option_grid=dict(
            lr=(0.05,),
            momentum=(0.0, 0.9),
            dampening=(0.0, 0.3),
            weight_decay=(0.0, 0.1),
            nesterov=(False, True),
            maximize=(False, True),
        ),
    ),
)
