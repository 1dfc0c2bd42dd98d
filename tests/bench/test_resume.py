"""Killing a bench mid-trial loses no finished trial; rerunning completes the budget exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from descend.bench.storage import open_storage
from descend.cli.main import main

pytestmark = pytest.mark.slow

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _command(out: Path, trials: int, seeds: int, epochs: int) -> list[str]:
    return [
        "bench",
        "--task",
        "digits-mlp",
        "--optimizers",
        "adam",
        "--trials",
        str(trials),
        "--seeds",
        str(seeds),
        "--epochs",
        str(epochs),
        "--pruner",
        "none",
        "--out",
        str(out),
        "--no-report",
    ]


def _start(arguments: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-m", "descend.cli.main", *arguments],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    # open_storage waits out a worker that is creating the tables at this moment.
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    except KeyError:  # the study does not exist yet
        return []


def test_kill_9_mid_trial_then_rerun_keeps_finished_trials(tmp_path):
    database = tmp_path / "bench.db"
    url = f"sqlite:///{database}"
    name = "bench:digits-mlp:adam:tune"
    arguments = _command(tmp_path, trials=4, seeds=1, epochs=12)
    process = _start(arguments)
    deadline = time.monotonic() + 120
    killed_trial = None
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if database.exists():
                trials = _trials(url, name)
                complete = [t for t in trials if t.state == TrialState.COMPLETE]
                running = [
                    t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values
                ]
                if complete and running:
                    os.kill(process.pid, signal.SIGKILL)
                    killed_trial = running[0].number
                    break
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    assert killed_trial is not None, process.stderr.read().decode()
    before = {
        t.number: (t.params, t.value) for t in _trials(url, name) if t.state == TrialState.COMPLETE
    }
    assert before and len(before) < 4

    assert main(arguments) == 0

    trials = _trials(url, name)
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 4  # the budget, exactly
    after = {t.number: (t.params, t.value) for t in finished}
    assert all(after[number] == kept for number, kept in before.items())  # nothing redone
    killed = next(t for t in trials if t.number == killed_trial)
    assert killed.state == TrialState.FAIL  # the killed trial, redone elsewhere
    seeds = _trials(url, "bench:digits-mlp:adam:seeds")
    assert [t.user_attrs["seed"] for t in seeds if t.state == TrialState.COMPLETE] == [1]


def test_two_workers_share_one_study_and_its_budget(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    arguments = [
        *_command(tmp_path, trials=3, seeds=2, epochs=3),
        "--storage",
        storage,
        "--study",
        "shared",
    ]
    workers = [_start(arguments), _start(arguments)]
    for worker in workers:
        assert worker.wait(timeout=180) == 0, worker.stderr.read().decode()
    tune = _trials(storage, "shared:digits-mlp:adam:tune")
    assert sum(t.state == TrialState.COMPLETE for t in tune) == 3
    seeds = _trials(storage, "shared:digits-mlp:adam:seeds")
    assert {t.user_attrs["seed"] for t in seeds if t.state == TrialState.COMPLETE} == {1, 2}
