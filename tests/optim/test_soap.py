"""descend.SOAP against pytorch_optimizer's SOAP (same arguments, same numbers, same state:
moments, statistics and eigenbases), and against Adam where theory says they agree: in a
basis that only permutes coordinates, Adam's step is unchanged."""

from __future__ import annotations

import copy
import dataclasses
import inspect

import pytest
import torch
from pytorch_optimizer import SOAP as ReferenceSOAP

import descend
from descend.rules.soap import SOAP as SOAP_RULE
from descend.rules.soap import merged_shape, project
from descend.testing import TOLERANCE, record_parity, relative_error, run_side_by_side

#: A scalar, biases, linear weights and a convolution's weight (out, in, kh, kw).
SHAPES = [(), (6,), (8, 5), (4, 3, 3, 3), (5, 7), (3,)]
#: merge_dims: the reference cannot merge a tensor whose dimensions all fit one (it reshapes
#: it to [1]), so these shapes each keep two dimensions or more at max_precondition_dim=8.
MERGEABLE = [(8, 5), (4, 3, 3, 3), (5, 7), (2, 6, 2, 3)]
#: Each option of the reference at least once.
OPTIONS = [
    ({}, SHAPES),
    (dict(precondition_frequency=1), SHAPES),
    (dict(precondition_1d=True, normalize_gradient=True, shampoo_beta=0.8), SHAPES),
    (dict(maximize=True, correct_bias=False, max_precondition_dim=5), SHAPES),
    (dict(merge_dims=True, max_precondition_dim=8, precondition_frequency=3), MERGEABLE),
    (dict(merge_dims=True, max_precondition_dim=8, data_format="channels_last"), MERGEABLE),
    (dict(weight_decay=0.0, eps=1e-6), SHAPES),
]
#: The reference counts steps per group and descend per parameter (as torch.optim does), so
#: no parameter skips a step here except parameter 1, which never has a gradient.
NO_SKIPS = None
#: Two param groups: the second with its own learning rate and betas.
GROUPS = [{}, {"lr": 1e-3, "betas": (0.9, 0.99)}]
# descend computes each step in the reference's order (the same eigh of the same statistic,
# the same tensordot projections, the reference's float32 QR), so eigenvalue order and
# eigenvector signs come out the same and float64 runs agree to rounding: 1e-10 of each
# tensor's largest magnitude, and in fact bit for bit.
PARITY = 1e-10


def _ids(options):
    return "-".join(f"{key}={value}" for key, value in options.items()) or "defaults"


def _state_error(ours, reference) -> float:
    """The worst relative difference, over all parameters, of the moments, statistics and
    bases: the reference's lists GG and Q against descend's tensors GG_i and Q_i."""
    worst = 0.0

    def observe(mine, theirs):
        nonlocal worst
        assert mine.shape == theirs.shape
        worst = max(worst, relative_error(mine, theirs))

    for ours_param, reference_param in zip(
        (p for group in ours.param_groups for p in group["params"]),
        (p for group in reference.param_groups for p in group["params"]),
        strict=True,
    ):
        ours_state = ours.state.get(ours_param, {})
        reference_state = reference.state.get(reference_param)
        if not reference_state:
            assert not ours_state
            continue
        for key in ("exp_avg", "exp_avg_sq"):
            observe(ours_state[key], reference_state[key])
        for key in ("GG", "Q"):
            for index, theirs in enumerate(reference_state[key]):
                if len(theirs) == 0:
                    assert f"{key}_{index}" not in ours_state
                    continue
                observe(ours_state[f"{key}_{index}"], theirs)
    record_parity(state_error=worst)
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("options, shapes", OPTIONS, ids=[_ids(options) for options, _ in OPTIONS])
def test_every_option_matches_pytorch_optimizer(options, shapes, backend):
    result = run_side_by_side(
        lambda params: descend.SOAP(params, backend=backend, **options),
        lambda params: ReferenceSOAP(params, **options),
        shapes,
        torch.float64,
        steps=100,
        group_options=GROUPS,
        missing_grad_every=NO_SKIPS,
        compare_state=False,  # the reference keeps lists; _state_error reads them
    )
    assert result.param_error <= PARITY
    assert _state_error(result.ours, result.reference) <= PARITY


