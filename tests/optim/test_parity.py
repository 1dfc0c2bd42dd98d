"""descend's drop-in classes against torch.optim: same arguments, same numbers, same state."""

from __future__ import annotations

import inspect

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from descend.testing import (
    OPTION_GRID,
    TOLERANCE,
    descend_class,
    option_combinations,
    run_side_by_side,
    torch_class,
)

SHAPES = [(), (1,), (7, 3), (5,), (2, 3, 4), (33,)]
CASES = [(name, options) for name in OPTION_GRID for options in option_combinations(name)]


BACKENDS = ["reference", "fused"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    ("name", "options"),
    CASES,
    ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in CASES],
)
@pytest.mark.slow
def test_every_option_combination_matches_torch(name, options, dtype, backend):
    # Two groups: the second overrides the learning rate, as users do for heads and biases.
    groups = [{}, {"lr": options["lr"] * 0.5}]
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend_class(name)(params, backend=backend, **options),
        lambda params: torch_class(name)(params, **options),
        SHAPES,
        dtype,
        steps=100,
        group_options=groups,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]


@pytest.mark.parametrize("name", list(OPTION_GRID))
def test_constructor_signature_and_defaults_match_torch(name):
    ours = inspect.signature(descend_class(name).__init__).parameters
    theirs = inspect.signature(torch_class(name).__init__).parameters
    for parameter_name, parameter in theirs.items():
        assert parameter_name in ours, parameter_name
        assert ours[parameter_name].default == parameter.default, parameter_name
        assert ours[parameter_name].kind == parameter.kind, parameter_name


@pytest.mark.parametrize("name", list(OPTION_GRID))
def test_param_group_keys_match_torch(name):
    param = torch.zeros(3, requires_grad=True)
    ours = descend_class(name)([param]).param_groups[0]
    theirs = torch_class(name)([param]).param_groups[0]
    assert set(theirs) <= set(ours)
    assert {key: ours[key] for key in theirs if key != "params"} == {
        key: value for key, value in theirs.items() if key != "params"
    }


@st.composite
def random_problem(draw):
    name = draw(st.sampled_from(list(OPTION_GRID)))
    options = draw(st.sampled_from(option_combinations(name)))
    options["lr"] = draw(st.floats(1e-4, 0.1))
    if name == "SGD" and options["momentum"]:
        options["momentum"] = draw(st.floats(0.1, 0.99))
    if name in ("Adam", "AdamW"):
        options["betas"] = (draw(st.floats(0.0, 0.99)), draw(st.floats(0.5, 0.9999)))
        options["eps"] = draw(st.sampled_from([1e-8, 1e-6, 1e-3]))
    if name == "RMSprop":
        options["alpha"] = draw(st.floats(0.5, 0.999))
    shapes = draw(
        st.lists(
            st.lists(st.integers(0, 6), min_size=0, max_size=3).map(tuple), min_size=1, max_size=5
        )
    )
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    steps = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2**16))
    backend = draw(st.sampled_from(BACKENDS))
    return name, options, shapes, dtype, steps, seed, backend


@settings(max_examples=60, deadline=None)
@given(random_problem())
def test_random_problems_match_torch(problem):
    name, options, shapes, dtype, steps, seed, backend = problem
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend_class(name)(params, backend=backend, **options),
        lambda params: torch_class(name)(params, **options),
        shapes,
        dtype,
        steps=steps,
        seed=seed,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]


def test_tensor_learning_rate_is_accepted_like_torch():
    # torch keeps a tensor lr in its own (float32) precision while descend reads its value, so
    # the two agree to float32 precision whatever the parameters' dtype.
    param_error, *_ = run_side_by_side(
        lambda params: descend_class("Adam")(params, lr=torch.tensor(0.01)),
        lambda params: torch_class("Adam")(params, lr=torch.tensor(0.01)),
        [(4, 4)],
        torch.float32,
        steps=10,
    )
    assert param_error <= TOLERANCE[torch.float32]
