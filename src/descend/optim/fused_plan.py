"""What a param group keeps between fused steps, so a step costs one kernel call, not a loop.

A :class:`GroupPlan` holds, for the parameters of one group that the fused executor can walk as
flat arrays, the address table of their slot tensors and the work split, one block per dtype.
Each block keeps the step counters of its parameters in one tensor: every ``state["step"]`` is a
0-d view of it, so the counters stay ordinary ``torch.optim``-style state (``state_dict`` saves
and loads them as usual) while one ``+= 1`` advances them all.

Per step the plan reads each gradient's address and checks, by identity, that nothing it cached
was replaced behind its back (``load_state_dict``, a reassigned ``param.data`` or state tensor,
a slot switched on by a new hyperparameter); if anything was, the optimizer builds a new plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from descend.kernels.fused import (
    TensorTable,
    flat_compatible,
    get_kernel,
    run_kernel,
    runtime_row,
    supports,
    variant_of,
)
from descend.rules.spec import Rule

#: Returned by :meth:`GroupPlan.step` when the plan no longer describes the group.
STALE = object()


class Watch:
    """Set when a watched state dict changes, so the plan that cached its tensors rebuilds."""

    __slots__ = ("changed",)

    def __init__(self) -> None:
        self.changed = False


class WatchedState(dict):
    """A parameter's state dict that tells its :class:`Watch` when an entry is replaced.

    Pickles and deep-copies as a plain ``dict``, so checkpoints do not depend on this class.
    """

    __slots__ = ("watch",)

    def __init__(self, items: Mapping, watch: Watch) -> None:
        super().__init__(items)
        self.watch = watch

    def __reduce__(self):
        return dict, (dict(self),)


def _notifying(name: str):
    method = getattr(dict, name)

    def wrapper(self, *args, **kwargs):
        self.watch.changed = True
        return method(self, *args, **kwargs)

    wrapper.__name__ = name
    wrapper.__doc__ = method.__doc__
    return wrapper


for _name in ("__setitem__", "__delitem__", "__ior__", "clear", "pop", "popitem",
              "setdefault", "update"):
    setattr(WatchedState, _name, _notifying(_name))


class _Block:
    """The planned parameters of one dtype, with their slots' addresses and step counters."""

    def __init__(self, params: list[torch.Tensor], states: list[dict], slot_names: list[str],
                 step_dtype: torch.dtype) -> None:
        self.params = params
        self.states = states
        self.slot_names = slot_names
        self.slots = [[state[name] for state in states] for name in slot_names]
        self.dtype = params[0].dtype
        self.table = TensorTable([p.numel() for p in params], 2 + len(slot_names))
        self.param_addresses = [p.data_ptr() for p in params]
        self.table.addresses[0] = self.param_addresses
        for row, tensors in enumerate(self.slots, start=2):
            self.table.addresses[row] = [t.data_ptr() for t in tensors]
        self.all_contiguous = all(p.is_contiguous() for p in params)
        self.steps = torch.tensor([float(state["step"]) for state in states], dtype=step_dtype)
        self.step_values = self.steps.numpy()
        self.step_views = [self.steps[i] for i in range(len(params))]
        for state, view in zip(states, self.step_views, strict=True):
            dict.__setitem__(state, "step", view)
        self.first_row = np.zeros(len(params), dtype=np.int64)

    def gather(self, indices: Sequence[int] | None, keep_alive: list) -> list[int] | None:
        """Addresses of the current gradients; ``None`` if a parameter's storage moved.

        Comprehensions over the tensors, not a Python loop, because this runs every step.
        """
        params = self.params if indices is None else [self.params[k] for k in indices]
        expected = (self.param_addresses if indices is None
                    else [self.param_addresses[k] for k in indices])
        if [p.data_ptr() for p in params] != expected:
            return None
        grads = [p.grad for p in params]
        try:
            addresses = [g.data_ptr() for g in grads]
            if self.all_contiguous and all([g.is_contiguous() for g in grads]):
                return addresses
        except RuntimeError:
            if any(g.is_sparse for g in grads):
                raise RuntimeError("descend optimizers do not support sparse gradients") from None
            raise
        for position, (param, grad) in enumerate(zip(params, grads, strict=True)):
            if not (grad.is_contiguous() if param.is_contiguous()
                    else grad.stride() == param.stride()):
                # A gradient laid out unlike its parameter: walk a copy in the parameter's layout.
                grad = torch.empty_like(param).copy_(grad)
                keep_alive.append(grad)
                addresses[position] = grad.data_ptr()
        return addresses

    def run(self, rule: Rule, hypers: Mapping[str, Any], indices: np.ndarray | None,
            grad_addresses: list[int], active: tuple[bool, ...]) -> None:
        """Advance the step counters of the tensors at ``indices`` (all if None) and update."""
        if indices is None:
            self.steps += 1
            self.table.addresses[1] = grad_addresses
            addresses, work = self.table.addresses, self.table.work
            values = self.step_values
        else:
            self.steps[torch.from_numpy(indices)] += 1
            self.table.addresses[1, indices] = grad_addresses
            addresses, work = self.table.subset_work(indices)
            values = self.step_values[indices]
        low, high = values.min(), values.max()
        if low == high:
            steps, tensor_row = [int(low)], self.first_row[:len(values)]
        else:
            unique, tensor_row = np.unique(values, return_inverse=True)
            steps, tensor_row = [int(s) for s in unique], tensor_row.astype(np.int64)
        by_variant: dict[Any, list[int]] = {}
        rows = []
        for row, step in enumerate(steps):
            scalars = rule.scalars(hypers, step)
            variant = variant_of(rule, scalars, self.dtype, active)
            by_variant.setdefault(variant, []).append(row)
            rows.append((variant, scalars))
        for variant, variant_rows in by_variant.items():
            table = np.asarray([runtime_row(variant, rows[r][1]) for r in variant_rows],
                               dtype=np.float64).reshape(len(variant_rows), len(variant.runtime))
            kernel = get_kernel(rule, variant)
            if len(by_variant) == 1:
                run_kernel(kernel, addresses, work, tensor_row, table)
                continue
            # Steps whose scalars switch a branch differently need different kernels.
            selected = np.flatnonzero(np.isin(tensor_row, variant_rows))
            local_row = np.searchsorted(np.asarray(variant_rows), tensor_row[selected])
            sub = TensorTable(self.table.sizes[selected if indices is None
                                               else indices[selected]], 0)
            run_kernel(kernel, addresses[:, selected], sub.work, local_row.astype(np.int64),
                       table)


