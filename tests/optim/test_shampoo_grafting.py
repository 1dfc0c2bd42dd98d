"""descend.Shampoo's grafting and blocks (its defaults: distributed Shampoo's Adam-grafting
configuration), against closed forms: torch.optim's Adam, AdamW, Adagrad and SGD on the same
gradients, a hand-computed Kronecker preconditioner, and the same optimizer on each block as a
parameter of its own.

Why closed forms and not distributed Shampoo itself: that reference (facebookresearch/optimizers)
is not on PyPI, so no test may depend on it. Its agreement was measured once, outside the
tests, with benchmarks/shampoo_reference_parity.py (float64, a convolution's and a linear
weight in one group, a bias in another, 100 steps, each grafting method, blocks, weight decay):
at most a few 1e-15 of each tensor's largest magnitude once its float32 scalars (its bias
corrections and learning rate are float32 tensors) are made exact, about 1e-6 otherwise.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descend
from descend.rules import shampoo as shampoo_rule
from descend.rules.grafting import block_slices, merged_shape

#: A convolution's weight, a linear weight and a bias.
SHAPES = [(4, 3, 3, 3), (8, 5), (5,)]
#: float64 runs of torch.optim and of descend round differently in a few places (torch
#: divides sqrt(v) by sqrt(1 - beta2^t), descend takes sqrt(v / (1 - beta2^t)), as distributed
#: Shampoo does): a few ulps per step.
CLOSE = dict(rtol=1e-12, atol=1e-14)


def _params(seed: int = 0, shapes=SHAPES) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, dtype=torch.float64, generator=generator).requires_grad_()
        for shape in shapes
    ]


def _twins(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_() for p in params]


def _feed(generator: torch.Generator, *sides: list[torch.Tensor]) -> None:
    """The same random gradient on every side's parameter."""
    for params in zip(*sides, strict=True):
        gradient = torch.randn(params[0].shape, dtype=torch.float64, generator=generator)
        for param in params:
            param.grad = gradient.clone()


def _step_alike(seed: int, steps: int, pairs: list[tuple[torch.optim.Optimizer, list]]) -> None:
    """``steps`` steps of each optimizer on the same random gradients (one generator), then
    each pair of parameter lists equal to float64 rounding."""
    (ours, ours_params), (theirs, theirs_params) = pairs
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        _feed(generator, ours_params, theirs_params)
        ours.step()
        theirs.step()
    for mine, other in zip(ours_params, theirs_params, strict=True):
        torch.testing.assert_close(mine, other, **CLOSE)


@pytest.mark.parametrize(
    "options, twin",
    [
        ({}, lambda p: torch.optim.Adam(p, lr=1e-2)),
        (
            dict(weight_decay=0.1),
            lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
        ),
        (
            dict(grafting="adagrad", betas=(0.0, 0.999), grafting_eps=1e-10),
            lambda p: torch.optim.Adagrad(p, lr=1e-2),
        ),
        (dict(grafting="sgd", betas=(0.0, 0.999)), lambda p: torch.optim.SGD(p, lr=1e-2)),
    ],
    ids=["adam", "adamw", "adagrad", "sgd"],
)
def test_before_the_first_roots_every_step_is_the_grafted_methods(options, twin):
    # Distributed Shampoo steps with the grafted method alone until start_preconditioning_step
    # (by default the refresh period f): f - 1 steps of torch.optim's method, to rounding.
    ours_params = _params()
    twin_params = _twins(ours_params)
    ours = descend.Shampoo(
        ours_params, lr=1e-2, preconditioning_compute_steps=30, backend="reference", **options
    )
    reference = twin(twin_params)
    _step_alike(1, 29, [(ours, ours_params), (reference, twin_params)])
    assert all("pre_cond_0" in ours.state[p] for p in ours_params[:2])


