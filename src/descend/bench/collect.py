"""Collecting: every finished trial and seed run read back from the storage, and the files
written from them (``results.json``, ``report.html``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from descend.bench.config import BenchConfig
from descend.bench.planning import best_trial, finished_trials, seed_trials
from descend.bench.results import ContenderResult, summary_rows, write_results
from descend.bench.studies import StudyPair
from descend.bench.tasks import Task
from descend.bench.training import RunResult, score


def _tuning_rows(pair: StudyPair) -> list[dict[str, Any]]:
    rows = []
    for trial in sorted(finished_trials(pair.tune), key=lambda t: t.number):
        run = trial.user_attrs.get("run")
        rows.append(
            {
                "number": trial.number,
                "params": dict(trial.params),
                "value": trial.value,
                "state": trial.state.name.lower(),
                "diverged": bool(trial.user_attrs.get("diverged")),
                "last_score": (
                    score(pair.task, RunResult.from_dict(run).history[-1])
                    if run and run["history"]
                    else None
                ),
                "epochs": len(run["history"]) if run else 0,
            }
        )
    return rows


def _seed_runs(pair: StudyPair, params: dict) -> dict[int, RunResult]:
    runs: dict[int, RunResult] = {}
    for trial in sorted(
        seed_trials(pair.seeds, params, (TrialState.COMPLETE,)), key=lambda t: t.number
    ):
        seed = trial.user_attrs.get("seed")
        if seed is not None and seed not in runs and "run" in trial.user_attrs:
            runs[seed] = RunResult.from_dict(trial.user_attrs["run"])
    return dict(sorted(runs.items()))


def collect_results(pairs: Sequence[StudyPair], config: BenchConfig) -> list[ContenderResult]:
    """Every task and contender's finished trials and seed runs, read from the storage."""
    results = []
    for pair in pairs:
        best = best_trial(pair, config)
        results.append(
            ContenderResult(
                pair.task.name,
                pair.contender.label,
                [dimension.to_text() for dimension in pair.contender.space],
                _tuning_rows(pair),
                None if best is None else best[0],
                None if best is None else best[1],
                {} if best is None else _seed_runs(pair, best[0]),
            )
        )
    return results


def write_files(
    out: Path,
    tasks: Sequence[Task],
    shown_url: str,
    results: list[ContenderResult],
    report: bool = True,
) -> list[dict[str, Any]]:
    """Write ``results.json`` (and ``report.html``) to ``out``; return the summary rows (see
    :func:`descend.bench.results.summary_rows`). ``shown_url``: the storage, password
    masked."""
    rows = summary_rows(tasks, results)
    out.mkdir(parents=True, exist_ok=True)
    write_results(out / "results.json", shown_url, rows, results)
    if report:
        from descend.bench.report import write_report  # matplotlib loads only for the report

        write_report(out / "report.html", tasks, results, rows)
    return rows
