"""What the newer methods' studies share: optimizer specs, step counts and their words."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from descend.specs import OptimizerSpec


def optimizer_spec(cls: type[torch.optim.Optimizer], name: str, **arguments: Any) -> OptimizerSpec:
    """The spec of ``cls`` (registered as ``name``) with ``arguments``, labelled as typed."""
    body = ",".join(f"{key}={value!r}" for key, value in arguments.items())
    return OptimizerSpec(f"{name}:{body}", name, cls, arguments)


def steps_to_stay(values: np.ndarray, tolerance: float) -> int | None:
    """The first step from which ``values`` stay at or below ``tolerance`` (None if the run
    ends above it)."""
    above = np.flatnonzero(~(np.asarray(values) <= tolerance))
    if above.size == 0:
        return 0
    last = int(above[-1])
    return last + 1 if last + 1 < len(values) else None


def count_text(value: int | None, horizon: int) -> int | str:
    """A step count for a table or sentence: the count, or ``> horizon`` when there is none."""
    return value if value is not None else f"> {horizon}"


def span_text(values: Sequence[int | str]) -> str:
    """``"446 at every kappa"`` when every value is the same, else ``"223 to 241"`` (the
    smallest to the largest; a count past the horizon, ``"> 500"``, counts as the largest)."""
    texts = [str(value) for value in values]
    if len(set(texts)) == 1:
        return f"{texts[0]} at every kappa"
    numbers = [value for value in values if isinstance(value, int)]
    beyond = [value for value in values if not isinstance(value, int)]
    largest = beyond[0] if beyond else max(numbers)
    return f"{min(numbers)} to {largest}" if numbers else f"{texts[0]} to {texts[-1]}"


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: these problems are tiny, and a second
    thread only costs synchronization (tens of times more beside a busy neighbour)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
