"""The sums a :class:`~descend.rules.reduction.GroupReduction` reads, over an optimizer's groups.

Called by :meth:`descend.optim.base.RuleOptimizer._advanced_group_state` once per step, after
every parameter's state exists and before anything changes: it reads parameters, gradients and
state (in torch, on their devices) and changes nothing, so a step that fails later leaves the
optimizer as it was. Sharded parameters (DTensors) are refused: a sum over one rank's shards
would be a different sum on every rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from descend.optim import sharded
from descend.optim.precision import coded
from descend.rules.reduction import GroupReduction
from descend.rules.spec import plain_value

if TYPE_CHECKING:
    from descend.optim.base import RuleOptimizer

#: Per group id: the group whose state the step starts from, and the values the group's
#: ``advance`` reads besides its hyperparameters (the shared values and the totals).
Reduced = dict[int, tuple[dict[str, Any], dict[str, Any]]]


def reduce_groups(optimizer: RuleOptimizer) -> Reduced:
    """For every param group whose rule's group state is a reduction: the first such group
    (whose state every group advances, see :mod:`descend.rules.reduction`) and the shared
    values with the totals over every such group's parameters that have gradients.
    ``ValueError`` (from ``shared``) before anything changes when the groups cannot step
    together."""
    groups = []
    for group in optimizer.param_groups:
        rule = optimizer.rule_for(group)
        if isinstance(rule.group_state, GroupReduction):
            groups.append((group, rule, optimizer._checked_hypers(group)))
    if not groups:
        return {}
    first, first_rule, _ = groups[0]
    reduction = first_rule.group_state
    assert isinstance(reduction, GroupReduction)
    start = {name: plain_value(first[name]) for name in reduction.names}
    views = [
        {**{name: plain_value(value) for name, value in hypers.items()}, **start}
        for _, _, hypers in groups
    ]
    shared = reduction.shared(views)
    totals = dict.fromkeys(reduction.totals, 0.0)
    with torch.no_grad():
        for (group, rule, _), view in zip(groups, views, strict=True):
            values = {**view, **shared}
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                if sharded.is_dtensor(param):
                    raise ValueError(
                        f"{optimizer._label(param)} is {sharded.describe(param)}: "
                        f"{type(optimizer).__name__} sums over every parameter, which sharded "
                        "parameters do not support yet; nothing was updated"
                    )
                state = optimizer.state[param]
                compressed = coded(optimizer, param, state, rule)
                if compressed is not None:  # the terms read decoded slots, as the rule does
                    stored = [state.get(slot.name) for slot in rule.slots]
                    decoded = zip(rule.slots, compressed.decoded(stored), strict=True)
                    state = {**state, **{slot.name: t for slot, t in decoded if t is not None}}
                for name, term in reduction.terms(param, grad, state, values).items():
                    totals[name] += term
    return {id(group): (first, {**shared, **totals}) for group, _, _ in groups}