def test_a_short_run_with_frequent_refreshes_matches_pytorch_optimizer():
    # The fast lane's check: the first basis and two power-iteration refreshes in 6 steps.
    result = run_side_by_side(
        lambda params: descend.SOAP(params, precondition_frequency=2, backend="reference"),
        lambda params: ReferenceSOAP(params, precondition_frequency=2),
        [(6, 4), (5,), (3, 2, 2, 2)],
        torch.float64,
        steps=6,
        group_options=GROUPS,
        missing_grad_every=NO_SKIPS,
        compare_state=False,  # the reference keeps lists; _state_error reads them
    )
    assert result.param_error <= PARITY
    assert _state_error(result.ours, result.reference) <= PARITY


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_defaults_match_pytorch_optimizer(dtype):
    # 12 steps: the first basis (eigh) and a power-iteration refresh (after update 10).
    # The reference executor: the fused one (which compiles kernels) runs in the slow grid.
    result = run_side_by_side(
        lambda params: descend.SOAP(params, backend="reference"),
        ReferenceSOAP,
        SHAPES,
        dtype,
        steps=12,
        group_options=GROUPS,
        missing_grad_every=NO_SKIPS,
        compare_state=False,  # the reference keeps lists; _state_error reads them
    )
    tolerance = PARITY if dtype == torch.float64 else TOLERANCE[dtype]
    assert result.param_error <= tolerance
    assert _state_error(result.ours, result.reference) <= tolerance


def _soap_rotating_back_wrongly() -> type[descend.SOAP]:
    """descend.SOAP rotating the direction back with Q^T instead of Q (Q^T N' Q)."""
    stage = SOAP_RULE.stage
    assert stage is not None

    def wrong_direction(u, g, hypers, state):
        bases = [state.get(f"Q_{index}", []) for index in range(u.dim())]
        exp_avg_sq = state["exp_avg_sq"]
        rotated = project(g, hypers, bases)
        exp_avg_sq.lerp_(rotated * rotated, hypers["w2"])
        denominator = exp_avg_sq.sqrt().add_(hypers["eps"])
        return project(project(u, hypers, bases) / denominator, hypers, bases)

    rule = dataclasses.replace(
        SOAP_RULE, stage=dataclasses.replace(stage, function=wrong_direction)
    )

    class WrongSOAP(descend.SOAP):
        pass

    WrongSOAP.rule = rule
    return WrongSOAP


def test_a_wrong_rotation_is_caught_at_this_tolerance():
    # Rotating back with the wrong side of Q must fail at PARITY by far.
    result = run_side_by_side(
        lambda params: _soap_rotating_back_wrongly()(
            params, precondition_frequency=2, backend="reference"
        ),
        lambda params: ReferenceSOAP(params, precondition_frequency=2),
        SHAPES,
        torch.float64,
        steps=10,
        missing_grad_every=NO_SKIPS,
        compare_state=False,
    )
    assert result.param_error > 1e3 * PARITY


def test_in_a_basis_that_permutes_coordinates_it_is_adam():
    # Diagonal gradients make both statistics diagonal, so every basis (eigh's, then the
    # power iteration's QR) is a signed permutation: rotating into it and back only moves and
    # flips coordinates, and SOAP's step is Adam's (vectors, not rotated without
    # precondition_1d, are Adam's anyway). SOAP's first step only sets the basis and its
    # eps sits outside sqrt(v / (1 - beta2^t)), so compare with Adam on the later gradients,
    # without weight decay and with an eps far below every sqrt(v) but the zero ones (the
    # off-diagonal entries, which both keep at 0).
    generator = torch.Generator().manual_seed(0)
    steps, lr, betas = 30, 1e-2, (0.9, 0.99)
    start = [torch.randn(5, 5, dtype=torch.float64, generator=generator), torch.randn(7).double()]
    soap_params = [p.clone().requires_grad_() for p in start]
    adam_params = [p.clone().requires_grad_() for p in start]
    soap = descend.SOAP(
        soap_params,
        lr=lr,
        betas=betas,
        eps=1e-30,
        weight_decay=0.0,
        precondition_frequency=3,
        backend="reference",
    )
    adam = torch.optim.Adam(adam_params, lr=lr, betas=betas, eps=1e-30)
    for step in range(steps):
        gradients = [
            torch.diag(torch.randn(5, dtype=torch.float64, generator=generator)),
            torch.randn(7, dtype=torch.float64, generator=generator),
        ]
        for soap_param, gradient in zip(soap_params, gradients, strict=True):
            soap_param.grad = gradient.clone()
        soap.step()
        if step == 0:
            continue
        for adam_param, gradient in zip(adam_params, gradients, strict=True):
            adam_param.grad = gradient.clone()
        adam.step()
    bases = [soap.state[soap_params[0]][key] for key in ("Q_0", "Q_1")]
    assert any(not torch.equal(q.abs(), torch.eye(5).double()) for q in bases), "no permutation"
    for soap_param, adam_param, first in zip(soap_params, adam_params, start, strict=True):
        assert not torch.equal(soap_param, first)
        torch.testing.assert_close(soap_param, adam_param, rtol=1e-12, atol=1e-14)


