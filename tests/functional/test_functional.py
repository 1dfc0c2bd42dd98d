"""The NumPy functional API against the notes' closed forms and the course's conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import descend
from descend import functional

vectors = st.integers(1, 20).flatmap(
    lambda n: st.tuples(
        arrays(np.float64, n, elements=st.floats(-5, 5)),
        arrays(np.float64, n, elements=st.floats(-5, 5)),
    )
)


def _run(update, w, gradients, config):
    for dw in gradients:
        w, config = update(w, dw, config)
    return w, config


@settings(max_examples=50, deadline=None)
@given(vectors, st.floats(1e-4, 1.0))
def test_sgd(pair, lr):
    w, dw = pair
    next_w, _ = functional.sgd(w, dw, {"learning_rate": lr})
    np.testing.assert_allclose(next_w, w - lr * dw, rtol=1e-12, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(vectors, st.floats(1e-4, 1.0), st.floats(0, 0.99))
def test_sgd_momentum_velocity_form(pair, lr, rho):
    w, dw = pair
    v0 = np.full_like(w, 0.3)
    next_w, config = functional.sgd_momentum(
        w, dw, {"learning_rate": lr, "momentum": rho, "velocity": v0}
    )
    v = rho * v0 - lr * dw
    np.testing.assert_allclose(config["velocity"], v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(next_w, w + v, rtol=1e-12, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(vectors, st.floats(1e-4, 1.0), st.floats(0, 0.99))
def test_nesterov_change_of_variables_form(pair, lr, rho):
    w, dw = pair
    v0 = np.full_like(w, -0.2)
    next_w, config = functional.nesterov_momentum(
        w, dw, {"learning_rate": lr, "momentum": rho, "velocity": v0}
    )
    v = rho * v0 - lr * dw
    np.testing.assert_allclose(next_w, w - rho * v0 + (1 + rho) * v, rtol=1e-10, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(vectors, st.floats(1e-4, 1.0))
def test_adagrad(pair, lr):
    w, dw = pair
    cache = np.full_like(w, 0.5)
    next_w, config = functional.adagrad(w, dw, {"learning_rate": lr, "cache": cache})
    h = cache + dw * dw
    np.testing.assert_allclose(config["cache"], h)
    np.testing.assert_allclose(next_w, w - lr * dw / (np.sqrt(h) + 1e-8), rtol=1e-12, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(vectors, st.floats(1e-4, 1.0), st.floats(0, 0.999))
def test_rmsprop(pair, lr, rho):
    w, dw = pair
    cache = np.full_like(w, 0.5)
    next_w, config = functional.rmsprop(
        w, dw, {"learning_rate": lr, "decay_rate": rho, "cache": cache}
    )
    h = rho * cache + (1 - rho) * dw * dw
    np.testing.assert_allclose(config["cache"], h, rtol=1e-12)
    np.testing.assert_allclose(next_w, w - lr * dw / (np.sqrt(h) + 1e-8), rtol=1e-12, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(vectors, st.integers(0, 50))
def test_adam_with_bias_correction_from_t_equals_one(pair, t_before):
    w, dw = pair
    m0, v0 = np.full_like(w, 0.1), np.full_like(w, 0.2)
    next_w, config = functional.adam(w, dw, {"m": m0, "v": v0, "t": t_before})
    t = t_before + 1
    m = 0.9 * m0 + 0.1 * dw
    v = 0.999 * v0 + 0.001 * dw * dw
    m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
    assert config["t"] == t
    np.testing.assert_allclose(config["m"], m, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        next_w, w - 1e-3 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-10, atol=1e-12
    )


def test_first_adam_update_starts_from_zero_state_and_t_one():
    w, dw = np.array([1.0, -2.0]), np.array([0.5, -4.0])
    next_w, config = functional.adam(w, dw)
    assert config["t"] == 1
    # At t = 1 the bias-corrected step is lr * g / (|g| + eps): lr times the sign.
    np.testing.assert_allclose(next_w, w - 1e-3 * np.sign(dw), rtol=1e-6)
    assert config["learning_rate"] == 1e-3 and config["beta1"] == 0.9


def test_adamw_decays_weights_decoupled():
    w, dw = np.array([2.0]), np.array([0.0])
    next_w, _ = functional.adamw(w, dw, {"learning_rate": 0.1, "weight_decay": 0.5})
    assert next_w[0] == pytest.approx(2.0 * (1 - 0.1 * 0.5))


@pytest.mark.parametrize("name", list(functional.UPDATES))
def test_inputs_are_never_mutated(name):
    w = np.linspace(-1, 1, 6).reshape(2, 3)  # 2-D: every update takes it (Muon needs it)
    dw = np.linspace(2, -2, 6).reshape(2, 3)
    update = functional.UPDATES[name]
    _, config = update(w, dw)
    state_before = {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in config.items()}
    w_before, dw_before = w.copy(), dw.copy()
    update(w, dw, config)
    np.testing.assert_array_equal(w, w_before)
    np.testing.assert_array_equal(dw, dw_before)
    for key, value in state_before.items():
        np.testing.assert_array_equal(config[key], value)


@pytest.mark.parametrize(
    ("name", "optimizer", "config", "options"),
    [
        ("adam", descend.Adam, {"learning_rate": 0.01}, {"lr": 0.01}),
        (
            "rmsprop",
            descend.RMSprop,
            {"learning_rate": 0.01, "decay_rate": 0.9},
            {"lr": 0.01, "alpha": 0.9},
        ),
        ("adagrad", descend.Adagrad, {"learning_rate": 0.1, "epsilon": 1e-10}, {"lr": 0.1}),
        ("sgd_momentum", descend.Momentum, {"learning_rate": 0.01}, {"lr": 0.01}),
        ("nesterov_momentum", descend.Nesterov, {"learning_rate": 0.01}, {"lr": 0.01}),
    ],
)
def test_functional_and_torch_front_ends_run_the_same_rule(name, optimizer, config, options):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(6)
    gradients = rng.standard_normal((25, 6))
    w_functional, _ = _run(functional.UPDATES[name], w, gradients, dict(config))
    param = torch.tensor(w, requires_grad=True)
    torch_optimizer = optimizer([param], **options)
    for dw in gradients:
        param.grad = torch.tensor(dw)
        torch_optimizer.step()
    np.testing.assert_allclose(w_functional, param.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_float32_weights_stay_float32():
    w = np.ones(3, dtype=np.float32)
    next_w, config = functional.adam(w, np.ones(3, dtype=np.float32))
    assert next_w.dtype == np.float32 and config["m"].dtype == np.float32


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (
            lambda: functional.adam(np.ones(2), np.ones(2), {"learning_rat": 1e-3}),
            "unknown config key(s) learning_rat",
        ),
        (
            lambda: functional.sgd(np.ones(2), np.ones(2), {"momentum": 0.9}),
            "unknown config key(s) momentum",
        ),
        (lambda: functional.adam(np.ones(2), np.ones(2), {"beta1": 1.0}), "beta1=1.0"),
        (lambda: functional.rmsprop(np.ones(2), np.ones(2), {"learning_rate": -1}), "lr=-1"),
        (lambda: functional.sgd(np.ones(2), np.ones(3)), "dw has shape (3,)"),
        (lambda: functional.adam(np.ones(2), np.ones(2), {"m": np.ones(3)}), "m has shape"),
        (lambda: functional.adam(np.ones(2), np.ones(2), {"t": -5}), "t=-5"),
    ],
)
def test_bad_config_is_named(call, fragment):
    with pytest.raises(ValueError) as error:
        call()
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (0.01, "config must be a dict or None, got float"),
        (0, "config must be a dict or None, got int"),
        ([("t", 1)], "config must be a dict or None, got list"),
        ({"t": 1.5}, "t=1.5 is invalid"),  # was truncated to 1
        ({"t": float("inf")}, "t=inf is invalid"),  # was an OverflowError
        ({"t": float("nan")}, "t=nan is invalid"),
        ({"t": -1}, "t=-1 is invalid"),
        ({"t": True}, "t=True is invalid"),
        ({"t": "3"}, "t='3' is invalid"),
    ],
)
def test_a_config_or_step_count_of_the_wrong_kind_is_named(config, fragment):
    with pytest.raises(ValueError) as error:
        functional.adam(np.ones(2), np.ones(2), config)
    assert fragment in str(error.value)


def test_a_whole_step_count_of_any_number_type_is_the_same_count():
    expected, _ = functional.adam(np.ones(2), np.full(2, 0.5), {"t": 3})
    for t in (3.0, np.int64(3), np.float32(3)):
        np.testing.assert_array_equal(
            functional.adam(np.ones(2), np.full(2, 0.5), {"t": t})[0], expected
        )


@pytest.mark.parametrize("shape", [(2, 0), (0, 0), (0, 3)])
def test_muon_steps_an_empty_matrix_to_itself(shape):
    # torch.optim.Muon steps these with its "match_rms_adamw" scaling; its default scaling
    # divides by the column count (ZeroDivisionError on (2, 0)), as the functional one did.
    p = torch.nn.Parameter(torch.ones(shape))
    optimizer = torch.optim.Muon([p], lr=0.1, adjust_lr_fn="match_rms_adamw")
    p.grad = torch.ones(shape)
    optimizer.step()
    for adjust in (None, "match_rms_adamw"):
        w, config = functional.muon(np.ones(shape), np.ones(shape), {"adjust_lr_fn": adjust})
        assert w.shape == tuple(p.shape) and config["momentum_buffer"].shape == shape
        w, config = functional.muon(w, np.ones(shape), config)  # and again, from its state
        assert w.shape == shape


@pytest.mark.parametrize("shape", [(4, 3), (6,)])
@pytest.mark.parametrize(
    "config, options",
    [
        # The rule scales the vectors' rate by lr_1d_factor (1 here); the class takes lr_1d.
        ({"learning_rate": 0.01}, {"lr": 0.01, "lr_1d": 0.01}),
        (
            {"learning_rate": 0.01, "gamma": 0.1, "weight_decay": 0.05, "ams_bound": True},
            {"lr": 0.01, "lr_1d": 0.01, "gamma": 0.1, "weight_decay": 0.05, "ams_bound": True},
        ),
        (
            {"learning_rate": 0.02, "optimize_1d": True, "beta1": 0.9},
            {"lr": 0.02, "optimize_1d": True, "betas": (0.9, 0.99)},
        ),
    ],
)
def test_mars_functional_runs_the_class_rule_with_its_norm_clip(shape, config, options):
    """The stage (correction, clip to norm 1) between the elementwise parts, and for an array of
    one dimension the AdamW fallback the class gives vectors (unless optimize_1d)."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal(shape)
    gradients = 3 * rng.standard_normal((25, *shape))
    w_functional, state = _run(functional.mars, w, gradients, dict(config))
    param = torch.tensor(w, requires_grad=True)
    optimizer = descend.MARS([param], **options)
    for dw in gradients:
        param.grad = torch.tensor(dw)
        optimizer.step()
    np.testing.assert_allclose(w_functional, param.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(state["g_prev"], gradients[-1])
    assert state["t"] == len(gradients)
