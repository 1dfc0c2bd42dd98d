"""The scoreboard: optimizers ranked across workloads as AlgoPerf ranks submissions, and a
pass/fail suite of hard problems.

    from descend.bench.scoreboard import ScoreboardConfig, run_scoreboard, write_scoreboard

    result = run_scoreboard(ScoreboardConfig(["adam", "sgd_momentum"], ["digits-mlp"]))
    write_scoreboard(result)  # results.json and report.html in result.config.out

The workloads run as bench studies (:class:`descend.bench.protocol.Bench`): the same storage,
resume, kill-safety and PostgreSQL workers. Per workload and optimizer, the bench tunes
``trials`` learning rates in the optimizer's registry range (external tuning; ``trials=0``:
self-tuning, the spec's own values) with seed 0, and reruns the setting with the best final
validation score over seeds 1..K. Each rerun's time to target is read from its history: the
first evaluation (end of an epoch) whose validation score reaches the task's target, in
optimizer steps and in CPU seconds of training (evaluation excluded). The workload's time is
the median over seeds (infinite when half or more miss); :mod:`descend.bench.scoring` turns
the times into performance ratios, profiles and AlgoPerf's integrated score, one scoring by
CPU seconds (the score) and one by steps.

One difference from AlgoPerf, which repeats the whole tuning per study and takes each study's
trial that reaches the target first: here tuning runs once and the bench's rule picks the
setting (best final validation score); the seeds repeat that setting.

The suite (:mod:`descend.bench.scoreboard_suite`) gives every optimizer a fixed budget of
learning rates per problem and reports its pass rate and the problems it fails.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from descend.bench import storage as storage_layer
from descend.bench.config import BenchConfig, Reporter
from descend.bench.contenders import make_contender
from descend.bench.metrics import median_time
from descend.bench.planning import count_done
from descend.bench.protocol import Bench
from descend.bench.results import ContenderResult, summary_rows, timing_notes
from descend.bench.scoreboard_settings import ScoreboardConfig
from descend.bench.scoreboard_suite import ProblemOutcome, SuiteRunner, load_suite
from descend.bench.scoring import Scores, score_times
from descend.bench.tasks import Task, get_tasks
from descend.bench.training import RunResult, score
from descend.specs import OptimizerSpec, parse_optimizer


@dataclass
class WorkloadEntry:
    """One optimizer on one workload: its time to target per seed, and their medians.

    ``steps`` and ``cpu_seconds`` hold one value per seed rerun, in seed order (``None``: that
    seed never reached the target); ``timing`` says why its timings are disturbed (empty: they
    are not; see :func:`descend.bench.results.timing_notes`).
    """

    workload: str
    optimizer: str
    setting: dict[str, float] | None
    seeds: list[int]
    steps: list[float | None]
    cpu_seconds: list[float | None]
    diverged: int
    timing: list[str] = field(default_factory=list)

    @property
    def median_steps(self) -> float:
        """Median steps to target over seeds (``inf``: half or more never reached it)."""
        return median_time(self.steps)

    @property
    def median_cpu_seconds(self) -> float:
        """Median CPU seconds to target over seeds (``inf`` as for steps)."""
        return median_time(self.cpu_seconds)

    @property
    def reached(self) -> int:
        """Seeds that reached the target."""
        return sum(value is not None for value in self.steps)


@dataclass
class ScoreboardResult:
    """Everything a scoreboard measured, as :func:`write_scoreboard` writes it.

    ``wall_seconds`` is this invocation's time and ``runs_ran`` the runs it started; runs
    already in the storage were read back, not rerun.
    """

    config: ScoreboardConfig
    optimizers: list[str]
    tasks: list[Task]
    entries: list[WorkloadEntry]
    bench_results: list[ContenderResult]
    bench_rows: list[dict[str, Any]]
    by_cpu: Scores | None
    by_steps: Scores | None
    suite_problems: list[dict[str, Any]]
    suite_outcomes: list[ProblemOutcome]
    suite_message: str
    storage: str
    wall_seconds: float
    runs_ran: int = 0

    def entry(self, workload: str, optimizer: str) -> WorkloadEntry:
        """The entry of ``optimizer`` on ``workload``."""
        return next(
            entry
            for entry in self.entries
            if entry.workload == workload and entry.optimizer == optimizer
        )

    def outcomes_of(self, optimizer: str) -> list[ProblemOutcome]:
        """``optimizer``'s outcome on every problem of the suite, in the suite's order."""
        return [outcome for outcome in self.suite_outcomes if outcome.optimizer == optimizer]

    def ranking(self) -> list[str]:
        """Optimizers from the best to the worst: by score (CPU seconds), then by steps score,
        then by suite pass rate."""

        def key(label: str) -> tuple[float, float, float]:
            cpu = self.by_cpu.scores.get(label, 0.0) if self.by_cpu else 0.0
            steps = self.by_steps.scores.get(label, 0.0) if self.by_steps else 0.0
            outcomes = self.outcomes_of(label)
            rate = sum(o.passed for o in outcomes) / len(outcomes) if outcomes else 0.0
            return (-cpu, -steps, -rate)

        return sorted(self.optimizers, key=key)


class _Forward(Reporter):
    """Passes the bench's progress events on to the scoreboard's reporter, counting the runs
    that start, except ``begin``: the scoreboard sizes the progress over the bench and the
    suite together."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.started = 0

    def run_started(self, task: str, label: str, phase: str, detail: str, epochs: int) -> None:
        """A tuning trial or seed run starts."""
        self.started += 1
        self.reporter.run_started(task, label, phase, detail, epochs)

    def epoch(self, metrics: Any) -> None:
        """An epoch of the current run ended."""
        self.reporter.epoch(metrics)

    def run_finished(self, outcome: str) -> None:
        """The current run ended (or was read back from the storage)."""
        self.reporter.run_finished(outcome)

    def waiting(self, message: str) -> None:
        """This worker waits for other workers."""
        self.reporter.waiting(message)

    def notice(self, message: str) -> None:
        """One line for the user."""
        self.reporter.notice(message)


