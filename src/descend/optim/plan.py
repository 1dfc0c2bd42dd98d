"""What a param group keeps between steps on a compiled executor: one launch per step, not a loop.

A :class:`GroupPlan` holds, for the parameters of one group that a compiled executor can walk as
flat arrays, the address table of their slot tensors and the work split, one :class:`Block` per
executor, dtype and device. For rules that count steps, each block keeps the step counters of its
parameters in one tensor: every ``state["step"]`` is a 0-d view of it, so the counters stay
ordinary ``torch.optim`` state (``state_dict`` saves and loads them as usual) while one ``+= 1``
advances them all. A rule's running products (:class:`~descend.rules.spec.RunningProduct`) are
kept the same way, one tensor per product with a 0-d view in each state dict.

A plan is a promise about memory: a kernel writes through the addresses it holds. So every step,
before anything changes, the plan compares cheap metadata (address, shape, strides, dtype,
device) of every tensor a kernel will touch with what it was built for: each parameter, each
state tensor (and that the state dicts still hold the very same tensors), and each gradient
against its parameter. A parameter or state tensor that changed makes the optimizer build a new
plan (whose construction checks the state against the parameters, and raises naming the
parameter when they disagree); a gradient of another shape, dtype or device raises, naming the
parameter; a gradient laid out unlike its parameter is copied into the parameter's layout.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from descend.kernels.executor import Executor
from descend.kernels.table import TensorTable, flat_compatible
from descend.kernels.variant import Variant, runtime_row, variant_of
from descend.optim import sharded
from descend.rules.spec import Rule, plain_value

#: Returned by :meth:`GroupPlan.prepare` when the plan no longer describes the group.
STALE = object()


def _metadata(tensors: Sequence[torch.Tensor], on_cpu: bool) -> list[tuple]:
    """What a kernel relies on about tensors it walks by address: where they start, how many
    elements of which type they hold, and on which device (the cheapest reads that tell, since
    this runs for every tensor on every step). A layout change that keeps these moves no element
    outside its storage, and the gradients' layout is checked against the parameters'."""
    if on_cpu:
        return [(t.data_ptr(), t.shape, t.dtype, t.is_cpu) for t in tensors]
    return [(t.data_ptr(), t.shape, t.dtype, t.device) for t in tensors]


def _layouts(tensors: Sequence[torch.Tensor], on_cpu: bool) -> list[tuple]:
    """What a gradient must share with its parameter: shape, strides, dtype and device."""
    if on_cpu:
        return [(t.shape, t.stride(), t.dtype, t.is_cpu) for t in tensors]
    return [(t.shape, t.stride(), t.dtype, t.device) for t in tensors]


def _identical(a: Sequence, b: Sequence) -> bool:
    return len(a) == len(b) and all(map(operator.is_, a, b))


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``: the dtype as a variant names it."""
    return str(dtype).removeprefix("torch.")


