"""What a param group keeps between steps on a compiled executor: one launch per step, not a loop.

A :class:`GroupPlan` holds, for the parameters of one group that a compiled executor can walk as
flat arrays, the address table of their slot tensors and the work split, one :class:`Block` per
executor, dtype and device. For rules that count steps, each block keeps the step counters of its
parameters in one tensor: every ``state["step"]`` is a 0-d view of it, so the counters stay
ordinary ``torch.optim`` state (``state_dict`` saves and loads them as usual) while one ``+= 1``
advances them all. A rule's running products (:class:`~descend.rules.spec.RunningProduct`) are
kept the same way, one tensor per product with a 0-d view in each state dict.

A plan is a promise about memory: a kernel writes through the addresses it holds. So every step,
before anything changes, the plan compares cheap metadata of every tensor a kernel will touch
(address, shape, strides, dtype, device: everything the kernel's address arithmetic assumes)
with what it was built for: each parameter, each state tensor (and that the state dicts still
hold the very same tensors), and each gradient against its parameter. A parameter or state
tensor that changed makes the optimizer build a new plan (whose construction checks the state
against the parameters, refuses elements that share memory, and raises naming the parameter
when they disagree); a gradient of another shape, dtype or device raises, naming the
parameter; a gradient laid out unlike its parameter is copied into the parameter's layout.

A step is worked out before it is taken (:meth:`GroupPlan.stage`): new counters, running
products, scalars and kernels (compiled if missing) are computed without changing anything,
so that an error on the way (a kernel that cannot be compiled, a scalar the dtype cannot hold)
leaves every counter, parameter and state tensor as it was.
"""

from __future__ import annotations

import math
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
#: What a step's launch needs for one (step, products) key: kernel (``None`` while it loads),
#: variant, run-time scalar row and the scalars themselves.
LaunchRow = tuple[Any, Variant, np.ndarray, Mapping[str, Any]]


_data_ptr = torch.Tensor.data_ptr
_size = torch.Tensor.size
_stride = torch.Tensor.stride
_dtype = operator.attrgetter("dtype")
_device = operator.attrgetter("device")


def _metadata(tensors: Sequence[torch.Tensor]) -> tuple[list, ...]:
    """Everything a kernel's address arithmetic relies on about tensors it walks by address:
    where each starts, its shape and strides, its element type and its device.

    Together these fix the set of addresses a kernel touches; a valid tensor with these
    values lies inside its storage, so a storage swapped or resized shows as another address
    (``set_`` and ``resize_`` checks keep it so). Read column by column (one C-level pass per
    attribute), since this runs for every tensor on every step.
    """
    return (list(map(_data_ptr, tensors)), list(map(_size, tensors)),
            list(map(_stride, tensors)), list(map(_dtype, tensors)),
            list(map(_device, tensors)))


