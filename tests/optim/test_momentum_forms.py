"""The notes' velocity forms against torch.optim.SGD's buffer form."""

from __future__ import annotations

import pytest
import torch

import descend
from descend.testing import TOLERANCE, run_side_by_side

SHAPES = [(4, 3), (7,), ()]


@pytest.mark.parametrize(
    ("ours", "nesterov"), [(descend.Momentum, False), (descend.Nesterov, True)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_constant_learning_rate_gives_torchs_iterates(ours, nesterov, dtype):
    param_error, _, ours_params, torch_params, optimizer, reference = run_side_by_side(
        lambda params: ours(params, lr=0.05, momentum=0.9, weight_decay=0.01),
        lambda params: torch.optim.SGD(
            params, lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=nesterov
        ),
        SHAPES,
        dtype,
        steps=50,
        compare_state=False,
    )
    # Velocity form and buffer form round differently (v = -lr * b); allow a few more ulps.
    assert param_error <= 10 * TOLERANCE[dtype]
    for a, b in zip(ours_params, torch_params, strict=True):
        if b in reference.state:
            velocity = optimizer.state[a]["velocity"]
            buffer = reference.state[b]["momentum_buffer"]
            assert torch.allclose(velocity, -0.05 * buffer, rtol=1e-4, atol=1e-6)


def test_learning_rate_change_touches_only_new_gradients_in_the_velocity_form():
    lr, rho, new_lr = 0.1, 0.9, 0.01
    ours_x = torch.zeros(1, requires_grad=True, dtype=torch.float64)
    torch_x = torch.zeros(1, requires_grad=True, dtype=torch.float64)
    ours = descend.Momentum([ours_x], lr=lr, momentum=rho)
    theirs = torch.optim.SGD([torch_x], lr=lr, momentum=rho)
    gradients = [1.0, 1.0, 1.0, 1.0]
    for step, g in enumerate(gradients):
        if step == 2:
            for optimizer in (ours, theirs):
                optimizer.param_groups[0]["lr"] = new_lr
        for x, optimizer in ((ours_x, ours), (torch_x, theirs)):
            x.grad = torch.tensor([g], dtype=torch.float64)
            optimizer.step()
    # Closed forms of the two recurrences with g = 1:
    # velocity: v1 = -lr, v2 = rho v1 - lr, v3 = rho v2 - new_lr, v4 = rho v3 - new_lr
    v1 = -lr
    v2 = rho * v1 - lr
    v3 = rho * v2 - new_lr
    v4 = rho * v3 - new_lr
    assert ours_x.item() == pytest.approx(v1 + v2 + v3 + v4, rel=1e-12)
    # buffer: b1 = 1, b2 = 1 + rho, ...; x -= lr_t * b_t with the lr current at each step.
    b = [1.0, 1 + rho, 1 + rho + rho**2, 1 + rho + rho**2 + rho**3]
    assert torch_x.item() == pytest.approx(
        -(lr * b[0] + lr * b[1] + new_lr * b[2] + new_lr * b[3]), rel=1e-12
    )
    assert ours_x.item() != pytest.approx(torch_x.item(), rel=1e-3)


def test_nesterov_follows_the_notes_change_of_variables():
    # On f(x) = x^2 / 2 the gradient at the tracked variable is the variable itself.
    lr, rho = 0.1, 0.9
    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    optimizer = descend.Nesterov([x], lr=lr, momentum=rho)
    tracked, velocity = 1.0, 0.0
    for _ in range(20):
        x.grad = x.detach().clone()
        optimizer.step()
        new_velocity = rho * velocity - lr * tracked
        tracked = tracked + new_velocity + rho * (new_velocity - velocity)
        velocity = new_velocity
    assert x.item() == pytest.approx(tracked, rel=1e-12)
    assert optimizer.state[x]["velocity"].item() == pytest.approx(velocity, rel=1e-12)
