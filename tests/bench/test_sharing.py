"""A worker that meets runs other workers hold goes on to the pairs that have work, and waits
for the held runs only when nothing else is left."""

from __future__ import annotations

import os

import pytest
from optuna.trial import TrialState

from descend.bench.config import Reporter
from descend.bench.protocol import Bench, BenchConfig, make_contender
from descend.bench.storage import HOST
from descend.bench.tasks import get_task


class Order(Reporter):
    """Records what the worker does, and lets the held trial go once it waits for it."""

    def __init__(self, held) -> None:
        self.held = held
        self.events: list[str] = []

    def run_started(self, task: str, label: str, phase: str, detail: str, epochs: int) -> None:
        self.events.append(f"{label} {phase.split()[0]}")

    def waiting(self, message: str) -> None:
        if "waiting" not in self.events:
            self.events.append("waiting")
            study, number = self.held
            study.tell(number, state=TrialState.FAIL)  # the other worker gives up its trial


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_worker_runs_the_other_pairs_before_waiting_for_a_held_trial(tmp_path):
    config = BenchConfig(
        trials=1, seeds=1, epochs=1, out=tmp_path, pruner="none", poll_seconds=0.01
    )
    bench = Bench(
        [get_task("digits-logreg")], [make_contender("sgd"), make_contender("adam")], config
    )
    # Another live worker (this test's parent process) holds sgd's only tuning trial.
    sgd_tune = bench.pairs[0].tune
    held = sgd_tune.ask()
    held.set_user_attr("worker", {"host": HOST, "pid": os.getppid()})
    reporter = Order((sgd_tune, held.number))
    bench.run(reporter)
    assert reporter.events == [
        "adam trial",
        "adam seed",
        "waiting",
        "sgd trial",
        "sgd seed",
    ]
