"""A task registers once: the command line, its help and the benchmark pick it up, and its
options go to it alone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from descend.bench import tasks
from descend.bench.protocol import BenchConfig, run_bench
from descend.bench.tasks import Task, TaskEntry, get_task, get_tasks, register_task
from descend.cli.main import main


@pytest.fixture
def registry():
    """The task registry, restored after the test: what a test registers goes away."""
    saved = dict(tasks.TASKS)
    yield tasks.TASKS
    tasks.TASKS.clear()
    tasks.TASKS.update(saved)


def _register_blobs() -> None:
    # The whole definition of a new workload: its options, its name and description, its data.
    @dataclass(frozen=True)
    class BlobsOptions:
        points: int = field(default=120, metadata={"help": "examples per split"})

    @register_task("blobs-linear", "two Gaussian blobs, a linear model", options=BlobsOptions)
    def blobs(entry: TaskEntry, options: BlobsOptions) -> Task:
        from descend.bench.data import tensor_splits

        rng = np.random.default_rng(0)
        arrays = {}
        for split in ("train", "val", "test"):
            labels = rng.integers(0, 2, size=options.points)
            points = rng.normal(0, 1, size=(options.points, 2)) + 3 * labels[:, None]
            arrays[f"x_{split}"] = points.astype(np.float32)
            arrays[f"y_{split}"] = labels.astype(np.int64)
        train, val, test = tensor_splits(arrays, batch_size=20)
        return entry.make(
            lambda: torch.nn.Linear(2, 2), train, val, test, epochs=2, target=0.9, num_classes=2
        )


def test_a_task_registered_at_run_time_runs_a_bench_end_to_end(registry, tmp_path):
    _register_blobs()
    task = get_task("blobs-linear", points=60)
    assert (task.name, task.description) == ("blobs-linear", "two Gaussian blobs, a linear model")
    assert len(task.train) == 60 and task.details == {"points": "60"}
    config = BenchConfig(trials=2, seeds=2, out=tmp_path, pruner="none")
    results, rows = run_bench([task], ["sgd"], config=config, report=False)
    (result,) = results
    assert len(result.trials) == 2 and sorted(result.seed_runs) == [1, 2]
    assert rows[0]["task"] == "blobs-linear" and rows[0]["test_mean"] > 0.8


def test_the_command_line_lists_a_registered_task_and_hands_it_its_options(
    registry, tmp_path, capsys, monkeypatch
):
    _register_blobs()
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping, which may break names at a hyphen
    assert main(["bench", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "blobs-linear: two Gaussian blobs, a linear model (takes --points)" in shown
    assert "--points POINTS examples per split (task blobs-linear)" in shown
    argv = [
        "bench",
        "--task",
        "blobs-linear",
        "--points",
        "40",
        "--optimizers",
        "sgd",
        "--trials",
        "1",
        "--seeds",
        "1",
        "--out",
        str(tmp_path),
        "--no-report",
    ]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [row["task"] for row in rows] == ["blobs-linear"]
    # The merged report rebuilds the task from the registry, its option handed back to it.
    assert (
        main(
            [
                "report",
                "--storage",
                f"sqlite:///{tmp_path / 'bench.db'}",
                "--out",
                str(tmp_path / "merged"),
                "--points",
                "40",
            ]
        )
        == 0
    )


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_task_options_go_only_to_the_tasks_that_declare_them(registry, capsys, tmp_path):
    _register_blobs()
    fast = ["--optimizers", "sgd", "--trials", "1", "--seeds", "1", "--out", str(tmp_path)]
    line = _error(capsys, ["bench", "--task", "digits-logreg", "--points", "40", *fast])
    assert "--points is an option of task blobs-linear; none of digits-logreg takes it" in line
    assert "argument --points: expected int, got 'many'" in _error(
        capsys, ["bench", "--task", "blobs-linear", "--points", "many", *fast]
    )
    assert "did you mean '--points'" in _error(
        capsys, ["bench", "--task", "blobs-linear", "--pionts", "4", *fast]
    )
    # Several tasks: each receives only what it declares.
    (digits, blobs) = get_tasks(["digits-logreg", "blobs-linear"], {"points": 30})
    assert digits.details == {} and len(blobs.train) == 30


def test_registration_and_lookup_errors_are_one_clear_line(registry):
    with pytest.raises(ValueError, match="task 'digits-mlp' is already registered"):
        register_task("digits-mlp", "again")
    with pytest.raises(ValueError, match="task name 'a,b' is invalid"):
        register_task("a,b", "two")

    @dataclass
    class Untyped:
        anything: list = field(default_factory=list, metadata={"help": "a list"})

    with pytest.raises(ValueError, match="option 'anything' of Untyped is typed"):
        register_task("untyped", "bad options", options=Untyped)

    @dataclass
    class Unhelped:
        count: int = 1

    with pytest.raises(ValueError, match="option 'count' of Unhelped has no help"):
        register_task("unhelped", "bad options", options=Unhelped)

    @dataclass
    class OtherDataDir:
        data_dir: int = field(default=0, metadata={"help": "a number"})

    with pytest.raises(ValueError, match="task 'cifar10-cnn' types it str"):
        register_task("clash", "one flag, two types", options=OtherDataDir)
    assert set(registry) == set(tasks.task_names()) and "clash" not in registry
    with pytest.raises(ValueError, match="task 'digits-mlp' takes no option 'data_dir'"):
        get_task("digits-mlp", data_dir="somewhere")
    with pytest.raises(ValueError, match="task cifar10-cnn needs --data-dir: the folder"):
        get_task("cifar10-cnn")
    with pytest.raises(ValueError, match="unknown task option 'data_dirr'.*'data_dir'"):
        get_tasks(["cifar10-cnn"], {"data_dirr": "x"})
