"""Weight averaging against closed forms and torch.optim.swa_utils."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import descend


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=30), st.floats(0.0, 0.999))
def test_ema_equals_its_closed_form(values, decay):
    x = torch.tensor([0.0], dtype=torch.float64)
    average = descend.WeightAverage([x], decay=decay)
    for value in values:
        x.fill_(value)
        average.update()
    # x_avg_n = decay^n x_0 + (1 - decay) sum_k decay^(n-k) x_k
    n = len(values)
    expected = sum((1 - decay) * decay ** (n - k) * v for k, v in enumerate(values, start=1))
    assert average.averages[0].item() == pytest.approx(expected, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=30), st.floats(-10, 10))
def test_polyak_average_is_the_mean_of_all_iterates(values, start):
    x = torch.tensor([start], dtype=torch.float64)
    average = descend.WeightAverage([x], decay=None)
    for value in values:
        x.fill_(value)
        average.update()
    assert average.averages[0].item() == pytest.approx(
        (start + sum(values)) / (len(values) + 1), abs=1e-9
    )


def test_ema_matches_torch_swa_utils():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).double()
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    average = descend.WeightAverage(model.parameters(), decay=0.9)
    reference.update_parameters(model)  # its first update copies; ours starts from a copy too
    optimizer = descend.SGD(model.parameters(), lr=0.1)
    for _ in range(15):
        optimizer.zero_grad()
        model(torch.randn(8, 4, dtype=torch.float64)).pow(2).sum().backward()
        optimizer.step()
        average.update()
        reference.update_parameters(model)
    for mine, theirs in zip(average.averages, reference.module.parameters(), strict=True):
        assert torch.allclose(mine, theirs, rtol=1e-12, atol=1e-12)


def test_applied_swaps_weights_in_and_restores_them():
    x = torch.tensor([1.0])
    average = descend.WeightAverage([x], decay=0.5)
    x.fill_(3.0)
    average.update()  # average = 2
    with average.applied():
        assert x.item() == 2.0
    assert x.item() == 3.0


def test_raw_weights_are_restored_after_an_error_in_the_block():
    x = torch.tensor([1.0])
    average = descend.WeightAverage([x], decay=0.5)
    x.fill_(5.0)
    with pytest.raises(RuntimeError), average.applied():
        raise RuntimeError("evaluation failed")
    assert x.item() == 5.0


def test_state_dict_roundtrip_and_bad_decay():
    x = torch.tensor([1.0, 2.0])
    average = descend.WeightAverage([x], decay=0.9)
    x.add_(1)
    average.update()
    other = descend.WeightAverage([torch.zeros(2)], decay=0.5)
    other.load_state_dict(average.state_dict())
    assert torch.equal(other.averages[0], average.averages[0]) and other.decay == 0.9
    with pytest.raises(ValueError, match="decay=1.0 is out of range"):
        descend.WeightAverage([x], decay=1.0)
    with pytest.raises(ValueError, match="no parameters"):
        descend.WeightAverage([])