def _layouts(tensors: Sequence[torch.Tensor]) -> tuple[list, ...]:
    """What a gradient must share with its parameter: shape, strides, dtype and device."""
    return (list(map(_size, tensors)), list(map(_stride, tensors)),
            list(map(_dtype, tensors)), list(map(_device, tensors)))


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
        #: Every parameter and state tensor a kernel writes, and their metadata when planned.
        self.watched = [*params, *(t for tensors in self.slots for t in tensors)]
        self.watched_metadata = _metadata(self._local(self.watched))
        self.grad_layout = _layouts(local)
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
        #: The products' values (NumPy views of the tensors the state's 0-d views are in).
        self.product_arrays = [values for values, _ in self.products.values()]
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
        return _metadata(self._local(self.watched)) == self.watched_metadata

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
                    else tuple([column[k] for k in indices] for column in self.grad_layout))
        grads = [p.grad for p in params]
        if self.sharded or sharded.any_dtensor(grads):
            params, grads = sharded.local_gradients(params, grads, label)
        try:
            if _layouts(grads) == expected:
                return list(map(_data_ptr, grads))
        except RuntimeError:  # sparse gradients have no strides
            pass
        if any(g.is_sparse for g in grads):
            return None  # stepped apart: the plan must be rebuilt
        grads = [_walkable_gradient(p, g, label, keep_alive)
                 for p, g in zip(params, grads, strict=True)]
        return [g.data_ptr() for g in grads]

    def next_steps(self, indices: np.ndarray | None
                   ) -> tuple[np.ndarray, list[int], np.ndarray, bool]:
        """The step counters after this step, without changing them: ``(new counters of every
        tensor, the distinct step values of the tensors at indices (all if None), per tensor
        the index of its value among them, whether the counters are then all equal)``."""
        values = self.step_values  # shares memory with the counters (and the state's views)
        if indices is None and self.uniform:
            # A rule that does not count steps only asks "first update or not": stop at 2.
            new = values + 1 if self.counted or values[0] < 2 else values
            return new, [int(new[0])], self.first_row, True
        new = values.copy()
        if indices is None:
            new += 1
        else:
            new[indices] += 1
        if not self.counted:
            np.minimum(new, 2, out=new)
        chosen = new if indices is None else new[indices]
        unique, tensor_row = np.unique(chosen, return_inverse=True)
        uniform = len(unique) == 1 if indices is None else False
        return new, [int(s) for s in unique], tensor_row.astype(np.int64), uniform

    def next_products(self, rule: Rule, hypers: Mapping[str, Any],
                      indices: np.ndarray | None, steps: list[int], tensor_row: np.ndarray,
                      ) -> tuple[list[tuple], np.ndarray, list[np.ndarray]]:
        """The running products after this step, without changing them: the distinct
        (step, products) keys of the tensors at ``indices`` (all if None), per tensor the
        index of its key, and the new values of each product (in the products' dtype)."""
        chosen = np.arange(len(self.params)) if indices is None else indices
        new_values = []
        for product in rule.products:
            values = self.products[product.name][0].copy()
            for row, step in enumerate(steps):
                values[chosen[tensor_row == row]] *= product.factor(hypers, step)
            new_values.append(values)
        columns = [np.asarray(steps, dtype=np.float64)[tensor_row]]
        columns += [values[chosen].astype(np.float64) for values in new_values]
        unique, rows = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
        keys = [(int(row[0]), tuple(float(v) for v in row[1:])) for row in unique]
        return keys, rows.reshape(-1).astype(np.int64), new_values

    def stage(self, rule: Rule, launch_row: Callable[[Block, tuple], LaunchRow],
              indices: np.ndarray | None, grad_addresses: list[int],
              hypers: Mapping[str, Any]) -> Callable[[], None]:
        """Work out the step of the tensors at ``indices`` (all if None): their new counters
        and running products, and every kernel and scalar row it launches (compiling what is
        missing). Changes nothing, so an error here (a kernel that cannot be compiled, scalars
        a dtype cannot hold) leaves the optimizer as it was; returns the function that
        advances the counters and runs the kernels.

        A kernel still loading in the background (``None`` from ``launch_row``) makes this
        step run on the reference executor, which computes the same bits."""
        new_steps, steps, tensor_row, uniform = self.next_steps(indices)
        new_products: list[np.ndarray] = []
        if self.products:
            keys, tensor_row, new_products = self.next_products(rule, hypers, indices, steps,
                                                                tensor_row)
        else:
            keys = [(step, ()) for step in steps]
        rows = [launch_row(self, key) for key in keys]
        launches: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray | None]] = []
        loading = any(kernel is None for kernel, *_ in rows)
        if loading:
            launches = []  # the reference executor runs this step (see commit)
        elif len(keys) == 1:
            kernel, _, scalars, _ = rows[0]
            launches.append((kernel, tensor_row, scalars, indices))
        else:
            by_variant: dict[Variant, list[int]] = {}
            for row, (_, variant, _, _) in enumerate(rows):
                by_variant.setdefault(variant, []).append(row)
            for variant_rows in by_variant.values():
                table = np.concatenate([rows[r][2] for r in variant_rows])
                selected = np.flatnonzero(np.isin(tensor_row, variant_rows))
                local_row = np.searchsorted(np.asarray(variant_rows), tensor_row[selected])
                chosen = selected if indices is None else indices[selected]
                # Steps whose scalars switch a branch differently need different kernels.
                launches.append((rows[variant_rows[0]][0], local_row.astype(np.int64), table,
                                 chosen))

        def commit() -> None:
            if new_steps is not self.step_values:
                self.step_values[...] = new_steps
            for values, new in zip(self.product_arrays, new_products, strict=False):
                values[...] = new
            if indices is None:
                self.uniform = uniform
                self.table.addresses[1] = grad_addresses
            else:
                self.uniform = False
                self.table.addresses[1, indices] = grad_addresses
            if loading:
                self._run_on_reference(rule, rows, tensor_row, indices)
            for kernel, rows_of, scalars, chosen in launches:
                self.executor.launch(kernel, self.table, rows_of, scalars, chosen)

        return commit

    def _run_on_reference(self, rule: Rule, rows: list[LaunchRow], tensor_row: np.ndarray,
                          indices: np.ndarray | None) -> None:
        """This step of the tensors at ``indices`` (all if None) on the reference executor,
        one call per distinct step (their scalars in ``rows``)."""
        from descend.kernels.executor import get_executor

        reference = get_executor("reference")
        chosen = range(len(self.params)) if indices is None else indices
        names = [slot.name for slot in rule.slots]
        for row, (_, _, _, scalars) in enumerate(rows):
            params, grads, slots = [], [], []
            for position, k in enumerate(chosen):
                if tensor_row[position] != row:
                    continue
                param, state = self.params[k], self.states[k]
                slot_list = [state[name] if name in self.slot_names else None
                             for name in names]
                param, grad, slot_list = sharded.local_operands(param, param.grad, slot_list)
                params.append(param)
                grads.append(grad)
                slots.append(slot_list)
            reference.step(rule, None, scalars, params, grads, slots)



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
                 first: set[int], wait_for_kernels: bool = True) -> None:
        self.group = group
        self.rule = rule
        #: Whether a step waits for a kernel to load or compile; if not, it runs on the
        #: reference executor meanwhile (``backend="auto"``).
        self.wait_for_kernels = wait_for_kernels
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

    def stage(self, prepared: Any, hypers: Mapping[str, Any]) -> Callable[[], None]:
        """Work out the step of the planned parameters without changing anything (see
        :meth:`Block.stage`); return the function that performs it. The leftovers
        (``prepared[3]``) are the caller's to step."""
        blocks, selections, gathered, _, keep_alive = prepared
        plain = {name: plain_value(value) for name, value in hypers.items()}
        key = tuple(plain.values())
        names = [product.name for product in self.rule.products]

        def launch_row(block: Block, step_key: tuple) -> LaunchRow:
            """The kernel, variant, (1, n) run-time scalar row and scalars of one step (and
            running products) of a block, cached: a rule that does not count steps, or a run
            at a constant setting, computes them once. The kernel is ``None`` while it loads
            in the background (then nothing is cached)."""
            cached = self._rows.get((key, step_key, block.kind))
            if cached is None:
                if len(self._rows) > 256:
                    self._rows.clear()
                step, products = step_key
                scalars = self.rule.scalars(
                    {**hypers, **dict(zip(names, products, strict=True))}, step)
                check_representable(plain, scalars, block.dtype)
                variant = variant_of(self.rule, scalars, block.dtype_name, self.active)
                row = np.asarray([runtime_row(variant, scalars)], dtype=np.float64)
                if self.wait_for_kernels:
                    kernel = block.executor.kernel(self.rule, variant)
                else:
                    kernel = block.executor.kernel_if_ready(self.rule, variant)
                cached = (kernel, variant, row, scalars)
                if kernel is not None:
                    self._rows[key, step_key, block.kind] = cached
            return cached

        for executor in {block.executor for block in blocks}:
            executor.check_ready()
        commits = [block.stage(self.rule, launch_row, selection, addresses, plain)
                   for block, selection, addresses in zip(blocks, selections, gathered,
                                                          strict=True)]

        def run() -> None:
            for commit in commits:
                commit()
            keep_alive.clear()

        return run


