"""descend.Muon against torch.optim.Muon (the Newton-Schulz iteration in bfloat16, operation for
operation), and its AdamW groups against torch.optim.AdamW."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descend
from descend import functional
from descend.rules.muon import lr_ratio, newton_schulz
from descend.testing import TOLERANCE, relative_error, run_side_by_side

#: Tall, wide and square matrices (the iteration transposes tall ones).
SHAPES = [(7, 3), (4, 9), (5, 5), (3, 3), (6, 2), (1, 8)]
GRID = dict(
    lr=[0.02],
    nesterov=[True, False],
    adjust_lr_fn=[None, "original", "match_rms_adamw"],
    weight_decay=[0.0, 0.1],
    momentum=[0.95, 0.6],
)
OPTIONS = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
FMA = torch.backends.cpu.get_cpu_capability() != "DEFAULT"


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "options", OPTIONS, ids=["-".join(f"{k}={v}" for k, v in o.items()) for o in OPTIONS]
)
@pytest.mark.slow
def test_every_option_matches_torch(options, dtype, backend):
    groups = [{}, {"lr": options["lr"] * 0.5, "ns_steps": 3}]
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend.Muon(params, backend=backend, **options),
        lambda params: torch.optim.Muon(params, **options),
        SHAPES,
        dtype,
        steps=100,
        group_options=groups,
    )
    assert param_error <= TOLERANCE[dtype]
    if FMA:
        # The momentum is torch's bit for bit (the compiled lerp is torch's fused
        # multiply-add), so the bfloat16 iteration starts from the same numbers.
        assert state_error == 0.0
    assert state_error <= TOLERANCE[dtype]


@settings(max_examples=15, deadline=None)
@given(
    st.floats(1e-3, 0.1),
    st.floats(0.0, 0.99),
    st.integers(0, 8),
    st.tuples(st.floats(1.0, 4.0), st.floats(-5.0, -1.0), st.floats(0.5, 2.5)),
    st.sampled_from([torch.float32, torch.float64]),
    st.integers(0, 999),
)
def test_random_settings_match_torch(lr, momentum, ns_steps, coefficients, dtype, seed):
    options = dict(lr=lr, momentum=momentum, ns_steps=ns_steps, ns_coefficients=coefficients)
    param_error, state_error, *_ = run_side_by_side(
        lambda params: descend.Muon(params, **options),
        lambda params: torch.optim.Muon(params, **options),
        [(6, 4), (3, 7)],
        dtype,
        steps=15,
        seed=seed,
    )
    assert param_error <= TOLERANCE[dtype]
    assert state_error <= TOLERANCE[dtype]


def test_constructor_signature_defaults_and_group_keys_match_torch():
    ours = inspect.signature(descend.Muon.__init__).parameters
    theirs = inspect.signature(torch.optim.Muon.__init__).parameters
    for name, parameter in theirs.items():
        assert name in ours and ours[name].default == parameter.default, name
        assert ours[name].kind == parameter.kind, name
    param = torch.zeros(3, 2, requires_grad=True)
    assert descend.Muon([param]).param_groups[0] == torch.optim.Muon([param]).param_groups[0]


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.slow
def test_groups_with_use_muon_false_step_as_torchs_adamw(backend, dtype):
    # A small network's parameters: Muon for the hidden matrix, AdamW for the rest, in one
    # optimizer; the reference is torch.optim.Muon plus torch.optim.AdamW, side by side.
    shapes = [(8, 5), (8,), (3, 8), (3,), (4, 4, 2)]
    hidden = [0, 2]
    generator = torch.Generator().manual_seed(0)
    ours = [torch.randn(s, dtype=dtype, generator=generator).requires_grad_() for s in shapes]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    adamw = dict(lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    optimizer = descend.Muon(
        [
            {"params": [ours[i] for i in hidden], "lr": 0.02},
            {
                "params": [p for i, p in enumerate(ours) if i not in hidden],
                "use_muon": False,
                **adamw,
            },
        ],
        backend=backend,
    )
    muon = torch.optim.Muon([theirs[i] for i in hidden], lr=0.02)
    others = torch.optim.AdamW([p for i, p in enumerate(theirs) if i not in hidden], **adamw)
    for _ in range(50):
        for a, b in zip(ours, theirs, strict=True):
            a.grad = torch.randn(a.shape, dtype=dtype, generator=generator)
            b.grad = a.grad.clone()
        optimizer.step()
        muon.step()
        others.step()
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert relative_error(a, b) <= TOLERANCE[dtype], index
        reference = (muon if index in hidden else others).state[b]
        assert set(optimizer.state[a]) == set(reference)
    auxiliary = optimizer.param_groups[1]
    assert auxiliary["eps"] == 1e-8 and auxiliary["amsgrad"] is False  # AdamW's defaults


def test_other_parameters_are_refused_with_the_way_out_named():
    matrix, bias = torch.zeros(3, 2, requires_grad=True), torch.zeros(3, requires_grad=True)
    with pytest.raises(
        ValueError,
        match=r"\(shape \(3,\)\) is 1-D: Muon updates real 2-D "
        r"parameters only; .* use_muon=False",
    ):
        descend.Muon([matrix, bias])
    with pytest.raises(ValueError, match="is a complex tensor"):
        descend.Muon([torch.zeros(2, 2, dtype=torch.complex64, requires_grad=True)])
    with pytest.raises(ValueError, match="use_muon='no' is invalid"):
        descend.Muon([{"params": [bias], "use_muon": "no"}])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (
            {"adjust_lr_fn": "rms"},
            "adjust_lr_fn='rms' is invalid: expected one of None, 'original', 'match_rms_adamw'",
        ),
        ({"ns_steps": 100}, "ns_steps=100 is out of range: expected 0 <= ns_steps <= 99"),
        ({"ns_coefficients": (1.0, 2.0)}, "ns_coefficients=(1.0, 2.0) is invalid"),
        ({"momentum": -0.1}, "momentum=-0.1"),
    ],
)
def test_bad_arguments_are_named(kwargs, fragment):
    with pytest.raises(ValueError) as error:
        descend.Muon([torch.zeros(2, 2, requires_grad=True)], **kwargs)
    assert fragment in str(error.value)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(2, 24), st.integers(2, 24), st.integers(0, 2**16))
def test_newton_schulz_maps_each_singular_value_through_the_quintic(rows, columns, seed):
    # On U = L diag(s) R^T the iteration keeps L and R and maps each s_i / ||U||_F through
    # p(s) = a s + b s^3 + c s^5 five times: O ~ L diag(p^5(s / ||s||)) R^T, in bfloat16.
    generator = torch.Generator().manual_seed(seed)
    left, _ = torch.linalg.qr(torch.randn(rows, rows, dtype=torch.float64, generator=generator))
    right, _ = torch.linalg.qr(
        torch.randn(columns, columns, dtype=torch.float64, generator=generator)
    )
    rank = min(rows, columns)
    left, right = left[:, :rank], right[:, :rank]
    spectrum = torch.linspace(1.0, 0.3, rank, dtype=torch.float64)
    update = left @ torch.diag(spectrum) @ right.T
    hypers = descend.rules.MUON.validate({})
    # Without the shape's learning-rate ratio (sqrt(rows / columns) for a tall matrix):
    direction = newton_schulz(update, hypers) / lr_ratio(None, (rows, columns))
    predicted = spectrum / spectrum.norm()
    a, b, c = descend.rules.muon.NS_COEFFICIENTS
    for _ in range(descend.rules.muon.NS_STEPS):
        predicted = a * predicted + b * predicted**3 + c * predicted**5
    inner = left.T @ direction @ right
    off_diagonal = inner - torch.diag(torch.diagonal(inner))
    assert off_diagonal.norm() < 0.05 * inner.norm()
    # Five bfloat16 iterations (8-bit significands) drift up to about 0.065 (9 x 2, seed 33);
    # a wrong coefficient moves the values by 0.2 or more.
    torch.testing.assert_close(torch.diagonal(inner), predicted, rtol=0.0, atol=0.08)
    # Every singular value ends between about 0.7 and 1.2: roughly the polar factor L R^T.
    assert predicted.min() > 0.6 and predicted.max() < 1.25


def test_functional_muon_runs_the_same_rule_as_the_class():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3))
    param = torch.tensor(w, requires_grad=True)
    optimizer = descend.Muon([param], lr=0.02, weight_decay=0.0)
    config = {}
    for dw in rng.standard_normal((20, 5, 3)):
        w, config = functional.muon(w, dw, config)
        param.grad = torch.tensor(dw)
        optimizer.step()
    np.testing.assert_allclose(w, param.detach().numpy(), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="expected a 2-D array"):
        functional.muon(np.ones(3), np.ones(3))


def test_split_parameters_gives_matrices_to_muon_and_the_rest_to_adamw():
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    conv_weight, conv_bias, weight, bias = model.parameters()
    groups = descend.Muon.split_parameters(model.parameters())
    assert [len(group["params"]) for group in groups] == [1, 3]
    assert groups[0]["params"][0] is weight and "use_muon" not in groups[0]
    assert groups[1]["use_muon"] is False
    assert {id(p) for p in groups[1]["params"]} == {id(conv_weight), id(conv_bias), id(bias)}
    given = [{"params": [weight]}, {"params": [bias], "use_muon": False}]
    assert descend.Muon.split_parameters(given) == given


def test_a_muon_spec_builds_over_any_model_and_checks_its_arguments():
    from descend.specs import parse_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    optimizer = parse_optimizer("muon:lr=0.02").build(model.parameters())
    assert [(group["lr"], group.get("use_muon", True)) for group in optimizer.param_groups] == [
        (0.02, True),
        (1e-3, False),
    ]
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    with pytest.raises(ValueError, match="ns_steps=-1 is out of range"):
        parse_optimizer("muon:ns_steps=-1")