def _block_step_norms(before, after, lr, max_dim):
    """The norm of each block's step direction ``(before - after) / lr``."""
    direction = ((before - after) / lr).reshape(merged_shape(tuple(before.shape), max_dim))
    return [
        torch.linalg.vector_norm(direction[piece]).item()
        for piece in block_slices(tuple(direction.shape), max_dim)
    ]


def _check_block_norms(cls=descend.Shampoo, steps=12):
    """Shampoo (roots from step 1) against torch.optim.Adam on the same gradients: each block's
    step has the norm of Adam's step on that block. Returns the worst relative difference."""
    lr, max_dim = 1e-2, 4
    ours_params = _params(2, [(10, 6), (6, 3, 3, 3)])
    adam_params = _twins(ours_params)
    ours = cls(
        ours_params,
        lr=lr,
        preconditioning_compute_steps=1,
        max_preconditioner_dim=max_dim,
        backend="reference",
    )
    adam = torch.optim.Adam(adam_params, lr=lr)
    generator = torch.Generator().manual_seed(3)
    worst = 0.0
    for _ in range(steps):
        before = [p.detach().clone() for p in ours_params + adam_params]
        _feed(generator, ours_params, adam_params)
        ours.step()
        adam.step()
        pairs = zip(ours_params, adam_params, before[:2], before[2:], strict=True)
        for mine, theirs, mine_before, theirs_before in pairs:
            norms = _block_step_norms(mine_before, mine.detach(), lr, max_dim)
            expected = _block_step_norms(theirs_before, theirs.detach(), lr, max_dim)
            assert len(norms) > 1  # several blocks
            for norm, adam_norm in zip(norms, expected, strict=True):
                worst = max(worst, abs(norm - adam_norm) / adam_norm)
    return worst


def test_each_blocks_step_has_the_norm_of_adams_step_on_that_block():
    # (10, 6) with max_preconditioner_dim 4: blocks of rows 0-4, 4-8, 8-10 by columns 0-4,
    # 4-6; the (6, 3, 3, 3) convolution stays 4-D (no product of neighbours fits 4), cut into
    # output channels 0-4 and 4-6.
    assert _check_block_norms() < 1e-12


def test_grafting_with_the_wrong_blocks_norm_is_caught():
    # A broken copy whose blocks take the grafted norm of another block (the grafted blocks'
    # list reversed): the same check must fail by far.
    calls = itertools.count()

    def swapped_views(tensor, hypers):
        views = shampoo_rule.block_views(tensor, hypers)
        return views[::-1] if next(calls) % 2 else views  # every second call: the grafted one

    original = shampoo_rule.shampoo_direction
    namespace = {**original.__globals__, "block_views": swapped_views}
    broken_function = types.FunctionType(original.__code__, namespace, original.__name__)
    stage = dataclasses.replace(shampoo_rule.SHAMPOO.stage, function=broken_function)

    class BrokenShampoo(descend.Shampoo):
        rule = dataclasses.replace(shampoo_rule.SHAMPOO, stage=stage)

    assert _check_block_norms(BrokenShampoo, steps=2) > 1e-3


def _inverse_root(matrix: torch.Tensor, power: int) -> torch.Tensor:
    eigenvalues, vectors = torch.linalg.eigh(matrix)
    return (vectors * eigenvalues ** (-1.0 / power)) @ vectors.T