class GroupPlan:
    """The fused-step plan of one param group (see the module docstring)."""

    def __init__(self, group: dict, optimizer_state: Mapping, rule: Rule,
                 hypers: Mapping[str, Any], step_dtype: torch.dtype) -> None:
        self.group = group
        self.optimizer_state = optimizer_state
        self.rule = rule
        self.active = tuple(slot.active(hypers) for slot in rule.slots)
        slot_names = [slot.name for slot, on in zip(rule.slots, self.active, strict=True) if on]
        by_dtype: dict[torch.dtype, tuple[list, list]] = {}
        #: Parameters with state that the kernels cannot walk directly.
        self.leftover: set[int] = set()
        for param in group["params"]:
            state = optimizer_state.get(param)
            if not state or "step" not in state or any(n not in state for n in slot_names):
                continue
            tensors = [param, *(state[name] for name in slot_names)]
            if supports(param) and flat_compatible(tensors) and all(
                    t.dtype == param.dtype for t in tensors):
                params, states = by_dtype.setdefault(param.dtype, ([], []))
                params.append(param)
                states.append(state)
            else:
                self.leftover.add(id(param))
        # Watch the planned parameters' state dicts, so replacing a cached tensor is noticed.
        self.watch = Watch()
        for params, states in by_dtype.values():
            for index, (param, state) in enumerate(zip(params, states, strict=True)):
                watched = WatchedState(state, self.watch)
                optimizer_state[param] = states[index] = watched
        self.blocks = [_Block(params, states, slot_names, step_dtype)
                       for params, states in by_dtype.values()]
        self.watch.changed = False
        # Replacing or removing a whole state dict shows in the optimizer state's values.
        self.state_values = list(optimizer_state.values())
        self.where = {id(p): (b, k) for b, block in enumerate(self.blocks)
                      for k, p in enumerate(block.params)}
        self.only_block = self.blocks[0].params if len(self.blocks) == 1 else None

    def is_current(self, group: dict, optimizer_state: Mapping, hypers: Mapping[str, Any]
                   ) -> bool:
        """Whether the plan still describes this group (cheap checks; the rest in ``step``)."""
        return (group is self.group and optimizer_state is self.optimizer_state
                and not self.watch.changed
                and len(optimizer_state) == len(self.state_values)
                and all(map(_same, optimizer_state.values(), self.state_values))
                and tuple(slot.active(hypers) for slot in self.rule.slots) == self.active)

    def step(self, params: list[torch.Tensor], hypers: Mapping[str, Any],
             leftover_step: Callable[[list[torch.Tensor]], None]) -> Any:
        """Update ``params`` (each has a gradient); return :data:`STALE` if a rebuild is due.

        Parameters the plan does not cover are passed to ``leftover_step``.
        """
        keep_alive: list[torch.Tensor] = []
        only = self.only_block
        if only is not None and len(params) == len(only) and all(
                map(_same, params, only)):
            blocks = self.blocks
            selections: list[np.ndarray | None] = [None]
            leftovers: list[torch.Tensor] = []
        else:
            chosen: list[list[int]] = [[] for _ in self.blocks]
            leftovers = []
            for param in params:
                place = self.where.get(id(param))
                if place is not None:
                    chosen[place[0]].append(place[1])
                elif id(param) in self.leftover:
                    leftovers.append(param)
                else:
                    return STALE
            kept = [i for i, c in enumerate(chosen) if c]
            blocks = [self.blocks[i] for i in kept]
            selections = [None if len(chosen[i]) == len(self.blocks[i].params)
                          else np.asarray(chosen[i], dtype=np.int64) for i in kept]
        gathered = []
        for block, selection in zip(blocks, selections, strict=True):
            addresses = block.gather(selection, keep_alive)
            if addresses is None:
                return STALE
            gathered.append(addresses)
        for block, selection, addresses in zip(blocks, selections, gathered, strict=True):
            block.run(self.rule, hypers, selection, addresses, self.active)
        if leftovers:
            leftover_step(leftovers)
        return None


def _same(a: object, b: object) -> bool:
    return a is b
