"""descend.Shampoo given pytorch_optimizer's arguments (PYTORCH_OPTIMIZER_ARGUMENTS: no
grafting, no blocks) against pytorch_optimizer's Shampoo (same numbers, same state), and
against what theory says of its preconditioner: with the Hessian's Kronecker factors as its
roots it lands on a quadratic's minimum in one step, and its first step is the gradient's polar
factor. The grafted, blocked defaults are tested in test_shampoo_grafting.py."""

from __future__ import annotations

import copy
import dataclasses
import inspect

import pytest
import torch
from pytorch_optimizer import Shampoo as ReferenceShampoo

import descend
from descend.optim.shampoo import PYTORCH_OPTIMIZER_ARGUMENTS
from descend.rules.shampoo import SHAMPOO, inverse_root
from descend.testing import TOLERANCE, run_side_by_side

#: A scalar, a bias, linear weights and a convolution's weight (out, in, kh, kw).
SHAPES = [(), (6,), (8, 5), (4, 3, 3, 3), (5, 7), (3,)]
#: Each option of the reference at least once (a full grid takes minutes: each run is 100
#: steps of SVDs on both sides).
OPTIONS = [
    {},
    dict(momentum=0.9, weight_decay=0.05),
    dict(momentum=0.9, weight_decay=0.05, weight_decouple=True),
    dict(weight_decay=0.05, weight_decouple=True, fixed_decay=True),
    dict(momentum=0.5, preconditioning_compute_steps=4, matrix_eps=1e-4),
    dict(maximize=True, weight_decay=0.05),
]
#: The reference counts steps per group and descend per parameter (as torch.optim does), so
#: no parameter skips a step here except parameter 1, which never has a gradient.
NO_SKIPS = None
#: Two param groups: the second with its own learning rate and momentum.
GROUPS = [{}, {"lr": 5e-3, "momentum": 0.5}]
# descend computes each step in the reference's order (the same SVD of the same statistic,
# the same transposes and products, torch's fused multiply-adds where it uses add_(alpha=)),
# so float64 runs agree to rounding: 1e-10 of each tensor's largest magnitude, and in fact
# bit for bit.
PARITY = 1e-10


def reference(params, **options):
    return ReferenceShampoo(params, **options)


def ours(params, **options):
    """descend.Shampoo with pytorch_optimizer's arguments, then ``options``."""
    return descend.Shampoo(params, **{**PYTORCH_OPTIMIZER_ARGUMENTS, **options})


def _ids(options):
    return "-".join(f"{key}={value}" for key, value in options.items())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("options", OPTIONS, ids=[_ids(o) for o in OPTIONS])
def test_every_option_matches_pytorch_optimizer(options, backend):
    # With maximize, the reference's momentum starts at the gradient before its negation (see
    # test_maximize_is_minimizing_the_negated_gradients): no momentum in either group there.
    groups = [{}, {"lr": 5e-3}] if options.get("maximize") else GROUPS
    result = run_side_by_side(
        lambda params: ours(params, lr=1e-2, backend=backend, **options),
        lambda params: reference(params, lr=1e-2, **options),
        SHAPES,
        torch.float64,
        steps=100,
        group_options=groups,
        missing_grad_every=NO_SKIPS,
    )
    assert result.param_error <= PARITY
    # The statistics L_i, their inverse roots and the momentum, compared key by key.
    assert result.state_error <= PARITY


@pytest.mark.parametrize(
    "dtype",
    [pytest.param(torch.float32, marks=pytest.mark.slow), torch.float64],
    ids=["f32", "f64"],
)
def test_defaults_match_pytorch_optimizer(dtype):
    # The reference executor: the fused one (which compiles kernels) runs in the slow grid.
    result = run_side_by_side(
        lambda params: ours(params, backend="reference"),
        reference,
        SHAPES,
        dtype,
        steps=12,
        group_options=GROUPS,
        missing_grad_every=NO_SKIPS,
    )
    assert result.param_error <= (PARITY if dtype == torch.float64 else TOLERANCE[dtype])
    assert result.state_error <= (PARITY if dtype == torch.float64 else TOLERANCE[dtype])


