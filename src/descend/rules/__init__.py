"""The math of each optimizer, written once: elementwise update rules and their specs."""

from descend.rules.adagrad import ADAGRAD
from descend.rules.adam import ADAM, ADAMW
from descend.rules.momentum import NESTEROV, SGD_MOMENTUM
from descend.rules.rmsprop import RMSPROP
from descend.rules.sgd import SGD
from descend.rules.spec import Constraint, Hyper, Rule, Slot

#: Every rule by name.
RULES: dict[str, Rule] = {
    rule.name: rule for rule in (SGD, SGD_MOMENTUM, NESTEROV, ADAGRAD, RMSPROP, ADAM, ADAMW)
}


def get_rule(name: str) -> Rule:
    """The rule called ``name``; ``KeyError`` lists the valid names."""
    try:
        return RULES[name]
    except KeyError:
        raise KeyError(f"unknown rule {name!r}; valid: {', '.join(RULES)}") from None


__all__ = [
    "ADAGRAD", "ADAM", "ADAMW", "NESTEROV", "RMSPROP", "RULES", "SGD", "SGD_MOMENTUM",
    "Constraint", "Hyper", "Rule", "Slot", "get_rule",
]
