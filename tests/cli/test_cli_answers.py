"""Command-line answers: each mistake suggests the closest name before listing the valid ones,
argument errors load nothing heavy, and race's tolerance suits the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from descend.cli.main import COMMANDS, main
from descend.suggest import closest

SRC = str(Path(__file__).resolve().parents[2] / "src")
HEAVY = ("torch", "optuna", "matplotlib", "numba", "numpy", "sklearn", "rich", "sqlalchemy")
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


@pytest.mark.parametrize(
    "argv",
    [
        ["race", "ravine", "sgd", "--quik"],
        ["race", "ravine", "sgd", "--seed", "-1"],
        ["demo", "--quik"],
        ["playground", "--port", "x"],
    ],
)
def test_argument_errors_of_lab_commands_load_nothing_heavy(argv):
    code = (
        "import contextlib, io, sys\n"
        "from descend.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), "
        "contextlib.redirect_stderr(io.StringIO()):\n"
        f"    main({argv!r})\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_race_on_a_noisy_problem_reports_the_steps_to_its_own_tolerance(capsys):
    assert main(["race", "least_squares", "sgd:lr=0.05", "--steps", "300"]) == 0
    out = capsys.readouterr().out
    assert "stays <= 1e-06" not in out
    row = next(line for line in out.splitlines() if line.strip().startswith("sgd:lr=0.05"))
    assert row.split()[3].isdigit(), row
