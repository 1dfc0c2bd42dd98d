"""Lion: the sign of an interpolated momentum, found by program search (Chen et al., 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from descend.rules.elementwise import sign
from descend.rules.spec import CourseForm, Element, Hyper, Listing, Rule, Slot


def lion_update(
    p: Element,
    g: Element,
    exp_avg: Element,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    decay: float,
) -> tuple[Element, ...]:
    """One Lion step, in the paper's notation (m is ``exp_avg``)::

        c <- beta1 * m + (1 - beta1) * g
        x <- x - alpha * (sign(c) + lambda * x)
        m <- beta2 * m + (1 - beta2) * g

    Every coordinate moves by exactly alpha (plus the decay): the step has the size of a sign
    step whatever the gradient's scale. The decay is ``x <- x (1 - alpha lambda)`` before the
    sign step (``decay`` is that factor).
    """
    if weight_decay != 0:
        p = p * decay
    c = beta1 * exp_avg + (1 - beta1) * g
    p = p - lr * sign(c)
    exp_avg = beta2 * exp_avg + (1 - beta2) * g
    return p, exp_avg


def _lion_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, float]:
    return {"decay": 1.0 - hypers["lr"] * hypers["weight_decay"]}


LION = Rule(
    name="lion",
    update=lion_update,
    hypers=(
        Hyper(
            "lr",
            1e-4,
            "learning rate alpha: the size of every coordinate's step",
            low=0.0,
            low_open=True,
        ),
        Hyper(
            "beta1",
            0.9,
            "interpolation between momentum and gradient inside the sign",
            low=0.0,
            high=1.0,
        ),
        Hyper("beta2", 0.99, "decay rate of the momentum m", low=0.0, high=1.0),
        Hyper("weight_decay", 0.0, "lambda: decoupled decay, x <- x (1 - alpha lambda)", low=0.0),
    ),
    slots=(Slot("exp_avg"),),
    step_scalars=_lion_step_scalars,
    counts_steps=False,
    listing=Listing(
        summary="x <- x - lr (sign(beta1 m + (1 - beta1) g) + wd x); m <- beta2 m + (1 - beta2) g",
        reference="Chen et al. (2023), Symbolic Discovery of Optimization Algorithms; lion-pytorch",
        year=2023,
        colour="#0077BB",
        group_keys={"betas": ("beta1", "beta2")},
        course=CourseForm(
            "lion",
            renames={"learning_rate": "lr", "m": "exp_avg"},
            defaults={"learning_rate": 1e-4, "beta1": 0.9, "beta2": 0.99},
        ),
        lr_range=(1e-6, 1e-2),
    ),
)