def check_representable(hypers: Mapping[str, Any], scalars: Mapping[str, Any],
                        dtype: torch.dtype) -> None:
    """Refuse a step whose hyperparameters or scalars a ``dtype`` kernel cannot hold.

    A finite hyperparameter beyond the dtype's range (``lr=1e308`` for float32 parameters), or
    a step scalar that overflows although every hyperparameter is finite, would step the
    parameters to inf; ``torch.optim.SGD`` raises for it too. Raises ``ValueError`` naming the
    value; nothing has changed when it does.
    """
    if not dtype.is_floating_point:
        return
    largest = torch.finfo(dtype).max
    finite = True
    for name, value in hypers.items():
        if isinstance(value, float):
            if not math.isfinite(value):
                finite = False
            elif abs(value) > largest:
                raise ValueError(f"{name}={value!r} does not fit in {dtype_name(dtype)} "
                                 f"(largest {largest:.4g}): the step would overflow to inf; "
                                 "nothing was updated")
    if not finite:
        return
    for name, value in scalars.items():
        if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= largest):
            raise ValueError(f"the step's scalar {name}={value!r}, computed from the "
                             f"hyperparameters {dict(hypers)}, does not fit in "
                             f"{dtype_name(dtype)}: the step would overflow; nothing was "
                             "updated")