def _broken_shampoo(exponent_factor: int) -> type[descend.Shampoo]:
    """descend.Shampoo whose refresh takes L^(-1/(factor k)) instead of L^(-1/(2k))."""

    def wrong_refresh(hypers, state):
        order = sum(1 for key in state if key.startswith("pre_cond_"))
        for index in range(order):
            root = inverse_root(state[f"pre_cond_{index}"], exponent_factor * order)
            state[f"inv_pre_cond_{index}"].copy_(root)

    assert SHAMPOO.stage is not None
    rule = dataclasses.replace(
        SHAMPOO, stage=dataclasses.replace(SHAMPOO.stage, refresh=wrong_refresh)
    )

    class BrokenShampoo(descend.Shampoo):
        pass

    BrokenShampoo.rule = rule
    return BrokenShampoo


@pytest.mark.parametrize("factor, caught", [(2, False), (3, True)])
def test_a_wrong_exponent_is_caught_at_this_tolerance(factor, caught):
    # The same comparison with the root's exponent -1/(3k) instead of -1/(2k) must fail at
    # PARITY by far; the copy with the right exponent (factor 2) must pass, so the failure is
    # the exponent's.
    broken = _broken_shampoo(factor)
    result = run_side_by_side(
        lambda params: broken(
            params, **{**PYTORCH_OPTIMIZER_ARGUMENTS, "lr": 1e-2}, backend="reference"
        ),
        lambda params: reference(params, lr=1e-2),
        SHAPES,
        torch.float64,
        steps=10,
        missing_grad_every=NO_SKIPS,
        compare_state=False,
    )
    assert (result.param_error > 1e3 * PARITY) is caught


def _spd(n: int, generator: torch.Generator, condition: float) -> torch.Tensor:
    """A symmetric positive-definite n x n matrix with eigenvalues 1 ... condition."""
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=generator))
    eigenvalues = torch.logspace(0, torch.log10(torch.tensor(condition)).item(), n, dtype=q.dtype)
    return (q * eigenvalues) @ q.T


def test_with_the_hessians_kronecker_factors_it_lands_on_the_minimum():
    # f(W) = 1/2 tr((W - W*)^T A (W - W*) B): gradient A (W - W*) B, Hessian B (x) A. Roots
    # P_L = L^(-1/4) = A^(-1) and P_R = B^(-1), from statistics L = A^4 and R = B^4, precondition
    # exactly: D = A^(-1) A (W - W*) B B^(-1) = W - W*, and one step of lr 1 lands on W*,
    # however ill-conditioned A and B are (up to the roots' rounding, which grows with
    # cond(A)^4: hence the modest conditions here).
    generator = torch.Generator().manual_seed(0)
    a, b = _spd(6, generator, 30.0), _spd(4, generator, 10.0)
    target = torch.randn(6, 4, dtype=torch.float64, generator=generator)
    weight = torch.randn(6, 4, dtype=torch.float64, generator=generator).requires_grad_()
    optimizer = ours([weight], lr=1.0, preconditioning_compute_steps=10**6)
    state = optimizer.state[weight]
    state["step"] = torch.tensor(0.0)
    state["momentum_buffer"] = torch.zeros_like(weight)
    for index, factor in enumerate((a, b)):
        state[f"pre_cond_{index}"] = torch.linalg.matrix_power(factor, 4)
        # The refresh's own inverse root: (A^4)^(-1/4) = A^(-1).
        state[f"inv_pre_cond_{index}"] = inverse_root(state[f"pre_cond_{index}"], 4)
        torch.testing.assert_close(
            state[f"inv_pre_cond_{index}"] @ factor,
            torch.eye(len(factor), dtype=torch.float64),
            rtol=0,
            atol=1e-9,
        )
    weight.grad = a @ (weight.detach() - target) @ b
    optimizer.step()
    torch.testing.assert_close(weight.detach(), target, rtol=0, atol=1e-9)


def test_its_first_step_is_the_gradients_polar_factor():
    # With eps -> 0 the first statistics are L = G G^T and R = G^T G; for G = U S V^T,
    # L^(-1/4) G R^(-1/4) = U S^(-1/2) U^T U S V^T V S^(-1/2) V^T = U V^T: the orthogonalized
    # gradient Muon approximates (Bernstein and Newhouse, 2024).
    generator = torch.Generator().manual_seed(1)
    gradient = torch.randn(5, 5, dtype=torch.float64, generator=generator)
    weight = torch.zeros(5, 5, dtype=torch.float64, requires_grad=True)
    optimizer = ours([weight], lr=1.0, matrix_eps=1e-14)
    weight.grad = gradient.clone()
    optimizer.step()
    u, _, vh = torch.linalg.svd(gradient)
    torch.testing.assert_close(-weight.detach(), u @ vh, rtol=0, atol=1e-8)


