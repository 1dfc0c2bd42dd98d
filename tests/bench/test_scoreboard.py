"""``descend scoreboard``: its settings, the suite's runs in the storage, its command-line
mistakes, a tiny run end to end, and resuming after a kill.

The pass/fail suite (``descend.bench.suite``) is replaced by a stand-in of two quadratics with
its interface, defined here, so these tests do not depend on the real suite's problems.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from descend.bench.config import Reporter
from descend.bench.scoreboard import seed_times, workload_entries
from descend.bench.scoreboard_settings import (
    QUICK_SEEDS,
    QUICK_TRIALS,
    QUICK_WORKLOADS,
    ScoreboardConfig,
    default_optimizers,
)
from descend.bench.scoreboard_suite import SUITE_MODULE, SuiteRunner, load_suite, suite_lrs
from descend.bench.scoring import score_times
from descend.bench.storage import open_storage
from descend.bench.tasks import Task
from descend.bench.training import EpochMetrics, RunResult
from descend.cli.main import main
from descend.rules import lecture_rules
from descend.specs import parse_optimizer

ROOT = Path(__file__).resolve().parents[2]
SRC = str(ROOT / "src")


# -- a stand-in suite with the interface of descend.bench.suite ---------------------------


@dataclass(frozen=True)
class SuiteResult:
    """One run of a stand-in problem."""

    problem: str
    passed: bool
    value: float
    steps_to_pass: int | None
    seconds: float
    diverged: bool


@dataclass(frozen=True)
class Quadratic:
    """``0.5 * sum(scale * x**2)`` from near ones; passes when it gets below ``tolerance``."""

    name: str
    reason: str
    criterion: str
    steps: int
    scales: tuple[float, ...]
    tolerance: float = 1e-4

    def run(self, spec, seed: int, steps: int | None = None) -> SuiteResult:
        """Minimize with ``spec`` from a start ``seed`` perturbs."""
        torch.manual_seed(seed)
        scales = torch.tensor(self.scales)
        x = (torch.ones(len(self.scales)) + 0.1 * torch.randn(len(self.scales))).requires_grad_()
        optimizer = spec.build([x])
        started = time.process_time()
        value, passed_at, diverged = math.inf, None, False
        for step in range(1, (steps or self.steps) + 1):
            optimizer.zero_grad()
            (0.5 * (scales * x * x).sum()).backward()
            optimizer.step()
            value = float(0.5 * (scales * x.detach() ** 2).sum())
            if not math.isfinite(value):
                diverged = True
                break
            if value < self.tolerance:
                passed_at = step
                break
        return SuiteResult(
            self.name,
            passed_at is not None,
            value,
            passed_at,
            time.process_time() - started,
            diverged,
        )


STAND_IN = {
    "bowl": Quadratic("bowl", "round: any method passes", "f < 1e-4 in 200 steps", 200, (1.0,) * 4),
    "ravine": Quadratic("ravine", "condition number 1e4", "f < 1e-4 in 60 steps", 60, (1.0, 1e4)),
}


def stand_in_module() -> types.ModuleType:
    """A module that stands in for descend.bench.suite."""
    module = types.ModuleType(SUITE_MODULE)
    module.SUITE = STAND_IN  # type: ignore[attr-defined]
    return module


@pytest.fixture
def stand_in(monkeypatch):
    """The stand-in suite in place of descend.bench.suite."""
    monkeypatch.setitem(sys.modules, SUITE_MODULE, stand_in_module())


# -- settings ------------------------------------------------------------------------------


def test_quick_takes_the_lectures_optimizers_and_the_reduced_budget():
    config = ScoreboardConfig(quick=True)
    assert list(config.optimizers) == [rule.name for rule in lecture_rules()]
    assert list(config.workloads) == list(QUICK_WORKLOADS)
    assert (config.trials, config.seeds) == (QUICK_TRIALS, QUICK_SEEDS)
    full = ScoreboardConfig()
    assert full.trials > config.trials and full.seeds > config.seeds
    assert set(default_optimizers(False)) >= {"adam", "adamw", "nadam", "lion", "muon"}
    # A default workload that is not registered is left out and said so, never an error.
    assert set(full.workloads) | set(full.left_out) >= {"digits-mlp", "mnist1d-cnn", "suite"}


def test_self_tuning_is_zero_trials():
    assert ScoreboardConfig(trials=0).tuning == "self-tuning"
    assert ScoreboardConfig(trials=2).tuning == "external tuning"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"workloads": ["digts-mlp"]}, "unknown workload 'digts-mlp'; did you mean 'digits-mlp'"),
        ({"workloads": ["suite", "suite"]}, "workload given twice: suite"),
        ({"trials": -1}, "trials=-1 is invalid"),
        ({"seeds": 0}, "seeds=0 is invalid"),
        ({"study": "a:b"}, "study name 'a:b' is invalid"),
    ],
)
def test_bad_settings_are_refused_by_name(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ScoreboardConfig(**settings)


# -- time to target and the suite's protocol ----------------------------------------------


def _epoch(epoch: int, accuracy: float, cpu: float) -> EpochMetrics:
    return EpochMetrics(epoch, 0.1, 1.0, 0.5, 1.0, accuracy, cpu, cpu, {}, cpu, 10 * epoch)


def _task() -> Task:
    """A task with an accuracy target of 0.9 (no data: only its scoring is used)."""
    return Task("t", lambda: None, None, None, None, target=0.9)  # type: ignore[arg-type]


def test_time_to_target_is_the_first_evaluation_that_reaches_it():
    task = _task()
    run = RunResult([_epoch(1, 0.5, 0.2), _epoch(2, 0.91, 0.5), _epoch(3, 0.8, 0.7)])
    assert seed_times(task, run) == (20, 0.5)
    assert seed_times(task, RunResult([_epoch(1, 0.5, 0.2)])) == (None, None)


def test_workload_times_are_medians_over_seeds_and_score_as_algoperf():
    from descend.bench.results import ContenderResult

    task = _task()
    fast = {1: RunResult([_epoch(1, 0.95, 1.0)]), 2: RunResult([_epoch(2, 0.95, 2.0)])}
    slow = {
        1: RunResult([_epoch(1, 0.5, 1.0), _epoch(3, 0.95, 3.0)]),
        2: RunResult([_epoch(2, 0.5, 0.5)]),  # never reaches it
        3: RunResult([_epoch(3, 0.95, 2.0)]),
    }
    results = [
        ContenderResult(task.name, "fast", [], [], {"lr": 0.1}, 0.95, fast),
        ContenderResult(task.name, "slow", [], [], {"lr": 0.1}, 0.95, slow),
    ]
    fast_entry, slow_entry = workload_entries([task], results)
    assert fast_entry.steps == [10, 20] and fast_entry.median_steps == 15
    assert slow_entry.steps == [30, None, 30] and slow_entry.median_steps == 30
    assert slow_entry.median_cpu_seconds == 3.0 and slow_entry.reached == 2
    scores = score_times({task.name: {"fast": 15.0, "slow": 30.0}})
    assert scores.ratios[task.name] == {"fast": 1.0, "slow": 2.0}


def test_suite_learning_rates_are_the_centres_of_the_log_range():
    adam = parse_optimizer("adam")  # registry range 1e-5 .. 1e-1
    assert suite_lrs(adam, 2) == pytest.approx([1e-4, 1e-2], rel=1e-12)
    assert suite_lrs(adam, 0) == [None]  # self-tuning: the spec's own values
    assert suite_lrs(parse_optimizer("adam:lr=0.01"), 5) == [None]


@dataclass(frozen=True)
class Counted:
    """A problem that passes for lr in [low, high], in fewer steps the larger the lr, and
    whose seed 2 always fails; counts its runs."""

    name: str = "counted"
    reason: str = "test"
    criterion: str = "lr in range"
    steps: int = 10
    calls: list = None  # type: ignore[assignment]

    def run(self, spec, seed: int, steps: int | None = None) -> SuiteResult:
        self.calls.append((spec.arguments.get("lr"), seed))
        lr = spec.arguments["lr"]
        passed = 1e-3 <= lr <= 1e-1 and seed != 2
        return SuiteResult(self.name, passed, 0.0, round(1 / lr) if passed else None, 0.01, False)


@pytest.mark.slow
def test_the_suite_chooses_the_fastest_passing_rate_and_judges_it_by_the_median_seed(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'suite.db'}")
    problem = Counted(calls=[])
    adam = parse_optimizer("adam")
    lrs = suite_lrs(adam, 4)  # 1e-5 .. 1e-1 in four slices: 3.2e-5, 3.2e-4, 3.2e-3, 3.2e-2

    def runner(seeds: int) -> SuiteRunner:
        return SuiteRunner(storage, "test", "t", 4, seeds, Reporter(), poll_seconds=0.01)

    outcome = runner(3).outcome(problem, adam)  # seeds 1, 2, 3: 2 of 3 pass
    assert outcome.lr == pytest.approx(lrs[3]) and outcome.passed
    assert [run["passed"] for run in outcome.tuning] == [False, False, True, True]
    assert {seed: run["passed"] for seed, run in outcome.seed_runs.items()} == {
        1: True,
        2: False,
        3: True,
    }
    assert outcome.steps_to_pass == round(1 / lrs[3])
    assert len(problem.calls) == 4 + 3
    # Two seeds, one of them failing: the median misses, so the problem fails.
    again = runner(2).outcome(problem, adam)
    assert not again.passed and again.lr == pytest.approx(lrs[3])
    assert len(problem.calls) == 4 + 3  # every run was read back from the storage


@pytest.mark.slow
def test_a_problem_no_rate_passes_is_failed_without_reruns(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'suite.db'}")
    problem = Counted(calls=[])
    lion = parse_optimizer("lion:lr=1e-5")  # fixed lr, outside the passing range
    outcome = SuiteRunner(storage, "test", "t", 4, 3, Reporter()).outcome(problem, lion)
    assert not outcome.passed and outcome.seed_runs == {} and problem.calls == [(1e-5, 0)]


def test_a_missing_suite_is_one_line_not_a_crash(monkeypatch):
    monkeypatch.setitem(sys.modules, SUITE_MODULE, None)
    suite, message = load_suite()
    assert suite is None and "\n" not in message and SUITE_MODULE in message


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--workloads", "digts-mlp"], "did you mean 'digits-mlp'?"),
        (["--optimizers", "adamm"], "did you mean 'adam'?"),
        (["--optimizers", "adam,adam", "--workloads", "suite"], "optimizer given twice: adam"),
        (["--optimizers", "adam:lr=-1", "--workloads", "suite"], "invalid spec 'adam:lr=-1'"),
        (["--quik"], "did you mean '--quick'?"),
        (["--trials", "x"], "argument --trials"),
        (["--seeds", "0"], "argument --seeds"),
        (["--workloads", ","], "--workloads=',' is invalid"),
        (["--study", "a:b", "--workloads", "suite"], "study name 'a:b' is invalid"),
        (["--jobs", "0"], "argument --jobs"),
        (
            ["--jobs", str((os.cpu_count() or 1) + 1), "--workloads", "suite"],
            "expected jobs x threads at most",
        ),
    ],
)
def test_command_line_mistakes_are_one_line_pointing_to_the_help(argv, expected, tmp_path, capsys):
    assert main(["scoreboard", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert err.startswith("descend scoreboard: error:")
    assert err.rstrip().endswith("see 'descend scoreboard --help'")


@pytest.mark.parametrize(
    "argv, allowed",
    [
        (["scoreboard", "--trials", "x"], []),
        (["scoreboard", "--quik"], []),
        (["scoreboard", "--workloads", "digts-mlp"], ["numpy"]),
        (["scoreboard", "--optimizers", "adamm"], ["numpy"]),
    ],
)
def test_argument_errors_answer_before_torch_loads(argv, allowed):
    from tests.cli.test_main import heavy_modules_loaded

    assert heavy_modules_loaded(argv) == allowed


# -- end to end ------------------------------------------------------------------------------


def _command(out: Path, trials: int, seeds: int, epochs: int) -> list[str]:
    return [
        "scoreboard",
        "--optimizers",
        "adam,sgd_momentum",
        "--workloads",
        "digits-mlp,suite",
        "--trials",
        str(trials),
        "--seeds",
        str(seeds),
        "--epochs",
        str(epochs),
        "--out",
        str(out),
    ]


def _trials(url: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    storage = open_storage(url)
    return {
        summary.study_name: optuna.load_study(
            study_name=summary.study_name, storage=storage
        ).get_trials()
        for summary in storage.get_all_studies()
    }


@pytest.mark.slow
def test_a_tiny_scoreboard_writes_its_numbers_and_a_rerun_runs_nothing(stand_in, tmp_path):
    out = tmp_path / "out"
    assert main(_command(out, trials=2, seeds=2, epochs=3)) == 0
    text = (out / "results.json").read_text()
    results = json.loads(text, parse_constant=lambda word: pytest.fail(f"{word} in JSON"))
    page = (out / "report.html").read_text()

    # Every optimizer has a score, and one entry per problem with `problem` and `passed`.
    labels = [entry["optimizer"] for entry in results["optimizers"]]
    assert sorted(labels) == ["adam", "sgd_momentum"]
    for entry in results["optimizers"]:
        assert 0 <= entry["score"] <= 1 and 0 <= entry["score_steps"] <= 1
        assert [p["problem"] for p in entry["problems"]] == list(STAND_IN)
        assert all(isinstance(p["passed"], bool) for p in entry["problems"])
        failed = [p["problem"] for p in entry["problems"] if not p["passed"]]
        assert entry["suite_failed"] == failed
        assert entry["suite_passed"] == len(STAND_IN) - len(failed)

    # The score is AlgoPerf's on the medians results.json reports.
    (workload,) = results["workloads"]
    medians = {
        row["optimizer"]: math.inf if row["median_steps"] is None else row["median_steps"]
        for row in workload["optimizers"]
    }
    expected = score_times({"digits-mlp": medians})
    for entry in results["optimizers"]:
        assert entry["score_steps"] == pytest.approx(expected.scores[entry["optimizer"]])
    for row in workload["optimizers"]:
        assert len(row["steps_to_target"]) == 2 and "timing_disturbed" in row
        assert all(value is None or value % 34 == 0 for value in row["steps_to_target"])

    # A passed problem passes again when its setting is rerun by hand with a seed.
    for entry in results["optimizers"]:
        for outcome in entry["problems"]:
            if outcome["passed"]:
                spec = parse_optimizer(entry["optimizer"]).with_arguments(lr=outcome["lr"])
                assert STAND_IN[outcome["problem"]].run(spec, 1).passed

    # The page: profiles, the score table, the grid with one coloured cell per pair.
    assert "Performance profiles" in page or "performance profiles" in page
    assert page.count("<td class='pass'") + page.count("<td class='fail'") == 2 * len(STAND_IN)
    assert "Scores (best first)" in page and "digits-mlp" in page

    # Rerunning the same command resumes: nothing new runs, the numbers stay.
    url = f"sqlite:///{out / 'bench.db'}"
    before = {name: len(trials) for name, trials in _trials(url).items()}
    assert main(_command(out, trials=2, seeds=2, epochs=3)) == 0
    assert {name: len(trials) for name, trials in _trials(url).items()} == before
    again = json.loads((out / "results.json").read_text())
    assert results["runs_ran"] > 0 and again["runs_ran"] == 0
    assert [e["score_steps"] for e in again["optimizers"]] == [
        e["score_steps"] for e in results["optimizers"]
    ]


@pytest.mark.slow
def test_the_suite_part_says_so_when_the_suite_is_missing(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, SUITE_MODULE, None)
    out = tmp_path / "out"
    assert (
        main(["scoreboard", "--optimizers", "adam", "--workloads", "suite", "--out", str(out)]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["suite"]["ran"] is False and SUITE_MODULE in results["suite"]["message"]
    assert SUITE_MODULE in capsys.readouterr().out
    assert SUITE_MODULE in (out / "report.html").read_text()


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_keeps_finished_trials(tmp_path):
    out = tmp_path / "out"
    database = out / "bench.db"
    url = f"sqlite:///{database}"
    tune = "scoreboard:digits-mlp:adam:tune"
    arguments = [*_command(out, trials=3, seeds=1, epochs=10)]
    arguments[2] = "adam"
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.bench.test_scoreboard import stand_in_module\n"
        f"sys.modules[{SUITE_MODULE!r}] = stand_in_module()\n"
        "from descend.cli.main import main\n"
        f"sys.exit(main({arguments!r}))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    killed = None
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if database.exists():
                trials = _trials(url).get(tune, [])
                complete = [t for t in trials if t.state == TrialState.COMPLETE]
                running = [
                    t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values
                ]
                if complete and running:
                    os.kill(process.pid, signal.SIGKILL)
                    killed = running[0].number
                    break
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    assert killed is not None, process.stderr.read().decode()
    kept = {
        t.number: (t.params, t.value) for t in _trials(url)[tune] if t.state == TrialState.COMPLETE
    }
    assert kept and len(kept) < 3

    sys.modules[SUITE_MODULE] = stand_in_module()
    try:
        assert main(arguments) == 0
    finally:
        del sys.modules[SUITE_MODULE]

    studies = _trials(url)
    finished = [t for t in studies[tune] if t.state == TrialState.COMPLETE]
    assert len(finished) == 3  # the budget, exactly
    assert all({t.number: (t.params, t.value) for t in finished}[n] == v for n, v in kept.items())
    assert next(t for t in studies[tune] if t.number == killed).state == TrialState.FAIL
    for problem in STAND_IN:
        runs = [t for t in studies[f"scoreboard:suite:{problem}:adam"]]
        keys = [t.user_attrs["key"] for t in runs if t.state == TrialState.COMPLETE]
        assert len(keys) == len(set(keys))  # no run twice
    results = json.loads((out / "results.json").read_text())
    assert [p["problem"] for p in results["optimizers"][0]["problems"]] == list(STAND_IN)


def _worker(arguments: list[str]) -> subprocess.Popen:
    """``descend ARGUMENTS`` in a fresh process, the stand-in suite in place."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.bench.test_scoreboard import stand_in_module\n"
        f"sys.modules[{SUITE_MODULE!r}] = stand_in_module()\n"
        "from descend.cli.main import main\n"
        f"sys.exit(main({arguments!r}))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_storage(request, tmp_path):
    """The URL of a storage two workers share: a SQLite file, or a fresh PostgreSQL database
    (the bench's worker path; skipped without a server)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("database")


@pytest.mark.slow
def test_two_workers_share_the_suites_runs(shared_storage, tmp_path):
    storage = shared_storage
    common = ["scoreboard", "--optimizers", "adam,sgd", "--workloads", "suite", "--trials", "3"]
    common += ["--seeds", "2", "--storage", storage, "--study", "shared", "--no-report"]
    workers = [_worker([*common, "--out", str(tmp_path / name)]) for name in ("a", "b")]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read().decode()
    for name, trials in _trials(storage).items():
        keys = [t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE]
        assert len(keys) == len(set(keys)), name  # no run made twice
    first, second = (
        json.loads((tmp_path / name / "results.json").read_text()) for name in ("a", "b")
    )
    assert first["optimizers"] == second["optimizers"]
    assert first["runs_ran"] + second["runs_ran"] == sum(
        len(trials) - sum(t.state == TrialState.FAIL for t in trials)
        for trials in _trials(storage).values()
    )


@pytest.mark.slow
def test_a_local_job_runs_the_scoreboard_it_is_given_and_the_command_then_runs_nothing(tmp_path):
    """A child worker (``LocalJobs``) gets the scoreboard's config, not a command line: alone,
    it makes every run; the command after it finds them stored and only scores."""
    from descend.bench.jobs import LocalJobs
    from descend.bench.scoreboard_settings import ScoreboardConfig

    out = tmp_path / "out"
    budget = ["--trials", "2", "--seeds", "2", "--epochs", "2", "--no-report"]
    argv = ["scoreboard", "--optimizers", "adam,sgd", "--workloads", "digits-logreg", *budget]
    config = ScoreboardConfig(
        optimizers=["adam", "sgd"],
        workloads=["digits-logreg"],
        trials=2,
        seeds=2,
        epochs=2,
        out=out,
    )
    with LocalJobs(config, count=1, threads=1) as jobs:
        pass  # the command's own work would go here; leaving waits for the child
    assert jobs.failures() == []
    studies = _trials(f"sqlite:///{out / 'bench.db'}")
    complete = [t for trials in studies.values() for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2 * (2 + 2)
    assert {t.user_attrs["worker"]["pid"] for t in complete} == {jobs.processes[0].pid}
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["runs_ran"] == 0


@pytest.mark.slow
def test_jobs_2_shares_the_runs_and_the_command_reports_them_all(tmp_path):
    """``--jobs 2``: each run made once, by the command or its job, and the command's result
    counts every run (it waits for the job's)."""
    out = tmp_path / "out"
    argv = ["scoreboard", "--optimizers", "adam,sgd", "--workloads", "digits-logreg"]
    argv += ["--trials", "3", "--seeds", "2", "--epochs", "2", "--jobs", "2", "--no-report"]
    assert main([*argv, "--out", str(out)]) == 0
    studies = _trials(f"sqlite:///{out / 'bench.db'}")
    complete = [t for trials in studies.values() for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2 * (3 + 2)  # the budget: 3 trials and 2 seeds per optimizer
    workers = {t.user_attrs["worker"]["pid"] for t in complete}
    assert os.getpid() in workers and len(workers) <= 2  # the command and at most its job
    results = json.loads((out / "results.json").read_text())
    assert [row["trials"] for row in results["bench"]["rows"]] == [3, 3]
    assert [row["seeds"] for row in results["bench"]["rows"]] == [2, 2]
    assert (out / "job-2.log").exists()
