"""What is derived from the registry: class docstrings, colours, defaults."""

from __future__ import annotations

import inspect

import pytest

import descend
from descend.lab.palette import FAMILY_COLORS, SECOND_ORDER_COLORS
from descend.optim.generated import optimizer_class
from descend.rules import RULES
from descend.rules.docs import equation

CLASSES = [optimizer_class(rule) for rule in RULES.values()]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_class_docstring_carries_its_rules_equation_and_ranges(cls):
    doc = inspect.getdoc(cls)
    rule = cls.rule
    assert equation(rule).splitlines()[-1].strip() in doc
    doc = " ".join(doc.split())  # as read, whatever the wrapping
    packed = {member: key for key, members in rule.group_keys.items() for member in members}
    arguments = inspect.signature(cls.__init__).parameters
    for hyper in rule.hypers:
        shown = packed.get(hyper.name, hyper.name)
        if shown not in arguments:
            continue  # a hyperparameter the constructor does not take (group state, fixed)
        if (
            shown == hyper.name
            and hyper.kind is not bool
            and hyper.choices is None
            and (hyper.low is not None or hyper.high is not None)
        ):
            assert hyper.describe() in doc, (cls.__name__, hyper.name)
        assert hyper.doc.split(":")[0] in doc, (cls.__name__, hyper.name)
    for name in arguments:
        if name not in ("self", "params"):
            assert f"{name}" in doc.split("Args:")[1], (cls.__name__, name)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_constructor_defaults_are_the_rules(cls):
    rule = cls.rule
    arguments = inspect.signature(cls.__init__).parameters
    for hyper in rule.hypers:
        if hyper.name in arguments:
            assert arguments[hyper.name].default == hyper.default, (cls.__name__, hyper.name)
    for key, members in rule.group_keys.items():
        if key in arguments:
            assert tuple(arguments[key].default) == tuple(
                rule.hyper(member).default for member in members
            ), (cls.__name__, key)


def test_help_reads_as_a_docstring():
    doc = inspect.getdoc(descend.Adam)
    assert doc.startswith("Adam with bias correction; drop-in for ``torch.optim.Adam``.")
    assert "betas: (beta1, beta2): decay rate of the first moment m;" in doc
    assert "``0 <= betas[0] < 1``, ``0 <= betas[1] < 1``." in doc
    assert max(len(line) for line in doc.splitlines()) <= 100


def test_every_rule_has_its_own_colour():
    colours = [rule.listing.colour for rule in RULES.values()]
    assert all(colours), [rule.name for rule in RULES.values() if not rule.listing.colour]
    every = [*colours, *SECOND_ORDER_COLORS.values()]
    assert len(set(every)) == len(every)
    assert {rule.name for rule in RULES.values()} <= set(FAMILY_COLORS)
