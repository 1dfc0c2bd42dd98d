"""Summaries of runs: time to target, mean and spread over seeds, performance profiles."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from descend.bench.tasks import Task
from descend.bench.training import RunResult, score


def time_to_target(task: Task, run: RunResult) -> tuple[int | None, float | None]:
    """The first epoch whose validation score reaches ``task.target``, and the training
    seconds until then; ``(None, None)`` if it never does."""
    for metrics in run.history:
        if task.reached(score(task, metrics)):
            return metrics.epoch, metrics.train_seconds
    return None, None


def median_time(values: Sequence[float | None]) -> float:
    """Median over seeds, a run that never reached the target counting as infinitely slow.

    Infinite when half or more of the runs never reached it (as AlgoPerf scores a
    submission that misses the target on a workload).
    """
    if not values:
        return math.inf
    return float(np.median([math.inf if value is None else value for value in values]))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN for no values."""
    if not values:
        return math.nan, math.nan
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def performance_profile(
    times: Mapping[str, Mapping[str, float]], taus: Sequence[float]
) -> dict[str, list[float]]:
    """AlgoPerf-style performance profiles.

    ``times[task][contender]`` is the time to reach the task's target (``inf`` if never). For
    each contender, ``rho(tau)`` is the fraction of tasks on which its time is within a
    factor ``tau`` of the fastest contender on that task. A task no contender solved counts
    against every contender.
    """
    contenders = sorted({name for row in times.values() for name in row})
    profiles = {name: [] for name in contenders}
    for tau in taus:
        for name in contenders:
            within = 0
            for row in times.values():
                best = min(row.values(), default=math.inf)
                value = row.get(name, math.inf)
                if math.isfinite(best) and math.isfinite(value) and value <= tau * best:
                    within += 1
            profiles[name].append(within / len(times) if times else 0.0)
    return profiles


def curves(runs: Sequence[RunResult], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and standard deviation over runs of one per-epoch metric.

    Runs that stopped early (diverged) contribute to the epochs they reached.
    """
    length = max((len(run.history) for run in runs), default=0)
    epochs, means, stds = [], [], []
    for index in range(length):
        values = [
            getattr(run.history[index], key)
            for run in runs
            if index < len(run.history) and getattr(run.history[index], key) is not None
        ]
        if values:
            epochs.append(index + 1)
            means.append(float(np.mean(values)))
            stds.append(float(np.std(values)))
    return np.array(epochs), np.array(means), np.array(stds)
