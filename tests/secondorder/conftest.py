"""Shared fixtures: one BLAS thread, since the problems are small and threads only add overhead
(and contention when the suite shares a machine)."""

from __future__ import annotations

import pytest

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
    threadpool_limits = None


@pytest.fixture(autouse=True, scope="package")
def _single_blas_thread():
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1):
        yield
