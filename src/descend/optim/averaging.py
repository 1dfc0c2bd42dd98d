"""Weight averaging: an exponential moving average (or Polyak's running mean) of parameters.

The notes' ``x_test = 0.995 * x_test + 0.005 * x``: evaluate with a smoothed copy of the weights
while the optimizer keeps training the raw ones. Works with any optimizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch


class WeightAverage:
    """An average of parameters, updated after each optimizer step.

    ``decay`` in [0, 1) gives the exponential moving average
    ``x_avg <- decay * x_avg + (1 - decay) * x``; ``decay=None`` gives Polyak averaging, the
    plain mean of the starting point and every iterate since,
    ``x_avg <- x_avg + (x - x_avg) / (n + 1)`` after the n-th update.

    Example::

        average = WeightAverage(model.parameters(), decay=0.995)
        for batch in data:
            ...; optimizer.step(); average.update()
        with average.applied():
            evaluate(model)
    """

    def __init__(self, params: Iterable[torch.Tensor], decay: float | None = 0.995) -> None:
        if decay is not None and not 0.0 <= decay < 1.0:
            raise ValueError(
                f"decay={decay!r} is out of range: expected 0 <= decay < 1, "
                "or None for Polyak averaging"
            )
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("WeightAverage got no parameters")
        self.decay = decay
        self.count = 0
        self.averages = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the parameters' current values into the average."""
        self.count += 1
        weight = 1.0 / (self.count + 1) if self.decay is None else 1.0 - self.decay
        for average, param in zip(self.averages, self.params, strict=True):
            average.lerp_(param.detach(), weight)

    @torch.no_grad()
    def copy_to(self, params: Iterable[torch.Tensor] | None = None) -> None:
        """Write the averages into ``params`` (default: the tracked parameters)."""
        targets = self.params if params is None else list(params)
        for average, target in zip(self.averages, targets, strict=True):
            target.copy_(average)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Swap the averaged weights in for the block, and the raw weights back afterwards."""
        raw = [p.detach().clone() for p in self.params]
        self.copy_to()
        try:
            yield
        finally:
            with torch.no_grad():
                for param, saved in zip(self.params, raw, strict=True):
                    param.copy_(saved)

    def state_dict(self) -> dict[str, Any]:
        """The averages, the count and the decay, for checkpoints."""
        return {
            "decay": self.decay,
            "count": self.count,
            "averages": [a.clone() for a in self.averages],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        averages = state["averages"]
        if len(averages) != len(self.averages):
            raise ValueError(
                f"state has {len(averages)} averages, this object tracks "
                f"{len(self.averages)} parameters"
            )
        self.decay = state["decay"]
        self.count = int(state["count"])
        with torch.no_grad():
            for mine, saved in zip(self.averages, averages, strict=True):
                mine.copy_(saved)
