"""Fixtures shared by the distributed tests."""

from __future__ import annotations

import pytest

from tests.distributed.launch import one_rank_mesh


@pytest.fixture(scope="module")
def mesh():
    """A one-rank gloo mesh in this process, for the module's tests."""
    with one_rank_mesh() as made:
        yield made
