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


# -- hyperparameter values on the step's fast paths ------------------------------------------

_VALUES = st.one_of(
    st.floats(allow_nan=False),
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.none(),
    st.sampled_from(["sgd", "ema"]),
    st.floats(-10, 10).map(lambda x: torch.tensor(x)),
    st.floats(-10, 10).map(np.float64),
    st.integers(0, 9).map(np.int64),
)


@given(st.dictionaries(st.sampled_from(["lr", "beta1", "eps", "mode", "flag"]), _VALUES))
def test_plain_values_is_plain_value_of_each_value(values):
    """The one-pass copy for plain scalars gives what converting value by value gives, types
    included (a 0-d tensor or NumPy scalar becomes a Python number), and a new dict."""
    from descend.rules.hyper import plain_value, plain_values

    plain = plain_values(values)
    expected = {name: plain_value(value) for name, value in values.items()}
    assert plain == expected and plain is not values
    assert [type(v) for v in plain.values()] == [type(v) for v in expected.values()]


@given(st.dictionaries(st.sampled_from(["lr", "beta1", "eps", "mode", "flag"]), _VALUES))
def test_step_inputs_is_as_step_input_of_each_value(values):
    """The same for the step's inputs: a 0-d tensor stays a (detached) tensor, the rest
    reach the step as :func:`as_step_input` gives them, in a new dict."""
    from descend.rules.hyper import as_step_input, step_inputs

    inputs = step_inputs(values)
    expected = {name: as_step_input(value) for name, value in values.items()}
    assert inputs is not values and list(inputs) == list(expected)
    for name, value in expected.items():
        assert type(inputs[name]) is type(value)
        if isinstance(value, torch.Tensor):
            assert not inputs[name].requires_grad and float(inputs[name]) == float(value)
        else:
            assert inputs[name] == value


@given(st.lists(_VALUES, max_size=8))
def test_same_values_sees_every_tensor_as_changed_and_plain_scalars_as_equal(values):
    """A hyperparameter tuple compared with itself is the same unless it holds a tensor (whose
    value may have been edited in place): on the fast path for plain scalars too."""
    from descend.optim.checks import same_values

    a = tuple(values)
    holds_tensor = any(isinstance(value, torch.Tensor) for value in a)
    assert same_values(a, a) is not holds_tensor
    # Equal plain numbers that are other objects are the same; a changed one is not.
    copied = tuple(float(v) if type(v) is float else v for v in a)
    assert same_values(a, copied) is not holds_tensor
    if a and type(a[0]) is float:
        assert not same_values(a, (0.5 if a[0] != 0.5 else 0.25, *a[1:]))


@given(lr=st.floats(1e-6, 1.0), beta1=st.floats(0.0, 0.99), step=st.integers(1, 50))
def test_step_scalars_are_the_same_from_plain_floats_and_from_numpy_floats(lr, beta1, step):
    """Adam's step scalars from plain floats (copied as they are) equal those from NumPy
    float64 scalars of the same values (which take the conversion value by value)."""
    rule = RULES["adam"]
    plain = {**rule.defaults, "lr": lr, "beta1": beta1}
    numpy = {**plain, "lr": np.float64(lr), "beta1": np.float64(beta1)}
    assert rule.scalars(numpy, step) == rule.scalars(plain, step)
