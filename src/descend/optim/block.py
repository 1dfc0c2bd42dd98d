"""A block of a param group's plan: the tensors one compiled executor walks in one launch.

A :class:`Block` holds, for the parameters of one group that a compiled executor can walk as
flat arrays (one executor, dtype and device), the address table of their slot tensors. For
rules that count steps, it keeps the step counters of its parameters in one tensor: every
``state["step"]`` is a 0-d view of it, so the counters stay ordinary ``torch.optim`` state
(``state_dict`` saves and loads them as usual) while one write advances them all. A rule's
running products (:class:`~descend.rules.spec.RunningProduct`) are kept the same way, one tensor
per product with a 0-d view in each state dict. Counters and products advance as one
:class:`~descend.kernels.state.StepState` whose arrays share memory with those tensors.

A block is a promise about memory: a kernel writes through the addresses it holds. So every
step, before anything changes, the block confirms that every tensor a kernel will touch has the
address, shape, strides, dtype and device it was built for (:meth:`Block.current`: addresses
read from Python, the rest in one C++ call over all of them, see :mod:`descend.optim.watch`),
and checks each gradient against its parameter (:meth:`Block.gradients`, the same way while
the gradients keep the layout last found good).

A block of bf16 weights (``weights``, see :mod:`descend.optim.weights`) is stepped in float32:
its dtype is float32 (its state's, its scalars'), while its parameters and gradients are
bf16, checked as bf16 when the block is made (:func:`check_weight_operands`) and every step
(the gradients' layouts hold their dtype); its kernels read them as bf16 by address.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch

from descend.kernels.caution import apply_caution, snapshot
from descend.kernels.codecs import CODECS, INT8_BLOCK, shared_streams
from descend.kernels.executor import CautiousKernels, Executor, get_executor
from descend.kernels.state import StepKey, StepState
from descend.kernels.table import TensorTable
from descend.kernels.tensor_addresses import COMPILED_READ_FROM, address_reader
from descend.kernels.variant import Variant
from descend.optim import sharded
from descend.optim.checks import Label, check_gradient, dtype_name, identical
from descend.optim.precision import BlockCoding, Coded
from descend.optim.watch import (
    DictVersions,
    LayoutGuard,
    Watch,
    addresses,
    guard_available,
    layouts,
    metadata,
)
from descend.optim.weights import CORRECTION_KEY, WEIGHT_SLOT, stepped_on_masters
from descend.rules.spec import Rule

#: What a step's launch needs for one (step, products) key: kernel (``None`` while it loads),
#: variant, run-time scalar row and the scalars themselves.
LaunchRow = tuple[Any, Variant, np.ndarray, Mapping[str, Any]]


class Block:
    """The planned parameters of one executor, dtype and device, with their slots' addresses.

    ``first`` marks, for a rule that does not count steps, the parameters whose slots were just
    created (their next update is their first).
    """

    def __init__(
        self,
        executor: Executor,
        rule: Rule,
        params: list[torch.Tensor],
        states: list[dict[str, Any]],
        slot_names: list[str],
        step_dtype: torch.dtype,
        first: Sequence[bool],
        formats: tuple[str, ...] = (),
        coding: BlockCoding | None = None,
        weights: str = "",
    ) -> None:
        self.executor = executor
        #: The parameters' storage format when a kernel decodes and stores them (bf16
        #: weights under ``param_precision``); empty: parameters of the block's dtype.
        self.weights = weights
        #: Each rule slot's storage format (empty: all in the parameters' dtype); then
        #: ``slot_names`` are the state keys of the slots' storage tensors.
        self.formats = formats
        self.coding = coding
        # Each compressed slot has a key row (see coded_rows); a kernel reads only those of
        # bf16 slots that round with their own stream (the second of a pair reads the
        # first's; deterministic formats none), so only those are filled each step.
        key_rows = [
            (2 + len(slot_names) + k, number)
            for k, number in enumerate(i for i, name in enumerate(formats) if name != "float32")
        ]
        streams = shared_streams(formats)
        #: (table row, slot number) of each stream key a kernel reads, set every step.
        self.keyed = [
            (row, number)
            for row, number in key_rows
            if CODECS[formats[number]].stochastic and streams[number] == (number, False)
        ]
        self.params = params
        self.states = states
        self.slot_names = slot_names
        self.slots = [[state[name] for state in states] for name in slot_names]
        #: The split master's correction bytes of each parameter (``"bf16+ecc"`` weights).
        self.corrections = (
            [state[CORRECTION_KEY] for state in states] if weights == "bf16+ecc" else []
        )
        #: The dtype the kernel computes in and the state is kept in.
        self.dtype = torch.float32 if weights else params[0].dtype
        self.dtype_name = dtype_name(self.dtype)
        if weights:
            stored = dict(zip(rule.slots, formats or ("float32",) * len(rule.slots), strict=True))
            dtypes = {s.name: CODECS[f].storage or torch.float32 for s, f in stored.items()}
            value_tensors = {
                name: tensors
                for name, tensors in zip(slot_names, self.slots, strict=True)
                if name in dtypes
            }
            check_weight_operands(params, value_tensors, dtypes, self.corrections)
        #: What a compiled kernel of this block depends on besides the rule's variant.
        self.kind = (executor.name, self.dtype_name, formats, weights)
        #: Whether some tensors are DTensors: the kernel walks their local shards, read afresh
        #: every step (see :mod:`descend.optim.sharded`).
        self.sharded = sharded.any_dtensor(params)
        local = sharded.local_tensors(params)
        # The weight row (see :func:`descend.kernels.coded.coded_rows`): the key of the
        # weights' random stream, or the address of their correction bytes.
        weight_row = 2 + len(slot_names) + len(key_rows)
        self.table = TensorTable(
            [p.numel() for p in local],
            weight_row + bool(weights),
            params[0].device,
            align=INT8_BLOCK if "int8" in formats else 1,
        )
        self.table.addresses[0] = [p.data_ptr() for p in local]
        for row, tensors in enumerate(self.slots, start=2):
            self.table.addresses[row] = [t.data_ptr() for t in sharded.local_tensors(tensors)]
        if weights == "bfloat16":
            self.keyed.append((weight_row, WEIGHT_SLOT))
        elif weights:
            self.table.addresses[weight_row] = [t.data_ptr() for t in self.corrections]
        #: Every parameter and state tensor a kernel writes, watched (see
        #: :mod:`descend.optim.watch`); for DTensors, their local shards are read afresh and
        #: compared in full every step.
        watched = [*params, *(t for tensors in self.slots for t in tensors), *self.corrections]
        self.watched = None if self.sharded else Watch(watched)
        self.watched_tensors = watched
        self.watched_metadata = metadata(self._local(watched)) if self.sharded else ()
        self.grad_layout = layouts(local)
        #: Armed on the last full set of gradients found laid out as :attr:`grad_layout`: while
        #: it holds, a step's gradients are checked in one C++ call (see
        #: :mod:`descend.optim.watch`).
        self.grad_guard: LayoutGuard | None = None
        self.counted = rule.counts_steps
        if self.counted:
            self.steps = torch.tensor([float(state["step"]) for state in states], dtype=step_dtype)
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
            values = torch.tensor(
                [float(state[product.name]) for state in states],
                dtype=states[0][product.name].dtype,
            )
            views = [values[i] for i in range(len(params))]
            for state, view in zip(states, views, strict=True):
                state[product.name] = view
            self.products[product.name] = (values.numpy(), views)
        #: The counters' values: a NumPy view of :attr:`steps` (and so of the state's views).
        self.step_values = self.steps.numpy()
        #: Counters and products as one step state, whose arrays share memory with the
        #: tensors the state dicts hold: committing it updates ``state["step"]`` in place.
        self.step_state = StepState(
            rule, self.step_values, {name: values for name, (values, _) in self.products.items()}
        )
        #: Each state key the block's tensors sit under (a reader of it from a state dict) and
        #: those tensors, parameter by parameter: what :meth:`current` compares every step.
        self.state_tensors = [
            (operator.itemgetter(name), tensors)
            for name, tensors in [
                *zip(self.slot_names, self.slots, strict=True),
                *([("step", self.step_views)] if self.counted else []),
                *((name, views) for name, (_, views) in self.products.items()),
                *([(CORRECTION_KEY, self.corrections)] if self.corrections else []),
            ]
        ]
        #: The state dicts' versions when last found holding :attr:`state_tensors`: while
        #: none changed, :meth:`current` reads one version a dict instead of every entry.
        self.state_versions = DictVersions(self.states)

    def current(self) -> bool:
        """Whether every parameter and state tensor is still what the plan holds (the plan
        checks that the state dicts themselves were not replaced)."""
        if not self.state_versions.holds(self._holds_state_tensors):
            return False
        if self.watched is not None:
            return self.watched.current()
        return metadata(self._local(self.watched_tensors)) == self.watched_metadata

    def _holds_state_tensors(self) -> bool:
        """Whether every state dict holds the very tensors of :attr:`state_tensors`."""
        states = self.states
        try:
            for read, tensors in self.state_tensors:
                # One C-level pass per state key (a missing key: the state was edited).
                if not identical(list(map(read, states)), tensors):
                    return False
        except KeyError:
            return False
        return True

    def _local(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return sharded.local_tensors(tensors) if self.sharded else tensors

    def gradients(
        self,
        indices: Sequence[int] | np.ndarray | None,
        keep_alive: list[torch.Tensor],
        label: Label,
        grads: list[torch.Tensor] | None = None,
    ) -> list[int] | np.ndarray | None:
        """Addresses of the current gradients (``grads``, of the parameters at ``indices``;
        read from them if not given), each checked against its parameter (``None`` when one
        is sparse: such a parameter is stepped apart, after a rebuild).

        A gradient of another shape, dtype or device (or a sparse one) raises ``ValueError``
        naming its parameter; one laid out unlike its parameter is walked as a copy in the
        parameter's layout (kept alive in ``keep_alive`` for the step).
        """
        params = self.params if indices is None else [self.params[k] for k in indices]
        expected = (
            self.grad_layout
            if indices is None
            else tuple([column[k] for k in indices] for column in self.grad_layout)
        )
        if grads is None:
            # Every planned parameter the step passes has a gradient.
            grads = cast(list[torch.Tensor], [p.grad for p in params])
        guard = self.grad_guard if indices is None and not self.sharded else None
        if guard is not None and guard.holds(grads):
            # Laid out, and of the Python types, of the gradients last found equal to
            # :attr:`grad_layout` (one C++ call; so no DTensor among them): their addresses
            # may be read in one compiled loop.
            reader = address_reader() if len(grads) >= COMPILED_READ_FROM else None
            return addresses(grads) if reader is None else reader.read(grads)
        converted = self.sharded or sharded.any_dtensor(grads)
        if converted:
            params, grads = sharded.local_gradients(params, grads, label)
        try:
            if layouts(grads) == expected:
                if indices is None and not converted and guard_available():
                    self.grad_guard = LayoutGuard(grads)
                return addresses(grads)
        except RuntimeError:  # sparse gradients have no strides
            pass
        if any(g.is_sparse for g in grads):
            return None  # stepped apart: the plan must be rebuilt
        grads = [
            _walkable_gradient(p, g, label, keep_alive) for p, g in zip(params, grads, strict=True)
        ]
        return [g.data_ptr() for g in grads]

    def stage(
        self,
        rule: Rule,
        launch_row: Callable[[Block, StepKey], LaunchRow],
        indices: np.ndarray | None,
        grad_addresses: list[int] | np.ndarray,
        hypers: Mapping[str, Any],
        cautious: bool = False,
    ) -> Callable[[], None]:
        """Work out the step of the tensors at ``indices`` (all if None): their new counters
        and running products, and every kernel and scalar row it launches (compiling what is
        missing). Changes nothing, so an error here (a kernel that cannot be compiled, scalars
        a dtype cannot hold) leaves the optimizer as it was; returns the function that
        advances the counters and runs the kernels.

        A kernel still loading in the background (``None`` from ``launch_row``) makes this
        step run on the reference executor, which computes the same bits. A ``cautious`` step
        whose kernels are not :class:`~descend.kernels.executor.CautiousKernels` (compressed
        slots, an executor that does not fuse caution, the reference executor meanwhile) is
        the plain step followed by :func:`~descend.kernels.caution.apply_caution`."""
        after = self.step_state.advance(hypers, indices)
        keys, tensor_row = after.keys(indices)
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
                launches.append(
                    (rows[variant_rows[0]][0], local_row.astype(np.int64), table, chosen)
                )

        corrected = cautious and not all(isinstance(kernel, CautiousKernels) for kernel, *_ in rows)
        # Only a step corrected after its kernels needs its parameters listed (not the hot path).
        chosen_params: list[torch.Tensor] = []
        if corrected:
            chosen_params = self.params if indices is None else [self.params[k] for k in indices]

        # bf16 weights whose kernel is still loading: stepped on float32 masters, as the
        # kernel would decode and store them (a cautious step corrected there too).
        optimizer = self.coding.optimizer if loading and self.weights and self.coding else None
        stepped: list[torch.Tensor] = []
        if optimizer is not None:
            stepped = self.params if indices is None else [self.params[k] for k in indices]

        def commit() -> None:
            self.step_state.commit(after)
            if self.keyed and self.coding is not None:
                for row, number in self.keyed:
                    self.table.addresses[row] = self.coding.keys(self.params, number)
            if indices is None:
                self.table.addresses[1] = grad_addresses
            else:
                self.table.addresses[1, indices] = grad_addresses
            with stepped_on_masters(optimizer, stepped):
                before = snapshot(chosen_params) if corrected else []
                if loading:
                    self._run_on_reference(rule, rows, tensor_row, indices)
                for kernel, rows_of, scalars, chosen in launches:
                    self.executor.launch(kernel, self.table, rows_of, scalars, chosen)
                if corrected:
                    executor = get_executor("reference") if loading else self.executor
                    maximize = bool(rows[0][3].get("maximize", False))
                    grads = cast(list[torch.Tensor], [param.grad for param in chosen_params])
                    apply_caution(before, chosen_params, grads, maximize, lambda _: executor)

        return commit

    def _run_on_reference(
        self, rule: Rule, rows: list[LaunchRow], tensor_row: np.ndarray, indices: np.ndarray | None
    ) -> None:
        """This step of the tensors at ``indices`` (all if None) on the reference executor,
        one call per distinct step (their scalars in ``rows``)."""
        reference = get_executor("reference")
        chosen = range(len(self.params)) if indices is None else indices
        names = [slot.name for slot in rule.slots]
        for row, (_, _, _, scalars) in enumerate(rows):
            params, grads, slots = [], [], []
            pending: list[tuple[Coded, list[torch.Tensor | None]]] = []
            for position, k in enumerate(chosen):
                if tensor_row[position] != row:
                    continue
                param, state = self.params[k], self.states[k]
                slot_list = [state[name] if name in self.slot_names else None for name in names]
                coded = self.coding.coded(param, state, rule) if self.coding else None
                if coded is not None:
                    slot_list = coded.decoded(slot_list)
                    pending.append((coded, slot_list))
                param, grad, slot_list = sharded.local_operands(param, param.grad, slot_list)
                params.append(param)
                grads.append(grad)
                slots.append(slot_list)
            reference.step(rule, None, scalars, params, grads, slots)
            for coded, decoded in pending:
                coded.store(decoded)


def check_weight_operands(
    params: Sequence[torch.Tensor],
    slots: Mapping[str, Sequence[torch.Tensor]],
    dtypes: Mapping[str, torch.dtype],
    corrections: Sequence[torch.Tensor],
) -> None:
    """Refuse (``ValueError`` naming it) any tensor of a block of bf16 weights that its kernel
    would read wrongly by address: a parameter that is not a contiguous bf16 tensor, a
    slot's value tensor (``slots`` by state key) not of its format's dtype (``dtypes``: float32
    for a slot kept in float32) or not contiguous of its parameter's shape, a correction that
    is not int8 (a compressed slot's companions are checked against its format when the state
    is made)."""
    for index, param in enumerate(params):
        if param.dtype != torch.bfloat16 or not param.is_contiguous():
            raise ValueError(
                f"weight {index} of a block of bf16 weights is a {param.dtype} tensor: "
                "expected a contiguous torch.bfloat16 tensor"
            )
        expected = [(name, tensors[index], dtypes[name]) for name, tensors in slots.items()]
        if corrections:
            expected.append((CORRECTION_KEY, corrections[index], torch.int8))
        for name, tensor, dtype in expected:
            if tensor.dtype != dtype or tensor.shape != param.shape or not tensor.is_contiguous():
                raise ValueError(
                    f"state[{name!r}] of bf16 weight {index} is a {tensor.dtype} tensor of "
                    f"shape {tuple(tensor.shape)}: expected a contiguous {dtype} tensor of "
                    f"shape {tuple(param.shape)}"
                )


def _walkable_gradient(
    param: torch.Tensor, grad: torch.Tensor, label: Label, keep_alive: list[torch.Tensor]
) -> torch.Tensor:
    """``grad`` if a kernel may walk it like ``param``, a copy in ``param``'s layout if only the
    layout differs; ``ValueError`` naming the parameter otherwise."""
    check_gradient(param, grad, label)
    if grad.stride() == param.stride():
        return grad
    copy = torch.empty_like(param).copy_(grad)
    keep_alive.append(copy)
    return copy