class Block:
    """The planned parameters of one executor, dtype and device, with their slots' addresses.

    ``first`` marks, for a rule that does not count steps, the parameters whose slots were just
    created (their next update is their first).
    """

    def __init__(self, executor: Executor, rule: Rule, params: list[torch.Tensor],
                 states: list[dict], slot_names: list[str], step_dtype: torch.dtype,
                 first: Sequence[bool]) -> None:
        self.executor = executor
        self.params = params
        self.states = states
        self.slot_names = slot_names
        self.slots = [[state[name] for state in states] for name in slot_names]
        self.dtype = params[0].dtype
        self.dtype_name = dtype_name(self.dtype)
        #: What a compiled kernel of this block depends on besides the rule's variant.
        self.kind = (executor.name, self.dtype_name)
        #: Whether some tensors are DTensors: the kernel walks their local shards, read afresh
        #: every step (see :mod:`descend.optim.sharded`).
        self.sharded = sharded.any_dtensor(params)
        local = sharded.local_tensors(params)
        self.table = TensorTable([p.numel() for p in local], 2 + len(slot_names),
                                 params[0].device)
        self.table.addresses[0] = [p.data_ptr() for p in local]
        for row, tensors in enumerate(self.slots, start=2):
            self.table.addresses[row] = [t.data_ptr() for t in sharded.local_tensors(tensors)]
        self.on_cpu = params[0].is_cpu
        #: Every parameter and state tensor a kernel writes, and their metadata when planned.
        self.watched = [*params, *(t for tensors in self.slots for t in tensors)]
        self.watched_metadata = _metadata(self._local(self.watched), self.on_cpu)
        self.grad_layout = _layouts(local, self.on_cpu)
        self.counted = rule.counts_steps
        if self.counted:
            self.steps = torch.tensor([float(state["step"]) for state in states],
                                      dtype=step_dtype)
            self.step_views = [self.steps[i] for i in range(len(params))]
            for state, view in zip(states, self.step_views, strict=True):
                state["step"] = view
        else:
            # Not optimizer state: only whether each parameter's next update is its first.
            self.steps = torch.tensor([0.0 if f else 1.0 for f in first], dtype=torch.float64)
            self.step_views = []
        #: Running products: name -> (values of every parameter, their 0-d views in the state).
        self.products: dict[str, tuple[np.ndarray, list[torch.Tensor]]] = {}
        for product in rule.products:
            # In the dtype the state holds (torch's load_state_dict casts it to the
            # parameter's), which the plan groups parameters by.
            values = torch.tensor([float(state[product.name]) for state in states],
                                  dtype=states[0][product.name].dtype)
            views = [values[i] for i in range(len(params))]
            for state, view in zip(states, views, strict=True):
                state[product.name] = view
            self.products[product.name] = (values.numpy(), views)
        self.product_tensors = [values for values, _ in self.products.values()]
        self.step_values = self.steps.numpy()
        self.uniform = bool((self.step_values == self.step_values[0]).all())
        self.first_row = np.zeros(len(params), dtype=np.int64)

    def current(self) -> bool:
        """Whether every parameter and state tensor is still what the plan holds (the plan
        checks that the state dicts themselves were not replaced)."""
        states = self.states  # None for a parameter without state (a rule that needs none)
        for name, tensors in zip(self.slot_names, self.slots, strict=True):
            if not _identical([state.get(name) for state in states], tensors):
                return False
        if self.counted and not _identical([state.get("step") for state in states],
                                           self.step_views):
            return False
        for name, (_, views) in self.products.items():
            if not _identical([state.get(name) for state in states], views):
                return False
        return _metadata(self._local(self.watched), self.on_cpu) == self.watched_metadata

    def _local(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return sharded.local_tensors(tensors) if self.sharded else tensors

    def gradients(self, indices: Sequence[int] | None, keep_alive: list,
                  label: Callable[[torch.Tensor], str]) -> list[int] | None:
        """Addresses of the current gradients, each checked against its parameter (``None``
        when one is sparse: such a parameter is stepped apart, after a rebuild).

        A gradient of another shape, dtype or device (or a sparse one) raises ``ValueError``
        naming its parameter; one laid out unlike its parameter is walked as a copy in the
        parameter's layout (kept alive in ``keep_alive`` for the step).
        """
        params = self.params if indices is None else [self.params[k] for k in indices]
        expected = (self.grad_layout if indices is None
                    else [self.grad_layout[k] for k in indices])
        grads = [p.grad for p in params]
        if self.sharded or sharded.any_dtensor(grads):
            params, grads = sharded.local_gradients(params, grads, label)
        try:
            if _layouts(grads, self.on_cpu) == expected:
                return [g.data_ptr() for g in grads]
        except RuntimeError:  # sparse gradients have no strides
            pass
        if any(g.is_sparse for g in grads):
            return None  # stepped apart: the plan must be rebuilt
        grads = [_walkable_gradient(p, g, label, keep_alive)
                 for p, g in zip(params, grads, strict=True)]
        return [g.data_ptr() for g in grads]

    def advance(self, indices: np.ndarray | None) -> tuple[list[int], np.ndarray]:
        """Advance the step counters of the tensors at ``indices`` (all if None); return the
        distinct step values and, per tensor, the index of its value among them."""
        values = self.step_values  # shares memory with the counters (and the state's views)
        if indices is None and self.uniform:
            # A rule that does not count steps only asks "first update or not": stop at 2.
            if self.counted or values[0] < 2:
                values += 1
            return [int(values[0])], self.first_row
        if indices is None:
            values += 1
        else:
            values[indices] += 1
            self.uniform = False
        if not self.counted:
            np.minimum(values, 2, out=values)
        if indices is not None:
            values = values[indices]
        unique, tensor_row = np.unique(values, return_inverse=True)
        if indices is None and len(unique) == 1:
            self.uniform = True
        return [int(s) for s in unique], tensor_row.astype(np.int64)

    def advance_products(self, rule: Rule, hypers: Mapping[str, Any],
                         indices: np.ndarray | None, steps: list[int], tensor_row: np.ndarray,
                         ) -> tuple[list[tuple], np.ndarray]:
        """Multiply the running products of the tensors at ``indices`` (all if None) by their
        step's factor, in the products' dtype; return the distinct (step, products) keys and,
        per tensor, the index of its key."""
        chosen = np.arange(len(self.params)) if indices is None else indices
        for product in rule.products:
            values, _ = self.products[product.name]
            for row, step in enumerate(steps):
                values[chosen[tensor_row == row]] *= product.factor(hypers, step)
        columns = [np.asarray(steps, dtype=np.float64)[tensor_row]]
        columns += [values[chosen].astype(np.float64) for values in self.product_tensors]
        unique, rows = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
        keys = [(int(row[0]), tuple(float(v) for v in row[1:])) for row in unique]
        return keys, rows.reshape(-1).astype(np.int64)

    def run(self, rule: Rule, launch_row: Callable[[Block, tuple], tuple[Any, Variant, np.ndarray]],
            indices: np.ndarray | None, grad_addresses: list[int],
            hypers: Mapping[str, Any]) -> None:
        """Advance the counters (and running products) of the tensors at ``indices`` (all if
        None) and update them."""
        steps, tensor_row = self.advance(indices)
        if self.products:
            keys, tensor_row = self.advance_products(rule, hypers, indices, steps, tensor_row)
        else:
            keys = [(step, ()) for step in steps]
        if indices is None:
            self.table.addresses[1] = grad_addresses
        else:
            self.table.addresses[1, indices] = grad_addresses
        if len(keys) == 1:
            kernel, _, scalars = launch_row(self, keys[0])
            self.executor.launch(kernel, self.table, tensor_row, scalars, indices)
            return
        rows = [launch_row(self, key) for key in keys]
        by_variant: dict[Variant, list[int]] = {}
        for row, (_, variant, _) in enumerate(rows):
            by_variant.setdefault(variant, []).append(row)
        for variant_rows in by_variant.values():
            table = np.concatenate([rows[r][2] for r in variant_rows])
            selected = np.flatnonzero(np.isin(tensor_row, variant_rows))
            local_row = np.searchsorted(np.asarray(variant_rows), tensor_row[selected])
            chosen = selected if indices is None else indices[selected]
            # Steps whose scalars switch a branch differently need different kernels.
            self.executor.launch(rows[variant_rows[0]][0], self.table,
                                 local_row.astype(np.int64), table, chosen)


def _walkable_gradient(param: torch.Tensor, grad: torch.Tensor,
                       label: Callable[[torch.Tensor], str], keep_alive: list) -> torch.Tensor:
    """``grad`` if a kernel may walk it like ``param``, a copy in ``param``'s layout if only the
    layout differs; ``ValueError`` naming the parameter otherwise."""
    check_gradient(param, grad, label)
    if grad.stride() == param.stride():
        return grad
    copy = torch.empty_like(param).copy_(grad)
    keep_alive.append(copy)
    return copy


def check_gradient(param: torch.Tensor, grad: torch.Tensor,
                   label: Callable[[torch.Tensor], str]) -> None:
    """Raise ``ValueError`` naming the parameter if ``grad`` cannot be its gradient."""
    if grad.shape != param.shape or grad.dtype != param.dtype or grad.device != param.device:
        raise ValueError(
            f"the gradient of {label(param)} is {grad.dtype} of shape {tuple(grad.shape)} on "
            f"{grad.device}, but the parameter is {param.dtype} of shape {tuple(param.shape)} "
            f"on {param.device}: expected the same dtype, shape and device; nothing was updated")
    sharded.check_gradient(param, grad, label)


class GroupPlan:
    """The compiled-executor plan of one param group (see the module docstring)."""

    def __init__(self, group: dict, optimizer_state: Mapping, rule: Rule,
                 hypers: Mapping[str, Any], step_dtype: torch.dtype,
                 executor_of: Callable[[torch.Tensor], Executor | None],
                 first: set[int]) -> None:
        self.group = group
        self.rule = rule
        self.active = tuple(slot.active(hypers) for slot in rule.slots)
        slot_names = [slot.name for slot, on in zip(rule.slots, self.active, strict=True) if on]
        by_kind: dict[tuple, tuple[list, list]] = {}
        #: Parameters with state that no compiled executor walks directly.
        self.leftover: set[int] = set()
        needed = [*slot_names, *(["step"] if rule.counts_steps else []),
                  *(product.name for product in rule.products)]
        for param in group["params"]:
            if param.is_complex() or (param.grad is not None and param.grad.is_sparse):
                # Stepped as real views or sparse entries, through the executors' list calls.
                self.leftover.add(id(param))
                continue
            state = optimizer_state.get(param)
            if needed and (not state or any(name not in state for name in needed)):
                continue
            executor = executor_of(param)
            tensors = [param, *(state[name] for name in slot_names)]
            if (executor is not None and executor.compiled
                    and flat_compatible(sharded.local_tensors(tensors))):
                # One block (one address table, one launch) never spans two devices, nor
                # running products held in two dtypes.
                products = tuple(state[product.name].dtype for product in rule.products)
                params, states = by_kind.setdefault(
                    (executor.name, param.dtype, param.device, products), ([], []))
                params.append(param)
                states.append(state)
            else:
                self.leftover.add(id(param))
        self.blocks = [
            Block(executor_of(params[0]), rule, params, states, slot_names, step_dtype,
                  [id(p) in first for p in params])
            for params, states in by_kind.values()]
        self.where = {id(p): (b, k) for b, block in enumerate(self.blocks)
                      for k, p in enumerate(block.params)}
        self.only_block = self.blocks[0].params if len(self.blocks) == 1 else None
        self.state_values = list(optimizer_state.values())
        self._rows: dict[tuple, tuple[Any, Variant, np.ndarray]] = {}

    def covers(self, group: dict, hypers: Mapping[str, Any]) -> bool:
        """Whether the plan was made for this group under these hyperparameters' slots."""
        return group is self.group and tuple(
            slot.active(hypers) for slot in self.rule.slots) == self.active

    def prepare(self, params: list[torch.Tensor], optimizer_state: Mapping,
                label: Callable[[torch.Tensor], str]) -> Any:
        """Check everything the kernels will touch for ``params`` (each has a gradient) and
        return what :meth:`run` needs, or :data:`STALE` if the plan must be rebuilt.

        Changes nothing; raises ``ValueError`` naming a parameter whose gradient is unusable.
        """
        only = self.only_block
        if only is not None and _identical(params, only):
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
        # A state dict replaced, added or removed shows in the optimizer state's values (read
        # without hashing tensors, which is slow).
        values = list(optimizer_state.values())
        if not _identical(values, self.state_values) or not all(
                block.current() for block in blocks):
            return STALE
        keep_alive: list[torch.Tensor] = []
        gathered = [block.gradients(selection, keep_alive, label)
                    for block, selection in zip(blocks, selections, strict=True)]
        if any(addresses is None for addresses in gathered):
            return STALE
        return blocks, selections, gathered, leftovers, keep_alive

    def run(self, prepared: Any, hypers: Mapping[str, Any]) -> list[torch.Tensor]:
        """Update the planned parameters; return the leftovers for the caller to step."""
        blocks, selections, gathered, leftovers, _keep_alive = prepared
        plain = {name: plain_value(value) for name, value in hypers.items()}
        key = tuple(plain.values())
        names = [product.name for product in self.rule.products]

        def launch_row(block: Block, step_key: tuple) -> tuple[Any, Variant, np.ndarray]:
            """The kernel, variant and (1, n) run-time scalar row of one step (and running
            products) of a block, cached: a rule that does not count steps, or a run at a
            constant setting, computes them once."""
            cached = self._rows.get((key, step_key, block.kind))
            if cached is None:
                if len(self._rows) > 256:
                    self._rows.clear()
                step, products = step_key
                scalars = self.rule.scalars(
                    {**hypers, **dict(zip(names, products, strict=True))}, step)
                variant = variant_of(self.rule, scalars, block.dtype_name, self.active)
                row = np.asarray([runtime_row(variant, scalars)], dtype=np.float64)
                kernel = block.executor.kernel(self.rule, variant)
                cached = self._rows[key, step_key, block.kind] = (kernel, variant, row)
            return cached

        for block, selection, addresses in zip(blocks, selections, gathered, strict=True):
            block.run(self.rule, launch_row, selection, addresses, plain)
        return leftovers