def seed_times(task: Task, run: RunResult) -> tuple[int | None, float | None]:
    """Steps and CPU seconds of training until the first evaluation that reaches ``task``'s
    target (``(None, None)``: never, or the run did not record them)."""
    for metrics in run.history:
        if task.reached(score(task, metrics)):
            return metrics.steps, metrics.cpu_seconds
    return None, None


def workload_entries(tasks: list[Task], results: list[ContenderResult]) -> list[WorkloadEntry]:
    """Every optimizer's times to target on every task, with its timing checked against the
    other runs on the task."""
    by_name = {task.name: task for task in tasks}
    notes = timing_notes(results)
    entries = []
    for result in results:
        task = by_name[result.task]
        seeds = sorted(result.seed_runs)
        times = [seed_times(task, result.seed_runs[seed]) for seed in seeds]
        entries.append(
            WorkloadEntry(
                task.name,
                result.label,
                result.best_params,
                seeds,
                [steps for steps, _ in times],
                [seconds for _, seconds in times],
                sum(result.seed_runs[seed].diverged for seed in seeds),
                notes[result.task, result.label],
            )
        )
    return entries


def _scores(
    tasks: list[Task], entries: list[WorkloadEntry], labels: list[str], key: str
) -> Scores | None:
    times: dict[str, dict[str, float]] = {}
    for task in tasks:
        if task.target is None:
            continue
        row = {entry.optimizer: entry for entry in entries if entry.workload == task.name}
        times[task.name] = {
            label: (getattr(row[label], key) if label in row else math.inf) for label in labels
        }
    return score_times(times) if times else None


def parse_specs(texts: list[str]) -> list[OptimizerSpec]:
    """The optimizer specs ``texts``, each checked (built once), none given twice."""
    specs = []
    for text in texts:
        spec = parse_optimizer(text)
        if not isinstance(spec, OptimizerSpec):
            raise ValueError(f"{text!r} cannot be scored: it is not a torch optimizer")
        specs.append(spec)
    labels = [spec.label for spec in specs]
    doubled = sorted({label for label in labels if labels.count(label) > 1})
    if doubled:
        raise ValueError(f"optimizer given twice: {', '.join(doubled)}")
    return specs


