"""descend.testing: the side-by-side comparison the parity tests are built from."""

from __future__ import annotations

import json

import pytest
import torch

import descend
from descend.testing import (
    OPTION_GRID,
    TOLERANCE,
    ErrorTracker,
    clone_params,
    grouped,
    make_params,
    option_combinations,
    relative_error,
    run_side_by_side,
    torch_class,
)

SHAPES = [(3,), (2, 2), (4,), (5,)]


def test_a_difference_is_measured_against_the_largest_magnitude_of_the_run():
    tracker = ErrorTracker()
    tracker.observe("w", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
    assert tracker.worst() == pytest.approx(0.5 / 2.5)
    # The tensor shrinks: its scale stays the 2.5 it reached, so 1e-3 off is 1e-3 / 2.5.
    tracker.observe("w", torch.tensor([0.001, 0.0]), torch.tensor([0.0, 0.0]))
    assert tracker.worst() == pytest.approx(0.5 / 2.5)
    tracker.observe("b", torch.tensor([0.0]), torch.tensor([0.0]))
    tracker.observe("b", torch.tensor([-4.0]), torch.tensor([-2.0]))
    assert tracker.worst(lambda key: key == "b") == pytest.approx(1.0)
    assert tracker.worst() == pytest.approx(1.0)
    assert tracker.worst(lambda key: key == "nothing") == 0.0


def test_equal_zeros_and_empty_tensors_are_no_error():
    tracker = ErrorTracker()
    tracker.observe("z", torch.zeros(3), torch.zeros(3))
    tracker.observe("e", torch.ones(0), torch.zeros(0))
    assert tracker.worst() == 0.0 and "e" not in tracker.scales
    assert relative_error(torch.tensor([1.0, -8.0]), torch.tensor([1.5, -10.0])) == 0.2
    assert relative_error(torch.tensor([1e-12]), torch.tensor([0.0])) > 1e10


def test_params_are_reproducible_independent_leaves_dealt_round_robin():
    params = make_params(SHAPES, torch.float64, seed=3)
    again = make_params(SHAPES, torch.float64, seed=3)
    assert all(
        torch.equal(a, b) and a.is_leaf and a.requires_grad
        for a, b in zip(params, again, strict=True)
    )
    assert not torch.equal(params[0], make_params(SHAPES, torch.float64, seed=4)[0])
    copies = clone_params(params)
    with torch.no_grad():
        copies[0].add_(1.0)
    assert torch.equal(params[0], again[0])
    groups = grouped(params, [{}, {"lr": 0.5}, {"lr": 0.25}])
    assert [len(group["params"]) for group in groups] == [2, 1, 1]
    assert groups[0]["params"][1] is params[3] and groups[2] == {"params": [params[2]], "lr": 0.25}


def test_an_optimizer_matches_itself_exactly_and_skipped_parameters_stay_put():
    result = run_side_by_side(
        lambda p: torch.optim.Adam(p, lr=0.01),
        lambda p: torch.optim.Adam(p, lr=0.01),
        SHAPES,
        torch.float32,
        steps=20,
        group_options=[{}, {"lr": 0.02}],
    )
    assert result.param_error == result.state_error == 0.0
    start = make_params(SHAPES, torch.float32, seed=0)
    assert torch.equal(result.ours_params[1], start[1])  # parameter 1 never gets a gradient
    assert not torch.equal(result.ours_params[0], start[0])
    assert result.ours.param_groups[1]["lr"] == 0.02


def test_a_slightly_wrong_optimizer_is_caught():
    # A learning rate off by one part in ten thousand: far above rounding, far below sight.
    result = run_side_by_side(
        lambda p: torch.optim.SGD(p, lr=0.1 * (1 + 1e-4), momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        SHAPES,
        torch.float64,
        steps=10,
    )
    assert TOLERANCE[torch.float64] < result.param_error < 1e-2
    assert result.state_error == 0.0  # the momentum buffers see the same gradients
    wrong_state = run_side_by_side(
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.999)),
        lambda p: torch.optim.Adam(p, lr=0.01),
        SHAPES,
        torch.float32,
        steps=3,
    )
    assert wrong_state.state_error > 1e-2


def test_missing_or_extra_state_is_an_assertion_naming_both_sets():
    with pytest.raises(AssertionError, match="reference \\['exp_avg'.*ours \\['momentum_buffer"):
        run_side_by_side(
            lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
            lambda p: torch.optim.Adam(p, lr=0.01),
            SHAPES,
            torch.float32,
            steps=2,
        )
    adam_with_amsgrad = lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True)  # noqa: E731
    plain_adam = lambda p: torch.optim.Adam(p, lr=0.01)  # noqa: E731
    run_side_by_side(adam_with_amsgrad, plain_adam, SHAPES, torch.float32, steps=2)
    with pytest.raises(AssertionError, match="max_exp_avg_sq"):
        run_side_by_side(
            adam_with_amsgrad, plain_adam, SHAPES, torch.float32, steps=2, exact_state_keys=True
        )


def test_option_combinations_are_the_grid_less_what_torch_refuses():
    combinations = option_combinations("SGD")
    grid = OPTION_GRID["SGD"]
    assert len(combinations) == 16 + 4  # nesterov needs momentum 0.9 and dampening 0
    assert all(set(c) == set(grid) for c in combinations)
    assert all(c["momentum"] and not c["dampening"] for c in combinations if c["nesterov"])
    for name in OPTION_GRID:
        for combination in option_combinations(name):
            torch_class(name)([torch.zeros(1, requires_grad=True)], **combination)
    custom = {"Adam": {"lr": [0.1, -1.0], "amsgrad": [True]}}
    assert option_combinations("Adam", custom) == [{"lr": 0.1, "amsgrad": True}]


def test_a_parity_run_records_its_errors_only_when_asked(tmp_path, monkeypatch):
    """With $DESCEND_PARITY_LOG unset nothing is written; set, run_side_by_side appends its
    worst errors, the dtype and the running test's name, as one line of JSON per comparison."""
    log = tmp_path / "parity.jsonl"
    monkeypatch.delenv("DESCEND_PARITY_LOG", raising=False)

    def compare() -> None:
        run_side_by_side(
            lambda params: descend.SGD(params, lr=0.1),
            lambda params: torch.optim.SGD(params, lr=0.1 * (1 + 1e-6)),
            [(3,), (2, 2)],
            torch.float64,
            steps=3,
        )

    compare()
    assert not log.exists()
    monkeypatch.setenv("DESCEND_PARITY_LOG", str(log))
    compare()
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["test"].endswith("test_a_parity_run_records_its_errors_only_when_asked")
    assert record["dtype"] == "float64"
    # lr off by one part in a million: the parameters differ by about that much, relatively.
    assert 1e-8 < record["params"] < 1e-5
