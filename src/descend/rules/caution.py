"""Cautious updates (Liang et al. 2024, "Cautious Optimizers: Improving Training with One Line
of Code"): a switch that every elementwise rule gets without a line in its rule file.

An element's step under any rule is ``x_new = x - d``: ``d = x - x_new`` is what the rule's own
``update`` subtracts (learning rate, bias corrections and decoupled weight decay included).
Caution keeps the components of ``d`` that point along the descent direction ``g`` (``-g``
for a rule run with ``maximize=True``), drops the others, and rescales what is kept so the
step keeps its size on average::

    keep_i = 1 if d_i * g_i > 0 else 0            (elementwise: :func:`cautious_agreement`)
    s      = n / (sum_i keep_i + 1)               (per tensor of n elements: :func:`caution_scale`)
    x_i   <- x_i - d_i * (keep_i * s)             (elementwise: :func:`cautious_parameter`)

The normalization follows pytorch_optimizer 4.1.0 (``BaseOptimizer.apply_cautious``:
``mask * mask.numel() / (mask.sum() + 1)``, the form of the paper's own code); HeavyBall
3.2.1's ``caution`` divides by ``max(sum keep, 1)`` instead.

The sum over the tensor is the one thing an elementwise rule cannot express: it is a
per-tensor reduction between two elementwise passes. The rule's slots are updated exactly as
without caution (the moments see every gradient); only the parameter's step is masked.

Two differences from the references, both from defining ``d`` by the rule's own step: a
decoupled weight decay (AdamW, Lion, AdEMAMix) is part of ``d`` and so is masked and rescaled
with it (the references decay first, unmasked), and the mask compares with the gradient as
given, not with one that a coupled L2 term has changed. With ``weight_decay=0`` the iterates
are the references' (to rounding).

A rule whose parameter step is not its whole step cannot be made cautious this way: one with a
matrix stage (Muon, Shampoo, SOAP: the elementwise part receives the orthogonalized or
preconditioned direction, not the gradient, and HeavyBall masks those against the raw
gradient only inside its own matrix code) and one whose slots start as a copy of the
parameter (Schedule-Free: the slot ``z`` moves as the unmasked method says, so masking the
interpolated parameter ``y`` alone would break ``y``'s relation to ``z``).
:func:`caution_refusal` says why.
"""

from __future__ import annotations

from descend.rules.elementwise import abs, helper, sign
from descend.rules.spec import Element, Rule


@helper
def cautious_agreement(p: Element, p_new: Element, g: Element, maximize: bool) -> Element:
    """1 where the step ``d = p - p_new`` agrees in sign with the descent direction (``g``,
    or ``-g`` when ascending), 0 where it disagrees or either is zero::

        s = sign((p - p_new) * g)
        keep = (s + |s|) / 2

    (exact in floating point: ``s`` is -1, 0 or 1; a NaN stays NaN, so a non-finite step
    propagates as it would without caution).
    """
    if maximize:
        g = -g
    s = sign((p - p_new) * g)
    return (s + abs(s)) * 0.5


def caution_scale(kept: Element, count: Element) -> Element:
    """The rescaling of the kept components of a tensor of ``count`` elements, ``kept`` of
    which agree: ``count / (kept + 1)`` (pytorch_optimizer 4.1.0's ``apply_cautious``);
    executors evaluate it on vectors of every tensor's counts at once."""
    return count / (kept + 1)


@helper
def cautious_parameter(p: Element, p_new: Element, keep: Element, scale: Element) -> Element:
    """The parameter after a cautious step, from the rule's own result ``p_new``::

    x <- x - (x - x_new) * (keep * scale)
    """
    return p - (p - p_new) * (keep * scale)


def caution_count(
    p: Element, g: Element, before: Element, keep: Element, *, maximize: bool
) -> tuple[Element, ...]:
    """Pass 2a, as a rule every executor compiles: ``p`` holds the rule's result ``x_new``,
    ``before`` the parameter before the step; ``keep`` receives the agreement, whose sum over
    the tensor gives the scale. ``p`` and ``before`` stay as they are."""
    return p, before, cautious_agreement(before, p, g, maximize)


def caution_apply(
    p: Element, g: Element, before: Element, *, scale: float, maximize: bool
) -> tuple[Element, ...]:
    """Pass 2b, as a rule every executor compiles: ``p`` (holding ``x_new``) becomes the
    cautious step's result, ``before - d * keep * scale``; ``before`` stays as it is."""
    keep = cautious_agreement(before, p, g, maximize)
    return cautious_parameter(before, p, keep, scale), before


def caution_refusal(rule: Rule) -> str | None:
    """Why ``rule`` cannot be made cautious (``None``: it can): see the module docstring."""
    if rule.stage is not None:
        return (
            f"rule {rule.name!r} has a matrix stage, so its elementwise update does not see "
            "the gradient; cautious=True applies to elementwise rules only"
        )
    copied = [slot.name for slot in rule.slots if slot.from_parameter]
    if copied:
        return (
            f"rule {rule.name!r} keeps slot(s) {', '.join(map(repr, copied))} that start as a "
            "copy of the parameter and move by the unmasked step, so a masked parameter step "
            "would break their relation; cautious=True applies to rules whose parameter step "
            "is their whole step"
        )
    return None


__all__ = [
    "caution_apply",
    "caution_count",
    "caution_refusal",
    "caution_scale",
    "cautious_agreement",
    "cautious_parameter",
]
