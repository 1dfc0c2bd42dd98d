"""descend.AdEMAMix against pytorch_optimizer's AdEMAMix (same arguments, same numbers, same
state), against torch.optim.Adam where theory says they agree (alpha = 0), and its warm-up
schedulers against their closed forms."""

from __future__ import annotations

import copy
import inspect
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_optimizer import AdEMAMix as ReferenceAdEMAMix

import descend
from descend import functional
from descend.rules.ademamix import alpha_schedule, beta3_schedule
from descend.testing import TOLERANCE, run_side_by_side

SHAPES = [(), (1,), (7, 3), (5,), (2, 3, 4), (4, 2, 3, 3), (33,)]
GRID = dict(
    lr=[0.01],
    alpha=[5.0, 0.5],
    t_alpha_beta3=[None, 40.0],
    weight_decay=[0.0, 0.1],
    weight_decouple=[False, True],
    maximize=[False, True],
)
OPTIONS = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
#: The reference counts steps per group and descend per parameter (as torch.optim does), so
#: parameters skip no step here except parameter 1, which never has a gradient.
NO_SKIPS = None


def reference(params, **options):
    # foreach=False: the reference's per-parameter loop (its foreach path computes the same).
    return ReferenceAdEMAMix(params, foreach=False, **options)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "options", OPTIONS, ids=["-".join(f"{k}={v}" for k, v in o.items()) for o in OPTIONS]
)
def test_every_option_matches_pytorch_optimizer(options, dtype, backend):
    groups = [{}, {"lr": options["lr"] * 0.5, "betas": (0.8, 0.99, 0.999)}]
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend.AdEMAMix(params, backend=backend, **options),
        lambda params: reference(params, **options),
        SHAPES,
        dtype,
        steps=100,
        group_options=groups,
        missing_grad_every=NO_SKIPS,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_defaults_with_decoupled_decay_match_pytorch_optimizer(backend):
    options = dict(weight_decay=0.01, weight_decouple=True, fixed_decay=True, t_alpha_beta3=30)
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend.AdEMAMix(params, backend=backend, **options),
        lambda params: reference(params, **options),
        SHAPES,
        torch.float64,
        steps=60,
        missing_grad_every=NO_SKIPS,
    )
    assert param_error <= TOLERANCE[torch.float64]
    assert state_error <= TOLERANCE[torch.float64]


@settings(max_examples=20, deadline=None)
@given(
    st.floats(1e-4, 0.1),
    st.floats(0.0, 0.99),
    st.floats(0.0, 0.999),
    st.floats(0.5, 1.0),
    st.floats(0.0, 10.0),
    st.one_of(st.none(), st.floats(1.0, 100.0)),
    st.sampled_from([torch.float32, torch.float64]),
    st.integers(0, 999),
)
def test_random_settings_match_pytorch_optimizer(
    lr, beta1, beta2, beta3, alpha, warmup, dtype, seed
):
    # beta3 >= beta1 > 0 keeps the reference's scheduler finite (it takes log(beta1)).
    beta1, beta3 = max(beta1, 1e-3), max(beta3, beta1)
    options = dict(lr=lr, betas=(beta1, beta2, beta3), alpha=alpha, t_alpha_beta3=warmup)
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend.AdEMAMix(params, **options),
        lambda params: reference(params, **options),
        [(4, 3), (6,)],
        dtype,
        steps=20,
        seed=seed,
        missing_grad_every=NO_SKIPS,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]


def test_a_wrong_formula_is_caught_at_this_tolerance():
    # The same comparison against a reference whose slow momentum weighs 1% more must fail:
    # the tolerance above is tight enough to see a wrong coefficient.
    param_error, *_ = run_side_by_side(
        lambda params: descend.AdEMAMix(params, alpha=5.0),
        lambda params: reference(params, alpha=5.05),
        SHAPES,
        torch.float64,
        steps=20,
        missing_grad_every=NO_SKIPS,
        compare_state=False,
    )
    assert param_error > 1e3 * TOLERANCE[torch.float64]


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_without_the_slow_momentum_it_is_adam(backend):
    # alpha = 0 drops m2 from the numerator: the step is Adam's, whatever beta3 does.
    param_error, *_ = run_side_by_side(
        lambda params: descend.AdEMAMix(params, lr=0.01, alpha=0.0, backend=backend),
        lambda params: torch.optim.Adam(params, lr=0.01),
        SHAPES,
        torch.float64,
        steps=50,
        missing_grad_every=NO_SKIPS,
        compare_state=False,
    )
    assert param_error <= 1e-12


# alpha is 0 or a normal float: a subnormal alpha (2.2e-313) carries too few significant bits
# for alpha t / T to hold a relative tolerance, and means nothing as a weight.
ALPHAS = st.one_of(st.just(0.0), st.floats(1e-300, 10.0))


