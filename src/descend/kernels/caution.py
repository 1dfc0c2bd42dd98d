"""Cautious steps on every executor: the mechanism of :mod:`descend.rules.caution`, run
around any executor's step.

A cautious step is two elementwise passes with a per-tensor sum between them. Every executor
shares this one definition, in the form "store the slots in pass 1, rescale the parameter in
pass 2":

1. the executor's own step of the rule (reference torch ops, the fused Numba kernel, the
   Triton kernel: unchanged, so each still compiles the rule's ``update`` and nothing else),
   after :func:`snapshot` kept each parameter's value before it;
2. :func:`apply_caution`: from the value before (``x``), the executor's result (``x_new``) and
   the gradient, the helper :func:`~descend.rules.caution.cautious_agreement` per element, its
   sum per tensor (:func:`~descend.rules.caution.caution_scale`) and
   :func:`~descend.rules.caution.cautious_parameter` per element, bound to torch (so it runs on
   the parameter's device, CPU or GPU).

So executors that agree on a plain step agree on a cautious one, bit for bit. What this costs
over a fused single pass: a copy of each parameter and one more torch pass over parameter,
gradient and copy (the second pass is not fused into the compiled kernels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from descend.kernels.executor import Executor
from descend.kernels.variant import Variant
from descend.rules.caution import caution_scale, cautious_agreement, cautious_parameter
from descend.rules.elementwise import bind
from descend.rules.spec import Rule


def _real(tensor: torch.Tensor) -> torch.Tensor:
    """A complex tensor's real view (as executors step it), any other tensor itself."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def snapshot(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each parameter's value before the step (pass 1 overwrites it)."""
    return [_real(param).detach().clone() for param in params]


def apply_caution(
    before: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    maximize: bool = False,
) -> None:
    """Pass 2 of a cautious step, in place: each parameter (holding the executor's result)
    becomes ``before - d * keep * scale`` (see :mod:`descend.rules.caution`)."""
    agreement = bind(cautious_agreement, "torch")
    cautious = bind(cautious_parameter, "torch")
    for old, param, grad in zip(before, params, grads, strict=True):
        new = _real(param)
        keep = agreement(old, new, _real(grad), maximize)
        scale = caution_scale(keep.sum(), keep.numel())
        new.copy_(cautious(old, new, keep, scale))


def cautious_step(
    executor: Executor,
    rule: Rule,
    variant: Variant | None,
    scalars: Mapping[str, Any],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    slots: Sequence[Sequence[torch.Tensor | None]],
) -> None:
    """One cautious step of ``rule`` on ``executor`` (its :meth:`~Executor.step` arguments):
    the executor's step, then :func:`apply_caution`. Ascends where ``scalars`` say
    ``maximize``."""
    before = snapshot(params)
    executor.step(rule, variant, scalars, params, grads, slots)
    apply_caution(before, params, grads, bool(scalars.get("maximize", False)))


__all__ = ["apply_caution", "cautious_step", "snapshot"]
