"""Checkpoints: save at step k, load into a fresh optimizer, continue bit-identically."""

from __future__ import annotations

import io

import pytest
import torch

import descend
from descend.testing import TOLERANCE, clone_params, make_params, run_side_by_side

CONFIGS = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("Momentum", dict(lr=0.05, momentum=0.9)),
    ("Nesterov", dict(lr=0.05, momentum=0.9)),
]
SHAPES = [(3, 4), (5,), ()]


def _gradients(steps: int, shapes, dtype, seed=7):
    generator = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(shape, dtype=dtype, generator=generator) for shape in shapes]
        for _ in range(steps)
    ]


def _apply(optimizer, params, gradients):
    for step_gradients in gradients:
        for param, gradient in zip(params, step_gradients, strict=True):
            param.grad = gradient.clone()
        optimizer.step()


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_resumed_run_is_bit_identical_to_uninterrupted_run(name, options, dtype):
    cls = getattr(descend, name)
    gradients = _gradients(20, SHAPES, dtype)
    straight = make_params(SHAPES, dtype, seed=3)
    resumed = clone_params(straight)

    uninterrupted = cls(straight, **options)
    _apply(uninterrupted, straight, gradients)

    first = cls(resumed, **options)
    _apply(first, resumed, gradients[:8])
    checkpoint = _roundtrip(
        {"params": [p.detach().clone() for p in resumed], "optimizer": first.state_dict()}
    )
    fresh_params = [p.clone().requires_grad_() for p in checkpoint["params"]]
    second = cls(fresh_params, **options)
    second.load_state_dict(checkpoint["optimizer"])
    _apply(second, fresh_params, gradients[8:])

    for a, b in zip(straight, fresh_params, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight, fresh_params, strict=True):
        for key, value in uninterrupted.state[a].items():
            assert torch.equal(value, second.state[b][key]), key


@pytest.mark.parametrize(("name", "options"), CONFIGS[:5], ids=[c[0] for c in CONFIGS[:5]])
def test_torch_checkpoint_loads_into_descend_and_back(name, options):
    dtype = torch.float64
    gradients = _gradients(12, SHAPES, dtype)
    torch_params = make_params(SHAPES, dtype, seed=4)
    our_params = clone_params(torch_params)

    theirs = getattr(torch.optim, name)(torch_params, **options)
    _apply(theirs, torch_params, gradients[:6])
    with torch.no_grad():
        for ours, reference in zip(our_params, torch_params, strict=True):
            ours.copy_(reference)
    ours = getattr(descend, name)(our_params, **options)
    ours.load_state_dict(_roundtrip(theirs.state_dict()))
    _apply(theirs, torch_params, gradients[6:])
    _apply(ours, our_params, gradients[6:])
    for a, b in zip(our_params, torch_params, strict=True):
        assert (a - b).abs().max().item() <= TOLERANCE[dtype] * b.abs().max().item()

    # And back: descend's checkpoint continues in torch.optim.
    again = getattr(torch.optim, name)(clone_params(our_params), **options)
    again.load_state_dict(_roundtrip(ours.state_dict()))
    assert set(again.state_dict()["state"][0]) <= set(ours.state_dict()["state"][0])


def test_skipped_step_count_survives_a_checkpoint():
    param = torch.zeros(3, requires_grad=True)
    optimizer = descend.Adam([param], nonfinite="skip")
    param.grad = torch.tensor([1.0, float("nan"), 0.0])
    optimizer.step()
    fresh = descend.Adam([torch.zeros(3, requires_grad=True)], nonfinite="skip")
    fresh.load_state_dict(_roundtrip(optimizer.state_dict()))
    assert fresh.skipped_steps == 1


def test_param_groups_survive_a_checkpoint_with_their_own_hyperparameters():
    _, _, ours, _, optimizer, _ = run_side_by_side(
        lambda groups: descend.Adam(groups, lr=0.01),
        lambda groups: torch.optim.Adam(groups, lr=0.01),
        SHAPES,
        torch.float64,
        steps=3,
        group_options=[{}, {"lr": 0.5, "betas": (0.5, 0.9)}],
    )
    fresh = descend.Adam([{"params": ours[0::2]}, {"params": ours[1::2]}], lr=0.01)
    fresh.load_state_dict(optimizer.state_dict())
    assert fresh.param_groups[1]["lr"] == 0.5
    assert fresh.param_groups[1]["betas"] == (0.5, 0.9)
