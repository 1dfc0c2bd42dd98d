"""Per-parameter state: created in the rule's slots when a step first needs it, and removed
again when that step does not happen.

A parameter's state holds its rule's active slots and, if the rule counts steps, a step counter
and the rule's running products (0-d tensors, as ``torch.optim`` keeps its ``step``). State is
created lazily, as in ``torch.optim``, during the step that first needs it (or at construction
for a class with ``eager_state``); each entry created is recorded, so that a step that stops on
an error, or is skipped for a non-finite gradient, leaves the state as it found it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from descend.optim import sharded
from descend.optim.checks import describe, step_dtype
from descend.optim.precision import check_stored, encode_slot, initial_key, stored_format
from descend.optim.weights import state_probe, state_template

if TYPE_CHECKING:
    from descend.optim.base import RuleOptimizer


def ensure_state(
    optimizer: RuleOptimizer,
    param: torch.Tensor,
    hypers: Mapping[str, Any],
    group: Mapping[str, Any],
) -> tuple[dict[str, Any] | None, bool]:
    """``param``'s state in ``optimizer`` with every slot active under ``hypers`` (and a step
    counter and running products if the group's rule counts steps), and whether a slot was
    created now. Every entry created is recorded in ``optimizer._created_keys``.

    A parameter that needs no state gets none, as in ``torch.optim``. Existing state
    tensors are checked against the parameter (``ValueError`` naming both on a mismatch).
    A bf16 weight under ``param_precision`` has float32 state, made from its decoded value
    (:func:`~descend.optim.weights.state_template`).
    """
    rule = optimizer.rule_for(group)
    slots = rule.active_slots(hypers)
    if not slots and not rule.counts_steps and param not in optimizer.state:
        return None, False
    created_keys = optimizer._created_keys
    if param not in optimizer.state:
        created_keys.append((param, None))
    state = optimizer.state[param]
    if rule.counts_steps and "step" not in state:
        # A torch.optim checkpoint may hold slots but no counter: it is past its first step.
        has_history = any(slot.name in state for slot in rule.slots)
        state["step"] = torch.tensor(float(has_history), dtype=step_dtype())
        created_keys.append((param, "step"))
    for product in rule.products:
        if product.name not in state:
            state[product.name] = torch.tensor(product.initial, dtype=step_dtype())
            created_keys.append((param, product.name))
    created = False
    precision = optimizer._precision
    like: torch.Tensor | None = None
    probe = state_probe(optimizer, param)  # what the state is checked against
    for slot in slots:
        tensor = state.get(slot.name)
        codec = precision.codec(slot.name, param) if precision.compressed else None
        if tensor is None:
            if like is None:
                like = state_template(optimizer, param)
            state[slot.name] = slot.initial(like, hypers)
            if codec is not None and codec.storage is not None:
                number = rule.slots.index(slot)
                key = initial_key(optimizer, param, number)
                added = encode_slot(state, slot.name, codec, state[slot.name], key)
                created_keys += [(param, name) for name in added if name != slot.name]
            created_keys.append((param, slot.name))
            created = True
            optimizer._unstepped.add(id(param))
        elif codec is not None and stored_format(state, slot.name, probe) != "float32":
            check_stored(state, slot.name, codec, probe, lambda _: optimizer._label(param))
        elif (
            not isinstance(tensor, torch.Tensor)
            or tensor.shape != param.shape
            or tensor.dtype != probe.dtype
            or tensor.device != param.device
        ):
            raise ValueError(
                f"state[{slot.name!r}] of {optimizer._label(param)} is "
                f"{describe(tensor)}, but the parameter is {describe(param)}: expected "
                "the same shape, dtype and device (was the state loaded from another "
                "model?); nothing was updated"
            )
        else:
            sharded.check_state(tensor, param, slot.name, optimizer._label)
    return state, created


def remove_created_state(optimizer: RuleOptimizer) -> None:
    """Undo the state the step under way created (``optimizer._created_keys``), for a step
    that does not happen."""
    for param, key in reversed(optimizer._created_keys):
        state = optimizer.state.get(param)
        if state is None:
            continue
        if key is None:
            if not state:
                del optimizer.state[param]
        else:
            state.pop(key, None)
    optimizer._created_keys = []


def state_nbytes(optimizer: torch.optim.Optimizer) -> float:
    """Bytes of optimizer state per parameter element: every tensor in ``optimizer.state``
    (slots, their companions, step counters), divided by the parameters' element count."""
    stored: int = sum(
        value.numel() * value.element_size()
        for entry in optimizer.state.values()
        for value in entry.values()
        if isinstance(value, torch.Tensor)
    )
    elements: int = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    return stored / max(elements, 1)
