"""Shared fixtures of the benchmark tests: a small CIFAR-10 folder in the standard format, and a
fresh database on the PostgreSQL server named by ``DESCEND_TEST_POSTGRES`` (skipped without one)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from descend.bench.cifar10 import write_batch

#: Each class is a solid color plus noise, so a few epochs separate them.
COLORS = np.random.default_rng(1).integers(0, 256, size=(10, 3))


def make_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` 32x32 images whose class is their base color."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count)
    noise = rng.normal(0, 20, size=(count, 3, 32, 32))
    images = np.clip(COLORS[labels][:, :, None, None] + noise, 0, 255).astype(np.uint8)
    return images, labels


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    """A folder with data_batch_1..5 (24 images each) and test_batch (40 images)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for index in range(1, 6):
        write_batch(folder / f"data_batch_{index}", *make_images(24, index))
    write_batch(folder / "test_batch", *make_images(40, 99))
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """Run the small models on one thread (what ``descend bench`` does), then restore."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def database():
    """A fresh database on the server, dropped afterwards; yields its URL."""
    server = os.environ.get("DESCEND_TEST_POSTGRES")
    if not server:
        pytest.skip("no PostgreSQL server: set DESCEND_TEST_POSTGRES (.ci/run starts one)")
    import psycopg

    name = f"descend_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(server, autocommit=True)
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
