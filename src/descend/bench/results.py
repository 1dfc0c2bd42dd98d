"""What a benchmark found: per-contender results, summary rows, timing checks, results.json.

Time to target by epochs is the primary figure; seconds depend on the machine and its load.
So every seed run's timing is checked, and a run is marked "timing disturbed" when

- its wall time is far above its CPU time (more than :data:`WALL_OVER_CPU` times): the process
  waited for the CPU (a busy neighbour, thread contention) or for data loaded elsewhere;
- or its time per step differs more than :data:`STEP_TIME_SPREAD` times from the median over
  every seed run on the same task: on the same model and batch size the optimizer's step is a
  small part of a step, so such a gap is more likely the machine than the optimizer.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descend.bench.metrics import mean_std, median_time, time_to_target
from descend.bench.tasks import Task
from descend.bench.training import RunResult
from descend.reporting import format_cell

#: A run whose wall time exceeds its CPU time by more than this factor is disturbed.
WALL_OVER_CPU = 2.0
#: A run whose step time is more than this factor from the task's median is disturbed.
STEP_TIME_SPREAD = 2.0
#: The words that flag a disturbed timing in tables, reports and results.json.
DISTURBED = "timing disturbed"


@dataclass
class ContenderResult:
    """Everything measured for one contender on one task."""

    task: str
    label: str
    space: list[str]
    trials: list[dict]
    best_params: dict[str, float] | None
    best_value: float | None
    seed_runs: dict[int, RunResult] = field(default_factory=dict)

    def test_accuracy(self) -> tuple[float, float]:
        """Mean and standard deviation over seeds of the final test accuracy."""
        return mean_std(
            [run.test_accuracy for run in self.seed_runs.values() if run.test_accuracy is not None]
        )

    def test_loss(self) -> tuple[float, float]:
        """Mean and standard deviation over seeds of the final test loss."""
        return mean_std(
            [run.test_loss for run in self.seed_runs.values() if run.test_loss is not None]
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (in results.json)."""
        return {
            "task": self.task,
            "optimizer": self.label,
            "space": self.space,
            "trials": self.trials,
            "best_params": self.best_params,
            "seed_runs": {seed: run.to_dict() for seed, run in self.seed_runs.items()},
        }


def step_seconds(run: RunResult) -> float | None:
    """Training seconds per optimizer step over the whole run (``None`` if not recorded)."""
    if not run.history or not run.history[-1].steps:
        return None
    return run.history[-1].train_seconds / run.history[-1].steps


def timing_notes(results: Sequence[ContenderResult]) -> dict[tuple[str, str], list[str]]:
    """For each ``(task, label)``, why its seed runs' timings are disturbed (empty: they are
    not); see the module's docstring for the two checks."""
    notes: dict[tuple[str, str], list[str]] = {}
    by_task: dict[str, list[float]] = {}
    for result in results:
        for run in result.seed_runs.values():
            seconds = step_seconds(run)
            if seconds is not None and seconds > 0:
                by_task.setdefault(result.task, []).append(seconds)
    for result in results:
        found = notes.setdefault((result.task, result.label), [])
        times = by_task.get(result.task, [])
        median = statistics.median(times) if len(times) > 1 else None
        for seed, run in result.seed_runs.items():
            if not run.history:
                continue
            last = run.history[-1]
            if last.cpu_seconds and last.train_seconds > WALL_OVER_CPU * last.cpu_seconds:
                found.append(
                    f"seed {seed}: wall time {last.train_seconds / last.cpu_seconds:.1f}x "
                    "its CPU time"
                )
            seconds = step_seconds(run)
            if median and seconds:
                ratio = seconds / median
                if ratio > STEP_TIME_SPREAD or ratio < 1 / STEP_TIME_SPREAD:
                    found.append(
                        f"seed {seed}: step time {ratio:.2g}x the median of the task's runs"
                    )
    return notes


