"""Group state advanced from sums over tensors: the rule model's one group-wide reduction.

Some methods set a step size from quantities of the whole model, not of one element: Prodigy's
estimate of the distance to the solution, ``d``, is a ratio of two sums over every parameter
(``sum g . (x0 - x)`` and ``sum |s|``). A :class:`GroupReduction` is a
:class:`~descend.rules.spec.GroupState` whose ``advance`` also reads such sums. Every optimizer
step, before any parameter or state changes:

1. ``shared(groups)`` sees every param group that runs the rule (each one's hyperparameters
   and group state) and returns the values they share (Prodigy's largest learning rate), or
   raises ``ValueError`` for groups that cannot step together;
2. ``terms(p, g, state, values)``, in torch and read-only, gives each parameter's
   contributions (Python floats, by name) from its parameter, gradient and per-parameter
   state (slots by name); ``values`` are its group's hyperparameters, the shared values and
   the group state that the step starts from. The contributions are added up in the order of
   the groups and of their parameters, over every group that runs the rule;
3. ``advance`` runs for every group as for any group state, seeing the totals by name with
   the hyperparameters, the shared values and the current state.

The scope is the optimizer, not one group: the group state is the first group's, and every
group advances it from the same totals, so all groups hold equal values (as the reference
implementations keep one estimate for the whole model in every group). A rule with one param
group reduces over that group alone.

The elementwise update then sees the advanced state through ``step_scalars``, and every executor
compiles it as usual; only the reductions run in torch. Where a reduction needs the value a slot
will have after this step, ``terms`` computes it with the same rule-language function the update
calls (bound to torch with :func:`descend.rules.elementwise.bind`), so the formula is written
once. A rule evaluated without an optimizer (the NumPy functional API, an executor's tests)
advances its state with no totals: ``advance`` must then give a well-defined step.

The per-tensor stage (:class:`~descend.rules.spec.MatrixStage`) is the other non-elementwise
part of the model: it transforms one tensor; a reduction only reads tensors, and its result is
scalars for the whole model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from descend.rules.spec import GroupState


def _nothing_shared(groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class GroupReduction(GroupState):
    """Group state whose ``advance`` reads sums over every parameter of the optimizer's groups
    that run the rule (see the module docstring for the order of a step).

    ``terms(p, g, state, values) -> {name: float}`` gives one parameter's contributions to the
    totals (torch, read-only); ``totals`` names every total it produces (each starts at 0.0);
    ``shared(groups) -> {name: value}`` gives values shared by all groups from each group's
    hyperparameters and state.
    """

    terms: Callable[[Any, Any, Mapping[str, Any], Mapping[str, Any]], Mapping[str, float]] = (
        lambda p, g, state, values: {}
    )
    totals: tuple[str, ...] = ()
    shared: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]] = _nothing_shared


__all__ = ["GroupReduction"]
