"""torch.optim.Optimizer classes built from the rules.

:func:`optimizer_classes` maps each rule's names (and aliases) to its class; every class of
:mod:`descend.optim.classes` is also exported here and as ``descend.<Class>``.
:func:`evaluation_mode` wraps an evaluation so that optimizers with a ``train()``/``eval()``
switch (Schedule-Free) evaluate at their averaged weights.
"""

from __future__ import annotations

from descend.optim import classes as _classes
from descend.optim.averaging import WeightAverage
from descend.optim.base import NonFiniteGradientError, RuleOptimizer
from descend.optim.generated import optimizer_class
from descend.optim.lbfgs import LBFGS
from descend.optim.modes import evaluation_mode
from descend.optim.scheduling import ScheduledLR

#: The rule optimizers by class name (``"Adam"``), in the registry's order of rules.
CLASSES: dict[str, type[RuleOptimizer]] = {
    name: getattr(_classes, name) for name in _classes.__all__
}
globals().update(CLASSES)


def optimizer_classes() -> dict[str, type[RuleOptimizer]]:
    """Every name a rule goes by (``adam``, ``sgd_momentum``, ``momentum``, ...) -> its class.

    A rule whose class is subclassed (``Adam`` by ``AdamW``) maps to the class that declares it.
    A rule with no written class (one registered at run time) maps to the class
    :func:`~descend.optim.generated.optimizer_class` makes from it.
    """
    by_rule: dict[str, type[RuleOptimizer]] = {}
    for cls in CLASSES.values():
        if cls.__dict__.get("rule") is not None:
            if cls.rule.name in by_rule:
                raise TypeError(
                    f"{by_rule[cls.rule.name].__name__} and {cls.__name__} both "
                    f"run the {cls.rule.name!r} rule"
                )
            by_rule[cls.rule.name] = cls
    from descend.rules import RULES

    names: dict[str, type[RuleOptimizer]] = {}
    for rule in RULES.values():
        runs_rule = by_rule.get(rule.name) or optimizer_class(rule)
        for name in (rule.name, *rule.aliases):
            names[name] = runs_rule
    return names


__all__ = [
    *CLASSES,
    "LBFGS",
    "NonFiniteGradientError",
    "RuleOptimizer",
    "ScheduledLR",
    "WeightAverage",
    "evaluation_mode",
    "optimizer_classes",
]
