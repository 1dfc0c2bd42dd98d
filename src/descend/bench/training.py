"""One training run: a task, an optimizer spec, a schedule and a seed, measured every epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from descend.bench.data import Data
from descend.bench.tasks import Task
from descend.optim import ScheduledLR, evaluation_mode
from descend.specs import OptimizerSpec, ScheduleSpec

#: Steps per epoch at which the update/weight ratio is measured (evenly spaced).
RATIO_SAMPLES = 8


@dataclass
class EpochMetrics:
    """Measurements after one epoch.

    ``train_loss`` and ``train_accuracy`` average the mini-batches of the epoch (the model as
    it was at each step, as DeepOBS's cheap estimate); validation metrics evaluate the model
    at the end of the epoch. ``train_seconds`` counts training steps only (evaluation
    excluded), cumulative; ``cpu_seconds`` is the process's CPU time over the same steps (all
    its threads), so a run that waited for the CPU shows wall time far above CPU time;
    ``steps`` counts optimizer steps, cumulative; ``wall_seconds`` counts everything since the
    run started. ``update_ratio`` maps each weight tensor (parameters with two or more
    dimensions) to the mean of ``||x_new - x_old|| / ||x_old||`` over a few steps of the
    epoch. Runs stored before ``cpu_seconds`` and ``steps`` existed read them as ``None``.
    """

    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float | None
    val_loss: float
    val_accuracy: float | None
    train_seconds: float
    wall_seconds: float
    update_ratio: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float | None = None
    steps: int | None = None


@dataclass
class RunResult:
    """A finished (or diverged) run: its per-epoch history and final test metrics."""

    history: list[EpochMetrics]
    diverged: bool = False
    test_loss: float | None = None
    test_accuracy: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (stored with each trial)."""
        return {
            "history": [asdict(epoch) for epoch in self.history],
            "diverged": self.diverged,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            [EpochMetrics(**epoch) for epoch in data["history"]],
            data["diverged"],
            data.get("test_loss"),
            data.get("test_accuracy"),
        )


def score(task: Task, metrics: EpochMetrics) -> float:
    """The task's validation score of an epoch (accuracy, or loss for ``metric="loss"``)."""
    if task.metric == "accuracy" and metrics.val_accuracy is not None:
        return metrics.val_accuracy
    return metrics.val_loss


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, task: Task) -> tuple[float, float | None]:
    """Mean loss and accuracy (``None`` for a loss-only task) of ``model`` on ``data``."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for inputs, targets in data.batches(None):
        outputs = model(inputs)
        total_loss += float(task.loss(outputs, targets)) * len(targets)
        if task.metric == "accuracy":
            correct += int((outputs.argmax(dim=1) == targets).sum())
        count += len(targets)
    model.train()
    if count == 0:
        raise ValueError(f"task {task.name!r}: an evaluation split yielded no examples")
    return total_loss / count, (correct / count if task.metric == "accuracy" else None)


def warm_up(optimizer: OptimizerSpec, model: nn.Module) -> None:
    """Take one step of ``optimizer`` on a copy of ``model``'s parameters (zero gradients).

    The first step of a compiled executor in a process compiles (or loads) its kernel; done
    here, before the clock starts, that cost is not counted as the first run's training time.
    The model itself is untouched.
    """
    copies = [
        param.detach().clone().requires_grad_(True)
        for param in model.parameters()
        if param.requires_grad
    ]
    if not copies:
        return
    for copy in copies:
        copy.grad = torch.zeros_like(copy)
    optimizer.build(copies).step()


def _weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(name, param) for name, param in model.named_parameters() if param.ndim >= 2]


def train(
    task: Task,
    optimizer: OptimizerSpec,
    schedule: ScheduleSpec | None = None,
    seed: int = 0,
    epochs: int | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> RunResult:
    """Train a fresh model from ``task.model_factory`` and measure every epoch.

    ``seed`` fixes the initialization and the order of the mini-batches. ``schedule`` (built
    from the optimizer's lr) sets the learning rate per epoch. ``on_epoch`` sees each epoch's
    metrics and may raise to stop the run (Optuna's pruning does). A non-finite training loss
    stops the run as diverged.
    """
    epochs = task.epochs if epochs is None else epochs
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = task.model_factory()
    model.train()
    warm_up(optimizer, model)
    opt = optimizer.build(model.parameters())
    scheduler = ScheduledLR(opt, schedule.build(optimizer.lr)) if schedule is not None else None
    weights = _weights(model)
    started = time.perf_counter()
    train_seconds = cpu_seconds = 0.0
    total_steps = 0
    history: list[EpochMetrics] = []
    steps_per_epoch = None
    for epoch in range(1, epochs + 1):
        lr = float(opt.param_groups[0]["lr"])
        epoch_started, epoch_cpu = time.perf_counter(), time.process_time()
        loss_sum, correct, count, step = 0.0, 0, 0, 0
        ratio_sums = {name: 0.0 for name, _ in weights}
        ratio_count = 0
        every = max(1, (steps_per_epoch or RATIO_SAMPLES) // RATIO_SAMPLES)
        for inputs, targets in task.train.batches(generator):
            opt.zero_grad(set_to_none=True)
            outputs = model(inputs)
            loss = task.loss(outputs, targets)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                return RunResult(history, diverged=True)
            loss.backward()
            measure = step % every == 0
            if measure:
                before = [param.detach().clone() for _, param in weights]
            opt.step()
            if measure:
                with torch.no_grad():
                    for (name, param), old in zip(weights, before, strict=True):
                        ratio_sums[name] += float((param - old).norm() / (old.norm() + 1e-12))
                ratio_count += 1
            loss_sum += loss_value * len(targets)
            if task.metric == "accuracy":
                correct += int((outputs.detach().argmax(dim=1) == targets).sum())
            count += len(targets)
            step += 1
            if on_step is not None:
                on_step()
        steps_per_epoch = step
        train_seconds += time.perf_counter() - epoch_started
        cpu_seconds += time.process_time() - epoch_cpu
        total_steps += step
        if count == 0:
            raise ValueError(f"task {task.name!r}: the training split yielded no batches")
        with evaluation_mode(opt):
            val_loss, val_accuracy = evaluate(model, task.val, task)
        if not math.isfinite(val_loss):
            return RunResult(history, diverged=True)
        metrics = EpochMetrics(
            epoch,
            lr,
            loss_sum / count,
            correct / count if task.metric == "accuracy" else None,
            val_loss,
            val_accuracy,
            train_seconds,
            time.perf_counter() - started,
            {name: total / max(ratio_count, 1) for name, total in ratio_sums.items()},
            cpu_seconds,
            total_steps,
        )
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
        if scheduler is not None:
            scheduler.step()
    result = RunResult(history)
    if task.test is not None:
        with evaluation_mode(opt):
            result.test_loss, result.test_accuracy = evaluate(model, task.test, task)
    return result
