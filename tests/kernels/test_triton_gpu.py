"""The Triton executor on a real CUDA GPU: each check of ``triton_gpu_checks.py`` is one test,
so a failure names the check that broke.

Every check runs in a fresh process without ``TRITON_INTERPRET``: a test process has already
imported Triton in interpreter mode (``test_triton.py`` sets it before the first import, and
Triton's mode is fixed at import), and here Triton must compile real kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.kernels import triton_gpu_checks

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CHECKS_SCRIPT = Path(triton_gpu_checks.__file__)
SRC = Path(__file__).resolve().parents[2] / "src"


def check_name(check) -> str:
    """The name a check has on the script's command line and in the test's id."""
    return check.__name__.removeprefix("check_")


@pytest.mark.parametrize("check", triton_gpu_checks.CHECKS, ids=check_name)
def test_gpu_check(check):
    """Run one check in its own process; its printed figures show with ``pytest -rP``."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(SRC.parent)])
    result = subprocess.run(
        [sys.executable, str(CHECKS_SCRIPT), check_name(check)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