class Scoreboard:
    """A scoreboard over optimizers and workloads, backed by the bench's storage.

    Construction checks everything (specs, workloads, the storage, and that existing studies
    of the same names were made with the same settings), so bad input fails before any run
    starts; :meth:`run` fills in what the budgets still miss and scores.
    """

    def __init__(self, config: ScoreboardConfig) -> None:
        self.config = config
        self.specs = parse_specs(list(config.optimizers))
        self.suite: Any = None
        self.suite_message = ""
        if config.suite:
            self.suite, self.suite_message = load_suite()
        tasks = get_tasks(config.tasks, config.task_options) if config.tasks else []
        self.bench: Bench | None = None
        if tasks:
            bench_config = BenchConfig(
                trials=config.trials or 0,
                seeds=config.seeds or 1,
                epochs=config.epochs,
                pruner="none",  # AlgoPerf runs every trial to its end
                out=config.out,
                storage=config.storage,
                study=config.study,
                poll_seconds=config.poll_seconds,
            )
            contenders = [make_contender(spec) for spec in self.specs]
            self.bench = Bench(tasks, contenders, bench_config)
            storage, self.display_url = self.bench.storage, self.bench.display_url
        else:
            if config.storage is None:
                config.out.mkdir(parents=True, exist_ok=True)
            url = storage_layer.storage_url(config.storage, config.out)
            storage = storage_layer.open_storage(url)
            self.display_url = storage_layer.display_url(url)
        self.storage = storage
        self.problems = list(self.suite.values()) if self.suite is not None else []

    @property
    def tasks(self) -> list[Task]:
        """The bench tasks, as the bench runs them (``--epochs`` applied)."""
        return self.bench.tasks if self.bench else []

    def run(self, reporter: Reporter | None = None) -> ScoreboardResult:
        """Run every run still missing (resuming from the storage), then score."""
        reporter = reporter or Reporter()
        forward = _Forward(reporter)
        started = time.perf_counter()
        config, bench = self.config, self.bench
        runner = SuiteRunner(
            self.storage,
            self.display_url,
            config.study,
            config.trials or 0,
            config.seeds or 1,
            reporter,
            config.poll_seconds,
        )
        bench_total, bench_done = count_done(bench.pairs, bench.config) if bench else (0, 0)
        reporter.begin(bench_total + runner.planned(self.problems, self.specs), bench_done)
        results = bench.run(forward) if bench else []
        outcomes = [
            runner.outcome(problem, spec) for problem in self.problems for spec in self.specs
        ]
        entries = workload_entries(self.tasks, results)
        labels = [spec.label for spec in self.specs]
        return ScoreboardResult(
            config,
            labels,
            self.tasks,
            entries,
            results,
            summary_rows(self.tasks, results),
            _scores(self.tasks, entries, labels, "median_cpu_seconds"),
            _scores(self.tasks, entries, labels, "median_steps"),
            [
                {
                    "problem": problem.name,
                    "reason": problem.reason,
                    "criterion": problem.criterion,
                    "steps": problem.steps,
                    # What closed-form theory predicts, for the problems that say.
                    "theory": getattr(problem, "theory", ""),
                }
                for problem in self.problems
            ],
            outcomes,
            self.suite_message,
            self.display_url,
            time.perf_counter() - started,
            forward.started + runner.ran,
        )


def run_scoreboard(config: ScoreboardConfig, reporter: Reporter | None = None) -> ScoreboardResult:
    """Check everything, run every run the scoreboard still misses (resuming from its
    storage), then score (see :class:`Scoreboard`)."""
    return Scoreboard(config).run(reporter)


def write_scoreboard(result: ScoreboardResult, report: bool = True) -> list[Any]:
    """Write ``results.json`` (and ``report.html``) to the scoreboard's output folder; return
    the paths written."""
    from descend.bench.scoreboard_output import write_results_json

    out = result.config.out
    out.mkdir(parents=True, exist_ok=True)
    written = [write_results_json(result, out / "results.json")]
    if report:
        from descend.bench.scoreboard_report import write_scoreboard_report

        written.append(write_scoreboard_report(result, out / "report.html"))
    return written
