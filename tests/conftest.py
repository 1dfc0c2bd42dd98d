"""Markers that follow from where a test lives (the markers themselves are registered in
pyproject.toml): a test file added to ``tests/distributed`` is marked ``distributed`` without a
line of its own, so ``-m "not distributed"`` never runs a process group by accident.

Triton's interpreter is switched on here, before any test module is imported: Triton reads
``TRITON_INTERPRET`` once, when it is first imported, and importing torch's compiler (which
some modules do) imports it. A module that set it later would get the interpreter for its own
kernels but compiled forms of Triton's library functions (``tl.max``), which then fail inside
an interpreted kernel. GPU checks run in fresh processes without it (``test_triton_gpu.py``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

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