def test_vectors_are_full_matrix_adagrad_and_scalars_gradient_steps():
    # k = 1: P = (eps I + sum g g^T)^(-1/2), full-matrix AdaGrad; k = 0: x <- x - lr g.
    generator = torch.Generator().manual_seed(2)
    vector = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    scalar = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = ours([vector, scalar], lr=0.1)
    statistic = 1e-6 * torch.eye(4, dtype=torch.float64)
    expected_vector, expected_scalar = torch.zeros(4, dtype=torch.float64), 0.0
    for _ in range(5):
        g = torch.randn(4, dtype=torch.float64, generator=generator)
        s = torch.randn((), dtype=torch.float64, generator=generator)
        vector.grad, scalar.grad = g.clone(), s.clone()
        optimizer.step()
        statistic += torch.outer(g, g)
        eigenvalues, vectors = torch.linalg.eigh(statistic)
        expected_vector -= 0.1 * (vectors * eigenvalues**-0.5) @ vectors.T @ g
        expected_scalar -= 0.1 * s.item()
    torch.testing.assert_close(vector.detach(), expected_vector, rtol=1e-9, atol=1e-12)
    assert scalar.item() == pytest.approx(expected_scalar, rel=1e-15)


def test_constructor_takes_every_reference_argument_and_its_defaults_are_the_parity_set():
    # Every argument of the reference is one of ours, in the same position; its default is
    # ours or, where the grafted defaults differ, the value PYTORCH_OPTIMIZER_ARGUMENTS gives.
    mine = inspect.signature(descend.Shampoo.__init__).parameters
    theirs = inspect.signature(ReferenceShampoo.__init__).parameters
    named = [name for name, p in theirs.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    assert list(mine)[: len(named)] == named
    for name in named[2:]:
        expected = theirs[name].default
        assert PYTORCH_OPTIMIZER_ARGUMENTS.get(name, mine[name].default) == expected, name
    differing = {name for name in named[2:] if mine[name].default != theirs[name].default}
    assert differing <= set(PYTORCH_OPTIMIZER_ARGUMENTS)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(momentum=1.5), "momentum=1.5"),
        (dict(preconditioning_compute_steps=0), "preconditioning_compute_steps=0"),
        (dict(matrix_eps=-1e-6), "matrix_eps=-1e-06"),
        (dict(lr=-0.1), "lr=-0.1"),
    ],
)
def test_bad_arguments_name_the_value_and_the_range(options, message):
    param = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        descend.Shampoo([param], **options)


def test_checkpoints_load_into_the_reference_and_back():
    torch.manual_seed(0)
    ours_params = [torch.randn(4, 3, dtype=torch.float64, requires_grad=True)]
    ours_optimizer = ours(ours_params, lr=0.01, momentum=0.5)
    for _ in range(5):
        ours_params[0].grad = torch.randn(4, 3, dtype=torch.float64)
        ours_optimizer.step()
    theirs_params = [ours_params[0].detach().clone().requires_grad_()]
    theirs = ReferenceShampoo(theirs_params, lr=0.01, momentum=0.5)
    theirs.load_state_dict(copy.deepcopy(ours_optimizer.state_dict()))
    theirs.param_groups[0]["step"] = 5  # the reference counts per group
    gradient = torch.randn(4, 3, dtype=torch.float64)
    ours_params[0].grad, theirs_params[0].grad = gradient.clone(), gradient.clone()
    ours_optimizer.step()
    theirs.step()
    torch.testing.assert_close(ours_params[0], theirs_params[0], rtol=1e-12, atol=1e-15)


def test_a_skipped_step_leaves_no_matrix_state():
    # The factors are created with the slots and removed with them when the first step does
    # not happen (a non-finite gradient under nonfinite="skip").
    weight = torch.zeros(3, 2, requires_grad=True)
    optimizer = descend.Shampoo([weight], nonfinite="skip")
    weight.grad = torch.full((3, 2), float("nan"))
    optimizer.step()
    assert not optimizer.state.get(weight)
    weight.grad = torch.ones(3, 2)
    optimizer.step()
    assert {"pre_cond_0", "inv_pre_cond_1", "exp_avg", "exp_avg_sq"} <= set(optimizer.state[weight])


