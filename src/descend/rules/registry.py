"""The registry of rules: one list of optimizers that every other list is read from.

:data:`RULES` holds every rule by name in order of publication, :data:`NAMES` every name a rule
goes by. Both are filled from the rule modules of this package (see :mod:`descend.rules`);
:func:`register` adds a rule at run time (a plugin, a test) and :func:`unregister` removes it.
Both dicts are updated in place, so a module that imported them sees the change.

A list that restates the registry (the lab's colours, the benchmark's learning-rate ranges,
the parity grid of the drop-in classes) is a :class:`RegistryView`: a read-only mapping computed
from the registry each time it is read, so a rule registered later is in it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from descend.rules.spec import Rule

#: Every rule by name, in order of publication.
RULES: dict[str, Rule] = {}
#: Every name a rule goes by (its name and its aliases).
NAMES: dict[str, Rule] = {}

Value = TypeVar("Value")


def _names_of(rules: Mapping[str, Rule]) -> dict[str, Rule]:
    names: dict[str, Rule] = {}
    for rule in rules.values():
        for name in (rule.name, *rule.aliases):
            if name in names and names[name] is not rule:
                raise TypeError(f"rules {names[name].name!r} and {rule.name!r} both go by {name!r}")
            names[name] = rule
    return names


def _replace_all(rules: list[Rule]) -> None:
    """Make the registry hold exactly ``rules`` (checked first, so a clash changes nothing)."""
    ordered = {rule.name: rule for rule in sorted(rules, key=lambda rule: (rule.year, rule.name))}
    names = _names_of(ordered)
    RULES.clear()
    RULES.update(ordered)
    NAMES.clear()
    NAMES.update(names)


def register(rule: Rule) -> Rule:
    """Add ``rule`` to the registry and return it; ``TypeError`` if it, or one of its names,
    is taken by another rule. Registering the same rule twice changes nothing."""
    if RULES.get(rule.name) is rule:
        return rule
    if rule.name in RULES:
        raise TypeError(f"a rule named {rule.name!r} is already registered")
    _replace_all([*RULES.values(), rule])
    return rule


def unregister(rule: Rule) -> None:
    """Remove ``rule`` (registered by :func:`register`) from the registry."""
    if RULES.get(rule.name) is not rule:
        raise KeyError(f"rule {rule.name!r} is not registered")
    _replace_all([other for other in RULES.values() if other is not rule])


def get_rule(name: str) -> Rule:
    """The rule called ``name`` (or aliased so); ``KeyError`` lists the valid names."""
    try:
        return NAMES[name]
    except KeyError:
        raise KeyError(f"unknown rule {name!r}; valid: {', '.join(NAMES)}") from None


def lecture_rules() -> list[Rule]:
    """The rules of the lecture's tour, in order of publication."""
    return [rule for rule in RULES.values() if rule.lecture]


class RegistryView(Mapping[str, Value]):
    """A read-only mapping derived from the registry, recomputed on every read.

    ``derive()`` builds the whole mapping from :data:`RULES`; the view calls it for each
    lookup, so it always agrees with the registry (the lists it replaces are small).
    """

    def __init__(self, derive: Callable[[], Mapping[str, Value]]) -> None:
        self._derive = derive

    def __getitem__(self, key: str) -> Value:
        return self._derive()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._derive())

    def __len__(self) -> int:
        return len(self._derive())

    def __repr__(self) -> str:
        return f"RegistryView({dict(self._derive())!r})"
