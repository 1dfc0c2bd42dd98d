"""The NumPy executor: a rule's own ``update`` on NumPy arrays, with its step state.

The functional API (:mod:`descend.functional`) takes one step of a rule from a config dict;
the lab steps a rule thousands of times on a small vector. Both run the rule here: the step's
running values advance through a :class:`~descend.kernels.state.StepState`, the step's scalars
come from :meth:`Rule.scalars`, and the elementwise ``update`` (and a matrix stage) run through
:func:`~descend.kernels.reference.numpy_step`. :class:`RuleStepper` keeps slots and step state
between steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from descend.kernels.reference import numpy_step, numpy_update
from descend.kernels.state import StepState
from descend.rules.reduction import GroupReduction
from descend.rules.spec import Rule, plain_value
from descend.rules.vectors import vector_refusal
from descend.schedules import Schedule

#: Up to this many coordinates, :class:`RuleStepper` applies the rule to one coordinate at a
#: time as Python floats: the same function and the same IEEE operations, without NumPy's
#: per-call overhead on tiny arrays (three times faster on a 2-D problem).
SCALAR_SIZE = 4


def advance(state: StepState, hypers: Mapping[str, Any]) -> tuple[StepState, dict[str, Any]]:
    """The state after one more update at ``hypers`` and the values that update's scalars read
    (the hyperparameters with the running products and group state after it)."""
    after = state.advance({name: plain_value(value) for name, value in hypers.items()})
    return after, {**hypers, **after.running()}


def step_array(
    rule: Rule,
    param: np.ndarray,
    grad: np.ndarray,
    slots: list[Any],
    state: StepState,
    hypers: Mapping[str, Any],
) -> tuple[np.ndarray, list[Any], StepState]:
    """One update of ``rule`` on arrays: ``(new param, new slots, state after)``; nothing
    given is changed. ``slots`` are in the rule's order, ``None`` for an inactive slot."""
    after, values = advance(state, hypers)
    step = int(after.steps[0])
    if param.size:
        new_param, new_slots = numpy_step(rule, param, grad, slots, values, step)
    else:
        # No element to update (a layer of width 0). Muon's shape ratio would divide by
        # the 0 columns, as torch.optim.Muon's default does (ZeroDivisionError); its
        # other scaling steps an empty matrix to the empty matrix, as here for every rule.
        new_param = param.copy()
        new_slots = [None if value is None else np.array(value) for value in slots]
    return new_param, new_slots, after


