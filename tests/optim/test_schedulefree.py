"""descend's Schedule-Free SGD and AdamW against the schedulefree package: the numbers, the
train()/eval() switch, and checkpoints taken in either mode."""

from __future__ import annotations

import copy
import inspect
import io
import itertools

import numpy as np
import pytest
import schedulefree
import torch

import descend
from descend import functional
from descend.optim import evaluation_mode
from descend.testing import (
    TOLERANCE,
    make_params,
    relative_error,
    run_side_by_side,
)

SHAPES = [(), (1,), (7, 3), (5,), (2, 3, 4), (33,)]
SHARED = dict(
    weight_decay=[0.0, 0.1], warmup_steps=[0, 10], r=[0.0, 1.0], weight_lr_power=[2.0, 0.0]
)
GRIDS = {
    "SGDScheduleFree": dict(lr=[0.05], momentum=[0.9, 0.5], **SHARED),
    "AdamWScheduleFree": dict(lr=[0.01], betas=[(0.9, 0.999), (0.5, 0.9)], **SHARED),
}
CASES = [
    (name, dict(zip(grid, values, strict=True)))
    for name, grid in GRIDS.items()
    for values in itertools.product(*grid.values())
]


def reference(name, params, **options):
    """The schedulefree package's optimizer, switched to train mode as its users must."""
    optimizer = getattr(schedulefree, name)(params, **options)
    optimizer.train()
    return optimizer


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    ("name", "options"),
    CASES,
    ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in CASES],
)
@pytest.mark.slow
def test_every_option_matches_schedulefree(name, options, dtype, backend):
    groups = [{}, {"lr": options["lr"] * 0.5}]
    param_error, state_error, _, _, ours, theirs = run_side_by_side(
        lambda params: getattr(descend, name)(params, backend=backend, **options),
        lambda params: reference(name, params, **options),
        SHAPES,
        dtype,
        steps=100,
        group_options=groups,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]
    for mine, theirs_group in zip(ours.param_groups, theirs.param_groups, strict=True):
        assert mine["k"] == theirs_group["k"] == 100
        assert mine["weight_sum"] == pytest.approx(theirs_group["weight_sum"], rel=1e-15)
        assert mine["lr_max"] == theirs_group["lr_max"]


@pytest.mark.parametrize("name", list(GRIDS))
def test_constructor_signature_defaults_and_group_keys_match_schedulefree(name):
    ours = inspect.signature(getattr(descend, name).__init__).parameters
    theirs = inspect.signature(getattr(schedulefree, name).__init__).parameters
    for parameter_name, parameter in theirs.items():
        assert parameter_name in ours, parameter_name
        assert ours[parameter_name].default == parameter.default, parameter_name
        assert ours[parameter_name].kind == parameter.kind, parameter_name
    param = torch.zeros(3, requires_grad=True)
    mine = getattr(descend, name)([param]).param_groups[0]
    theirs_group = getattr(schedulefree, name)([param]).param_groups[0]
    # One deliberate difference: descend's optimizers start in train mode.
    assert mine.pop("train_mode") is True and theirs_group.pop("train_mode") is False
    assert mine == theirs_group


def _gradients(steps, shapes, dtype, seed=3):
    generator = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(shape, dtype=dtype, generator=generator) for shape in shapes]
        for _ in range(steps)
    ]


