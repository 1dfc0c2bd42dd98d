"""descend.MARS against pytorch_optimizer's MARS (``mars_type="adamw"``: same arguments, same
numbers, same state), on every executor, through checkpoints; and its refusals."""

from __future__ import annotations

import copy
import inspect
import textwrap
from pathlib import Path

import pytest
import torch
from pytorch_optimizer import MARS as ReferenceMARS

import descend
from descend.testing import run_side_by_side
from tests.interpreter import run_under_triton_interpreter

ROOT = Path(__file__).resolve().parents[2]
#: Convolution weights, linear weights (corrected and clipped), vectors and a scalar (AdamW's
#: unless optimize_1d).
SHAPES = [(4, 3, 3, 3), (6, 5), (5,), (3, 4, 2, 2), (7,), (2, 9), (), (8, 3)]
#: The reference computes in the same order (a norm per tensor, then elementwise operations),
#: so only roundings of the last place differ.
TOLERANCE = 1e-10
OPTIONS = {
    "defaults": {},
    "optimize_1d, ams_bound, decay": dict(optimize_1d=True, ams_bound=True, weight_decay=0.1),
    "coupled decay, maximize, gamma": dict(
        weight_decouple=False, weight_decay=0.1, weight_decay_1d=0.05, maximize=True, gamma=0.1
    ),
    "fixed decay, 1-D rates": dict(
        fixed_decay=True, weight_decay=0.01, lr=1e-2, lr_1d=5e-3, betas_1d=(0.8, 0.9)
    ),
}
#: The second group's own settings.
SECOND_GROUP = {"lr": 1e-3, "betas": (0.9, 0.95), "weight_decay_1d": 0.02}
#: The reference counts steps per group and descend per parameter (as torch.optim does), so
#: no parameter skips a step here except parameter 1, which never has a gradient.
NO_SKIPS = None


def side_by_side(options: dict, backend: str = "auto", foreach: bool | None = None, **kwargs):
    """Both optimizers on the same gradients for 100 steps (see ``run_side_by_side``)."""
    return run_side_by_side(
        lambda params: descend.MARS(params, backend=backend, **options),
        lambda params: ReferenceMARS(params, foreach=foreach, **options),
        SHAPES,
        torch.float64,
        steps=kwargs.get("steps", 100),
        group_options=[{}, SECOND_GROUP],
        missing_grad_every=NO_SKIPS,
    )


#: One case in the fast lane; the others (a second or more each) are slow.
CASES = [
    (name, backend)
    if (name, backend) == ("coupled decay, maximize, gamma", "reference")
    else pytest.param(name, backend, marks=pytest.mark.slow)
    for name in OPTIONS
    for backend in ("reference", "fused")
]


@pytest.mark.parametrize(("name", "backend"), CASES)
def test_every_option_matches_pytorch_optimizer(name, backend):
    result = side_by_side(OPTIONS[name], backend)
    assert result.param_error <= TOLERANCE and result.state_error <= TOLERANCE, result[:2]


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (6, 5)])
def test_a_large_corrected_gradient_is_clipped_to_norm_one(shape):
    # On the first step c = (1 + gamma beta1 / (1 - beta1)) g; clipped to norm 1, a gradient
    # and ten times it give the same step (a vector, not clipped, would not).
    def first_step(scale):
        param = torch.ones(shape, dtype=torch.float64, requires_grad=True)
        optimizer = descend.MARS([param], lr=0.1)
        generator = torch.Generator().manual_seed(0)
        param.grad = scale * torch.randn(shape, dtype=torch.float64, generator=generator)
        optimizer.step()
        return param.detach().clone(), optimizer.state[param]["exp_avg"]

    (small, momentum), (large, _) = first_step(1.0), first_step(10.0)
    # (Equal up to the rounding of 10 g and of the norm; without the clip, eps would weigh
    # ten times less against the larger gradient: relative differences of 1e-8 and more.)
    torch.testing.assert_close(small, large, rtol=1e-12, atol=0.0)
    # exp_avg = (1 - beta1) c with ||c|| = 1.
    assert torch.linalg.vector_norm(momentum).item() == pytest.approx(0.05, rel=1e-12)


@pytest.mark.slow
def test_the_reference_s_loop_path_matches_too():
    # foreach=False: the reference's per-parameter loop (its CPU default is the foreach path).
    result = side_by_side(OPTIONS["optimize_1d, ams_bound, decay"], foreach=False)
    assert result.param_error <= TOLERANCE and result.state_error <= TOLERANCE


def test_a_wrong_formula_is_caught_at_this_tolerance():
    # A reference whose correction is 1e-4 stronger must fail the tolerance above by far.
    result = run_side_by_side(
        lambda params: descend.MARS(params, gamma=0.025),
        lambda params: ReferenceMARS(params, gamma=0.025 * (1 + 1e-4)),
        SHAPES,
        torch.float64,
        steps=20,
        missing_grad_every=NO_SKIPS,
        compare_state=False,
    )
    assert result.param_error > 1e3 * TOLERANCE


