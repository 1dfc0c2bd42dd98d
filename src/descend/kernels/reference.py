"""The reference executor: a rule's update applied tensor by tensor with torch (or NumPy) ops.

This is the path every other executor is checked against. It evaluates the rule's own
function on whole tensors, then writes the results back into the parameter and its state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import torch

from descend.rules.elementwise import rebind
from descend.rules.spec import Rule


@cache
def torch_update(rule: Rule) -> Callable[..., tuple]:
    """The rule's update function with ``sqrt``/``maximum`` bound to torch."""
    return rebind(rule.update, sqrt=torch.sqrt, maximum=torch.maximum)


def numpy_update(rule: Rule) -> Callable[..., tuple]:
    """The rule's update function as written (its names are bound to NumPy)."""
    return rule.update


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
