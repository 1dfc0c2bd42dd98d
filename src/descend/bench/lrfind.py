"""The learning-rate range test (Smith, 2017): raise the rate exponentially over one short run.

The loss is recorded against the learning rate; the run stops once a running (bias-corrected,
exponentially weighted) average of the loss exceeds ``diverge_factor`` times its minimum. The
curve is then smoothed without lag (the same average run forwards and backwards, so the
smoothed minimum sits where the raw loss is lowest, not to its right) and read three ways, as
fastai's learning-rate finder does (:func:`suggest_lrs`):

- **steepest**: where the smoothed loss falls fastest per decade of learning rate;
- **valley**: the middle (in log rate) of the stretch over which the loss falls: from where
  the smoothed loss has made a tenth of its fall from its first value to its minimum, to the
  minimum (the recommended rate: robust to a noisy minimum). fastai takes the middle of the
  longest falling stretch; a lag-free smoothed curve falls a little from the very first
  step, so here the stretch starts where the fall is clear;
- **minimum**: a tenth of the rate at the smoothed minimum (the minimum sits at the edge of
  instability; a tenth of it is still fast but stable).

    from descend.bench import get_task, lr_find

    result = lr_find(get_task("digits-mlp"), "adam")
    result.suggestions.valley, result.suggestions.steepest, result.suggestions.minimum
    result.plot("lr-find.png")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from descend.bench.data import Batch
from descend.bench.tasks import Task
from descend.specs import OptimizerSpec, parse_optimizer

if TYPE_CHECKING:
    from matplotlib.figure import Figure


#: Weight of the newest loss in the moving averages. Run forwards and backwards, 0.1 smooths
#: about as much as 0.05 run once, and follows a narrow valley of the raw loss more closely.
SMOOTHING = 0.1

#: The falling stretch of the curve (the valley) starts where the loss has made this fraction of
#: its fall from its first value to its minimum.
VALLEY_START = 0.1


@dataclass(frozen=True)
class LRSuggestions:
    """Three readings of a smoothed loss-against-rate curve (see the module docstring).

    Attributes:
        steepest: the rate where the loss falls fastest per decade (``None`` when the curve
            has no falling part before its minimum).
        valley: the middle, in log rate, of the stretch where the loss falls (from where it
            has made :data:`VALLEY_START` of its fall to its minimum).
        minimum: a tenth of the rate at the curve's minimum.
    """

    steepest: float | None
    valley: float
    minimum: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready form."""
        return asdict(self)


def smooth(losses: Sequence[float], smoothing: float = SMOOTHING) -> list[float]:
    """``losses`` smoothed without lag: a bias-corrected exponential moving average with
    weight ``smoothing`` on the newest value, run forwards and then backwards."""
    if not 0 < smoothing <= 1:
        raise ValueError(f"smoothing={smoothing!r} is invalid: expected 0 < smoothing <= 1")

    def forward(values: Sequence[float]) -> list[float]:
        out, average = [], 0.0
        for step, value in enumerate(values):
            average = (1 - smoothing) * average + smoothing * value
            out.append(average / (1 - (1 - smoothing) ** (step + 1)))
        return out

    return forward(forward(losses)[::-1])[::-1]


def suggest_lrs(lrs: Sequence[float], losses: Sequence[float]) -> LRSuggestions:
    """Steepest, valley and minimum/10 readings of ``losses`` (already smoothed) against
    increasing learning rates ``lrs``."""
    if len(lrs) != len(losses) or len(lrs) < 3:
        raise ValueError(
            f"expected at least 3 rates and as many losses, got {len(lrs)} and {len(losses)}"
        )
    rates = np.asarray(lrs, dtype=float)
    values = np.asarray(losses, dtype=float)
    if not (np.all(rates > 0) and np.all(np.diff(rates) > 0)):
        raise ValueError("lrs must be positive and increasing")
    lowest = int(np.argmin(values))
    slopes = np.diff(values) / np.diff(np.log10(rates))
    falling = slopes[:lowest]
    steepest = None
    if len(falling) and falling.min() < 0:
        index = int(np.argmin(falling))  # the slope between points index and index + 1
        steepest = math.sqrt(rates[index] * rates[index + 1])
    fall = values[0] - values[lowest]
    before = np.flatnonzero(values[: lowest + 1] > values[0] - VALLEY_START * fall)
    start = int(before[-1]) if len(before) else 0
    valley = math.sqrt(rates[start] * rates[lowest])
    return LRSuggestions(steepest, valley, float(rates[lowest]) / 10)