class FunctionalUpdate(Protocol):
    """What :meth:`RuleStepper.from_functional` reads of a ``descend.functional`` update."""

    rule: Rule

    def rule_hypers(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The rule's hyperparameters for a config in the course's names."""


class RuleOptimizer(Protocol):
    """What :meth:`RuleStepper.from_optimizer` reads of a descend optimizer."""

    rule: Rule
    param_groups: list[dict[str, Any]]

    def rule_hypers(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The rule's hyperparameters read from a param group."""


class RuleStepper:
    """A rule's own ``update`` on NumPy arrays (on floats, one coordinate at a time, for up to
    :data:`SCALAR_SIZE` coordinates), its state kept between steps: slots (a slot that starts
    from the parameter starts as ``x0``) and a :class:`StepState`.

    ``hypers`` are checked once by :meth:`Rule.validate` (a ``ValueError`` names a bad value and
    the valid range); with a ``schedule`` the learning rate of update ``k`` (from 1) is
    ``schedule(k - 1)``, the convention of :class:`descend.ScheduledLR`. The points are vectors,
    so a rule with a matrix stage (Muon) is refused.
    """

    def __init__(
        self,
        rule: Rule,
        hypers: Mapping[str, Any],
        x0: np.ndarray,
        schedule: Schedule | None = None,
    ) -> None:
        refusal = vector_refusal(rule)
        if refusal is not None:
            raise ValueError(refusal)
        self.rule = rule
        self.hypers = rule.validate(hypers)
        self.schedule = schedule
        self.update = numpy_update(rule)
        active = {slot.name for slot in rule.active_slots(self.hypers)}
        start = np.array(x0, dtype=np.float64)
        self.slots: list[Any] = [
            slot.initial(start, self.hypers) if slot.name in active else None for slot in rule.slots
        ]
        self.state = StepState.single(rule, 0)
        # A stage works on the whole vector (a norm), so a rule with one steps arrays.
        self.by_coordinate = np.size(x0) <= SCALAR_SIZE and rule.stage is None
        if self.by_coordinate:
            self.slots = [None if slot is None else slot.tolist() for slot in self.slots]

    @classmethod
    def from_functional(
        cls,
        update: FunctionalUpdate,
        config: Mapping[str, Any],
        x0: np.ndarray,
        schedule: Schedule | None = None,
    ) -> RuleStepper:
        """The rule of a ``descend.functional`` update with the hyperparameters of ``config``
        in the course's names: the iterates of calling the update every step, without
        re-reading the config dict every step."""
        return cls(update.rule, update.rule_hypers(config), x0, schedule)

    @classmethod
    def from_optimizer(
        cls, optimizer: RuleOptimizer, x0: np.ndarray, schedule: Schedule | None = None
    ) -> RuleStepper:
        """The rule of a descend optimizer with the hyperparameters of its first param group:
        the iterates the torch class makes."""
        return cls(optimizer.rule, optimizer.rule_hypers(optimizer.param_groups[0]), x0, schedule)

    @property
    def count(self) -> int:
        """Updates made."""
        return int(self.state.steps[0])

    @property
    def lr(self) -> float:
        """The learning rate of the next update."""
        if self.schedule is not None:
            return float(self.schedule(self.count))
        return float(self.hypers.get("lr", math.nan))

    def scalars(self) -> dict[str, Any]:
        """The keyword arguments of the rule's ``update`` for the next step."""
        return self._next()[0]

    def _next(
        self, x: np.ndarray | None = None, grad: np.ndarray | None = None
    ) -> tuple[dict[str, Any], StepState]:
        """The next step's scalars and the step state after it (for a rule whose group state
        is a reduction, with the sums over ``x`` and ``grad`` when given)."""
        values, after = self._advance(x, grad)
        return self.rule.scalars(values, int(after.steps[0])), after

    def _advance(
        self, x: np.ndarray | None = None, grad: np.ndarray | None = None
    ) -> tuple[dict[str, Any], StepState]:
        """The values the next step's scalars are computed from, and the step state after it."""
        hypers = self.hypers
        if self.schedule is not None:
            hypers = {**hypers, "lr": float(self.schedule(self.count))}
        if x is not None and grad is not None:
            hypers = {**hypers, **self._sums(hypers, x, grad)}
        after, values = advance(self.state, hypers)
        return values, after

    def _sums(self, hypers: Mapping[str, Any], x: np.ndarray, grad: np.ndarray) -> dict[str, Any]:
        """What a :class:`~descend.rules.reduction.GroupReduction` reads: its shared values and
        totals over the one vector (in torch, as an optimizer computes them); nothing for
        other rules."""
        reduction = self.rule.group_state
        if not isinstance(reduction, GroupReduction):
            return {}
        import torch

        values = {**hypers, **(self.state.group or {})}
        shared = reduction.shared([values])
        values.update(shared)
        slots = {
            slot.name: torch.as_tensor(np.asarray(value, dtype=np.float64))
            for slot, value in zip(self.rule.slots, self.slots, strict=True)
            if value is not None
        }
        point = torch.as_tensor(np.asarray(x, dtype=np.float64))
        gradient = torch.as_tensor(np.asarray(grad, dtype=np.float64))
        terms = reduction.terms(point, gradient, slots, values)
        totals = {name: float(terms.get(name, 0.0)) for name in reduction.totals}
        return {**shared, **totals}

    def step(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """One update."""
        values, after = self._advance(x, grad)
        self.state.commit(after)
        step = int(after.steps[0])
        if self.rule.stage is not None:
            new_x, slots = numpy_step(self.rule, x, grad, self.slots, values, step)
            self.slots = [
                new if old is not None else None for old, new in zip(self.slots, slots, strict=True)
            ]
            return np.asarray(new_x, dtype=np.float64)
        scalars = self.rule.scalars(values, step)
        if not self.by_coordinate:
            new_x, *slots = self.update(x, grad, *self.slots, **scalars)
            self.slots = [
                new if old is not None else None for old, new in zip(self.slots, slots, strict=True)
            ]
            return np.asarray(new_x, dtype=np.float64)
        points = x.tolist()
        grads = np.asarray(grad, dtype=np.float64).tolist()
        slots = self.slots
        for i in range(len(points)):
            new_p, *new_slots = self.update(
                points[i],
                grads[i],
                *[None if slot is None else slot[i] for slot in slots],
                **scalars,
            )
            points[i] = float(new_p)
            for slot, value in zip(slots, new_slots, strict=True):
                if slot is not None:
                    slot[i] = float(value)
        return np.array(points)


__all__ = ["SCALAR_SIZE", "RuleStepper", "advance", "step_array", "vector_refusal"]
