"""Optimizer and schedule specs as typed on the command line."""

from __future__ import annotations

import pytest
import torch

import descend
from descend.specs import (
    DEFAULT_LR_RANGE,
    OPTIMIZERS,
    ContenderSpec,
    default_lr_range,
    parse_method,
    parse_optimizer,
    parse_schedule,
    parse_value,
    split_specs,
    split_top_level,
)


def test_descend_and_torch_specs_build_the_named_optimizers():
    spec = parse_optimizer("nesterov:lr=1e-3,momentum=0.9")
    assert spec.cls is descend.Nesterov and spec.arguments == {"lr": 1e-3, "momentum": 0.9}
    optimizer = spec.build([torch.zeros(2, requires_grad=True)])
    assert optimizer.param_groups[0]["momentum"] == 0.9
    torch_spec = parse_optimizer("torch.optim.SGD:lr=0.1,momentum=0.9")
    assert torch_spec.cls is torch.optim.SGD and torch_spec.lr == 0.1


def test_tuples_booleans_and_defaults():
    spec = parse_optimizer("adam:betas=(0.8,0.99),amsgrad=true")
    assert spec.arguments == {"betas": (0.8, 0.99), "amsgrad": True}
    assert spec.lr == 1e-3
    assert spec.with_arguments(lr=0.5).arguments["lr"] == 0.5


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("adamax:lr=1", "unknown optimizer 'adamax'"),
        ("torch.optim.Nope", "unknown torch optimizer"),
        ("adam:lr", "expected name:key=value"),
        ("adam:learning_rate=1e-3", "does not take learning_rate"),
        ("adam:lr=-1", "lr=-1 is out of range"),
    ],
)
def test_bad_optimizer_specs_say_what_is_valid(spec, fragment):
    with pytest.raises(ValueError) as error:
        parse_optimizer(spec)
    assert fragment in str(error.value)


def test_schedule_specs():
    schedule = parse_schedule("exponential:k=0.01").build(0.1)
    assert schedule(0) == pytest.approx(0.1)
    assert parse_schedule("1/t:k=1").build(1.0)(1) == pytest.approx(0.5)
    assert parse_schedule("step:step_size=2").build(1.0)(2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown schedule 'linear'.*valid: constant"):
        parse_schedule("linear")
    with pytest.raises(ValueError, match="exponential takes k"):
        parse_schedule("exponential")
    with pytest.raises(ValueError, match="k=-1"):
        parse_schedule("exponential:k=-1")


@pytest.mark.parametrize(
    ("spec", "closest"),
    [
        ("adamm:lr=1e-3", "adam"),
        ("nesterv", "nesterov"),
        ("torch.optim.Adamm", "torch.optim.Adam"),
    ],
)
def test_misspelt_optimizers_suggest_the_closest_name(spec, closest):
    with pytest.raises(ValueError, match=f"did you mean '{closest}'\\?"):
        parse_optimizer(spec)


def test_misspelt_schedules_and_functional_updates_suggest_the_closest_name():
    with pytest.raises(ValueError, match="did you mean 'cosine'"):
        parse_schedule("cosin")
    with pytest.raises(ValueError, match="did you mean 'functional.adam'"):
        parse_method("functional.adamm")
    # Nothing close: no suggestion, only the list.
    with pytest.raises(ValueError) as error:
        parse_optimizer("xyzzy")
    assert "did you mean" not in str(error.value) and "valid: sgd" in str(error.value)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("torch.optim.LBFGS:lr=1", "needs a closure"),
        ("torch.optim.SparseAdam", "needs sparse gradients"),
    ],
)
def test_optimizers_that_cannot_run_from_step_alone_are_refused(spec, reason):
    with pytest.raises(ValueError, match=reason):
        parse_method(spec)


def test_lists_of_specs_keep_each_specs_own_commas():
    assert split_specs(["sgd,nesterov:lr=1e-3,momentum=0.9,adam:betas=(0.9,0.99)"]) == [
        "sgd",
        "nesterov:lr=1e-3,momentum=0.9",
        "adam:betas=(0.9,0.99)",
    ]
    assert split_specs(["sgd", "adam;rmsprop"]) == ["sgd", "adam", "rmsprop"]
    assert split_top_level("a,(b,c),[d,e]") == ["a", "(b,c)", "[d,e]"]
    assert parse_value("(0.9,0.99)") == (0.9, 0.99) and parse_value("True") is True
    assert parse_value("cosine") == "cosine"


def test_every_named_optimizer_has_a_learning_rate_range():
    for name in OPTIMIZERS:
        low, high = default_lr_range(name)
        assert 0 < low < high
    assert default_lr_range("torch.optim.Adadelta") == DEFAULT_LR_RANGE


def test_a_schedule_may_leave_out_what_a_run_fills_in_and_is_checked_when_completed():
    partial = parse_schedule(" cosine:final_lr=0.1 ", complete=False)
    assert partial.text == "cosine:final_lr=0.1" and partial.arguments == {"final_lr": 0.1}
    with pytest.raises(TypeError):
        partial.build(1.0)  # total_steps is still missing
    full = partial.completed({"total_steps": 10, "final_lr": 0.5})
    assert full.text == partial.text and full.arguments == {"total_steps": 10, "final_lr": 0.1}
    assert full.build(1.0)(10) == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"cosine does not take steps .*'total_steps'\? valid"):
        parse_schedule("cosine:steps=10", complete=False)
    with pytest.raises(ValueError, match="invalid schedule spec"):
        parse_schedule("step", complete=False).completed({"step_size": 0})
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        parse_schedule("linear", complete=False)


def test_a_contender_is_labelled_by_its_specs_as_typed_and_a_constant_rate_adds_nothing():
    assert ContenderSpec.parse("adam:lr=0.01").label == "adam:lr=0.01"
    scheduled = ContenderSpec.parse("adam:lr=0.01", "exponential:k=0.1")
    assert scheduled.label == "adam:lr=0.01+exponential:k=0.1"
    assert scheduled.labelled("average(0.9)") == "adam:lr=0.01+exponential:k=0.1+average(0.9)"
    assert ContenderSpec.parse("sgd", "constant").label == "sgd"
    assert ContenderSpec.parse("sgd", "constant").schedule.constant
    functional_spec = ContenderSpec.parse("functional.sgd:learning_rate=0.1", "1/t:k=0.5")
    assert functional_spec.label == "functional.sgd:learning_rate=0.1+1/t:k=0.5"
    named = ContenderSpec.parse("sgd", "cosine:total_steps=9", name="SGD, cosine")
    assert named.label == named.labelled("average(0.9)") == "SGD, cosine"
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'"):
        ContenderSpec.parse("adamx")


@pytest.mark.parametrize(
    "spec",
    [
        "sgd:lr=0.1,lr=0.2",
        "adam:lr=0.1, lr =0.1",
        "functional.adam:learning_rate=1,learning_rate=2",
    ],
)
def test_a_key_given_twice_is_refused_naming_the_key(spec):
    # Taking the last value silently would run a setting other than the first one typed.
    key = spec.split(":")[1].split("=")[0].strip()
    with pytest.raises(ValueError, match=f"'{key}' is given twice"):
        parse_method(spec)
    with pytest.raises(ValueError, match="'k' is given twice"):
        parse_schedule("exponential:k=0.1,k=0.2")