def test_vectors_run_plain_adamw_with_their_own_rates():
    # With optimize_1d False a vector's step must not depend on gamma or lr (only lr_1d and
    # betas_1d), and a matrix's must.
    def final(**options):
        generator = torch.Generator().manual_seed(3)
        vector = torch.zeros(6, dtype=torch.float64, requires_grad=True)
        matrix = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
        optimizer = descend.MARS([vector, matrix], **options)
        for _ in range(5):
            vector.grad = torch.randn(6, dtype=torch.float64, generator=generator)
            matrix.grad = torch.randn(3, 2, dtype=torch.float64, generator=generator)
            optimizer.step()
        return vector.detach().clone(), matrix.detach().clone()

    base = final(lr=1e-2, lr_1d=1e-2)
    other_gamma = final(lr=1e-2, lr_1d=1e-2, gamma=0.5)
    assert torch.equal(base[0], other_gamma[0]) and not torch.equal(base[1], other_gamma[1])
    other_1d = final(lr=1e-2, lr_1d=2e-2, betas_1d=(0.5, 0.9))
    assert not torch.equal(base[0], other_1d[0]) and torch.equal(base[1], other_1d[1])


def run(backend: str, dtype: torch.dtype, steps: int, checkpoint_at: int | None = None):
    """Parameters and state of a descend.MARS run; with ``checkpoint_at``, the optimizer is
    rebuilt from its state dict (a deep copy) at that step and the run continues in it."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, dtype=dtype, generator=generator) for shape in SHAPES]
    params = [p.requires_grad_() for p in params]

    def make():
        groups = [{"params": params[:4]}, {"params": params[4:], **SECOND_GROUP}]
        return descend.MARS(groups, backend=backend, weight_decay=0.01, ams_bound=True)

    optimizer = make()
    for step in range(steps):
        if step == checkpoint_at:
            saved = copy.deepcopy(optimizer.state_dict())
            optimizer = make()
            optimizer.load_state_dict(saved)
        for param in params:
            param.grad = torch.randn(param.shape, dtype=dtype, generator=generator)
        optimizer.step()
    return [p.detach().clone() for p in params], [dict(optimizer.state[p]) for p in params]


def test_a_checkpoint_mid_run_continues_identically():
    params, states = run("auto", torch.float64, 40)
    resumed, resumed_states = run("auto", torch.float64, 40, checkpoint_at=15)
    for a, b in zip(params, resumed, strict=True):
        assert torch.equal(a, b)
    for state, other in zip(states, resumed_states, strict=True):
        assert state.keys() == other.keys()
        for key in state:
            assert torch.equal(state[key], other[key]), key


@pytest.mark.slow
def test_the_fused_executor_gives_the_reference_executor_s_bits():
    for dtype in (torch.float32, torch.float64):
        params, states = run("reference", dtype, 20)
        fused, fused_states = run("fused", dtype, 20)
        assert all(torch.equal(a, b) for a, b in zip(params, fused, strict=True)), dtype
        for state, other in zip(states, fused_states, strict=True):
            assert all(torch.equal(state[key], other[key]) for key in state), dtype


@pytest.mark.slow  # a fresh process for Triton's interpreter: seconds
def test_triton_interpreter_gives_the_reference_executor_s_bits(tmp_path):
    pytest.importorskip("triton", reason="needs Triton")
    out = tmp_path / "triton.pt"
    script = textwrap.dedent(f"""
        import torch
        from tests.optim.test_mars import run
        torch.save(run("triton", torch.float32, 8), {str(out)!r})
    """)
    done = run_under_triton_interpreter(script, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    triton_params, triton_states = torch.load(out)
    params, states = run("reference", torch.float32, 8)
    for a, b in zip(params, triton_params, strict=True):
        assert torch.equal(a, b)
    for state, other in zip(states, triton_states, strict=True):
        assert all(torch.equal(state[key], other[key]) for key in state)


def test_constructor_signature_and_defaults_match_pytorch_optimizer():
    ours = inspect.signature(descend.MARS.__init__).parameters
    theirs = inspect.signature(ReferenceMARS.__init__).parameters
    for name, parameter in theirs.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        assert name in ours and ours[name].default == parameter.default, name
    param = torch.zeros(3, 2, requires_grad=True)
    ours_group = descend.MARS([param]).param_groups[0]
    theirs_group = ReferenceMARS([param]).param_groups[0]
    for key in ("lr", "lr_1d", "lr_1d_factor", "betas", "betas_1d", "gamma", "weight_decay_1d"):
        assert ours_group[key] == theirs_group[key], key


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(lr=-1.0), r"lr=-1.0"),
        (dict(lr=0.0), r"lr=0 is invalid"),
        (dict(lr_1d=-1.0), r"lr_1d=-1.0"),
        (dict(betas=(0.9, 1.0)), r"betas\[1\]=1.0"),
        (dict(betas_1d=(1.5, 0.9)), r"betas_1d\[0\]=1.5"),
        (dict(gamma=-0.1), r"gamma=-0.1"),
        (dict(mars_type="lion"), r"mars_type='lion'"),
        (dict(weight_decay_1d=-1.0), r"weight_decay_1d=-1.0"),
        (dict(eps=-1.0), r"eps=-1.0"),
        (dict(cautious=True), r"cautious=True"),
    ],
)
def test_bad_arguments_name_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        descend.MARS([torch.zeros(3, requires_grad=True)], **options)
