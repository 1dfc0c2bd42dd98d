"""The fused executor is a good neighbour: it never slows down work that is not its own.

Numba's OpenMP threading layer, once started, reset the OpenMP thread count torch reads (undoing
``torch.set_num_threads(1)``) and left spinning workers behind; beside a busy process every later
torch op in the process became tens of times slower. These tests start busy neighbours themselves
and compare torch's speed before and after fused steps, in one run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest
import torch

import descend
from descend.kernels.fused import PARALLEL_GRAIN


def torch_work_seconds(repeats: int = 60) -> float:
    """The median of ``repeats`` small training steps with torch.optim (forward, backward,
    step)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    inputs, targets = torch.randn(32, 64), torch.randint(0, 10, (32,))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.fixture
def busy_neighbours():
    """One spinning process per core, stopped after the test (or after a minute regardless)."""
    code = "import time\nend = time.time() + 60\nwhile time.time() < end: pass"
    processes = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    time.sleep(0.3)
    yield
    for process in processes:
        process.kill()
        process.wait()


@pytest.fixture
def torch_threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_steps_leave_torch_thread_count_alone(threads, torch_threads, monkeypatch):
    monkeypatch.setenv("DESCEND_NUM_THREADS", "2")
    torch.set_num_threads(threads)
    big = torch.nn.Parameter(torch.zeros(3 * PARALLEL_GRAIN))  # shared by two kernel threads
    small = torch.nn.Parameter(torch.zeros(10))
    optimizer = descend.Adam([big, small], backend="fused")
    big.grad, small.grad = torch.ones_like(big), torch.ones_like(small)
    optimizer.step()
    assert torch.get_num_threads() == threads
    # Every element stepped, by whichever thread took its chunk: Adam's first step is -lr.
    for param in (big, small):
        assert torch.equal(param.detach(), torch.full_like(param, float(param.detach()[0])))
        assert float(param.detach()[0]) == pytest.approx(-1e-3, rel=1e-5)


def test_fused_steps_do_not_slow_torch_beside_a_busy_neighbour(
    busy_neighbours, torch_threads, monkeypatch
):
    monkeypatch.setenv("DESCEND_NUM_THREADS", "2")
    torch.set_num_threads(1)  # what descend bench does, and where the slowdown was reported
    before = torch_work_seconds()
    big = torch.nn.Parameter(torch.zeros(3 * PARALLEL_GRAIN))
    small = torch.nn.Parameter(torch.zeros(100))
    optimizer = descend.SGD([big, small], lr=0.1, momentum=0.9, backend="fused")
    for _ in range(3):
        big.grad, small.grad = torch.ones_like(big), torch.ones_like(small)
        optimizer.step()
    after = torch_work_seconds()
    assert after < 4 * before, (
        f"torch steps took {after * 1e3:.2f} ms after fused steps, {before * 1e3:.2f} ms before"
    )
