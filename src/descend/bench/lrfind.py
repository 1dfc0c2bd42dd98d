"""The learning-rate range test (Smith, 2017): raise the rate exponentially over one short run.

The loss is recorded against the learning rate, smoothed with a bias-corrected exponential
moving average; the run stops once the smoothed loss exceeds ``diverge_factor`` times its
minimum. The suggestion is a tenth of the rate at the minimum of the smoothed loss: the
minimum sits at the edge of instability, and a tenth of it is still fast but stable. The rate
of steepest descent is reported as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from descend.bench.data import Batch
from descend.bench.tasks import Task
from descend.specs import OptimizerSpec, parse_optimizer


@dataclass
class LRFindResult:
    """Losses against learning rates, and the suggested rate.

    Attributes:
        lrs, losses, smoothed: per step, the rate used, the mini-batch loss, its smoothed value.
        min_lr: the rate at the smallest smoothed loss.
        suggestion: ``min_lr / 10``.
        steepest: the rate where the smoothed loss falls fastest (per log-rate).
        stopped_early: whether the loss blew up before ``end_lr``.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    min_lr: float
    suggestion: float
    steepest: float | None
    stopped_early: bool

    def plot(self, path: str, title: str = "learning-rate range test") -> None:
        """Save the loss-against-rate curve, with the suggestion marked, as an image."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6.5, 4))
        axis.plot(self.lrs, self.losses, color="0.75", lw=1, label="mini-batch loss")
        axis.plot(self.lrs, self.smoothed, color="C0", label="smoothed")
        axis.axvline(self.suggestion, color="C2", ls="--",
                     label=f"suggestion {self.suggestion:.2g}")
        axis.axvline(self.min_lr, color="C3", ls=":", label=f"minimum {self.min_lr:.2g}")
        axis.set_xscale("log")
        finite = [value for value in self.smoothed if math.isfinite(value)]
        if finite:
            low, high = min(finite), self.smoothed[0] if math.isfinite(self.smoothed[0]) else 1
            axis.set_ylim(low - 0.1 * abs(high - low), max(high, low) * 1.5 + 1e-12)
        axis.set_xlabel("learning rate")
        axis.set_ylabel("loss")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)


def _cycle(batches: Callable[[], Iterable[Batch]]) -> Iterator[Batch]:
    while True:
        empty = True
        for batch in batches():
            empty = False
            yield batch
        if empty:
            raise ValueError("the training data yielded no batches")


def lr_range_test(model: nn.Module, batches: Callable[[], Iterable[Batch]],
                  loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  optimizer: str | OptimizerSpec = "sgd", start_lr: float = 1e-7,
                  end_lr: float = 10.0, steps: int = 100, smoothing: float = 0.05,
                  diverge_factor: float = 4.0) -> LRFindResult:
    """Run the range test on ``model`` (trained in place: pass a fresh one).

    ``batches()`` returns an iterable of ``(inputs, targets)`` and is called again whenever it
    runs out. ``optimizer`` is a spec such as ``"adam"`` or ``"sgd_momentum:momentum=0.9"``;
    its lr is overridden step by step.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"start_lr={start_lr!r}, end_lr={end_lr!r} are invalid: expected "
                         "0 < start_lr < end_lr")
    if steps < 5:
        raise ValueError(f"steps={steps!r} is invalid: expected >= 5")
    if not 0 < smoothing <= 1:
        raise ValueError(f"smoothing={smoothing!r} is invalid: expected 0 < smoothing <= 1")
    spec = parse_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    opt = spec.with_arguments(lr=start_lr).build(model.parameters())
    model.train()
    lrs, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    stopped = False
    source = _cycle(batches)
    for step in range(steps):
        lr = start_lr * (end_lr / start_lr) ** (step / (steps - 1))
        for group in opt.param_groups:
            group["lr"] = lr
        inputs, targets = next(source)
        opt.zero_grad(set_to_none=True)
        value = loss(model(inputs), targets)
        current = float(value.detach())
        if not math.isfinite(current):
            stopped = True
            break
        value.backward()
        opt.step()
        average = (1 - smoothing) * average + smoothing * current
        estimate = average / (1 - (1 - smoothing) ** (step + 1))
        lrs.append(lr)
        losses.append(current)
        smoothed.append(estimate)
        best = min(best, estimate)
        if estimate > diverge_factor * best and step > 0:
            stopped = True
            break
    if len(lrs) < 3:
        raise ValueError(f"the loss blew up within {len(lrs)} steps of start_lr={start_lr:g}; "
                         "lower start_lr")
    index = int(np.argmin(smoothed))
    log_lrs = np.log(lrs)
    slopes = np.gradient(np.asarray(smoothed), log_lrs)
    steepest = float(lrs[int(np.argmin(slopes[:index + 1]))]) if index > 0 else None
    return LRFindResult(lrs, losses, smoothed, lrs[index], lrs[index] / 10, steepest, stopped)


def lr_find(task: Task, optimizer: str | OptimizerSpec = "sgd", start_lr: float = 1e-7,
            end_lr: float = 10.0, steps: int = 100, seed: int = 0, **options: float
            ) -> LRFindResult:
    """The range test on a fresh model of ``task`` (built-in or :meth:`Task.custom`)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = task.model_factory()
    return lr_range_test(model, lambda: task.train.batches(generator), task.loss, optimizer,
                         start_lr, end_lr, steps, **options)
