"""Cautious steps on every executor: the mechanism of :mod:`descend.rules.caution`, compiled
by each executor like any rule.

A cautious step is elementwise work with one per-tensor sum in the middle. Every executor runs
it from the same definition, in the form "store the slots in pass 1, rescale the parameter in
pass 2":

1. the executor's own step of the rule (reference torch ops, the fused Numba kernel, the
   Triton kernel: unchanged), after :func:`snapshot` kept each parameter's value before it;
2. :func:`apply_caution`, on the same executor: the rule
   :func:`~descend.rules.caution.caution_count` (one list call for all of the executor's
   tensors) writes each element's agreement into a scratch tensor, torch sums it per tensor
   (:func:`~descend.rules.caution.caution_scale`), and the rule
   :func:`~descend.rules.caution.caution_apply` (one call per tensor: the scale is the
   tensor's own) rescales the parameter. Both are rules in the rule language, so each
   executor compiles them as it compiles any update: the fused executor into Numba kernels,
   Triton into GPU kernels, the reference executor into torch ops.

Executors that agree bit for bit on a plain step agree on a cautious one. What this costs over
one fused pass: a copy of each parameter, a scratch tensor, and two more passes over
parameter, gradient and copy (the correction is not fused into the rule's own kernel).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from descend.kernels.executor import Executor
from descend.kernels.variant import Variant
from descend.rules.caution import caution_apply, caution_count, caution_scale
from descend.rules.spec import Rule, Slot

#: Pass 2a as a rule: ``(x_new, g, before, keep) -> (x_new, before, agreement)``.
COUNT_RULE = Rule(
    name="caution_count",
    update=caution_count,
    hypers=(),
    slots=(Slot("before"), Slot("keep")),
    counts_steps=False,
)
#: Pass 2b as a rule: ``(x_new, g, before) -> (x_cautious, before)``.
APPLY_RULE = Rule(
    name="caution_apply",
    update=caution_apply,
    hypers=(),
    slots=(Slot("before"),),
    counts_steps=False,
)


def _real(tensor: torch.Tensor) -> torch.Tensor:
    """A complex tensor's real view (as executors step it), any other tensor itself."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def snapshot(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each parameter's value before the step (pass 1 overwrites it), as executors see it.
    Nothing is detached: under autograd (a differentiable step) the passes are recorded."""
    return [_real(param).clone() for param in params]


def apply_caution(
    before: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    maximize: bool,
    executor_for: Callable[[torch.Tensor], Executor],
) -> None:
    """Pass 2 of a cautious step, in place: each parameter (holding its executor's result)
    becomes ``before - d * keep * scale`` (see :mod:`descend.rules.caution`), computed by
    ``executor_for(parameter)``, the executor that ran pass 1 on it."""
    news = [_real(param) for param in params]
    reals = [_real(grad) for grad in grads]
    keeps = [torch.empty_like(new) for new in news]
    by_executor: dict[int, tuple[Executor, list[int]]] = {}
    for index, param in enumerate(params):
        executor = executor_for(param)
        by_executor.setdefault(id(executor), (executor, []))[1].append(index)
    for executor, indices in by_executor.values():
        executor.step(
            COUNT_RULE,
            None,
            {"maximize": maximize},
            [news[i] for i in indices],
            [reals[i] for i in indices],
            [[before[i], keeps[i]] for i in indices],
        )
        for i in indices:
            scale = float(caution_scale(keeps[i].detach().sum(), keeps[i].numel()))
            executor.step(
                APPLY_RULE,
                None,
                {"scale": scale, "maximize": maximize},
                [news[i]],
                [reals[i]],
                [[before[i]]],
            )


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
    the executor's step, then :func:`apply_caution` on the same executor. Ascends where
    ``scalars`` say ``maximize``."""
    before = snapshot(params)
    executor.step(rule, variant, scalars, params, grads, slots)
    maximize = bool(scalars.get("maximize", False))
    apply_caution(before, params, grads, maximize, lambda param: executor)


__all__ = ["APPLY_RULE", "COUNT_RULE", "apply_caution", "cautious_step", "snapshot"]
