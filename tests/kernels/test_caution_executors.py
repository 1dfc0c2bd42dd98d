"""Cautious steps agree bit for bit across executors: reference (torch ops), fused (Numba) and
Triton (run by its interpreter), float32, for every rule the switch applies to, as the plain
steps do (``test_bitwise.py``): the caution's second pass is one torch definition that every
executor's step is followed by (:mod:`descend.kernels.caution`)."""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest
import torch

from descend.kernels import get_executor
from descend.kernels.caution import cautious_step
from descend.optim import optimizer_classes
from descend.rules import RULES
from descend.rules.caution import caution_refusal

CAUTIOUS_RULES = [name for name, rule in RULES.items() if caution_refusal(rule) is None]
SHAPES = [(), (1,), (7, 3), (33,), (2, 3, 4)]
STEPS = 8


def run(name: str, backend: str) -> tuple[list[torch.Tensor], list[dict]]:
    """Parameters and state after ``STEPS`` cautious float32 steps of rule ``name``."""
    generator = torch.Generator().manual_seed(7)
    params = [torch.randn(shape, generator=generator).requires_grad_() for shape in SHAPES]
    optimizer = optimizer_classes()[name](params, cautious=True, backend=backend)
    for _ in range(STEPS):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer.step()
    return [p.detach() for p in params], [dict(optimizer.state[p]) for p in params]


def assert_identical(ours: tuple, theirs: tuple) -> None:
    for a, b in zip(ours[0], theirs[0], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ours[1], theirs[1], strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            assert torch.equal(value, b[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["fused", "triton"])
@pytest.mark.parametrize("name", CAUTIOUS_RULES)
def test_compiled_executors_equal_the_reference_bit_for_bit(name, backend):
    pytest.importorskip("numba" if backend == "fused" else "triton")
    reference = run(name, "reference")
    assert_identical(run(name, backend), reference)
    # and the caution acted: the plain run ends elsewhere.
    generator = torch.Generator().manual_seed(7)
    plain_params = [torch.randn(shape, generator=generator).requires_grad_() for shape in SHAPES]
    optimizer = optimizer_classes()[name](plain_params, backend=backend)
    for _ in range(STEPS):
        for param in plain_params:
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer.step()
    assert any(
        not torch.equal(p.detach(), q) for p, q in zip(plain_params, reference[0], strict=True)
    )


@pytest.mark.parametrize(
    "backend",
    [
        "reference",
        pytest.param("fused", marks=pytest.mark.slow),
        pytest.param("triton", marks=pytest.mark.slow),
    ],
)
def test_the_executor_level_step_equals_the_optimizers(backend):
    """:func:`cautious_step` on an executor's list call is the optimizer's cautious step."""
    pytest.importorskip({"reference": "torch", "fused": "numba", "triton": "triton"}[backend])
    rule = RULES["adam"]
    generator = torch.Generator().manual_seed(1)
    param = torch.randn(40, generator=generator)
    grad = torch.randn(40, generator=generator)
    hypers = rule.validate({"lr": 0.1})
    slots = [torch.zeros(40), torch.zeros(40), None]
    direct = param.clone()
    cautious_step(
        get_executor(backend), rule, None, rule.scalars(hypers, 1), [direct], [grad], [slots]
    )
    through = param.clone().requires_grad_()
    through.grad = grad.clone()
    optimizer = optimizer_classes()["adam"]([through], lr=0.1, cautious=True, backend=backend)
    optimizer.step()
    assert torch.equal(direct, through.detach())
    assert torch.equal(slots[0], optimizer.state[through]["exp_avg"])