def summarize(task: Task, result: ContenderResult, timing: Sequence[str] = ()) -> dict[str, Any]:
    """Per-contender numbers for tables and reports: test score over seeds, time to target,
    and ``timing``, the reasons its timings are disturbed (see :func:`timing_notes`)."""
    epochs, seconds = [], []
    for run in result.seed_runs.values():
        epoch, second = time_to_target(task, run)
        epochs.append(epoch)
        seconds.append(second)
    test_mean, test_std = (
        result.test_accuracy() if task.metric == "accuracy" else result.test_loss()
    )
    return {
        "task": task.name,
        "optimizer": result.label,
        "best_params": result.best_params,
        "best_val": result.best_value,
        "test_mean": test_mean,
        "test_std": test_std,
        "seeds": len(result.seed_runs),
        "target": task.target,
        "reached": sum(epoch is not None for epoch in epochs),
        "epochs_to_target": median_time(epochs),
        "seconds_to_target": median_time(seconds),
        "trials": len(result.trials),
        "pruned": sum(
            trial["state"] == "pruned" and not trial["diverged"] for trial in result.trials
        ),
        "diverged": sum(trial["diverged"] for trial in result.trials),
        "timing_disturbed": bool(timing),
        "timing": list(timing),
    }


def summary_rows(tasks: Sequence[Task], results: Sequence[ContenderResult]) -> list[dict[str, Any]]:
    """:func:`summarize` for every result, with its timing checked against the others."""
    by_name = {task.name: task for task in tasks}
    notes = timing_notes(results)
    return [
        summarize(by_name[result.task], result, notes[result.task, result.label])
        for result in results
    ]


def write_results(
    path: Path, storage: str, rows: Sequence[dict], results: Sequence[ContenderResult]
) -> Path:
    """Write results.json: the storage (as displayed: no password), summary rows and every
    result."""
    payload = {
        "storage": storage,
        "rows": list(rows),
        "results": [result.to_dict() for result in results],
    }
    path.write_text(json.dumps(payload, indent=1))
    return path


#: Columns of the summary: tuning val is the best trial's final validation score; test is
#: over the seed reruns; epochs and seconds to target are medians over seeds (seconds marked
#: ``*`` when the timing is disturbed); reached counts seeds that got there; trials counts
#: tuning trials (pruned/diverged).
SUMMARY_HEADERS = [
    "optimizer",
    "best setting",
    "tuning val",
    "test mean ± std",
    "epochs to target",
    "secs to target",
    "reached",
    "trials (pruned/div.)",
]


def summary_cells(row: dict, metric: str = "accuracy") -> list[str]:
    """A summary row as table cells (shared by the HTML report and the terminal table)."""
    params = row["best_params"]
    setting = (
        "all diverged or pruned"
        if params is None
        else ", ".join(f"{key}={value:.3g}" for key, value in params.items()) or "as given"
    )

    def number(value: float) -> str:
        return f"{value * 100:.2f}" if metric == "accuracy" else f"{value:.4g}"

    test = f"{number(row['test_mean'])} ± {number(row['test_std'])}" if row["seeds"] else "-"
    best_val = "-" if row["best_val"] is None else number(row["best_val"])
    if row["target"] is None:
        epochs = seconds = "-"
    else:
        epochs = format_cell(row["epochs_to_target"], 3)
        seconds = format_cell(row["seconds_to_target"], 2)
        if math.isfinite(row["seconds_to_target"]):
            seconds += "s"
    if row.get("timing_disturbed"):
        seconds += " *"
    return [
        row["optimizer"],
        setting,
        best_val,
        test,
        epochs,
        seconds,
        f"{row['reached']}/{row['seeds']}",
        f"{row['trials']} ({row['pruned']}/{row['diverged']})",
    ]


def timing_lines(rows: Sequence[dict]) -> list[str]:
    """One line per disturbed contender: ``* timing disturbed: adam: seed 2: ...``."""
    return [
        f"* {DISTURBED}: {row['optimizer']}: {'; '.join(row['timing'])}"
        for row in rows
        if row.get("timing_disturbed")
    ]