def _train(optimizer, params, gradients, evaluate_every=None):
    for step, step_gradients in enumerate(gradients, start=1):
        for param, gradient in zip(params, step_gradients, strict=True):
            param.grad = gradient.clone()
        optimizer.step()
        if evaluate_every and step % evaluate_every == 0:
            optimizer.eval()
            optimizer.train()


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_the_switch_is_exact_and_follows_schedulefree(name, backend):
    dtype = torch.float32
    # Large steps put z far from y, where a round trip y -> x -> y by formula rarely comes
    # back to the same float.
    shapes = [(64, 32), (7,)]
    gradients = _gradients(30, shapes, dtype)
    straight, switching, theirs = (make_params(shapes, dtype, seed=1) for _ in range(3))
    options = dict(lr=0.5, weight_decay=0.01)
    _train(getattr(descend, name)(straight, backend=backend, **options), straight, gradients)
    _train(
        getattr(descend, name)(switching, backend=backend, **options),
        switching,
        gradients,
        evaluate_every=7,
    )
    _train(reference(name, theirs, **options), theirs, gradients, evaluate_every=7)
    for a, b, c in zip(straight, switching, theirs, strict=True):
        # eval() then train() leaves no trace: the training point comes back bit for bit.
        assert torch.equal(a, b)
        # schedulefree recomputes y from x and z, a rounding away.
        assert relative_error(b, c) <= TOLERANCE[dtype]


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only=True: plain containers, tensors and numbers


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_a_checkpoint_taken_in_either_mode_resumes_exactly(name, mode, backend, dtype):
    shapes = [(40, 30), (6,)]
    gradients = _gradients(30, shapes, dtype)
    cls = getattr(descend, name)
    straight = make_params(shapes, dtype, seed=2)
    uninterrupted = cls(straight, lr=0.5, warmup_steps=5, backend=backend)
    _train(uninterrupted, straight, gradients)
    uninterrupted.eval()

    params = make_params(shapes, dtype, seed=2)
    first = cls(params, lr=0.5, warmup_steps=5, backend=backend)
    _train(first, params, gradients[:12])
    if mode == "eval":
        first.eval()
    checkpoint = _roundtrip(
        {"model": [p.detach().clone() for p in params], "optimizer": first.state_dict()}
    )
    resumed_params = [p.clone().requires_grad_() for p in checkpoint["model"]]
    resumed = cls(resumed_params, lr=0.5, warmup_steps=5, backend=backend)
    resumed.load_state_dict(checkpoint["optimizer"])
    resumed.train()
    _train(resumed, resumed_params, gradients[12:])
    resumed.eval()
    for a, b in zip(straight, resumed_params, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", list(GRIDS))
def test_a_train_mode_checkpoint_holds_the_evaluation_weights_recipe(name):
    shapes = [(3, 4)]
    params = make_params(shapes, torch.float64, seed=5)
    optimizer = getattr(descend, name)(params, lr=0.02)
    _train(optimizer, params, _gradients(10, shapes, torch.float64))
    saved_model = [p.detach().clone() for p in params]
    saved = copy.deepcopy(optimizer.state_dict())
    optimizer.eval()
    evaluation_weights = params[0].detach().clone()
    # Anyone holding the checkpoint gets x back, without the optimizer that wrote it.
    group, state = saved["param_groups"][0], saved["state"][0]
    beta = group["momentum"] if "momentum" in group else group["betas"][0]
    assert group["train_mode"] is True
    x = saved_model[0] + (1 - 1 / beta) * (state["z"] - saved_model[0])
    torch.testing.assert_close(x, evaluation_weights, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("name", list(GRIDS))
def test_stepping_in_eval_mode_is_refused_before_any_change(name):
    param = torch.ones(3, requires_grad=True)
    optimizer = getattr(descend, name)([param])
    param.grad = torch.ones(3)
    optimizer.step()
    optimizer.eval()
    before = param.detach().clone()
    with pytest.raises(RuntimeError, match=r"eval mode .* call optimizer.train\(\)"):
        optimizer.step()
    assert torch.equal(param, before) and optimizer.param_groups[0]["k"] == 1


@pytest.mark.parametrize("name", list(GRIDS))
def test_checkpoints_load_both_ways_with_schedulefree(name):
    shapes = [(3, 4), (6,)]
    gradients = _gradients(20, shapes, torch.float64)
    ours_params = make_params(shapes, torch.float64, seed=8)
    theirs_params = [p.detach().clone().requires_grad_() for p in ours_params]
    ours = getattr(descend, name)(ours_params, lr=0.02)
    theirs = reference(name, theirs_params, lr=0.02)
    _train(ours, ours_params, gradients[:10])
    _train(theirs, theirs_params, gradients[:10])
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    ours.load_state_dict(theirs_state)
    theirs.load_state_dict(ours_state)
    _train(ours, ours_params, gradients[10:])
    _train(theirs, theirs_params, gradients[10:])
    for a, b in zip(ours_params, theirs_params, strict=True):
        assert relative_error(a, b) <= TOLERANCE[torch.float64]


def test_uniform_weights_make_x_the_mean_of_the_z_iterates():
    # With r = 0 and weight_lr_power = 0 every weight is 1, so c_t = 1 / t and x_t is the
    # plain average of z_1 ... z_t (the theory's Polyak average of the base sequence).
    param = torch.randn(5, dtype=torch.float64, requires_grad=True)
    optimizer = descend.SGDScheduleFree([param], lr=0.1, momentum=0.8, weight_lr_power=0.0)
    generator = torch.Generator().manual_seed(0)
    iterates = []
    for _ in range(25):
        param.grad = torch.randn(5, dtype=torch.float64, generator=generator)
        optimizer.step()
        iterates.append(optimizer.state[param]["z"].clone())
    with evaluation_mode(optimizer):
        torch.testing.assert_close(
            param.detach(), torch.stack(iterates).mean(0), rtol=1e-12, atol=1e-12
        )
    assert optimizer.param_groups[0]["train_mode"] is True


def test_evaluation_mode_switches_only_optimizers_that_have_modes():
    param = torch.ones(2, requires_grad=True)
    plain = torch.optim.SGD([param], lr=0.1)
    with evaluation_mode(plain) as inside:
        assert inside is plain
    theirs = schedulefree.SGDScheduleFree([param])
    with evaluation_mode(theirs):
        assert theirs.param_groups[0]["train_mode"] is False
    assert theirs.param_groups[0]["train_mode"] is False  # it was in eval mode before
    theirs.train()
    with evaluation_mode(theirs):
        assert theirs.param_groups[0]["train_mode"] is False
    assert theirs.param_groups[0]["train_mode"] is True


@pytest.mark.parametrize("name", list(GRIDS))
def test_complex_parameters_are_refused(name):
    with pytest.raises(ValueError, match="is a complex tensor"):
        getattr(descend, name)([torch.zeros(2, dtype=torch.complex64, requires_grad=True)])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"momentum": 1.0}, "momentum=1.0 is out of range: expected 0 < momentum < 1"),
        ({"momentum": 0.0}, "momentum=0.0 is out of range"),
        ({"warmup_steps": 2.5}, "warmup_steps=2.5 is invalid: expected an integer"),
        ({"lr": -1.0}, "lr=-1.0 is out of range"),
    ],
)
def test_bad_arguments_are_named(kwargs, fragment):
    with pytest.raises(ValueError) as error:
        descend.SGDScheduleFree([torch.zeros(2, requires_grad=True)], **kwargs)
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("name", "cls", "options", "config"),
    [
        (
            "sf_sgd",
            descend.SGDScheduleFree,
            dict(lr=0.1, warmup_steps=3),
            {"learning_rate": 0.1, "warmup_steps": 3},
        ),
        (
            "sf_adamw",
            descend.AdamWScheduleFree,
            dict(lr=0.01, weight_decay=0.1),
            {"learning_rate": 0.01, "weight_decay": 0.1},
        ),
    ],
)
def test_functional_form_runs_the_same_rule_as_the_class(name, cls, options, config):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(6)
    param = torch.tensor(w, requires_grad=True)
    optimizer = cls([param], **options)
    for dw in rng.standard_normal((25, 6)):
        w, config = functional.UPDATES[name](w, dw, config)
        param.grad = torch.tensor(dw)
        optimizer.step()
    np.testing.assert_allclose(w, param.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert config["k"] == 25
