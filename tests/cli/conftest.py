"""One reduced run of ``descend demo`` shared by the end-to-end and browser tests.

Under pytest-xdist each worker is its own process, so the run is made once for the whole
session in the workers' shared temporary folder (under a file lock) and read by every worker.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from filelock import FileLock

from descend.cli.main import main


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report folder of ``descend demo --quick --out DIR`` and what it printed."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "shared-demo" / "report"
    printed_file = shared / "shared-demo" / "printed.txt"
    with FileLock(str(shared / "shared-demo.lock")):
        if not printed_file.exists():
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                status = main(["demo", "--quick", "--out", str(out)])
            assert status == 0
            printed_file.write_text(printed.getvalue())
    return out, printed_file.read_text()
