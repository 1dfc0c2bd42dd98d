"""What every comparison with HeavyBall sets up: HeavyBall run eagerly, and torch's default
dtype, in which HeavyBall computes its step scalars (learning rate, ``beta**t``, caution's
``n / kept``) from integer tensors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """torch's default dtype set to ``dtype`` inside, restored after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextmanager
def eager_heavyball(dtype: torch.dtype | None = torch.float64) -> Iterator[pytest.MonkeyPatch]:
    """HeavyBall with ``compile_mode = None`` (its helpers are otherwise ``torch.compile``'d,
    which may reorder float operations) and, unless ``dtype`` is None, that default dtype;
    both restored after. Yields the patcher, for a test that changes one more thing."""
    import heavyball.utils

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(heavyball.utils, "compile_mode", None)
        if dtype is None:
            yield patch
        else:
            with default_dtype(dtype):
                yield patch
