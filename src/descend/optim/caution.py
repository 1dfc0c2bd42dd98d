"""``cautious=``: the cautious switch every descend optimizer takes (see
:mod:`descend.rules.caution` for the math and :mod:`descend.kernels.caution` for how every
executor runs it).

With ``cautious=True`` each step of each param group keeps, of each parameter's step, only the
components that agree in sign with its gradient, scaled by ``n / (kept + 1)``. The group's
compiled blocks (fused CPU, Triton) run it inside the rule's own kernels: a count pass that
computes the step in registers and writes nothing, then the plain kernel with a cautious
parameter store (measured for float32 Adam on one thread: 2.20 plain fused steps on one
16M-element tensor and 1.58 on 1000 tensors of 1024, against 7.99 and 18.3 for the older form;
see :mod:`descend.kernels.caution` and ``benchmarks/caution_speed.py``). Blocks with compressed
slots, steps that run on the reference executor while a kernel compiles, and the listed
parameters (complex ones, a differentiable step, the reference backend) run the older form: the
parameters are copied before the step and corrected after it by
:func:`~descend.kernels.caution.apply_caution` on the executor that stepped each one
(:func:`cautiously` here, for the listed parameters). ``cautious=False`` (the default) changes
nothing: the step is bit for bit the one without the argument.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from descend.kernels.caution import apply_caution, snapshot
from descend.kernels.executor import Executor, get_executor
from descend.optim import sharded
from descend.rules.caution import caution_refusal
from descend.rules.spec import Rule, plain_value

if TYPE_CHECKING:
    from descend.optim.base import RuleOptimizer


def checked_cautious(value: object) -> bool:
    """The ``cautious`` argument, refused with ``ValueError`` unless it is a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"cautious={value!r} is invalid: expected True or False")
    return value


def check_cautious_rule(rule: Rule, owner: str, cautious: bool) -> None:
    """Refuse ``cautious=True`` for a rule it cannot apply to, naming the rule and why."""
    refusal = caution_refusal(rule) if cautious else None
    if refusal is not None:
        raise ValueError(f"cautious=True is not available for {owner}: {refusal}")


def check_cautious_gradients(
    params: Sequence[torch.Tensor], label: Callable[[torch.Tensor], str]
) -> None:
    """Refuse a sparse gradient or a sharded (DTensor) parameter under ``cautious=True``,
    naming its parameter: the mask's count is taken over the whole dense tensor (for a
    sharded one that would need a sum across ranks, which is not built yet)."""
    for param in params:
        if sharded.is_dtensor(param):
            raise ValueError(
                f"{label(param)} is a DTensor: cautious=True does not step sharded parameters "
                "yet (its count spans the whole tensor, across ranks); nothing was updated"
            )
        grad = param.grad
        if grad is not None and grad.is_sparse:
            raise ValueError(
                f"{label(param)} has a sparse gradient: cautious=True needs dense gradients; "
                "nothing was updated"
            )


def cautiously(
    run: Callable[[], None] | None,
    params: Sequence[torch.Tensor],
    listed: Sequence[torch.Tensor],
    hypers: Mapping[str, Any],
    optimizer: RuleOptimizer,
    differentiable: bool,
) -> Callable[[], None] | None:
    """``run`` (the list calls of a group's ``listed`` parameters, which change them in
    place; ``None`` when there are none) made cautious when ``optimizer.cautious`` (else
    ``run`` itself), in the older form of :mod:`descend.kernels.caution`: the parameters are
    copied before it and corrected after it, each on the executor that steps it (the
    reference executor for a differentiable step). The group's planned blocks are cautious
    in their kernels (:meth:`~descend.optim.plan.GroupPlan.stage`). Checks the gradients of
    all the group's ``params`` first (:func:`check_cautious_gradients`), so call it before
    anything changes."""
    if not optimizer.cautious:
        return run
    check_cautious_gradients(params, optimizer._label)
    if run is None:
        return None
    stepped = run
    maximize = bool(plain_value(hypers.get("maximize", False)))
    reference = get_executor("reference")

    def executor_for(param: torch.Tensor) -> Executor:
        chosen = None if differentiable else optimizer._executor_for(param)
        return chosen or reference

    def cautious_run() -> None:
        before = snapshot(listed)
        stepped()
        grads = [param.grad for param in listed]
        dense = [grad for grad in grads if grad is not None]
        apply_caution(before, listed, dense, maximize, executor_for)

    return cautious_run


__all__ = [
    "check_cautious_gradients",
    "check_cautious_rule",
    "checked_cautious",
    "cautiously",
]
