"""The layout shows the architecture: layers import only from the layers below them, and no
source file grows past what a reader takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "descend"

#: The floors, bottom first; a package may import from its own floor's neighbours only when
#: they are lower. ``descend/__init__.py`` (the public face) gathers from every floor.
FLOORS = (
    {"rules", "suggest"},
    {"schedules"},
    {"kernels"},
    {"functional"},
    {"secondorder"},
    {"optim"},
    {"specs", "reporting"},
    {"lab", "bench", "testing"},
    {"cli"},
)
FLOOR_OF = {package: level for level, floor in enumerate(FLOORS) for package in floor}
MAX_LINES = 500


def _package(path: Path) -> str:
    relative = path.relative_to(SOURCE)
    return relative.parts[0].removesuffix(".py")


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "descend":
                names = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
                found.update(names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "descend" and len(parts) > 1:
                    found.add(parts[1])
    return found


SOURCES = sorted(path for path in SOURCE.rglob("*.py") if path != SOURCE / "__init__.py")


def test_every_package_is_on_a_floor():
    packages = {_package(path) for path in SOURCES}
    assert packages == set(FLOOR_OF), "add the new package to FLOORS"


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(SOURCE)))
def test_imports_run_down_the_floors_only(path):
    own = _package(path)
    upward = sorted(
        package
        for package in _imported_packages(path) - {own}
        if FLOOR_OF.get(package, -1) >= FLOOR_OF[own]
    )
    assert not upward, f"{path.name} ({own}) imports {upward}, which are not below it"


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(SOURCE)))
def test_no_source_file_is_longer_than_the_limit(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it by responsibility"
