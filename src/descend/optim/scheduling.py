"""Drive any torch optimizer's learning rate from a descend schedule."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler


class ScheduledLR(LRScheduler):
    """A ``torch.optim.lr_scheduler`` that sets each group's lr to ``schedule(t)``.

    ``t`` counts calls to :meth:`step`: call it after every optimizer step to schedule per step,
    or after every epoch to schedule per epoch. ``schedule`` is one callable for every param
    group, or a sequence of one per group. Works with descend's and ``torch.optim``'s optimizers,
    and saves and loads with ``state_dict`` like any torch scheduler.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: Callable[[int], float] | Sequence[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        groups = len(optimizer.param_groups)
        schedules = list(schedule) if isinstance(schedule, Sequence) else [schedule] * groups
        if len(schedules) != groups:
            raise ValueError(
                f"got {len(schedules)} schedules for {groups} param groups; give "
                "one schedule, or one per group"
            )
        for index, item in enumerate(schedules):
            if not callable(item):
                raise ValueError(
                    f"schedule {index} ({item!r}) is not callable: expected step -> learning rate"
                )
        self.schedules = schedules
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        """The learning rate of each group at the current count (a float each; the type is
        torch's, whose schedulers may give tensors)."""
        return [float(schedule(self.last_epoch)) for schedule in self.schedules]
