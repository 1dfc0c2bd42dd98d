"""``backend="auto"`` never waits for a kernel: while one loads or compiles in the background,
steps run on the reference executor, which computes the same bits, and the kernel takes over
once it is there. A named ``backend="fused"`` waits for it."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

import descend
from descend.kernels import fused

pytestmark = pytest.mark.skipif(not fused.fused_available(), reason="needs Numba")


@pytest.fixture
def slow_compiler(monkeypatch):
    """Kernels load only when the test says so (as a cold compile would take its time)."""
    # Loads that earlier tests started in the background (a cold compile of a cautious pass,
    # say) hold the store's lock: finished first, so that only this test's loads are seen.
    fused.KERNELS.finish_loading()
    gate = threading.Event()
    loads = []
    real = fused.KERNELS.load

    def gated(key):  # called only for a kernel not in memory
        loads.append(threading.current_thread().name)
        assert gate.wait(60), "the test never released the compiler"
        return real(key)

    monkeypatch.setattr(fused.KERNELS, "load", gated)
    monkeypatch.setattr(fused.KERNELS, "kernels", {})
    return gate, loads


def pair(backend, seed=0):
    torch.manual_seed(seed)
    params = [torch.randn(64, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    twins = [p.detach().clone().requires_grad_() for p in params]
    return (
        params,
        descend.AdamW(params, lr=0.1, backend=backend),
        twins,
        descend.AdamW(twins, lr=0.1, backend="reference"),
    )


def step(params, optimizer, twins, reference):
    for p, q in zip(params, twins, strict=True):
        grad = torch.randn_like(p)
        p.grad, q.grad = grad.clone(), grad.clone()
    optimizer.step()
    reference.step()


@pytest.mark.slow
def test_auto_steps_on_while_the_kernel_loads_and_switches_without_changing_a_bit(slow_compiler):
    gate, loads = slow_compiler
    params, optimizer, twins, reference = pair("auto")
    launches = []
    launch = fused.FusedExecutor.launch

    def counted(self, *arguments, **keywords):
        launches.append(1)
        return launch(self, *arguments, **keywords)

    fused.FusedExecutor.launch = counted
    try:
        for _ in range(3):  # the compiler is held: these run on the reference executor
            step(params, optimizer, twins, reference)
        assert not launches and loads == ["descend-kernel-loader"]
        gate.set()
        for thread in list(fused.KERNELS.loading.values()):
            thread.join(60)
        for _ in range(3):
            step(params, optimizer, twins, reference)
        assert launches, "the fused kernel never took over"
    finally:
        fused.FusedExecutor.launch = launch
    for p, q in zip(params, twins, strict=True):
        assert torch.equal(p, q)
    for p, q in zip(params, twins, strict=True):
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(optimizer.state[p][name], reference.state[q][name])


def test_a_named_fused_backend_waits_for_its_kernel(slow_compiler):
    gate, loads = slow_compiler
    params, optimizer, twins, reference = pair("fused")
    gate.set()  # released before the step: the step itself compiles, on this thread
    step(params, optimizer, twins, reference)
    assert loads == [threading.current_thread().name]


def test_a_kernel_that_fails_in_the_background_fails_the_next_step_before_any_change(monkeypatch):
    monkeypatch.setattr(fused.KERNELS, "kernels", {})

    def broken(key):
        raise ValueError("the kernel cache directory /nowhere cannot be used")

    monkeypatch.setattr(fused.KERNELS, "load", broken)
    params, optimizer, twins, reference = pair("auto")
    step(params, optimizer, twins, reference)  # runs on the reference executor
    for thread in list(fused.KERNELS.loading.values()):
        thread.join(60)
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="cannot be used"):
        optimizer.step()
    for p, old in zip(params, before, strict=True):
        assert torch.equal(p, old)
    assert float(optimizer.state[params[0]]["step"]) == 1.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_waits_for_a_loading_kernel_so_the_child_holds_no_lock(slow_compiler):
    gate, loads = slow_compiler
    params, optimizer, twins, reference = pair("auto")
    step(params, optimizer, twins, reference)  # the kernel now loads in the background
    assert loads and fused.KERNELS.loading
    threading.Timer(0.5, gate.set).start()
    start = time.monotonic()
    child = os.fork()
    if child == 0:  # the child: no background load pending, every lock free
        store = fused.KERNELS
        free = store.lock.acquire(timeout=5) and store.loading_lock.acquire(timeout=5)
        os._exit(0 if free and not store.loading else 1)
    waited = time.monotonic() - start
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert waited >= 0.4  # the fork waited for the load instead of copying it half-done


def test_finishing_background_loads_waits_for_every_store(slow_compiler, monkeypatch):
    """What a benchmark calls before timing steady-state steps: it returns only once the
    loading kernel and the compiled address reader (another store) are both in memory."""
    from descend.kernels import tensor_addresses
    from descend.kernels.cache import finish_background_loads

    gate, loads = slow_compiler
    reader_gate = threading.Event()
    real_reader = tensor_addresses.READERS.load

    def gated_reader(key):
        assert reader_gate.wait(60), "the test never released the address reader"
        return real_reader(key)

    monkeypatch.setattr(tensor_addresses.READERS, "load", gated_reader)
    monkeypatch.setattr(tensor_addresses.READERS, "kernels", {})
    params, optimizer, twins, reference = pair("auto")
    step(params, optimizer, twins, reference)  # the kernel now loads in the background
    tensor_addresses.READERS.if_ready("reader")  # and so does the reader
    assert loads and fused.KERNELS.loading and tensor_addresses.READERS.loading
    threading.Timer(0.3, gate.set).start()
    threading.Timer(0.6, reader_gate.set).start()
    start = time.monotonic()
    finish_background_loads()
    assert time.monotonic() - start >= 0.5
    assert not fused.KERNELS.loading and not tensor_addresses.READERS.loading
    assert fused.KERNELS.kernels and "reader" in tensor_addresses.READERS.kernels
