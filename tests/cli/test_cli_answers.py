"""Command-line answers: each mistake suggests the closest name before listing the valid ones,
argument errors load nothing heavy, and race's tolerance suits the problem."""

from __future__ import annotations

import pytest

from descend.cli.main import COMMANDS, main
from descend.suggest import closest

SCHEDULES = ["constant", "step", "exponential", "inverse_time", "1/t", "cosine", "warmup_cosine"]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unknown_option_of_any_command_points_to_its_own_help(command, capsys):
    assert main([command, "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"see 'descend {command} --help'" in err


@pytest.mark.parametrize(
    "typed, meant",
    [
        ("ex", "exponential"),
        ("expn", "exponential"),
        ("cosn", "cosine"),
        ("warmp", "warmup_cosine"),
    ],
)
def test_a_short_or_misspelt_beginning_of_a_name_gets_a_suggestion(typed, meant):
    assert closest(typed, SCHEDULES) == meant


def test_unknown_optimizer_suggests_first_and_lists_briefly(capsys):
    assert main(["race", "ravine", "adamm"]) == 2
    err = capsys.readouterr().err
    assert err.index("did you mean 'adam'?") < err.index("valid: sgd")
    assert "functional.nesterov_momentum" not in err and "(see 'descend optimizers')" in err
    assert "or functional.<name> such as functional.adam" in err


def test_race_on_a_noisy_problem_reports_the_steps_to_its_own_tolerance(capsys):
    assert main(["race", "least_squares", "sgd:lr=0.05", "--steps", "300"]) == 0
    out = capsys.readouterr().out
    assert "stays <= 1e-06" not in out
    row = next(line for line in out.splitlines() if line.strip().startswith("sgd:lr=0.05"))
    assert row.split()[3].isdigit(), row


@pytest.mark.parametrize(
    "argv, meant",
    [
        (["race", "ravine", "sgd:lrr=0.1"], "did you mean 'lr'?"),
        (["race", "ravine", "torch.optim.SGD:momentm=0.9"], "did you mean 'momentum'?"),
        (["race", "ravine:kapa=3", "sgd"], "did you mean 'kappa'?"),
        (["race", "ravine", "sgd", "--schedule", "step:stepsize=3"], "did you mean 'step_size'?"),
        (["race", "ravine", "sgd:lrr=0.1,momentm=3"], "'lr' for 'lrr', 'momentum' for 'momentm'"),
    ],
)
def test_a_misspelt_argument_of_an_optimizer_problem_or_schedule_gets_a_suggestion(
    argv, meant, capsys
):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and meant in err
    assert err.index("did you mean") < err.index("valid:")
