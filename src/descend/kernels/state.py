"""The state a rule keeps per step, besides its slots: step counters, running products and
group state, with one :meth:`StepState.advance`.

Every executor of a rule needs the same three running values (see :mod:`descend.rules.spec`):
the count of updates made (``step``), the rule's :class:`~descend.rules.spec.RunningProduct`
values (NAdam's ``mu_product``) and its :class:`~descend.rules.spec.GroupState` (Schedule-Free's
``k``, ``weight_sum``, ``lr_max``). A :class:`StepState` holds them for a set of tensors that
step together: one counter and one value of each product per tensor, and the group's scalars
once. The NumPy executor keeps one for a single array (:mod:`descend.kernels.numpy`); an
optimizer keeps one per block of a param group's plan, whose arrays share memory with the
``state["step"]`` and product tensors that ``state_dict`` saves.

A step is two-phase: :meth:`StepState.advance` computes the next state without changing
anything, so that an error on the way (a kernel that cannot be compiled, a scalar a dtype cannot
hold) leaves every counter as it was; :meth:`StepState.commit` then writes it.

Arrays are NumPy arrays of numbers, or object arrays of Python integers (an exact counter) or
of 0-d torch tensors: then every product
is advanced by torch's own arithmetic (``tensor * factor``, in the tensor's dtype, with torch's
type promotion for a factor computed from tensor hyperparameters), as ``torch.optim`` does it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from descend.rules.spec import Rule, plain_value

#: The distinct (step, products) pairs of a step: the step number the scalars read and the
#: value of each running product after it.
StepKey = tuple[int, tuple[float, ...]]


class StepState:
    """Step counters and running products of some tensors, and (optionally) their group's state.

    ``steps[k]`` counts the updates tensor ``k`` has made. An optimizer running a rule that
    does not count steps (``torch.optim.SGD`` keeps no counter) only asks whether an update is
    a tensor's first, so its counters stop at 2 (``0``: no update yet, its slots were just
    created): ``saturate`` (by default: when the rule does not count steps). ``products``
    maps each running product's name to its value per tensor (none: a group's state alone).
    ``group`` holds the group state by name, or is ``None`` when the group's state is kept
    elsewhere (an optimizer advances a param group's state once per step, before any of its
    tensors; see :meth:`advance`).
    """

    def __init__(
        self,
        rule: Rule,
        steps: np.ndarray,
        products: Mapping[str, np.ndarray],
        group: Mapping[str, Any] | None = None,
        saturate: bool | None = None,
        uniform: bool | None = None,
    ) -> None:
        self.rule = rule
        self.saturate = not rule.counts_steps if saturate is None else saturate
        self.steps = steps
        self.products = dict(products)
        self.group = None if group is None else dict(group)
        #: Whether the counters all hold the same value (then a step has one key); ``uniform``
        #: says it when the caller knows (a uniform state advanced as a whole stays uniform).
        if uniform is None:
            numbers = _as_float64(steps) if steps.dtype == object else steps
            uniform = len(steps) == 0 or bool((numbers == numbers[0]).all())
        self.uniform = uniform

    @classmethod
    def single(
        cls, rule: Rule, updates_made: int, current: Mapping[str, Any] | None = None
    ) -> StepState:
        """The state of one array after ``updates_made`` updates, with the running products
        and group state of ``current`` (a missing one: its initial value), as the NumPy
        executor and the functional API keep it: the counter is a Python integer (exact at
        any count) that does not saturate."""
        current = current or {}
        products = {
            product.name: np.array([float(plain_value(current.get(product.name, product.initial)))])
            for product in rule.products
        }
        group = None
        if rule.group_state is not None:
            group = {
                name: current.get(name, initial)
                for name, initial in rule.group_state.initial.items()
            }
        steps = np.empty(1, dtype=object)
        steps[0] = int(updates_made)
        return cls(rule, steps, products, group, saturate=False)

    def advance(self, hypers: Mapping[str, Any], indices: np.ndarray | None = None) -> StepState:
        """The state after one more update of the tensors at ``indices`` (all if None), at
        ``hypers``; nothing changes (see :meth:`commit`).

        The group state (if held) advances first, and the products' factors see its new
        values with the hyperparameters. A counter's next value is one more; a product's is
        its value times ``factor(hypers, step)`` in the product's dtype, ``step`` being the
        tensor's new counter.
        """
        rule = self.rule
        group = self.group
        if group is not None and rule.group_state is not None:
            plain = {name: plain_value(value) for name, value in hypers.items()}
            current = {name: group[name] for name in rule.group_state.names}
            group = {**group, **rule.group_state.advance({**plain, **current})}
            hypers = {**hypers, **group}
        steps = self._next_steps(indices)
        products = {}
        held = [product for product in rule.products if product.name in self.products]
        if held:
            chosen = np.arange(len(self.steps)) if indices is None else indices
            new_steps = _as_float64(steps[chosen])
            distinct = np.unique(new_steps)
            for product in held:
                values = self.products[product.name].copy()
                for step in distinct:
                    where = chosen[new_steps == step]
                    _scale(values, where, product.factor(hypers, int(step)))
                products[product.name] = values
        # Every counter of a uniform state advanced as a whole moves alike (no need to compare
        # them); a part advanced alone may leave them unequal (false only sends keys() the
        # general way); others are compared (saturated counters may be equal again).
        uniform = False if indices is not None else (True if self.uniform else None)
        return StepState(rule, steps, products, group, self.saturate, uniform)

    def _next_steps(self, indices: np.ndarray | None) -> np.ndarray:
        """The counters after one more update of the tensors at ``indices`` (all if None)."""
        values = self.steps
        if not len(values):
            return values  # the state of a group alone
        if indices is None and self.uniform and values.dtype != object:
            # A saturating counter only tells "first update or not": it stops at 2.
            return values + 1 if not self.saturate or values[0] < 2 else values
        new = values.copy()
        if indices is None:
            new = new + 1
        else:
            new[indices] = new[indices] + 1
        if self.saturate:
            np.minimum(new, 2, out=new)
        return new

    def keys(self, indices: np.ndarray | None = None) -> tuple[list[StepKey], np.ndarray]:
        """The distinct (step, products) keys of the tensors at ``indices`` (all if None),
        sorted, and per tensor the index of its key: tensors with one key share scalars."""
        # A step number is a whole number (a counter loaded as 1.5 steps as update 2).
        if self.uniform and indices is None and not self.products and len(self.steps):
            step = math.trunc(float(self.steps[0]))
            return [(step, ())], np.zeros(len(self.steps), dtype=np.int64)
        chosen = slice(None) if indices is None else indices
        steps = np.trunc(_as_float64(self.steps[chosen]))
        columns = [steps, *(_as_float64(values[chosen]) for values in self.products.values())]
        unique, rows = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
        keys = [(int(row[0]), tuple(float(v) for v in row[1:])) for row in unique]
        return keys, rows.reshape(-1).astype(np.int64)

    def values(self, hypers: Mapping[str, Any], key: StepKey) -> dict[str, Any]:
        """What the rule's step scalars read for tensors at ``key``: the hyperparameters, the
        group state (if held) and the running products."""
        names = [product.name for product in self.rule.products]
        group = self.group or {}
        return {**hypers, **group, **dict(zip(names, key[1], strict=True))}

    def running(self) -> dict[str, Any]:
        """The running products (of the first tensor, as Python floats) and the group state:
        what a single array's state records besides its counter."""
        state: dict[str, Any] = {name: float(values[0]) for name, values in self.products.items()}
        state.update(self.group or {})
        return state

    def commit(self, after: StepState) -> None:
        """Make ``after`` (from :meth:`advance`) this state: counters and products are written
        into this state's arrays (and so into the tensors that share their memory)."""
        if after.steps is not self.steps:
            _write(self.steps, after.steps)
        for name, values in after.products.items():
            _write(self.products[name], values)
        self.group = after.group
        self.uniform = after.uniform


def _scale(values: np.ndarray, where: np.ndarray, factor: Any) -> None:
    """``values[where] *= factor``, in the values' dtype; 0-d tensors one by one, by torch's
    arithmetic (a factor computed from tensor hyperparameters is a tensor too)."""
    if values.dtype != object:
        values[where] *= factor
        return
    for index in where:
        values[index] = values[index] * factor


def _as_float64(values: np.ndarray) -> np.ndarray:
    """Numbers as float64 (0-d tensors by their values)."""
    if values.dtype == object:
        return np.array([float(value) for value in values], dtype=np.float64)
    return values.astype(np.float64)


def _write(target: np.ndarray, source: np.ndarray) -> None:
    """``target[...] = source``; for 0-d tensors, into each tensor (``copy_``)."""
    if target.dtype != object:
        target[...] = source
        return
    for index, (old, new) in enumerate(zip(target, source, strict=True)):
        if isinstance(old, torch.Tensor):
            if new is not old:
                old.copy_(new)
        else:
            target[index] = new


def tensor_array(tensors: Sequence[Any]) -> np.ndarray:
    """An object array of 0-d tensors (see the module docstring)."""
    array = np.empty(len(tensors), dtype=object)
    array[:] = list(tensors)
    return array
