"""One reduced run of ``descend demo`` shared by the end-to-end and browser tests."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from descend.cli.main import main


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report folder of ``descend demo --quick --out DIR`` and what it printed."""
    out = tmp_path_factory.mktemp("demo") / "report"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["demo", "--quick", "--out", str(out)])
    assert status == 0
    return out, printed.getvalue()
