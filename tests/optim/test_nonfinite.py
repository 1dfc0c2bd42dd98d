"""The non-finite gradient guard: propagate, raise (naming the parameter), or skip."""

from __future__ import annotations

import pytest
import torch

import descend
from descend.optim import NonFiniteGradientError
from descend.optim.generated import optimizer_class
from descend.rules import RULES


def _elementwise_classes() -> list[str]:
    """The class of every rule in the registry whose step is elementwise (a rule with a matrix
    stage, Muon, steps 2-D weights only, and this module's model has a bias)."""
    return [optimizer_class(rule).__name__ for rule in RULES.values() if rule.stage is None]


CLASSES = _elementwise_classes()


def _class(name):
    return next(
        optimizer_class(rule) for rule in RULES.values() if optimizer_class(rule).__name__ == name
    )


def _setup(name, mode):
    model = torch.nn.Linear(3, 2)
    options = {"momentum": 0.9} if name == "SGD" else {}
    optimizer = _class(name)(model.named_parameters(), lr=0.1, nonfinite=mode, **options)
    for param in model.parameters():
        param.grad = torch.ones_like(param)
    optimizer.step()  # some state to protect
    return model, optimizer


def _snapshot(model, optimizer):
    params = [p.detach().clone() for p in model.parameters()]
    state = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in model.parameters()]
    return params, state


def _poison(model, value):
    for param in model.parameters():
        param.grad = torch.ones_like(param)
    model.bias.grad[1] = value


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_skip_leaves_every_parameter_and_state_bit_identical(name, bad):
    model, optimizer = _setup(name, "skip")
    params, state = _snapshot(model, optimizer)
    _poison(model, bad)
    optimizer.step()
    after_params, after_state = _snapshot(model, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(params, after_params, strict=True))
    for before, after in zip(state, after_state, strict=True):
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)
    assert optimizer.skipped_steps == 1
    _poison(model, 0.0)
    optimizer.step()  # a finite step goes through again
    assert optimizer.skipped_steps == 1
    assert not torch.equal(params[0], model.weight)


@pytest.mark.parametrize("name", CLASSES)
def test_raise_names_the_parameter_and_changes_nothing(name):
    model, optimizer = _setup(name, "raise")
    params, state = _snapshot(model, optimizer)
    _poison(model, float("nan"))
    with pytest.raises(NonFiniteGradientError, match="parameter 'bias'"):
        optimizer.step()
    after_params, after_state = _snapshot(model, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(params, after_params, strict=True))
    assert all(
        torch.equal(before[k], after[k])
        for before, after in zip(state, after_state, strict=True)
        for k in before
    )


def test_raise_without_names_points_at_the_group_and_index():
    weight, bias = torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)
    optimizer = descend.Adam([weight, bias], nonfinite="raise")
    weight.grad, bias.grad = torch.zeros(2, 2), torch.tensor([0.0, float("inf")])
    with pytest.raises(NonFiniteGradientError, match=r"param_groups\[0\]\['params'\]\[1\]"):
        optimizer.step()


def test_propagate_behaves_like_torch():
    ours_param = torch.ones(3, requires_grad=True)
    torch_param = torch.ones(3, requires_grad=True)
    ours, theirs = descend.Adam([ours_param]), torch.optim.Adam([torch_param])
    for param, optimizer in ((ours_param, ours), (torch_param, theirs)):
        param.grad = torch.tensor([1.0, float("nan"), float("inf")])
        optimizer.step()
    assert torch.equal(ours_param.isnan(), torch_param.isnan())
    assert ours_param[0].item() == pytest.approx(torch_param[0].item())