@given(st.floats(0.01, 0.99), st.floats(0.0, 1.0), st.floats(1.0, 1e5), ALPHAS)
def test_the_warm_up_schedulers_match_their_closed_forms(beta1, share, warmup, alpha):
    beta3 = beta1 + share * (0.99999 - beta1)
    hypers = dict(beta1=beta1, beta3=beta3, alpha=alpha, t_alpha_beta3=warmup)
    # beta3_t starts at beta1 and ends at beta3; the half-life 1 / -ln(beta3_t) grows linearly.
    assert math.isclose(beta3_schedule(hypers, 0), beta1, rel_tol=1e-12)
    assert math.isclose(beta3_schedule(hypers, warmup), beta3, rel_tol=1e-12)
    middle = beta3_schedule(hypers, warmup / 2)
    expected = 0.5 / -math.log(beta1) + 0.5 / -math.log(beta3)
    assert math.isclose(1 / -math.log(middle), expected, rel_tol=1e-9)
    assert math.isclose(beta3_schedule(hypers, 2 * warmup), beta3, rel_tol=1e-12)
    assert beta3_schedule(hypers, 2 * warmup) <= beta3
    # alpha_t rises linearly to alpha, then stays.
    assert math.isclose(alpha_schedule(hypers, warmup / 4), alpha / 4, rel_tol=1e-12)
    assert alpha_schedule(hypers, 3 * warmup) == alpha
    no_warmup = dict(hypers, t_alpha_beta3=None)
    assert alpha_schedule(no_warmup, 1) == alpha and beta3_schedule(no_warmup, 1) == beta3


def test_constructor_signature_and_defaults_match_pytorch_optimizer():
    ours = inspect.signature(descend.AdEMAMix.__init__).parameters
    theirs = inspect.signature(ReferenceAdEMAMix.__init__).parameters
    for name, parameter in theirs.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        assert name in ours and ours[name].default == parameter.default, name
    param = torch.zeros(3, requires_grad=True)
    assert descend.AdEMAMix([param]).defaults["betas"] == (0.9, 0.999, 0.9999)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(betas=(0.9, 0.999, 1.5)), "betas[2]=1.5"),
        (dict(alpha=-1.0), "alpha=-1.0"),
        (dict(t_alpha_beta3=-5), "t_alpha_beta3=-5"),
        (dict(t_alpha_beta3=0), r"t_alpha_beta3=0 is out of range: expected None or 0 < "),
        (dict(lr=-0.1), "lr=-0.1"),
    ],
)
def test_bad_arguments_name_the_value_and_the_range(options, message):
    param = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=message.replace("[2]", r"\[2\]")):
        descend.AdEMAMix([param], **options)


def test_checkpoints_load_into_the_reference_and_back():
    torch.manual_seed(0)
    ours_params = [torch.randn(4, 3, requires_grad=True)]
    ours = descend.AdEMAMix(ours_params, lr=0.01, t_alpha_beta3=10)
    for _ in range(5):
        ours_params[0].grad = torch.randn(4, 3)
        ours.step()
    theirs_params = [ours_params[0].detach().clone().requires_grad_()]
    theirs = ReferenceAdEMAMix(theirs_params, lr=0.01, t_alpha_beta3=10, foreach=False)
    # A copy: torch's load_state_dict keeps tensors of the right dtype as they are, so both
    # optimizers would otherwise step the same moment tensors.
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))
    theirs.param_groups[0]["step"] = 5  # the reference counts per group
    gradient = torch.randn(4, 3)
    ours_params[0].grad, theirs_params[0].grad = gradient.clone(), gradient.clone()
    ours.step()
    theirs.step()
    torch.testing.assert_close(ours_params[0], theirs_params[0], rtol=1e-6, atol=1e-7)


def test_the_functional_form_steps_as_the_class():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(6)
    param = torch.tensor(w, requires_grad=True)
    optimizer = descend.AdEMAMix([param], lr=0.01, t_alpha_beta3=5)
    config = {"learning_rate": 0.01, "t_alpha_beta3": 5.0}
    for _ in range(8):
        g = rng.standard_normal(6)
        param.grad = torch.tensor(g)
        optimizer.step()
        w, config = functional.ademamix(w, g, config)
    np.testing.assert_allclose(w, param.detach().numpy(), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(
    "beta1, beta3, expected",
    [(0.0, 0.9999, 0.9999**4), (0.9, 0.0, 0.0), (0.0, 0.0, 0.0)],
)
def test_the_slow_rate_scheduler_takes_its_limits_at_a_zero_rate(beta1, beta3, expected):
    # A zero rate is in range; its logarithm is -inf, and the scheduler takes the formula's
    # limit: beta3^(T/t) when beta1 = 0, and 0 when beta3 = 0.
    hypers = dict(beta1=beta1, beta3=beta3, alpha=5.0, t_alpha_beta3=100.0)
    assert math.isclose(beta3_schedule(hypers, 25), expected, rel_tol=1e-12)