def test_the_first_step_sets_the_basis_and_moves_nothing():
    weight = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    before = weight.detach().clone()
    optimizer = descend.SOAP([weight])
    weight.grad = torch.randn(4, 3, dtype=torch.float64)
    optimizer.step()
    assert torch.equal(weight.detach(), before)
    state = optimizer.state[weight]
    for basis, size in zip((state["Q_0"], state["Q_1"]), (4, 3), strict=True):
        torch.testing.assert_close(basis.T @ basis, torch.eye(size).double(), rtol=0, atol=1e-12)
    assert not state["exp_avg"].any() and not state["exp_avg_sq"].any()


def test_merged_shapes_follow_the_reference_and_keep_a_tensor_that_fits_whole():
    assert merged_shape((1, 2, 512, 1, 2048, 1, 3, 4), 1024) == [1024, 2048, 12]
    assert merged_shape((1, 2, 768, 1, 2048), 1024) == [2, 768, 2048]
    assert merged_shape((7, 3), 100) == [21]  # the reference gives [1] and cannot reshape


def test_constructor_signature_and_defaults_match_pytorch_optimizer():
    ours = inspect.signature(descend.SOAP.__init__).parameters
    theirs = inspect.signature(ReferenceSOAP.__init__).parameters
    for name, parameter in theirs.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        assert name in ours and ours[name].default == parameter.default, name


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(betas=(0.9, 1.5)), r"betas\[1\]=1.5"),
        (dict(precondition_frequency=0), "precondition_frequency=0"),
        (dict(max_precondition_dim=0), "max_precondition_dim=0"),
        (dict(data_format="nchw"), "data_format='nchw'"),
        (dict(shampoo_beta=-0.5), "shampoo_beta=-0.5"),
    ],
)
def test_bad_arguments_name_the_value_and_the_range(options, message):
    param = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        descend.SOAP([param], **options)


def test_a_checkpoint_resumes_the_run_exactly():
    # Statistics, bases and moments all travel in the state dict (tensors only, as torch.optim
    # keeps state): a run resumed from a checkpoint equals the uninterrupted one.
    torch.manual_seed(0)
    gradients = [torch.randn(4, 3, dtype=torch.float64) for _ in range(8)]
    start = torch.randn(4, 3, dtype=torch.float64)
    whole = start.clone().requires_grad_()
    uninterrupted = descend.SOAP([whole], precondition_frequency=2)
    for gradient in gradients:
        whole.grad = gradient.clone()
        uninterrupted.step()
    resumed_param = start.clone().requires_grad_()
    first = descend.SOAP([resumed_param], precondition_frequency=2)
    for gradient in gradients[:5]:
        resumed_param.grad = gradient.clone()
        first.step()
    second = descend.SOAP([resumed_param], precondition_frequency=2)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    assert {"GG_0", "GG_1", "Q_0", "Q_1"} <= set(second.state[resumed_param])
    for gradient in gradients[5:]:
        resumed_param.grad = gradient.clone()
        second.step()
    assert torch.equal(resumed_param, whole)