def test_complex_parameters_are_refused():
    param = torch.zeros(2, 2, dtype=torch.complex64, requires_grad=True)
    with pytest.raises(ValueError, match="complex"):
        descend.Shampoo([param])


@pytest.mark.parametrize(
    "name, flag, matrix_keys",
    [
        # Shampoo's default merges the convolution's (3, 3, 3) into one dimension of 27.
        ("shampoo", "use_shampoo", {"pre_cond_0", "pre_cond_1", "exp_avg_sq"}),
        ("soap", "use_soap", {"GG_0", "GG_3", "Q_0"}),
    ],
)
def test_a_bench_spec_gives_weights_to_the_method_and_the_rest_to_adamw(name, flag, matrix_keys):
    # descend bench builds every spec through OptimizerSpec.build, which groups parameters by
    # the class's split_parameters: weights of two or more dimensions (linear and conv) to the
    # matrix method, biases to a group stepped exactly as torch.optim.AdamW steps it.
    from descend.specs import parse_optimizer

    torch.manual_seed(0)
    conv = torch.randn(4, 3, 3, 3, requires_grad=True)
    linear = torch.randn(5, 4, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    optimizer = parse_optimizer(f"{name}:lr=0.01").build([conv, linear, bias])
    first, second = optimizer.param_groups
    assert first["params"] == [conv, linear] and flag not in first
    assert second["params"] == [bias] and second[flag] is False
    twin = bias.detach().clone().requires_grad_()
    adamw = torch.optim.AdamW([twin])
    for _ in range(3):
        for param in (conv, linear, bias):
            param.grad = torch.randn_like(param)
        twin.grad = bias.grad.clone()
        optimizer.step()
        adamw.step()
    assert torch.equal(bias, twin)
    assert matrix_keys <= set(optimizer.state[conv])


def test_a_statistic_whose_eps_rounded_away_keeps_a_finite_root():
    # eps I + G G^T with identical rows of G: in float32 the sum absorbs eps and the SVD finds
    # a singular value of exactly 0; the reference's root is then infinite (NaN parameters
    # from the next step on), descend takes eps for it, the least eigenvalue the statistic
    # has in exact arithmetic. Any other matrix gets the reference's root bit for bit.
    from pytorch_optimizer.optimizer.utils.matrix import compute_power_svd

    absorbed = torch.full((2, 2), 55.75889587402344) + 1e-6 * torch.eye(2)
    assert not torch.isfinite(compute_power_svd(absorbed, 4)).all()
    root = inverse_root(absorbed, 4, floor=1e-6)
    assert torch.isfinite(root).all()
    along, across = torch.tensor([1.0, 1.0]) / 2**0.5, torch.tensor([1.0, -1.0]) / 2**0.5
    assert (along @ root @ along).item() == pytest.approx(111.5178**-0.25, rel=1e-5)
    assert (across @ root @ across).item() == pytest.approx(1e-6**-0.25, rel=1e-5)
    regular = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    assert torch.equal(inverse_root(regular, 4, floor=1e-6), compute_power_svd(regular, 4))


def test_maximize_is_minimizing_the_negated_gradients():
    # descend's maximize steps on g exactly as a minimizer steps on -g, momentum included. The
    # reference differs on the first step with momentum: it starts its buffer at +g before
    # negating g, so its first direction is lerp(-g, g, mu) = (2 mu - 1) g.
    generator = torch.Generator().manual_seed(3)
    start = torch.randn(5, 4, dtype=torch.float64, generator=generator)
    ascending, descending = start.clone().requires_grad_(), start.clone().requires_grad_()
    options = dict(
        lr=0.01,
        momentum=0.7,
        weight_decay=0.05,
        preconditioning_compute_steps=2,
        backend="reference",
    )
    maximizer = descend.Shampoo([ascending], maximize=True, **options)
    minimizer = descend.Shampoo([descending], **options)
    for _ in range(6):
        gradient = torch.randn(5, 4, dtype=torch.float64, generator=generator)
        ascending.grad, descending.grad = gradient.clone(), -gradient
        maximizer.step()
        minimizer.step()
    assert torch.equal(ascending, descending)
