"""Benchmarks of optimizers on real networks: tasks, tuning, seeds, time to target, reports.

    from descend.bench import Task, BenchConfig, run_bench, lr_find, get_task

    results, rows = run_bench([get_task("digits-mlp")], ["sgd", "adam"],
                              config=BenchConfig(trials=8, seeds=3, out="bench-out"))

    task = Task.custom("mine", make_model, train_loader, val_loader, test_loader)
    run_bench([task], ["sgd_momentum", "adam"], schedules=["constant", "cosine"])
    lr_find(task, "sgd").suggestions.valley

Everything is stored in an Optuna storage (default: ``bench.db`` in the output folder) as it
finishes; running the same benchmark again resumes it.

A new workload registers once with :func:`register_task`; ``descend bench --task`` and its
help then list it.

The modules, in the order data flows: :mod:`~descend.bench.tasks` (what is trained,
registered once; data in :mod:`~descend.bench.data`, models in :mod:`~descend.bench.models`),
:mod:`~descend.bench.contenders` (what races), :mod:`~descend.bench.training` (one run),
:mod:`~descend.bench.search` (search spaces, samplers, pruners),
:mod:`~descend.bench.storage` and :mod:`~descend.bench.studies` (where trials live),
:mod:`~descend.bench.protocol` (tuning then seeds, for every task and contender, through the
stages :mod:`~descend.bench.planning`, :mod:`~descend.bench.claims`,
:mod:`~descend.bench.trial` and :mod:`~descend.bench.collect`),
:mod:`~descend.bench.results` (summaries, timing checks, results.json),
:mod:`~descend.bench.report` (the HTML report) and :mod:`~descend.bench.lrfind` (the range
test). Names are imported on first use, so listing the tasks loads neither torch nor Optuna.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Each public name and the module that defines it.
_NAMES = {
    "LRFindResult": "lrfind",
    "LRSuggestions": "lrfind",
    "lr_find": "lrfind",
    "lr_range_test": "lrfind",
    "suggest_lrs": "lrfind",
    "Bench": "protocol",
    "BenchConfig": "protocol",
    "BenchContender": "protocol",
    "Reporter": "protocol",
    "make_contender": "protocol",
    "run_bench": "protocol",
    "write_outputs": "protocol",
    "ContenderResult": "results",
    "summarize": "results",
    "Dimension": "search",
    "Task": "tasks",
    "TaskEntry": "tasks",
    "get_task": "tasks",
    "register_task": "tasks",
    "task_names": "tasks",
    "EpochMetrics": "training",
    "RunResult": "training",
    "train": "training",
}

__all__ = [
    "Bench",
    "BenchConfig",
    "BenchContender",
    "ContenderResult",
    "Dimension",
    "EpochMetrics",
    "LRFindResult",
    "LRSuggestions",
    "Reporter",
    "RunResult",
    "Task",
    "TaskEntry",
    "get_task",
    "lr_find",
    "lr_range_test",
    "make_contender",
    "register_task",
    "run_bench",
    "suggest_lrs",
    "summarize",
    "task_names",
    "train",
    "write_outputs",
]

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from descend.bench.lrfind import (
        LRFindResult,
        LRSuggestions,
        lr_find,
        lr_range_test,
        suggest_lrs,
    )
    from descend.bench.protocol import (
        Bench,
        BenchConfig,
        BenchContender,
        Reporter,
        make_contender,
        run_bench,
        write_outputs,
    )
    from descend.bench.results import ContenderResult, summarize
    from descend.bench.search import Dimension
    from descend.bench.tasks import Task, TaskEntry, get_task, register_task, task_names
    from descend.bench.training import EpochMetrics, RunResult, train


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(f"descend.bench.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'descend.bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})
