"""The learning-rate range test: suggestions on curves with known answers, a suggestion inside
the stable range of a toy problem, and a plot that shows every value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from descend.bench import lr_find
from descend.bench.data import TensorData
from descend.bench.lrfind import VALLEY_START, lr_range_test, smooth, suggest_lrs
from descend.bench.tasks import Task


def _known_curve(u: np.ndarray) -> np.ndarray:
    """A range-test-shaped loss over u = log10(lr): a plateau, a fall steepest at u = -3, and
    a blow-up past u = -0.5."""
    return 2.0 - np.tanh((u + 3.0) / 0.5) + np.exp((u + 0.5) / 0.15)


def _expected(u: np.ndarray) -> tuple[float, float, float]:
    """Steepest, valley and minimum/10 of the known curve, from its formula on a fine grid."""
    fine = np.linspace(u[0], u[-1], 200_001)
    values = _known_curve(fine)
    lowest = int(np.argmin(values))
    fall = values[0] - values[lowest]
    start = np.flatnonzero(values[:lowest] > values[0] - VALLEY_START * fall)[-1]
    return 10.0**-3.0, 10 ** ((fine[start] + fine[lowest]) / 2), 10 ** fine[lowest] / 10


def test_suggestions_of_a_curve_with_known_answers():
    u = np.linspace(-6, 0, 301)  # 0.02 decade per step
    steepest, valley, minimum = _expected(u)
    found = suggest_lrs(list(10**u), list(_known_curve(u)))
    step = 10**0.02
    assert steepest / step < found.steepest < steepest * step
    assert valley / step < found.valley < valley * step
    assert minimum / step < found.minimum < minimum * step
    # With 5% noise on every loss, the smoothed curve's readings move by under 0.1 decade.
    clean = suggest_lrs(list(10**u), smooth(list(_known_curve(u)), 0.05))
    for seed in range(3):
        noise = np.exp(np.random.default_rng(seed).normal(0, 0.05, len(u)))
        noisy = suggest_lrs(list(10**u), smooth(list(_known_curve(u) * noise), 0.05))
        for name in ("steepest", "valley", "minimum"):
            assert abs(math.log10(getattr(noisy, name) / getattr(clean, name))) < 0.1


def test_smoothing_does_not_shift_the_minimum():
    # A one-sided (causal) moving average puts the minimum of a V to the right of the true
    # one; the forward-backward average keeps it in place.
    values = list(np.abs(np.linspace(-1, 1, 201)) + 0.1)
    smoothed = smooth(values, 0.05)
    assert int(np.argmin(smoothed)) == 100
    assert abs(smoothed[50] - values[50]) < 0.01
    with pytest.raises(ValueError, match="smoothing=0"):
        smooth(values, 0.0)
    with pytest.raises(ValueError, match="increasing"):
        suggest_lrs([1.0, 0.5, 0.1], [1.0, 2.0, 3.0])


def _least_squares() -> tuple[torch.Tensor, torch.Tensor, float]:
    """A linear regression whose gradient descent is stable exactly for lr < 2 / L."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([3.0, 1.0, 0.3, 0.1])
    inputs = torch.randn(512, 4, generator=generator) * scales
    targets = inputs @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    hessian = 2 * inputs.T @ inputs / len(inputs)  # of the mean squared error
    return inputs, targets, float(torch.linalg.eigvalsh(hessian).max())


def test_suggestions_are_inside_the_stable_range_and_train():
    inputs, targets, smoothness = _least_squares()
    stable = 2 / smoothness

    def loss(outputs, y):
        return torch.nn.functional.mse_loss(outputs.squeeze(-1), y)

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1, bias=False)
    result = lr_range_test(model, lambda: [(inputs, targets)], loss, "sgd", 1e-5, 10.0, steps=150)
    assert result.stopped_early  # the sweep crossed into instability
    found = result.suggestions
    for lr in (found.valley, found.steepest, found.minimum):
        assert 0.01 * stable < lr < stable
    assert result.suggestion == found.valley
    # Full-batch gradient descent at the suggestion converges.
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=result.suggestion)
    start = float(loss(model(inputs), targets).detach())
    for _ in range(1000):
        optimizer.zero_grad()
        loss(model(inputs), targets).backward()
        optimizer.step()
    assert float(loss(model(inputs), targets).detach()) < 0.05 * start


def test_lr_find_on_a_task_plots_every_value_and_refuses_bad_arguments(tmp_path):
    inputs, targets, _ = _least_squares()
    data = TensorData(inputs, targets.unsqueeze(-1), 64)
    task = Task(
        "toy",
        lambda: torch.nn.Linear(4, 1),
        data,
        data,
        None,
        torch.nn.functional.mse_loss,
        metric="loss",
    )
    result = lr_find(task, "adam", 1e-5, 10.0, steps=60)
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 60
    assert result.lrs == sorted(result.lrs)
    assert min(result.smoothed) < result.smoothed[0]
    figure = result.figure()
    axis = figure.axes[0]
    low, high = axis.get_ylim()
    assert low <= min(result.losses) and high >= max(result.losses)
    assert low <= min(result.smoothed) and high >= max(result.smoothed)
    labels = [line.get_label() for line in axis.get_lines()]
    assert any(label.startswith("valley") for label in labels)
    assert any(label.startswith("minimum / 10") for label in labels)
    result.plot(str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="start_lr"):
        lr_find(task, "sgd", 1.0, 0.1)
    with pytest.raises(ValueError, match="seed=-1"):
        lr_find(task, "sgd", seed=-1)
