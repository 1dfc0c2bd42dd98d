"""The listed parameters of a param group's plan: stepped through the executors' list calls.

A :class:`~descend.optim.plan.GroupPlan` walks most parameters in compiled blocks; the rest are
*listed* here: complex parameters (stepped as ``torch.view_as_real``), parameters whose gradient
is sparse (as the class's ``sparse_gradients`` says), the parameters of a rule with a matrix
stage (the stage's ``prepare``, the matrix function, then the update), a differentiable step
(the reference executor, with autograd recording) and every parameter of a backend that
compiles nothing. Their counters and running products advance as one
:class:`~descend.kernels.state.StepState` over the state's own 0-d tensors (so torch's
arithmetic computes them, in their dtype), and parameters that share a (step, products) key
share one list call per executor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from descend.kernels.executor import Executor, get_executor
from descend.kernels.state import StepState, tensor_array
from descend.optim import sharded
from descend.optim.checks import (
    check_existing_state,
    check_gradients,
    check_representable,
)
from descend.optim.param_state import ensure_state
from descend.optim.precision import Coded, coded
from descend.optim.sharded_matrix import (
    gather,
    layout_of,
    own_shard,
    scatter,
    state_view,
    whole_parameter,
)
from descend.rules.spec import Rule, plain_value

if TYPE_CHECKING:
    from descend.optim.base import RuleOptimizer

#: One list call of a step: executor, the values the scalars were computed from, the step,
#: the scalars, the parameters, gradients and slots it updates, their whole states (for a
#: stage's matrix state), each parameter's compressed slots, if any (see
#: :mod:`descend.optim.precision`), and each parameter's distribution for a stage's
#: whole-tensor parts (see :mod:`descend.optim.sharded_matrix`).
Call = tuple[
    Executor,
    dict[str, Any],
    int,
    Mapping[str, Any],
    list[torch.Tensor],
    list[torch.Tensor],
    list[list[torch.Tensor | None]],
    list[dict[str, Any]],
    list[Coded | None],
    list[Any],
]
#: A parameter whose gradient is sparse: parameter, gradient, slots, scalars, compressed slots.
SparseEntry = tuple[
    torch.Tensor, torch.Tensor, list[torch.Tensor | None], Mapping[str, Any], Coded | None
]


class ListedStep:
    """The step of a group's listed parameters, checked when built (nothing changed yet).

    Building it checks the gradients and the existing state of ``params`` and creates the
    state they lack (recorded by the optimizer, which removes it again if the step does not
    happen); :meth:`stage` works the step out.
    """

    def __init__(
        self,
        optimizer: RuleOptimizer,
        group: dict[str, Any],
        params: list[torch.Tensor],
        hypers: Mapping[str, Any],
        differentiable: bool = False,
    ) -> None:
        self.optimizer = optimizer
        self.rule = rule = optimizer.rule_for(group)
        self.hypers = hypers
        self.differentiable = differentiable
        label = optimizer._label
        check_gradients(params, group, optimizer.sparse_gradients, type(optimizer).__name__, label)
        check_existing_state(params, rule, optimizer.state, label)
        self.entries = []
        for param in params:
            state, created = ensure_state(optimizer, param, hypers, group)
            if created and state is not None:
                add_matrix_state(optimizer, rule, param, state, hypers)
            self.entries.append((param, state))

    def _step_state(self) -> StepState:
        """The counters and running products of the listed parameters: the state's own 0-d
        tensors; for a rule that counts no steps, whether each update is a first one."""
        rule = self.rule
        states = [state or {} for _, state in self.entries]
        if rule.counts_steps:
            steps = tensor_array([state["step"] for state in states])
        else:
            unstepped = self.optimizer._unstepped
            steps = np.array([0.0 if id(param) in unstepped else 1.0 for param, _ in self.entries])
        products = {
            product.name: tensor_array([state[product.name] for state in states])
            for product in rule.products
        }
        return StepState(rule, steps, products)

    def stage(self, step_hypers: Mapping[str, Any]) -> Callable[[], None]:
        """Work out the step at ``step_hypers`` (the hyperparameters with the group's advanced
        state) without changing anything; return the function that performs it."""
        rule = self.rule
        differentiable = self.differentiable
        plain = {name: plain_value(value) for name, value in step_hypers.items()}
        slot_names = [slot.name for slot in rule.slots]
        active = {slot.name for slot in rule.active_slots(self.hypers)}
        state = self._step_state()
        after = state.advance(step_hypers)
        keys, key_of = after.keys()
        own_hypers = rule.stage.tensor_hypers if rule.stage is not None else None
        buckets: dict[
            tuple[int, Executor, tuple[tuple[str, Any], ...]],
            tuple[
                list[torch.Tensor],
                list[torch.Tensor],
                list[list[torch.Tensor | None]],
                list[dict[str, Any]],
                list[Coded | None],
                list[Any],
            ],
        ] = {}
        sparse: list[SparseEntry] = []
        for (param, entries), row in zip(self.entries, key_of, strict=True):
            grad = param.grad
            assert grad is not None
            slots = [
                None if entries is None or name not in active else entries[name]
                for name in slot_names
            ]
            step = keys[row][0]
            compressed = coded(self.optimizer, param, entries, rule)
            # A stage may give a tensor hyperparameters of its own (by its dimensions): such
            # tensors share a list call with those that take the same.
            own = () if own_hypers is None else tuple(own_hypers(plain, param.ndim).items())
            if grad.is_sparse:
                sparse.append((param, grad, slots, rule.scalars(step_hypers, step), compressed))
                continue
            # (A differentiable step walks DTensors whole, with torch's DTensor operations.)
            layout = None if differentiable else layout_of(param)
            if not differentiable:
                param, grad, slots = sharded.local_operands(param, grad, slots)
            if param.is_complex():
                param, grad = torch.view_as_real(param), torch.view_as_real(grad)
                slots = [None if s is None else torch.view_as_real(s) for s in slots]
            executor = (
                get_executor("reference") if differentiable else self.optimizer._executor_for(param)
            )
            assert executor is not None, "every listed parameter has an executor"
            bucket = buckets.setdefault((int(row), executor, own), ([], [], [], [], [], []))
            bucket[0].append(param)
            bucket[1].append(grad)
            bucket[2].append(slots)
            bucket[3].append(entries or {})
            bucket[4].append(compressed)
            bucket[5].append(layout)
        calls: list[Call] = []
        for (row, executor, own), bucket in buckets.items():
            params, grads, slot_lists, states, codings, layouts = bucket
            step = keys[row][0]
            values = {**after.values(step_hypers, keys[row]), **dict(own)}
            scalars = rule.scalars(values, step, differentiable)
            for dtype in {p.dtype for p in params}:
                check_representable(plain, scalars, dtype)
            executor.check_ready()
            calls.append(
                (
                    executor,
                    values,
                    step,
                    scalars,
                    params,
                    grads,
                    slot_lists,
                    states,
                    codings,
                    layouts,
                )
            )

        def commit() -> None:
            # The updates first: they read no counter, and a kernel that fails to compile
            # then leaves the counters as they were. Compressed slots are decoded for the
            # rule and encoded again after it.
            for call in calls:
                executor, values, step, scalars, params, grads, slot_lists = call[:7]
                states, codings, layouts = call[7:]
                if any(codings):
                    slot_lists = [
                        slots if c is None else c.decoded(slots)
                        for c, slots in zip(codings, slot_lists, strict=True)
                    ]
                if rule.stage is not None:
                    operands = (params, grads, slot_lists, states, layouts)
                    grads = run_stage(rule, executor, values, step, *operands)
                executor.step(rule, None, scalars, params, grads, slot_lists)
                if rule.stage is not None and rule.stage.refresh_after_update:
                    refresh_matrices(rule, values, step, states, layouts)
                for c, slots in zip(codings, slot_lists, strict=True):
                    if c is not None:
                        c.store(slots)
            for param, grad, slots, scalars, compressed in sparse:
                if compressed is not None:
                    slots = compressed.decoded(slots)
                self._step_sparse(param, grad, slots, scalars)
                if compressed is not None:
                    compressed.store(slots)
            state.commit(after)
            self.optimizer._unstepped.difference_update(id(param) for param, _ in self.entries)

        return commit

    def _step_sparse(
        self,
        param: torch.Tensor,
        grad: torch.Tensor,
        slots: list[torch.Tensor | None],
        scalars: Mapping[str, Any],
    ) -> None:
        """Step a parameter whose gradient is sparse, as the class's ``sparse_gradients``
        says: with the gradient made dense, or only at its stored entries."""
        rule = self.rule
        reference = get_executor("reference")
        if self.optimizer.sparse_gradients == "dense":
            reference.step(rule, None, scalars, [param], [grad.to_dense()], [slots])
            return
        grad = grad.coalesce()
        where = tuple(grad.indices())
        values = grad.values()
        param_entries = param[where]
        slot_entries = [None if s is None else s[where] for s in slots]
        reference.step(rule, None, scalars, [param_entries], [values], [slot_entries])
        param[where] = param_entries
        for slot, entries in zip(slots, slot_entries, strict=True):
            if slot is not None and entries is not None:
                slot[where] = entries


def add_matrix_state(
    optimizer: RuleOptimizer,
    rule: Rule,
    param: torch.Tensor,
    state: dict[str, Any],
    hypers: Mapping[str, Any],
) -> None:
    """Create the matrix state of ``rule``'s stage in ``param``'s ``state`` (the entries it
    lacks), recorded like the slots so that a step that does not happen removes it again."""
    stage = rule.stage
    if stage is None or stage.matrices is None:
        return
    plain = {name: plain_value(value) for name, value in hypers.items()}
    # A DTensor's matrix state is whole on every rank (see descend.optim.sharded_matrix).
    for key, value in stage.matrices(whole_parameter(param), plain).items():
        if key not in state:
            state[key] = value
            optimizer._created_keys.append((param, key))


def run_stage(
    rule: Rule,
    executor: Executor,
    values: Mapping[str, Any],
    step: int,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    slots: list[list[torch.Tensor | None]],
    states: list[dict[str, Any]],
    layouts: list[Any],
) -> list[torch.Tensor]:
    """The :class:`~descend.rules.spec.MatrixStage` of one list call: the elementwise
    ``prepare`` on the executor, then, tensor by tensor, the matrix state's statistics and
    refresh (where the stage keeps one) and the matrix function; returns what the update sees
    in place of each gradient.

    ``params``, ``grads`` and ``slots`` are local shards; for a DTensor parameter (its
    ``layouts`` entry) the whole-tensor parts run on the gathered whole tensors and the result
    is this rank's shard (:mod:`descend.optim.sharded_matrix`)."""
    prepare, stage = rule.prepare_rule, rule.stage
    assert prepare is not None and stage is not None, "only a rule with a stage has one"
    if stage.reads_parameter:
        buffers = [param.detach().clone() for param in params]
    else:
        buffers = [torch.empty_like(grad) for grad in grads]
    executor.step(prepare, None, prepare.scalars(values, step), buffers, grads, slots)
    plain = {name: plain_value(value) for name, value in values.items()}
    if stage.matrices is None:
        return [
            own_shard(layout, stage.function(gather(layout, buffer), plain))
            for buffer, layout in zip(buffers, layouts, strict=True)
        ]
    plain = matrix_hypers(rule, plain, step)
    directions = []
    due = not stage.refresh_after_update and stage.refresh_due(plain, step)
    for buffer, grad, state, layout in zip(buffers, grads, states, layouts, strict=True):
        u, g, view = gather(layout, buffer), gather(layout, grad), state_view(layout, state)
        if stage.statistics is not None:
            stage.statistics(u, g, plain, view)
        if due and stage.refresh is not None:
            stage.refresh(plain, view)
        directions.append(own_shard(layout, stage.function(u, g, plain, view)))
        scatter(view)
    return directions


def matrix_hypers(rule: Rule, plain: Mapping[str, Any], step: int) -> dict[str, Any]:
    """What a stage's matrix parts see: the hyperparameters and this step's step scalars."""
    scalars = rule.step_scalars(plain, step)
    return {**plain, **{name: plain_value(value) for name, value in scalars.items()}}


def refresh_matrices(
    rule: Rule,
    values: Mapping[str, Any],
    step: int,
    states: list[dict[str, Any]],
    layouts: list[Any],
) -> None:
    """The refresh a stage does after its update (``refresh_after_update``), where due (on
    the whole state of a DTensor parameter, as :func:`run_stage`)."""
    stage = rule.stage
    assert stage is not None and stage.refresh is not None
    plain = matrix_hypers(rule, {name: plain_value(value) for name, value in values.items()}, step)
    if stage.refresh_due(plain, step):
        for state, layout in zip(states, layouts, strict=True):
            view = state_view(layout, state)
            stage.refresh(plain, view)
            scatter(view)
