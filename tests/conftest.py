"""Markers that follow from where a test lives (the markers themselves are registered in
pyproject.toml): a test file added to ``tests/distributed`` is marked ``distributed`` without a
line of its own, so ``-m "not distributed"`` never runs a process group by accident."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Folder (relative to this one) -> the marker every test inside it carries.
FOLDER_MARKERS = {"distributed": "distributed"}

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Add each folder's marker to the tests collected from it."""
    for item in items:
        parts = item.path.resolve().relative_to(HERE).parts
        marker = FOLDER_MARKERS.get(parts[0]) if len(parts) > 1 else None
        if marker is not None:
            item.add_marker(marker)