def test_a_matrix_step_is_the_kronecker_preconditioned_filtered_gradient_at_adams_norm():
    # By hand: M, V as Adam's; L, R moving averages of G G^T, G^T G; the direction
    # (L / c + eps I)^(-1/4) F (R / c + eps I)^(-1/4) of F = M / (1 - beta1^t), scaled to the
    # norm of Adam's direction F / (sqrt(V / (1 - beta2^t)) + eps).
    lr, beta1, beta2, eps = 1e-2, 0.9, 0.999, 1e-12
    (weight,) = _params(4, [(6, 4)])
    optimizer = descend.Shampoo(
        [weight], lr=lr, preconditioning_compute_steps=1, backend="reference"
    )
    m, v = torch.zeros(6, 4, dtype=torch.float64), torch.zeros(6, 4, dtype=torch.float64)
    left, right = torch.zeros(6, 6, dtype=torch.float64), torch.zeros(4, 4, dtype=torch.float64)
    generator = torch.Generator().manual_seed(5)
    for t in range(1, 8):
        g = torch.randn(6, 4, dtype=torch.float64, generator=generator)
        before = weight.detach().clone()
        weight.grad = g.clone()
        optimizer.step()
        m = beta1 * m + (1 - beta1) * g
        v = 0.999 * v + 0.001 * g * g
        left = beta2 * left + (1 - beta2) * g @ g.T
        right = beta2 * right + (1 - beta2) * g.T @ g
        correction = 1 - beta2**t
        filtered = m / (1 - beta1**t)
        adam = filtered / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
        shampoo = (
            _inverse_root(left / correction + eps * torch.eye(6, dtype=torch.float64), 4)
            @ filtered
            @ _inverse_root(right / correction + eps * torch.eye(4, dtype=torch.float64), 4)
        )
        expected = shampoo * adam.norm() / shampoo.norm()
        torch.testing.assert_close((before - weight.detach()) / lr, expected, rtol=1e-8, atol=0)


def test_a_vector_takes_adams_step_after_the_roots_too():
    # Vectors and scalars are not preconditioned with grafting: Adam's step at every step,
    # before and after the matrices' first roots (step 3 here).
    ours_params = _params(6, [(7,), (), (3, 4)])
    adam_params = _twins(ours_params[:2])
    ours = descend.Shampoo(
        ours_params, lr=1e-2, preconditioning_compute_steps=3, backend="reference"
    )
    adam = torch.optim.Adam(adam_params, lr=1e-2)
    generator = torch.Generator().manual_seed(7)
    for _ in range(10):
        _feed(generator, ours_params[:2], adam_params)
        ours_params[2].grad = torch.randn(3, 4, dtype=torch.float64, generator=generator)
        ours.step()
        adam.step()
    for mine, theirs in zip(ours_params[:2], adam_params, strict=True):
        torch.testing.assert_close(mine, theirs, **CLOSE)
        assert not any(key.endswith("pre_cond_0") for key in ours.state[mine])


def test_blocks_step_as_separate_parameters_and_merged_dims_as_the_reshaped_matrix():
    # A (10, 6) weight cut at 4 steps as its six blocks would as parameters of their own; a
    # (4, 3, 3, 3) convolution merged at the default limit steps as the (4, 27) matrix.
    options = dict(lr=1e-2, preconditioning_compute_steps=2, weight_decay=0.1, backend="reference")
    whole, conv = _params(8, [(10, 6), (4, 3, 3, 3)])
    pieces = block_slices((10, 6), 4)
    parts = [whole.detach()[piece].clone().requires_grad_() for piece in pieces]
    matrix = conv.detach().reshape(4, 27).clone().requires_grad_()
    merged = descend.Shampoo([conv], **options)
    separate = descend.Shampoo([*parts, matrix], max_preconditioner_dim=None, **options)
    conv_blocked = conv.detach().clone().requires_grad_()
    blocked = descend.Shampoo([whole, conv_blocked], max_preconditioner_dim=4, **options)
    generator = torch.Generator().manual_seed(9)
    for _ in range(6):
        g = torch.randn(10, 6, dtype=torch.float64, generator=generator)
        h = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=generator)
        whole.grad, conv_blocked.grad, conv.grad = g.clone(), h.clone(), h.clone()
        for part, piece in zip(parts, pieces, strict=True):
            part.grad = g[piece].clone()
        matrix.grad = h.reshape(4, 27).clone()
        for optimizer in (blocked, merged, separate):
            optimizer.step()
    for part, piece in zip(parts, pieces, strict=True):
        torch.testing.assert_close(whole.detach()[piece], part.detach(), **CLOSE)
    torch.testing.assert_close(conv.detach().reshape(4, 27), matrix.detach(), **CLOSE)
    assert len(pieces) == 6 and "block_5_pre_cond_1" in blocked.state[whole]
    assert {"pre_cond_0", "pre_cond_1"} <= set(merged.state[conv])
    assert "pre_cond_2" not in merged.state[conv]


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 40), min_size=0, max_size=5).map(tuple),
    max_dim=st.integers(1, 200),
)
def test_merged_dims_keep_the_size_and_blocks_cover_each_element_once(shape, max_dim):
    merged = merged_shape(shape, max_dim)
    assert math.prod(merged) == math.prod(shape)
    squeezed = [size for size in shape if size != 1]
    # Merging never goes below two dimensions, and only merges what fits the limit.
    assert len(merged) >= min(2, max(len(squeezed), 1))
    assert all(size <= max_dim or size in squeezed for size in merged)
    covered = torch.zeros(merged, dtype=torch.int64)
    for piece in block_slices(merged, max_dim):
        covered[piece] += 1
        assert all(len(range(*s.indices(n))) <= max_dim for s, n in zip(piece, merged, strict=True))
    assert covered.eq(1).all()


