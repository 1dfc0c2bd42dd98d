"""ScheduledLR: descend schedules driving descend and torch.optim optimizers."""

from __future__ import annotations

import pytest
import torch

import descend
from descend import schedules


@pytest.mark.parametrize(
    "make", [lambda p: descend.SGD(p, lr=1.0), lambda p: torch.optim.SGD(p, lr=1.0)]
)
def test_every_step_uses_the_schedules_value(make):
    param = torch.zeros(1, requires_grad=True)
    optimizer = make([param])
    schedule = schedules.exponential_decay(0.1, k=0.5)
    scheduler = descend.ScheduledLR(optimizer, schedule)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        param.grad = torch.ones(1)
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([schedule(t) for t in range(6)])
    # With g = 1, plain SGD moves by exactly the sum of the learning rates.
    assert param.item() == pytest.approx(-sum(seen))


def test_one_schedule_per_group_and_checkpoint_resume():
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = descend.Adam([{"params": [a]}, {"params": [b]}])
    group_schedules = [schedules.step_decay(0.1, step_size=2), schedules.constant(0.01)]
    scheduler = descend.ScheduledLR(optimizer, group_schedules)
    for _ in range(3):
        a.grad, b.grad = torch.ones(1), torch.ones(1)
        optimizer.step()
        scheduler.step()
    saved = scheduler.state_dict()
    fresh = descend.ScheduledLR(descend.Adam([{"params": [a]}, {"params": [b]}]), group_schedules)
    fresh.load_state_dict(saved)
    assert fresh.last_epoch == 3
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.01]


def test_wrong_number_of_schedules_is_refused():
    optimizer = descend.SGD([{"params": [torch.zeros(1)]}, {"params": [torch.zeros(1)]}])
    with pytest.raises(ValueError, match="3 schedules for 2 param groups"):
        descend.ScheduledLR(optimizer, [schedules.constant(0.1)] * 3)
    with pytest.raises(ValueError, match="not callable"):
        descend.ScheduledLR(optimizer, [0.1, 0.2])
