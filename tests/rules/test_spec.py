"""Rule specs: validation messages, ranges, constraints, and the update signatures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import descend
from descend.rules import RULES, get_rule
from descend.rules.spec import Hyper, Rule, Slot


def test_every_rule_documents_its_equation_and_hyperparameters():
    for rule in RULES.values():
        assert rule.update.__doc__ and "<-" in rule.update.__doc__, rule.name
        for hyper in rule.hypers:
            assert hyper.doc, (rule.name, hyper.name)
            hyper.check(hyper.default)  # every default is valid


def test_defaults_are_torchs_for_drop_in_rules():
    assert RULES["adam"].defaults["lr"] == 1e-3
    assert RULES["adagrad"].defaults["eps"] == 1e-10
    assert RULES["rmsprop"].defaults["alpha"] == 0.99
    assert RULES["adamw"].defaults["weight_decay"] == 1e-2


@pytest.mark.parametrize(
    ("cls", "kwargs", "fragment"),
    [
        (descend.SGD, {"lr": -0.1}, "lr=-0.1 is out of range: expected 0 <= lr < inf"),
        (descend.Adam, {"eps": -1e-8}, "eps=-1e-08"),
        (
            descend.Adam,
            {"betas": (1.0, 0.999)},
            "betas[0]=1.0 is out of range: expected 0 <= betas[0] < 1",
        ),
        (descend.Adam, {"betas": (0.9, -0.1)}, "betas[1]=-0.1"),
        (descend.Adam, {"betas": 0.9}, "betas=0.9 is invalid"),
        (descend.SGD, {"momentum": -0.5}, "momentum=-0.5"),
        (
            descend.SGD,
            {"momentum": 0.9, "dampening": 0.1, "nesterov": True},
            "nesterov=True requires momentum > 0 and dampening = 0",
        ),
        (descend.SGD, {"nesterov": True}, "nesterov=True requires momentum > 0"),
        (descend.RMSprop, {"alpha": 1.0}, "alpha=1.0"),
        (descend.Adagrad, {"lr_decay": -1.0}, "lr_decay=-1.0"),
        (descend.Adam, {"amsgrad": "yes"}, "amsgrad='yes' is invalid: expected True or False"),
        (descend.Adam, {"lr": float("nan")}, "lr=nan is invalid"),
        (descend.Adam, {"lr": float("inf")}, "lr=inf is out of range"),
        (descend.Momentum, {"momentum": -0.1}, "momentum=-0.1"),
        (descend.SGD, {"nonfinite": "ignore"}, "nonfinite='ignore' is invalid"),
        (descend.SGD, {"backend": "gpu"}, "backend='gpu' is invalid"),
        (descend.Adam, {"capturable": True}, "capturable=True is not supported"),
    ],
)
def test_bad_hyperparameters_are_named_with_their_valid_range(cls, kwargs, fragment):
    param = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError) as error:
        cls([param], **kwargs)
    assert fragment in str(error.value)


def test_bad_value_in_a_later_param_group_is_rejected():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    optimizer = descend.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match="lr=-1"):
        optimizer.add_param_group({"params": [b], "lr": -1})
    assert len(optimizer.param_groups) == 1


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_half_open_range_accepts_exactly_its_interval(value):
    hyper = Hyper("beta", 0.5, "test", low=0.0, high=1.0, high_open=True)
    inside = not math.isnan(value) and 0.0 <= value < 1.0
    if inside:
        assert hyper.check(value) == value
    else:
        with pytest.raises(ValueError, match="beta="):
            hyper.check(value)


def test_unknown_hyperparameter_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown hyperparameter.*momentom.*valid: .*momentum"):
        get_rule("sgd").validate({"momentom": 0.9})


def test_unknown_rule_lists_the_valid_ones():
    with pytest.raises(KeyError, match="valid: sgd"):
        get_rule("adamax")


def test_update_signature_must_follow_the_slots():
    def update(p, g, wrong_name, *, lr):
        return p, wrong_name

    with pytest.raises(TypeError, match="expected"):
        Rule("broken", update, (Hyper("lr", 0.1, "step"),), (Slot("buffer"),))


def test_rule_update_works_on_plain_numpy_scalars():
    rule = RULES["adam"]
    hypers = rule.validate({})
    p, m, v, vmax = rule.update(
        np.float64(1.0), np.float64(0.5), 0.0, 0.0, None, **rule.scalars(hypers, 1)
    )
    # First Adam step moves by lr * sign(g) (bias correction makes m^ = g, v^ = g^2).
    assert p == pytest.approx(1.0 - 1e-3, rel=1e-6)
    assert vmax is None
