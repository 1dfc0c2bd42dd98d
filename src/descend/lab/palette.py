"""One colour per optimizer, the same in every figure of the report and on the playground page.

Each rule's colour is its registry row's (:attr:`descend.rules.Listing.colour`); the
second-order methods, which are not rules, have theirs here. Runs are grouped into families by
the names their optimizer goes by (a rule's names and aliases, its functional API's
``functional.<name>``, the ``torch.optim`` class its drop-in class replaces), so a rule has one
colour whether descend's class, ``torch.optim``'s or the functional update ran it. Both tables
are read from the registry whenever they are used, so a rule registered at run time has its
colour everywhere too.
"""

from __future__ import annotations

from typing import Any

from descend.rules import RULES, RegistryView

#: The methods that are not rules (:mod:`descend.secondorder`), by family, with their colours.
SECOND_ORDER_COLORS = {"newton": "#DDCC77", "bfgs": "#AA4499", "lbfgs": "#555555"}
#: Other names of those methods.
SECOND_ORDER_NAMES = {"torch.optim.LBFGS": "lbfgs"}


def _families() -> dict[str, str]:
    from descend.optim.generated import optimizer_class

    families = {name: name for name in SECOND_ORDER_COLORS} | SECOND_ORDER_NAMES
    for rule in RULES.values():
        names = [rule.name, *rule.aliases]
        if rule.course is not None:
            names.append(f"functional.{rule.course.name}")
        cls = optimizer_class(rule)
        if cls.torch_equivalent is not None and cls.torch_equivalent[0] == (
            f"torch.optim.{cls.__name__}"
        ):
            names.append(cls.torch_equivalent[0])
        families.update(dict.fromkeys(names, rule.name))
    return families


#: Optimizer families by the names they go by; a family is its rule's name (or a second-order
#: method's). ``sgd`` with momentum is ``sgd_momentum`` (or ``nesterov``): one colour per method
#: of the lecture, whatever front end ran it.
FAMILIES: RegistryView[str] = RegistryView(_families)


def family_of(name: str, arguments: dict[str, Any] | None = None) -> str | None:
    """The optimizer family of a method name (None for one the lab has no colour for);
    plain SGD given a momentum is ``sgd_momentum``, or ``nesterov`` with ``nesterov=True``."""
    family = FAMILIES.get(name)
    arguments = arguments or {}
    if family == "sgd" and arguments.get("momentum", 0):
        return "nesterov" if arguments.get("nesterov") else "sgd_momentum"
    return family


def _family_colors() -> dict[str, str]:
    return {
        rule.name: rule.listing.colour for rule in RULES.values() if rule.listing.colour
    } | SECOND_ORDER_COLORS


#: One colour per optimizer family: Paul Tol's qualitative schemes, whose colours stay distinct
#: under the common colour-vision deficiencies, plus a dark grey.
FAMILY_COLORS: RegistryView[str] = RegistryView(_family_colors)
#: Colours, in turn, for runs of an optimizer the lab has no family for.
OTHER_COLORS = ("#000000", "#8C8C8C", "#6B4E16")
