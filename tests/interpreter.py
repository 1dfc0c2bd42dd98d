"""Running a script in a fresh Python process under Triton's interpreter (``TRITON_INTERPRET=1``
must be set before Triton is imported, so a test that needs it starts a process of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_under_triton_interpreter(script: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``script`` with ``python -c`` from the repository root, with Triton's interpreter on
    and the sources and the tests importable; return the finished process (output captured)."""
    environment = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
    }
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
