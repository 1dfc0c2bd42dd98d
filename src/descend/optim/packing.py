"""Slot tensors created together, laid out together: one buffer per slot, as a kernel streams it.

A fused step walks each operand of a block (parameters, gradients, each slot) as one stream,
tensor after tensor. Slots created parameter by parameter (as ``torch.optim`` creates them: a
parameter's first moment, its second, then the next parameter's) lie interleaved in memory, so
on many small tensors every tensor starts a new stream: the memory's prefetchers start afresh
and the kernel runs well below the memory's speed (``python benchmarks/host_overhead.py
--layouts`` measures the kernel on both layouts).

So the small slots a step creates (:data:`PACK_LIMIT`: a large tensor is a long stream on its
own, and moving it would cost a copy's worth of memory for a moment) are moved into one buffer
per slot name, dtype and device, each a view of its own stretch (starting on a 64-byte
boundary), as the step counters here are 0-d views of one tensor. Each stays an ordinary
tensor of the state: its own shape, strides and values, saved and loaded as usual; only its
address changes, before any plan records it. (Saving one of them alone with ``torch.save``
saves the whole buffer, as for any view.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

import torch

from descend.optim.param_state import ensure_state
from descend.optim.weights import float32_weights

if TYPE_CHECKING:
    from descend.optim.base import RuleOptimizer

#: Slot tensors of up to this many elements are packed; larger ones stay where they were made.
PACK_LIMIT = 1 << 16
#: Each packed tensor starts at a multiple of this many bytes (a cache line: full-width
#: vector loads of a tensor never straddle two lines at its start).
ALIGN_BYTES = 64


def packable(tensor: Any, param: torch.Tensor) -> TypeGuard[torch.Tensor]:
    """Whether a freshly created slot tensor can move into a shared buffer: a plain, dense
    (contiguous) CPU tensor laid out like its parameter, outside autograd, not empty and at
    most :data:`PACK_LIMIT` elements."""
    return (
        type(tensor) is torch.Tensor
        and tensor.device.type == "cpu"
        and not tensor.requires_grad
        and tensor.is_contiguous()
        and tensor.shape == param.shape
        and 0 < tensor.numel() <= PACK_LIMIT
    )


def pack_created_slots(
    state: Mapping[torch.Tensor, dict[str, Any]],
    created: Iterable[tuple[torch.Tensor, str | None]],
    slot_names: Iterable[str],
) -> int:
    """Move the slot tensors named in ``created`` (``(parameter, key)`` pairs of state
    entries created in this step; keys outside ``slot_names`` are left alone) into one buffer
    per slot name, dtype and device, keeping their values; return how many moved.

    A group of one tensor stays as it is. The state entries keep their keys, so a step that
    stops afterwards removes them as it removes any state it created.
    """
    names = set(slot_names)
    groups: dict[tuple[str, torch.dtype, torch.device], list[torch.Tensor]] = {}
    seen: set[tuple[int, str]] = set()
    for param, key in created:
        if key is None or key not in names or (id(param), key) in seen:
            continue
        seen.add((id(param), key))
        tensor = state[param].get(key)
        if packable(tensor, param):
            groups.setdefault((key, tensor.dtype, tensor.device), []).append(param)
    moved = 0
    for (key, dtype, device), params in groups.items():
        if len(params) < 2:
            continue
        step = max(1, ALIGN_BYTES // torch.empty(0, dtype=dtype).element_size())
        starts, total = [], 0
        for param in params:
            starts.append(total)
            total += -(-param.numel() // step) * step
        buffer = torch.empty(total, dtype=dtype, device=device)
        for param, start in zip(params, starts, strict=True):
            tensor = state[param][key]
            view = buffer[start : start + tensor.numel()].view(tensor.shape)
            view.copy_(tensor)
            state[param][key] = view
            moved += 1
    return moved


def create_packed_state(
    optimizer: RuleOptimizer,
    params: Iterable[torch.Tensor],
    hypers: Mapping[str, Any],
    group: Mapping[str, Any],
    needs_gradient: bool = True,
    pack: bool = True,
) -> None:
    """Create the missing state of ``params`` for a compiled step (with ``needs_gradient``,
    only of those with a dense gradient and real values: the ones a block walks), then, with
    ``pack``, pack the slots created here (:func:`pack_created_slots`; not compressed slots,
    whose storage is the codecs', but the slots of a compressed request kept in float32)."""
    before = len(optimizer._created_keys)
    for param in params:
        grad = param.grad
        if not needs_gradient or (
            grad is not None and not grad.is_sparse and not param.is_complex()
        ):
            ensure_state(optimizer, param, hypers, group)
    if pack:
        rule = optimizer.rule_for(group)
        created = optimizer._created_keys[before:]
        if optimizer._precision.compressed:
            # Only the slots kept in float32 (a tensor under its format's minimum size, such
            # as int8's 4096 elements): a compressed slot's storage is its codec's.
            created = [
                (param, key) for param, key in created if _kept_in_float32(optimizer, param, key)
            ]
        pack_created_slots(optimizer.state, created, [slot.name for slot in rule.slots])


def _kept_in_float32(optimizer: RuleOptimizer, param: torch.Tensor, key: str | None) -> bool:
    """Whether state ``key`` of ``param`` is a slot a compressed request keeps uncompressed:
    a float32 or float64 tensor without a codec's companions."""
    state = optimizer.state[param]
    value = state.get(key) if key is not None else None
    return (
        isinstance(value, torch.Tensor)
        and value.dtype in (torch.float32, torch.float64)
        and not any(name.startswith(f"{key}.") for name in state)
    )


def create_eager_state(optimizer: RuleOptimizer) -> None:
    """Create every parameter's state at construction (a class with ``eager_state``, as
    ``torch.optim.Adagrad``), packed where a compiled step would pack it; bf16 weights with
    float32 masters (``param_precision``) get float32 state."""
    pack = optimizer._executors[0].compiled and not optimizer.defaults.get("differentiable")
    with float32_weights(optimizer, stepping=False):
        for group in optimizer.param_groups:
            hypers = optimizer.rule_hypers(group)
            create_packed_state(optimizer, group["params"], hypers, group, False, pack)
