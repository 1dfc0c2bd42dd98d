"""Muon: momentum orthogonalized by a Newton-Schulz iteration, for 2-D weights (Jordan, 2024).

Muon's direction is a matrix function, not an elementwise one, so the rule has a
:class:`~descend.rules.spec.MatrixStage`: an elementwise ``prepare`` (the momentum, compiled by
every executor like any update), the Newton-Schulz iteration on the whole matrix, then the
elementwise update. The iteration is ``torch.optim.Muon``'s, operation for operation, in
bfloat16, so descend's iterates match torch's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from descend.rules.elementwise import lerp
from descend.rules.spec import CourseForm, Element, Hyper, Listing, MatrixStage, Rule, Slot

if TYPE_CHECKING:
    import torch

#: torch.optim.Muon's defaults: the quintic's coefficients (a, b, c), steps and epsilon.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7
#: The ``adjust_lr_fn`` values, as ``torch.optim.Muon`` accepts them.
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def muon_momentum(
    u: Element, g: Element, momentum_buffer: Element, *, momentum: float, nesterov: bool
) -> tuple[Element, ...]:
    """The matrix Muon orthogonalizes (the stage's elementwise part)::

    B <- mu * B + (1 - mu) * g
    U <- (1 - mu) * g + mu * B     if nesterov   else   U <- B
    """
    momentum_buffer = lerp(momentum_buffer, g, 1 - momentum)
    u = lerp(g, momentum_buffer, momentum) if nesterov else momentum_buffer
    return u, momentum_buffer


def newton_schulz(update: torch.Tensor, hypers: Mapping[str, Any]) -> torch.Tensor:
    """``O = NS_k(U)``, scaled for the matrix's shape: the stage's matrix function.

    The quintic iteration on ``X = U / ||U||_F`` (transposed so that it has no more rows than
    columns), in bfloat16 as ``torch.optim.Muon`` runs it, operation for operation::

        A <- X X^T
        X <- a X + (b A + c A A) X          (k times)

    It pushes every singular value of U towards 1 (to about 0.7 ... 1.2 with these
    coefficients): O is roughly U's polar factor. The result, in U's dtype, is multiplied by
    the shape's learning-rate ratio (:func:`lr_ratio`).
    """
    import torch  # here, not at the top: the rules load without torch (the command line's help)

    a, b, c = hypers["ns_a"], hypers["ns_b"], hypers["ns_c"]
    x = update.bfloat16()
    tall = update.size(0) > update.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=hypers["eps"]))
    for _ in range(hypers["ns_steps"]):
        gram = x @ x.T
        gram_update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, gram_update, x, beta=a)
    if tall:
        x = x.T
    direction = x.to(update.dtype)
    ratio = lr_ratio(hypers["adjust_lr_fn"], tuple(update.shape))
    return direction if ratio == 1.0 else direction * ratio


def lr_ratio(adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    """How ``adjust_lr_fn`` scales the learning rate of an A x B matrix::

    original (None):  sqrt(max(1, A / B))       (Jordan)
    match_rms_adamw:  0.2 * sqrt(max(A, B))     (Liu et al.: AdamW's update RMS)
    """
    rows, columns = shape[:2]
    if rows == 0 or columns == 0:
        return 1.0  # an empty matrix: nothing to scale (and no ratio of its sides)
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / columns))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, columns))
    return 1.0


def muon_update(
    p: Element, g: Element, momentum_buffer: Element, *, lr: float, decay: float
) -> tuple[Element, ...]:
    """One Muon step, with O the orthogonalized momentum times the shape's ratio (``g``)::

    x <- x * (1 - alpha * lambda)
    x <- x - alpha * O
    """
    p = p * decay
    p = p - lr * g
    return p, momentum_buffer


def _muon_step_scalars(hypers: Mapping[str, Any], step: int) -> dict[str, float]:
    return {"decay": 1 - hypers["lr"] * hypers["weight_decay"]}


MUON = Rule(
    name="muon",
    update=muon_update,
    hypers=(
        Hyper("lr", 1e-3, "learning rate alpha", low=0.0),
        Hyper("weight_decay", 0.1, "lambda: decoupled decay, x <- x (1 - alpha lambda)", low=0.0),
        Hyper("momentum", 0.95, "mu: decay of the momentum buffer B", low=0.0),
        Hyper("nesterov", True, "orthogonalize (1 - mu) g + mu B instead of B", kind=bool),
        Hyper("ns_a", NS_COEFFICIENTS[0], "Newton-Schulz coefficient a (of X)"),
        Hyper("ns_b", NS_COEFFICIENTS[1], "Newton-Schulz coefficient b (of A X)"),
        Hyper("ns_c", NS_COEFFICIENTS[2], "Newton-Schulz coefficient c (of A A X)"),
        Hyper("eps", NS_EPS, "floor of ||U||_F before the division", low=0.0),
        Hyper("ns_steps", NS_STEPS, "Newton-Schulz iterations", low=0, high=99, kind=int),
        Hyper(
            "adjust_lr_fn",
            None,
            "learning-rate scaling by shape (see lr_ratio)",
            choices=ADJUST_LR_FNS,
        ),
    ),
    slots=(Slot("momentum_buffer"),),
    stage=MatrixStage(prepare=muon_momentum, function=newton_schulz, ndim=2),
    step_scalars=_muon_step_scalars,
    counts_steps=False,
    listing=Listing(
        summary="x <- x (1 - lr wd) - lr NS(momentum): the momentum's polar factor, 2-D weights",
        reference="Jordan et al. (2024), Muon: An optimizer for hidden layers in neural "
        "networks; Liu et al. (2025), Muon is Scalable for LLM Training; "
        "torch.optim.Muon",
        year=2024,
        # The whole step, stage included (the update's own docstring has only its last part).
        equation="""\
B <- mu * B + (1 - mu) * g
O <- NS_k((1 - mu) g + mu B)   (NS_k(B) without nesterov), in bfloat16 as torch
x <- x * (1 - lr * weight_decay) - lr * ratio(shape) * O""",
        colour="#CC3311",
        group_keys={"ns_coefficients": ("ns_a", "ns_b", "ns_c")},
        course=CourseForm(
            "muon",
            renames={"learning_rate": "lr"},
            defaults={"learning_rate": 0.02, "weight_decay": 0.0},
        ),
        lr_range=(1e-4, 1.0),
    ),
)
