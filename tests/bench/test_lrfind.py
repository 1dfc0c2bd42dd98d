"""The learning-rate range test suggests a rate inside the stable range of a toy problem."""

from __future__ import annotations

import pytest
import torch

from descend.bench.data import TensorData
from descend.bench.lrfind import lr_find, lr_range_test
from descend.bench.tasks import Task


def _least_squares() -> tuple[torch.Tensor, torch.Tensor, float]:
    """A linear regression whose gradient descent is stable exactly for lr < 2 / L."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([3.0, 1.0, 0.3, 0.1])
    inputs = torch.randn(512, 4, generator=generator) * scales
    targets = inputs @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    hessian = 2 * inputs.T @ inputs / len(inputs)           # of the mean squared error
    return inputs, targets, float(torch.linalg.eigvalsh(hessian).max())


def test_suggestion_is_inside_the_stable_range_and_trains():
    inputs, targets, smoothness = _least_squares()
    stable = 2 / smoothness

    def loss(outputs, y):
        return torch.nn.functional.mse_loss(outputs.squeeze(-1), y)

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1, bias=False)
    result = lr_range_test(model, lambda: [(inputs, targets)], loss, "sgd", 1e-5, 10.0,
                           steps=150)
    assert result.stopped_early                   # the sweep crossed into instability
    assert 0.01 * stable < result.suggestion < stable
    assert result.min_lr > result.suggestion
    # Full-batch gradient descent at the suggestion converges.
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=result.suggestion)
    start = float(loss(model(inputs), targets).detach())
    for _ in range(300):
        optimizer.zero_grad()
        loss(model(inputs), targets).backward()
        optimizer.step()
    assert float(loss(model(inputs), targets).detach()) < 0.05 * start


def test_lr_find_on_a_task_and_bad_arguments():
    inputs, targets, _ = _least_squares()
    data = TensorData(inputs, targets.unsqueeze(-1), 64)
    task = Task("toy", lambda: torch.nn.Linear(4, 1), data, data, None,
                torch.nn.functional.mse_loss, metric="loss")
    result = lr_find(task, "adam", 1e-5, 10.0, steps=60)
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 60
    assert result.lrs == sorted(result.lrs)
    assert min(result.smoothed) < result.smoothed[0]
    with pytest.raises(ValueError, match="start_lr"):
        lr_find(task, "sgd", 1.0, 0.1)