@pytest.mark.parametrize(
    "shape, max_dim, expected",
    [
        # The reference's documented examples at target dimensionality 2, and its squeeze.
        ((32, 3, 64, 64), 8192, (96, 4096)),
        ((32, 3, 64, 64), 1_000_000, (32, 12288)),
        ((1, 2, 5, 1), 10, (2, 5)),
        ((1, 1), 10, (1,)),
        ((), 10, (1,)),
        ((4, 3, 3, 3), 8192, (4, 27)),
        ((4, 3, 3, 3), None, (4, 3, 3, 3)),
    ],
)
def test_merged_shape_examples(shape, max_dim, expected):
    assert merged_shape(shape, max_dim) == expected


def test_a_state_dict_resumes_a_blocked_grafted_run_exactly():
    first = _params(10, [(9, 5), (6,)])
    second = _twins(first)
    options = dict(
        lr=1e-2, preconditioning_compute_steps=3, max_preconditioner_dim=4, backend="reference"
    )
    ours = descend.Shampoo(first, **options)
    generator = torch.Generator().manual_seed(11)
    for _ in range(4):
        _feed(generator, first, second)
        ours.step()
    for a, b in zip(first, second, strict=True):
        b.data.copy_(a.detach())
    resumed = descend.Shampoo(second, **options)
    resumed.load_state_dict(copy.deepcopy(ours.state_dict()))  # torch.optim's load aliases
    for _ in range(5):
        _feed(generator, first, second)
        ours.step()
        resumed.step()
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(grafting="lion"), "grafting='lion'"),
        (dict(max_preconditioner_dim=0), "max_preconditioner_dim=0"),
        (dict(betas=(0.9, 1.5)), r"betas\[1\]=1.5"),
        (
            dict(preconditioning_compute_steps=10, start_preconditioning_step=5),
            "start_preconditioning_step",
        ),
    ],
)
def test_bad_grafting_arguments_name_the_value(options, message):
    param = torch.zeros(3, 2, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        descend.Shampoo([param], **options)


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.slow)])
def test_every_executor_takes_the_same_grafted_steps(backend):
    # The elementwise parts (filter, Adam's second moment, momentum, decay) compile; the fused
    # executor's steps equal the reference executor's to rounding.
    ours_params = _params(12)
    twin_params = _twins(ours_params)
    options = dict(lr=1e-2, preconditioning_compute_steps=2, momentum=0.3, weight_decay=0.1)
    ours = descend.Shampoo(ours_params, backend=backend, **options)
    twin = descend.Shampoo(twin_params, backend="reference", **options)
    _step_alike(13, 5, [(ours, ours_params), (twin, twin_params)])