@dataclass
class LRFindResult:
    """Losses against learning rates, and the suggested rates.

    Attributes:
        lrs, losses: per step, the rate used and the mini-batch loss.
        smoothed: the losses smoothed without lag (see :func:`smooth`).
        suggestions: the steepest, valley and minimum/10 rates (see :func:`suggest_lrs`).
        stopped_early: whether the loss blew up before ``end_lr``.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: LRSuggestions
    stopped_early: bool

    @property
    def suggestion(self) -> float:
        """The recommended rate: the valley."""
        return self.suggestions.valley

    @property
    def raw_min_lr(self) -> float:
        """The rate at the lowest mini-batch loss."""
        return self.lrs[int(np.argmin(self.losses))]

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "lrs": self.lrs,
            "losses": self.losses,
            "smoothed": self.smoothed,
            "suggestions": self.suggestions.to_dict(),
            "suggestion": self.suggestion,
            "raw_min_lr": self.raw_min_lr,
            "stopped_early": self.stopped_early,
        }

    def figure(self, title: str = "learning-rate range test") -> Figure:
        """The loss against the rate, raw and smoothed, every value inside the axes, with the
        suggestions marked on the smoothed curve."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6.5, 4), layout="constrained")
        axis.plot(self.lrs, self.losses, color="0.6", lw=0.8, label="mini-batch loss")
        axis.plot(self.lrs, self.smoothed, color="C0", lw=1.6, label="smoothed")
        marks = [
            ("valley (suggested)", self.suggestions.valley, "o", "C2"),
            ("steepest", self.suggestions.steepest, "v", "C1"),
            ("minimum / 10", self.suggestions.minimum, "s", "C3"),
        ]
        for name, lr, marker, color in marks:
            if lr is None:
                continue
            loss = float(np.interp(math.log(lr), np.log(self.lrs), self.smoothed))
            axis.plot([lr], [loss], marker, color=color, ms=8, label=f"{name} {lr:.2g}")
        axis.set_xscale("log")
        everything = [*self.losses, *self.smoothed]
        if min(everything) > 0 and max(everything) > 10 * min(everything):
            axis.set_yscale("log")  # a blow-up at the end would flatten the rest
        axis.set_xlabel("learning rate")
        axis.set_ylabel("loss")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        return figure

    def plot(self, path: str, title: str = "learning-rate range test") -> None:
        """Save :meth:`figure` as an image."""
        import matplotlib.pyplot as plt

        figure = self.figure(title)
        figure.savefig(path, dpi=110)
        plt.close(figure)


def _cycle(batches: Callable[[], Iterable[Batch]]) -> Iterator[Batch]:
    while True:
        empty = True
        for batch in batches():
            empty = False
            yield batch
        if empty:
            raise ValueError("the training data yielded no batches")


def check_range(start_lr: float, end_lr: float, steps: int) -> None:
    """Raise ``ValueError`` unless ``0 < start_lr < end_lr`` (finite) and ``steps >= 5``."""
    if not (math.isfinite(start_lr) and math.isfinite(end_lr) and 0 < start_lr < end_lr):
        raise ValueError(
            f"start_lr={start_lr!r}, end_lr={end_lr!r} are invalid: expected 0 < start_lr < end_lr"
        )
    if steps < 5:
        raise ValueError(f"steps={steps!r} is invalid: expected >= 5")


def lr_range_test(
    model: nn.Module,
    batches: Callable[[], Iterable[Batch]],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: str | OptimizerSpec = "sgd",
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    smoothing: float = SMOOTHING,
    diverge_factor: float = 4.0,
) -> LRFindResult:
    """Run the range test on ``model`` (trained in place: pass a fresh one).

    ``batches()`` returns an iterable of ``(inputs, targets)`` and is called again whenever it
    runs out. ``optimizer`` is a spec such as ``"adam"`` or ``"sgd_momentum:momentum=0.9"``;
    its lr is overridden step by step. ``smoothing`` is the weight of the newest loss in the
    moving average; the test stops once that average exceeds ``diverge_factor`` times its
    minimum, or the loss is not finite.
    """
    check_range(start_lr, end_lr, steps)
    if not 0 < smoothing <= 1:
        raise ValueError(f"smoothing={smoothing!r} is invalid: expected 0 < smoothing <= 1")
    spec = parse_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    opt = spec.with_arguments(lr=start_lr).build(model.parameters())
    model.train()
    lrs, losses = [], []
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
        best = min(best, estimate)
        if estimate > diverge_factor * best and step > 0:
            stopped = True
            break
    if len(lrs) < 3:
        raise ValueError(
            f"the loss blew up within {len(lrs)} steps of start_lr={start_lr:g}; lower start_lr"
        )
    smoothed = smooth(losses, smoothing)
    return LRFindResult(lrs, losses, smoothed, suggest_lrs(lrs, smoothed), stopped)


def lr_find(
    task: Task,
    optimizer: str | OptimizerSpec = "sgd",
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    seed: int = 0,
    smoothing: float = SMOOTHING,
    diverge_factor: float = 4.0,
) -> LRFindResult:
    """The learning-rate range test on a fresh model of ``task`` (built-in or
    :meth:`Task.custom`), with suggested rates.

    Trains one model for at most ``steps`` mini-batches while the rate grows exponentially
    from ``start_lr`` to ``end_lr``; ``seed`` fixes the model's initialization and the batch
    order. Returns an :class:`LRFindResult`: ``result.suggestions`` holds the steepest,
    valley and minimum/10 rates, ``result.suggestion`` the recommended one (the valley), and
    ``result.plot(path)`` draws the raw and smoothed curves with the suggestions marked.

        result = lr_find(get_task("digits-mlp"), "adam", steps=200)
        descend.Adam(model.parameters(), lr=result.suggestion)
    """
    check_range(start_lr, end_lr, steps)
    if seed < 0:
        raise ValueError(f"seed={seed!r} is invalid: expected an integer >= 0")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = task.model_factory()
    return lr_range_test(
        model,
        lambda: task.train.batches(generator),
        task.loss,
        optimizer,
        start_lr,
        end_lr,
        steps,
        smoothing,
        diverge_factor,
    )
