"""``descend optimizers`` lists the registry, and the README's table is its output."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from descend.cli.main import main
from descend.cli.optimizers import markdown
from descend.rules import RULES

README = Path(__file__).resolve().parents[2] / "README.md"


def run(argv: list[str]) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(argv)
    return status, printed.getvalue()


def test_every_rule_is_listed_with_its_names():
    status, printed = run(["optimizers"])
    assert status == 0
    for rule in RULES.values():
        line = next(
            line
            for line in printed.splitlines()
            if line.startswith(rule.name + " ") or line.startswith(rule.name + ",")
        )
        assert all(alias in line for alias in rule.aliases)


def test_the_readme_table_is_the_registry():
    status, printed = run(["optimizers", "--markdown"])
    assert status == 0 and printed.strip() == markdown()
    assert markdown() in README.read_text(), (
        "README's table of optimizers differs from the registry: paste the output of "
        "'descend optimizers --markdown'"
    )
