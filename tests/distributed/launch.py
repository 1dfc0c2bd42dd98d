"""Worker processes on CPU with gloo (two unless told), as the distributed tests start them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import descend

ROOT = Path(__file__).resolve().parents[2]


def torchrun(arguments: list[str], timeout: float = 600, processes: int = 2) -> str:
    """Run a worker (``arguments``: a script path or ``-m module``, then its own arguments) on
    ``processes`` processes through ``torch.distributed.run`` and return their output; fail
    the test with that output if they fail or outlast ``timeout`` seconds (then they are
    killed, torchrun and all)."""
    source = Path(descend.__file__).resolve().parents[1]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    # --standalone: a local rendezvous on a free loopback port, chosen by torchrun itself.
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        *arguments,
    ]
    process = subprocess.Popen(
        command,
        env=environment,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun did not finish in {timeout:.0f} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


@contextmanager
def one_rank_mesh() -> Iterator[object]:
    """A one-rank gloo process group in this process (no port: an in-memory store) and its
    1-D CPU mesh, destroyed on leaving; the test is skipped if a group is already up."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if dist.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()
