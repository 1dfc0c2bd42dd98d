"""The reference executor: a rule's update applied tensor by tensor with torch (or NumPy) ops.

This is the path every other executor is checked against. It evaluates the rule's own
function on whole tensors, then writes the results back into the parameter and its state. It
supports every parameter torch can compute on (any device, any floating dtype).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from descend.kernels.executor import Executor
from descend.kernels.variant import Variant
from descend.rules.elementwise import bind
from descend.rules.spec import Rule, plain_value


def torch_update(rule: Rule) -> Callable[..., tuple[Any, ...]]:
    """The rule's update function with its primitives and helpers bound to torch."""
    return bind(rule.update, "torch")


def numpy_update(rule: Rule) -> Callable[..., tuple[Any, ...]]:
    """The rule's update function with its primitives and helpers bound to NumPy."""
    return bind(rule.update, "numpy")


def numpy_step(
    rule: Rule, param: Any, grad: Any, slots: Sequence[Any], values: Mapping[str, Any], step: int
) -> tuple[Any, list[Any]]:
    """Update ``step`` of ``rule`` on NumPy arrays: ``(new param, new slots)``, inputs left as
    they are. ``values`` holds the hyperparameters with the running state of this step (see
    :meth:`Rule.next_state`). A rule with a matrix stage runs its elementwise ``prepare``,
    the stage (through torch, on the whole array) and then its ``update``, with the
    hyperparameters the stage gives an array of this many dimensions (``tensor_hypers``: MARS's
    vectors run AdamW), as the optimizers do."""
    stage, prepare = rule.stage, rule.prepare_rule
    if stage is not None and stage.tensor_hypers is not None:
        values = {**values, **stage.tensor_hypers(values, np.ndim(param))}
    if stage is not None and prepare is not None:  # a rule with a stage has its prepare rule
        direction, *slots = numpy_update(prepare)(
            np.empty_like(param), grad, *slots, **prepare.scalars(values, step)
        )
        plain = {name: plain_value(value) for name, value in values.items()}
        grad = stage.function(
            torch.from_numpy(np.array(direction, dtype=param.dtype)), plain
        ).numpy()
    new_param, *new_slots = numpy_update(rule)(param, grad, *slots, **rule.scalars(values, step))
    return new_param, new_slots


def update_tensors(
    rule: Rule,
    scalars: Mapping[str, Any],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    slots: Sequence[Sequence[torch.Tensor | None]],
) -> None:
    """Apply one step of ``rule`` in place to each parameter and its slot tensors.

    ``slots[i]`` holds parameter i's state tensors in the rule's slot order, ``None`` for a slot
    that is not active. ``scalars`` are the keyword arguments from ``Rule.scalars``.
    """
    update = torch_update(rule)
    for param, grad, state in zip(params, grads, slots, strict=True):
        new_param, *new_state = update(param, grad, *state, **scalars)
        param.copy_(new_param)
        for old, new in zip(state, new_state, strict=True):
            if old is not None and new is not old:
                old.copy_(new)


class ReferenceExecutor(Executor):
    """Runs the rule with torch ops on whole tensors; supports every floating parameter."""

    name = "reference"

    def supports(self, tensor: torch.Tensor) -> bool:
        """Every tensor: torch computes wherever the tensor lives."""
        return True

    def step(
        self,
        rule: Rule,
        variant: Variant | None,
        scalars: Mapping[str, Any],
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        slots: Sequence[Sequence[torch.Tensor | None]],
    ) -> None:
        """One step with torch ops (the variant is not needed: nothing is compiled)."""
        update_tensors(rule, scalars, params, grads, slots)


#: The reference executor.
EXECUTOR = ReferenceExecutor()
