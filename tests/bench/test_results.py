"""Summaries flag timings the machine disturbed, from synthetic runs and from a real bench."""

from __future__ import annotations

import json
import time

import pytest
import torch

from descend.bench.protocol import BenchConfig, run_bench
from descend.bench.results import (
    DISTURBED,
    ContenderResult,
    summary_cells,
    timing_lines,
    timing_notes,
)
from descend.bench.tasks import Task
from descend.bench.training import EpochMetrics, RunResult


def _run(wall: float, cpu: float | None, steps: int = 100) -> RunResult:
    return RunResult([EpochMetrics(1, 0.1, 1.0, 0.5, 1.0, 0.5, wall, wall + 0.1, {}, cpu, steps)])


def _result(label: str, *runs: RunResult) -> ContenderResult:
    return ContenderResult(
        "task", label, [], [], {}, None, {seed: run for seed, run in enumerate(runs, start=1)}
    )


def test_wall_far_above_cpu_and_outlying_step_times_are_flagged():
    results = [
        _result("calm", _run(1.0, 0.95), _run(1.1, 1.0)),
        _result("waited", _run(1.2, 0.4), _run(1.0, 0.9)),
        _result("slow", _run(3.5, 3.4), _run(1.0, 1.0)),
        _result("old", _run(1.0, None, None)),
    ]  # stored before cpu time existed
    notes = timing_notes(results)
    assert notes["task", "calm"] == []
    assert notes["task", "waited"] == ["seed 1: wall time 3.0x its CPU time"]
    assert notes["task", "slow"] == ["seed 1: step time 3.3x the median of the task's runs"]
    assert notes["task", "old"] == []


def _sleepy_task(sleeps: list[float]) -> Task:
    """A regression whose model sleeps in every forward pass for the time the next entry of
    ``sleeps`` says: each model the bench builds (one per run) takes the next entry."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 3, generator=generator)
    targets = inputs @ torch.tensor([[1.0], [-1.0], [0.5]])
    dataset = torch.utils.data.TensorDataset(inputs, targets)
    train = torch.utils.data.DataLoader(dataset, batch_size=16)
    evaluate = torch.utils.data.DataLoader(dataset, batch_size=256)
    queue = list(sleeps)

    class Sleepy(torch.nn.Linear):
        def __init__(self, pause: float) -> None:
            super().__init__(3, 1)
            self.pause = pause

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.pause and self.training:
                time.sleep(self.pause)
            return super().forward(x)

    return Task.custom(
        "sleepy",
        lambda: Sleepy(queue.pop(0)),
        train,
        evaluate,
        evaluate,
        loss=torch.nn.functional.mse_loss,
        epochs=2,
        metric="loss",
        target=0.5,
    )


@pytest.mark.slow
def test_a_run_that_sleeps_is_reported_as_timing_disturbed(tmp_path, capsys):
    # Three contenders with fixed rates (no tuning), one seed each: the third run sleeps 5 ms
    # per step, so its wall time is far above its CPU time and its steps are far slower.
    task = _sleepy_task([0.0, 0.0, 0.005])
    config = BenchConfig(trials=0, seeds=1, out=tmp_path, pruner="none")
    _, rows = run_bench(
        [task], ["sgd:lr=0.05", "sgd_momentum:lr=0.02", "adam:lr=0.05"], config=config
    )
    flagged = {row["optimizer"]: row["timing"] for row in rows}
    # (A busy machine may make any run wait for the CPU, so which calm runs are flagged
    # depends on the machine: the checks themselves are tested on fixed timings below.)
    assert any("CPU time" in note for note in flagged["adam:lr=0.05"])
    assert any("step time" in note for note in flagged["adam:lr=0.05"])
    adam = rows[2]
    assert summary_cells(adam, "loss")[5].endswith(" *")
    assert f"* {DISTURBED}: adam:lr=0.05: {'; '.join(adam['timing'])}" in timing_lines(rows)
    report = (tmp_path / "report.html").read_text()
    assert report.count(f"* {DISTURBED}: adam:lr=0.05") == 1
    # Epochs stay the primary figure, unflagged; seconds and CPU seconds are recorded.
    assert adam["epochs_to_target"] == pytest.approx(rows[0]["epochs_to_target"], abs=2)
    runs = [
        result["seed_runs"]
        for result in json.loads((tmp_path / "results.json").read_text())["results"]
    ]
    assert all(
        epoch["cpu_seconds"] > 0 and epoch["steps"] == 16 * epoch["epoch"]
        for seed_runs in runs
        for run in seed_runs.values()
        for epoch in run["history"]
    )


def _timed_run(wall: float, cpu: float, steps: int = 100) -> RunResult:
    epoch = EpochMetrics(
        epoch=1,
        lr=0.1,
        train_loss=1.0,
        train_accuracy=None,
        val_loss=1.0,
        val_accuracy=None,
        train_seconds=wall,
        wall_seconds=wall,
        cpu_seconds=cpu,
        steps=steps,
    )
    return RunResult([epoch])


def test_timing_checks_on_fixed_timings():
    def result(label: str, wall: float, cpu: float) -> ContenderResult:
        return ContenderResult("task", label, [], [], None, None, {1: _timed_run(wall, cpu)})

    # Step times 1.0, 1.2, 1.8 and 5.0 (x 1/100 s): the median is 1.5.
    notes = timing_notes(
        [
            result("calm", 1.0, 0.9),
            result("also calm", 1.2, 1.1),
            result("waited", 5.0, 1.0),
            result("slower", 1.8, 1.7),
        ]
    )
    assert notes["task", "calm"] == [] and notes["task", "also calm"] == []
    assert notes["task", "slower"] == []  # 1.8 / 1.5: within the 2x spread
    assert notes["task", "waited"] == [
        "seed 1: wall time 5.0x its CPU time",
        "seed 1: step time 3.3x the median of the task's runs",
    ]
    alone = timing_notes([result("only", 5.0, 1.0)])
    assert alone["task", "only"] == ["seed 1: wall time 5.0x its CPU time"]
