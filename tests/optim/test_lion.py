"""descend.Lion against lion-pytorch's Lion: same arguments, same numbers, same state."""

from __future__ import annotations

import copy
import inspect
import itertools

import lion_pytorch
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descend
from descend import functional
from descend.testing import TOLERANCE, run_side_by_side

SHAPES = [(), (1,), (7, 3), (5,), (2, 3, 4), (33,)]
GRID = dict(
    lr=[0.01],
    betas=[(0.9, 0.99), (0.95, 0.98)],
    weight_decay=[0.0, 0.1],
    decoupled_weight_decay=[False, True],
)
OPTIONS = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "options", OPTIONS, ids=["-".join(f"{k}={v}" for k, v in o.items()) for o in OPTIONS]
)
def test_every_option_matches_lion_pytorch(options, dtype, backend):
    groups = [{}, {"lr": options["lr"] * 0.5}]
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend.Lion(params, backend=backend, **options),
        lambda params: lion_pytorch.Lion(params, **options),
        SHAPES,
        dtype,
        steps=100,
        group_options=groups,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]


@settings(max_examples=25, deadline=None)
@given(
    st.floats(1e-4, 0.1),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
    st.booleans(),
    st.sampled_from([torch.float32, torch.float64]),
    st.integers(0, 999),
)
def test_random_settings_match_lion_pytorch(lr, beta1, beta2, weight_decay, decoupled, dtype, seed):
    options = dict(
        lr=lr, betas=(beta1, beta2), weight_decay=weight_decay, decoupled_weight_decay=decoupled
    )
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend.Lion(params, **options),
        lambda params: lion_pytorch.Lion(params, **options),
        [(4, 3), (6,)],
        dtype,
        steps=20,
        seed=seed,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]


def test_constructor_signature_defaults_and_group_keys_match_lion_pytorch():
    ours = inspect.signature(descend.Lion.__init__).parameters
    theirs = inspect.signature(lion_pytorch.Lion.__init__).parameters
    for name, parameter in theirs.items():
        assert name in ours and ours[name].default == parameter.default, name
        assert ours[name].kind == parameter.kind, name
    param = torch.zeros(3, requires_grad=True)
    assert descend.Lion([param]).param_groups[0] == lion_pytorch.Lion([param]).param_groups[0]


@settings(max_examples=30, deadline=None)
@given(st.floats(1e-3, 1.0), st.integers(0, 2**16))
def test_every_coordinate_moves_by_exactly_the_learning_rate(lr, seed):
    # Without decay the step is lr * sign(c): its size does not depend on the gradient's scale.
    generator = torch.Generator().manual_seed(seed)
    param = torch.randn(50, dtype=torch.float64, generator=generator).requires_grad_()
    optimizer = descend.Lion([param], lr=lr)
    for scale in (1e-6, 1.0, 1e6):
        before = param.detach().clone()
        param.grad = scale * torch.randn(50, dtype=torch.float64, generator=generator)
        optimizer.step()
        moved = (param.detach() - before).abs()
        np.testing.assert_allclose(moved.numpy(), lr, rtol=1e-12)


def test_decoupled_setting_survives_copies_and_checkpoints():
    param = torch.ones(4, requires_grad=True)
    optimizer = descend.Lion([param], lr=0.01, weight_decay=1.0, decoupled_weight_decay=True)
    clone = copy.deepcopy(optimizer)
    assert clone.decoupled_weight_decay and clone.initial_lr == 0.01
    fresh = descend.Lion([param], lr=0.01, weight_decay=1.0, decoupled_weight_decay=True)
    fresh.load_state_dict(optimizer.state_dict())
    param.grad = torch.zeros(4)
    fresh.step()
    # Decay lr / lr0 * wd = 1 per step, then the sign step: sign(0) = 0 moves nothing.
    assert torch.equal(param.detach(), torch.zeros(4))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"lr": 0.0}, "lr=0.0 is out of range: expected 0 < lr < inf"),
        ({"betas": (1.5, 0.99)}, "betas[0]=1.5 is out of range: expected 0 <= betas[0] <= 1"),
        ({"weight_decay": -0.1}, "weight_decay=-0.1"),
        ({"decoupled_weight_decay": "yes"}, "decoupled_weight_decay='yes' is invalid"),
    ],
)
def test_bad_arguments_are_named(kwargs, fragment):
    with pytest.raises(ValueError) as error:
        descend.Lion([torch.zeros(2, requires_grad=True)], **kwargs)
    assert fragment in str(error.value)


def test_complex_parameters_are_refused_not_stepped_differently():
    # lion_pytorch takes sgn(z) = z / |z|; stepping real and imaginary parts apart would not.
    with pytest.raises(ValueError, match="is a complex tensor: Lion updates real parameters"):
        descend.Lion([torch.zeros(2, dtype=torch.complex64, requires_grad=True)])


def test_functional_lion_runs_the_same_rule_as_the_class():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(6)
    param = torch.tensor(w, requires_grad=True)
    optimizer = descend.Lion([param], lr=0.01, weight_decay=0.1)
    config = {"learning_rate": 0.01, "weight_decay": 0.1}
    for dw in rng.standard_normal((25, 6)):
        w, config = functional.lion(w, dw, config)
        param.grad = torch.tensor(dw)
        optimizer.step()
    np.testing.assert_allclose(w, param.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert set(config) == {"learning_rate", "beta1", "beta2", "weight_decay", "m"}
