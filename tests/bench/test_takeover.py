"""A worker that stalls past the grace period loses its run to another worker; when it wakes,
it drops its result with one line and goes on, rather than crashing on the finished trial.

The takeover is staged in one process: while a run is under way, a second handle on the
storage fails its trial, as a live worker's reclaim of a stalled one does.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
import pytest
from optuna.trial import TrialState

from descend.bench.config import Reporter
from descend.bench.protocol import Bench, BenchConfig, make_contender
from descend.bench.scoreboard_suite import SuiteRunner
from descend.bench.storage import TAKEN_OVER, claim, open_storage, owned
from descend.bench.tasks import get_task
from descend.specs import parse_optimizer
from tests.bench.test_scoreboard import SuiteResult


def _fail_running(url: str, name: str) -> None:
    """Fail study ``name``'s running trial from a handle of its own (another worker's)."""
    study = optuna.load_study(study_name=name, storage=url)
    (running,) = study.get_trials(states=(TrialState.RUNNING,))
    study.tell(running.number, state=TrialState.FAIL)


class TakeOverFirstRuns(Reporter):
    """Has the first run of each study taken over during its first epoch; records notices."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.phase = ""
        self.taken: set[str] = set()
        self.notices: list[str] = []
        self.finished: list[str] = []

    def run_started(self, task: str, label: str, phase: str, detail: str, epochs: int) -> None:
        self.phase = f"bench:{task}:{label}:" + ("tune" if phase.startswith("trial") else "seeds")

    def epoch(self, metrics) -> None:
        if self.phase not in self.taken:
            self.taken.add(self.phase)
            _fail_running(self.url, self.phase)

    def run_finished(self, outcome: str) -> None:
        self.finished.append(outcome)

    def notice(self, message: str) -> None:
        self.notices.append(message)


@pytest.mark.slow
@pytest.mark.parametrize("pruner", ["none", "median"])
def test_a_taken_over_bench_run_is_dropped_and_redone(tmp_path, pruner):
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    config = BenchConfig(trials=1, seeds=1, epochs=2, out=tmp_path, pruner=pruner)
    reporter = TakeOverFirstRuns(url)
    (result,) = Bench([get_task("digits-logreg")], [make_contender("adam")], config).run(reporter)
    # Both the tuning trial and the seed run were taken over once: each said so in one line
    # and was redone; only the redone runs count.
    assert len(reporter.notices) == 2 and all(TAKEN_OVER in line for line in reporter.notices)
    assert "trial 1" in reporter.notices[0] and "seed 1" in reporter.notices[1]
    assert reporter.finished == ["complete", "complete"]
    for phase in ("tune", "seeds"):
        trials = optuna.load_study(study_name=f"bench:digits-logreg:adam:{phase}", storage=url)
        states = [trial.state for trial in trials.trials]
        assert states == [TrialState.FAIL, TrialState.COMPLETE]
        # The dropped run's result was never written over the other worker's verdict.
        assert "run" not in trials.trials[0].user_attrs
    assert len(result.trials) == 1 and sorted(result.seed_runs) == [1]


@dataclass
class TakenOverOnce:
    """A suite problem whose first run is taken over by another worker while it runs."""

    url: str
    name: str = "taken"
    reason: str = "test"
    criterion: str = "always passes"
    steps: int = 5
    runs: int = 0

    def run(self, spec, seed: int, steps: int | None = None):
        self.runs += 1
        if self.runs == 1:
            _fail_running(self.url, f"t:suite:{self.name}:{spec.label}")
        return SuiteResult(self.name, True, 0.0, 3, 0.01, False)


def test_a_taken_over_suite_run_is_dropped_and_redone(tmp_path):
    url = f"sqlite:///{tmp_path / 'suite.db'}"
    problem = TakenOverOnce(url)
    notices: list[str] = []

    class Notices(Reporter):
        def notice(self, message: str) -> None:
            notices.append(message)

    lion = parse_optimizer("lion:lr=1e-4")  # a fixed lr: one tuning run, then one seed run
    runner = SuiteRunner(open_storage(url), url, "t", 4, 1, Notices(), poll_seconds=0.01)
    outcome = runner.outcome(problem, lion)
    assert outcome.passed and problem.runs == 3
    assert len(notices) == 1 and TAKEN_OVER in notices[0]
    study = optuna.load_study(study_name=f"t:suite:taken:{lion.label}", storage=url)
    assert [trial.state for trial in study.trials] == [
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_an_error_in_an_owned_run_fails_its_trial_and_goes_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'owned.db'}"
    storage = open_storage(url)
    study = optuna.create_study(study_name="owned", storage=storage)
    trial = study.ask()
    identifier = claim(trial, study, storage)
    with pytest.raises(KeyboardInterrupt), owned(storage, study, identifier):
        raise KeyboardInterrupt
    assert study.trials[0].state == TrialState.FAIL
    # Taken over, then interrupted: the interrupt still goes on, with no second verdict.
    trial = study.ask()
    identifier = claim(trial, study, storage)
    with pytest.raises(KeyboardInterrupt), owned(storage, study, identifier):
        _fail_running(url, "owned")
        raise KeyboardInterrupt
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]


def test_the_terminal_prints_a_notice_as_one_line_and_leaves_the_run_count():
    from rich.console import Console
    from rich.progress import Progress

    from descend.cli.bench_display import ProgressReporter

    console = Console(record=True, width=200, force_terminal=False)
    with Progress(console=console) as progress:
        reporter = ProgressReporter(progress)
        reporter.begin(4, 1)
        reporter.notice(f"digits-mlp adam seed 2: {TAKEN_OVER} [x]")
        assert progress.tasks[0].completed == 1
    lines = [line for line in console.export_text().splitlines() if TAKEN_OVER in line]
    assert lines == [f"digits-mlp adam seed 2: {TAKEN_OVER} [x]"]
