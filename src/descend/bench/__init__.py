"""Benchmarks of optimizers on real networks: tasks, tuning, seeds, time to target, reports.

    from descend.bench import Task, BenchConfig, run_bench, lr_find, get_task

    results, rows = run_bench([get_task("digits-mlp")], ["sgd", "adam"],
                              config=BenchConfig(trials=8, seeds=3, out="bench-out"))

    task = Task.custom("mine", make_model, train_loader, val_loader, test_loader)
    run_bench([task], ["sgd_momentum", "adam"], schedules=["constant", "cosine"])
    lr_find(task, "sgd").suggestion

Everything is stored in an Optuna storage (default: ``bench.db`` in the output folder) as it
finishes; running the same benchmark again resumes it.
"""

from descend.bench.lrfind import LRFindResult, lr_find, lr_range_test
from descend.bench.protocol import (
    Bench,
    BenchConfig,
    Contender,
    ContenderResult,
    Reporter,
    make_contender,
    run_bench,
    write_outputs,
)
from descend.bench.tasks import Task, get_task, task_names
from descend.bench.training import EpochMetrics, RunResult, train

__all__ = [
    "Bench", "BenchConfig", "Contender", "ContenderResult", "EpochMetrics", "LRFindResult",
    "Reporter", "RunResult", "Task", "get_task", "lr_find", "lr_range_test", "make_contender",
    "run_bench", "task_names", "train", "write_outputs",
]
