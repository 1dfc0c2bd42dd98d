"""The ``descend`` entry point: help, version, misspelt commands, and nothing heavy loaded
before a command needs it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import descend
from descend.cli.main import COMMANDS, main

SRC = str(Path(__file__).resolve().parents[2] / "src")
#: Modules that take seconds to import; help and argument errors must not load any of them.
HEAVY = ("torch", "optuna", "matplotlib", "numba", "numpy", "sklearn", "rich", "sqlalchemy")


def test_descend_alone_prints_the_help_with_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: descend")
    for name, command in COMMANDS.items():
        assert name in out and command.summary in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"descend {descend.__version__}"


@pytest.mark.parametrize(
    "argv, closest",
    [(["rase"], "race"), (["bech", "--task", "x"], "bench"), (["lrfind"], "lr-find")],
)
def test_misspelt_command_suggests_the_closest(argv, closest, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"unknown command {argv[0]!r}" in err and f"did you mean {closest!r}?" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["demo", "--help"],
        ["bench", "--help"],
        ["lr-find", "--help"],
        ["report", "--help"],
        ["scoreboard", "--help"],
        ["bench", "--seeds", "x"],
        ["bench", "--sampler", "tpee"],
        ["rase"],
        ["race", "ravine", "sgd", "--quik"],
        ["race", "ravine", "sgd", "--seed", "-1"],
        ["demo", "--quik"],
        ["playground", "--port", "x"],
    ],
)
def test_help_and_argument_errors_load_nothing_heavy(argv):
    assert heavy_modules_loaded(argv) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["race", "--help"],
        ["playground", "--help"],
        ["race", "ravine", "adm:lr=0.1"],
        ["race", "ravine", "sgd", "functional.adamm"],
        ["race", "ravine", "sgd", "--schedule", "expo"],
        ["race", "ravinne", "sgd"],
    ],
)
def test_help_that_lists_the_registry_and_misspelt_names_load_no_torch(argv):
    # These read the rules and the problems (NumPy), never torch: they answer in well under 1 s.
    assert heavy_modules_loaded(argv) == ["numpy"]


def heavy_modules_loaded(argv: list[str]) -> list[str]:
    """The modules of :data:`HEAVY` that ``descend ARGV`` loads, run in a fresh interpreter."""
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
    return ast.literal_eval(result.stdout.strip())


@pytest.mark.slow
def test_import_descend_loads_no_torch_until_a_name_is_used():
    code = (
        "import sys, descend\n"
        "before = 'torch' in sys.modules\n"
        "descend.Adam\n"
        "print(before, 'torch' in sys.modules, descend.functional.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        check=True,
    )
    assert result.stdout.split() == ["False", "True", "descend.functional"]


@pytest.mark.parametrize(
    "argv, closest",
    [
        (["demo", "--quik"], "--quick"),
        (["race", "ravine", "sgd", "--stpes", "3"], "--steps"),
        (["bench", "--trails", "3"], "--trials"),
        (["lr-find", "--start-rate=0.1"], "--start-lr"),
        (["bench", "--sampler", "tpee"], "tpe"),
    ],
)
def test_a_misspelt_option_points_to_the_commands_own_help_and_the_closest(argv, closest, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"descend {argv[0]}: error: ")
    assert f"did you mean {closest!r}?" in err and f"see 'descend {argv[0]} --help'" in err


@pytest.mark.parametrize(
    "argv, closest",
    [
        (["race", "ravine", "sgd", "--schedule", "expo"], "exponential"),
        (["bench", "--schedules", "cos", "--trials", "0"], "cosine"),
        (["race", "ravine", "Adam"], "adam"),
    ],
)
def test_a_truncated_or_miscased_name_gets_a_suggestion(argv, closest, capsys, tmp_path):
    assert main([*argv, *(["--out", str(tmp_path)] if argv[0] == "bench" else [])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"did you mean {closest!r}?" in err
