"""Optimizer classes for rules: the class written for a rule, or one made from the rule alone.

:func:`optimizer_class` is how the command line, the lab and the benchmark turn a rule of the
registry into an optimizer: a rule with a class in :mod:`descend.optim.classes` gets that class
(its ``torch.optim``-style constructor), any other rule, one registered at run time included,
gets a class made from its hyperparameters.
"""

from __future__ import annotations

import inspect
from typing import Any

from descend.optim import classes
from descend.optim.base import RuleOptimizer
from descend.optim.docstrings import document
from descend.rules.spec import Rule


def _declared() -> dict[Rule, type[RuleOptimizer]]:
    """The classes of :mod:`descend.optim.classes` by the rule each declares (``AdamW``
    declares ``ADAMW``)."""
    written = (getattr(classes, name) for name in classes.__all__)
    return {cls.__dict__["rule"]: cls for cls in written if "rule" in cls.__dict__}


#: Classes made for rules that have no written class, by rule (see :func:`optimizer_class`).
_MADE: dict[Rule, type[RuleOptimizer]] = {}


def optimizer_class(rule: Rule) -> type[RuleOptimizer]:
    """The optimizer class that runs ``rule``: its class in :mod:`descend.optim.classes`, or
    else one made from
    the rule alone, so that a rule registered with :func:`descend.rules.register` is an
    optimizer at once.

    A made class takes ``params``, then each hyperparameter at the rule's default (packed as
    the rule's ``group_keys`` say, ``betas=(0.9, 0.999)``), then ``nonfinite`` and ``backend``;
    its docstring is generated like every class's.
    """
    declared = _declared().get(rule)
    if declared is not None:
        return declared
    if rule not in _MADE:
        _MADE[rule] = _made_class(rule)
    return _MADE[rule]


def _made_class(rule: Rule) -> type[RuleOptimizer]:
    signature = _constructor_signature(rule)

    def __init__(self: RuleOptimizer, *args: Any, **kwargs: Any) -> None:
        arguments = signature.bind(self, *args, **kwargs)
        arguments.apply_defaults()
        defaults = dict(arguments.arguments)
        for name in ("self", "params", "nonfinite", "backend"):
            defaults.pop(name)
        RuleOptimizer.__init__(
            self,
            arguments.arguments["params"],
            defaults,
            nonfinite=arguments.arguments["nonfinite"],
            backend=arguments.arguments["backend"],
        )

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    name = "".join(part.capitalize() for part in rule.name.split("_"))
    lead = f"{name}: {rule.summary or rule.name}, made from its rule ``{rule.name}``."
    cls = type(
        name,
        (RuleOptimizer,),
        {
            "rule": rule,
            "__init__": __init__,
            "__doc__": lead,
            "__module__": __name__,
            "__qualname__": name,
        },
    )
    document(cls)
    return cls


def _constructor_signature(rule: Rule) -> inspect.Signature:
    """``(self, params, <hyperparameters, packed>, *, nonfinite, backend)`` with the rule's
    defaults."""
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    packed_into = {member: key for key, members in rule.group_keys.items() for member in members}
    parameters = [inspect.Parameter("self", positional), inspect.Parameter("params", positional)]
    for hyper in rule.hypers:
        key = packed_into.get(hyper.name)
        if key is None:
            parameters.append(inspect.Parameter(hyper.name, positional, default=hyper.default))
        elif all(parameter.name != key for parameter in parameters):
            default = tuple(rule.hyper(member).default for member in rule.group_keys[key])
            parameters.append(inspect.Parameter(key, positional, default=default))
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters += [
        inspect.Parameter("nonfinite", keyword, default="propagate"),
        inspect.Parameter("backend", keyword, default="auto"),
    ]
    return inspect.Signature(parameters)
