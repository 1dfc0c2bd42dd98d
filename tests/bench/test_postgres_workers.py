"""Several bench workers share one study in a real PostgreSQL server; one is killed mid-trial.

Needs a PostgreSQL server: set ``DESCEND_TEST_POSTGRES`` to a URL of a role that may create
databases (``.ci/run`` starts a local cluster and sets it). Each test makes its own database.
"""

from __future__ import annotations

import json
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

SERVER = os.environ.get("DESCEND_TEST_POSTGRES")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(
        not SERVER, reason="no PostgreSQL server: set DESCEND_TEST_POSTGRES (.ci/run starts one)"
    ),
]
SRC = str(Path(__file__).resolve().parents[2] / "src")
OPTIMIZERS = ("sgd", "adam")
TRIALS, SEEDS = 4, 2


def _arguments(url: str, out: Path) -> list[str]:
    return [
        "bench",
        "--task",
        "digits-mlp",
        "--optimizers",
        ",".join(OPTIMIZERS),
        "--trials",
        str(TRIALS),
        "--seeds",
        str(SEEDS),
        "--epochs",
        "10",
        "--pruner",
        "none",
        "--storage",
        url,
        "--study",
        "shared",
        "--out",
        str(out),
        "--no-report",
    ]


def _start(arguments: list[str]) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-m", "descend.cli.main", *arguments],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    # The test polls this many times a second: each storage's connection pool is closed
    # after reading, or the polls alone would use up the server's connection slots.
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    except KeyError:  # not created yet
        return []
    finally:
        storage.engine.dispose()


def _worker_pid(trial: optuna.trial.FrozenTrial) -> int | None:
    return trial.user_attrs.get("worker", {}).get("pid")


def _running_trials(url: str) -> dict[int, int]:
    """Worker pid -> the number of a trial it is running (one that has reported an epoch)."""
    running: dict[int, int] = {}
    for optimizer in OPTIMIZERS:
        for trial in _trials(url, f"shared:digits-mlp:{optimizer}:tune"):
            pid = _worker_pid(trial)
            if trial.state == TrialState.RUNNING and trial.intermediate_values and pid:
                running.setdefault(pid, trial.number)
    return running


def test_workers_share_the_budget_and_survive_a_killed_worker(database, tmp_path):
    workers = [_start(_arguments(database, tmp_path / f"worker{i}")) for i in range(3)]
    # The victim is the first worker seen in the middle of a trial: whichever of the three
    # the scheduler favours, so a slow poll on a busy machine cannot miss all of them.
    victim, killed_trial = None, None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and any(w.poll() is None for w in workers):
            alive = {worker.pid: worker for worker in workers if worker.poll() is None}
            running = _running_trials(database)
            seen = [pid for pid in running if pid in alive]
            if seen:
                # Frozen first, then read again: a trial seen running may have finished by the
                # time a kill lands (trials take a second here), and then nothing is left to
                # mark. A worker still mid-trial once stopped is killed there; one that had
                # moved on is let go and the watch goes on.
                pid = seen[0]
                os.kill(pid, signal.SIGSTOP)
                time.sleep(0.3)  # a commit already sent reaches the database
                still = _running_trials(database).get(pid)
                if still is None:
                    os.kill(pid, signal.SIGCONT)
                    continue
                victim, killed_trial = alive[pid], still
                os.kill(pid, signal.SIGKILL)
                victim.wait()  # reaped: the other workers see a dead process, not a zombie
                break
            time.sleep(0.05)
        if victim is None:
            said = [w.stderr.read().decode()[-1000:] for w in workers if w.poll() is not None]
            raise AssertionError(
                f"no worker was seen running a trial; exit statuses "
                f"{[w.poll() for w in workers]} {said}"
            )
        survivors = [worker for worker in workers if worker is not victim]
        for worker in survivors:
            assert worker.wait(timeout=400) == 0, worker.stderr.read().decode()[-3000:]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    for optimizer in OPTIMIZERS:
        tune = _trials(database, f"shared:digits-mlp:{optimizer}:tune")
        finished = [t for t in tune if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == TRIALS  # the budget: none lost, no extra
        assert not [t for t in tune if t.state == TrialState.RUNNING]
        claimed = {_worker_pid(t) for t in finished}
        assert claimed <= {w.pid for w in workers}
        seeds = _trials(database, f"shared:digits-mlp:{optimizer}:seeds")
        complete_seeds = [t.user_attrs["seed"] for t in seeds if t.state == TrialState.COMPLETE]
        assert sorted(complete_seeds) == list(range(1, SEEDS + 1))  # each seed exactly once
    failed = [
        t
        for optimizer in OPTIMIZERS
        for t in _trials(database, f"shared:digits-mlp:{optimizer}:tune")
        if _worker_pid(t) == victim.pid and t.state == TrialState.FAIL
    ]
    assert killed_trial in {t.number for t in failed}  # the dead worker's trial, marked

    # Any machine with the storage writes the merged report.
    report = tmp_path / "report"
    assert main(["report", "--storage", database, "--study", "shared", "--out", str(report)]) == 0
    assert (report / "report.html").stat().st_size > 10_000
    rows = json.loads((report / "results.json").read_text())["rows"]
    assert sorted(row["optimizer"] for row in rows) == sorted(OPTIMIZERS)
    assert all(row["seeds"] == SEEDS for row in rows)
    assert all(row["trials"] == TRIALS for row in rows)


def test_report_names_a_missing_study(database, tmp_path, capsys):
    assert (
        main(["report", "--storage", database, "--study", "nothing", "--out", str(tmp_path)]) == 2
    )
    assert "no benchmark study 'nothing'" in capsys.readouterr().err
