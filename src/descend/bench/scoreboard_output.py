"""The scoreboard's ``results.json``: the same numbers as its page, as plain JSON.

Keys, at the top: ``budget`` (quick or not, trials, seeds, the ruleset), ``scoring`` (the
reference and the tau grid), ``storage`` (password masked), ``optimizers`` (one entry per
optimizer, best first: ``optimizer``, ``rank``, ``score`` by CPU seconds, ``score_steps``,
``workloads_reached``, ``suite_passed``, ``suite_problems``, ``suite_pass_rate``,
``suite_failed`` and ``problems``, a list of entries with the keys ``problem`` and ``passed``
and the details of the runs), ``workloads`` (per workload and optimizer the time to target
per seed and its medians, the performance ratios and the timing flags), ``profiles`` (tau and
every optimizer's rho(tau), by CPU seconds and by steps), ``suite`` (whether it ran, and its
problems with their reasons and criteria), ``bench`` (the bench's own summary rows and runs),
``wall_seconds`` (this invocation's) and ``runs_ran`` (the runs it started; the others were
read back from the storage). A time or ratio that is infinite (a target never reached) is
``null``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from descend.bench.results import DISTURBED
from descend.bench.scoring import NUM_POINTS, TAU_MAX, TAU_MIN

if TYPE_CHECKING:
    from descend.bench.scoreboard import ScoreboardResult

#: Where the scoring comes from, as the page and results.json cite it.
REFERENCE = (
    "MLCommons AlgoPerf (mlcommons/algorithmic-efficiency): scoring/performance_profile.py "
    "(get_workloads_time_to_target, compute_performance_profiles) and "
    "scoring/score_submissions.py (compute_leaderboard_score)"
)


def finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by ``None``, through lists and
    dicts: strict JSON has no Infinity."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def optimizer_entries(result: ScoreboardResult) -> list[dict[str, Any]]:
    """One entry per optimizer, best first: its scores, workloads reached, and the suite."""
    entries = []
    for rank, label in enumerate(result.ranking(), start=1):
        outcomes = result.outcomes_of(label)
        passed = sum(outcome.passed for outcome in outcomes)
        mine = [entry for entry in result.entries if entry.optimizer == label]
        entries.append(
            {
                "optimizer": label,
                "rank": rank,
                "score": result.by_cpu.scores[label] if result.by_cpu else None,
                "score_steps": result.by_steps.scores[label] if result.by_steps else None,
                "workloads_reached": sum(math.isfinite(entry.median_steps) for entry in mine),
                "suite_passed": passed,
                "suite_problems": len(outcomes),
                "suite_pass_rate": passed / len(outcomes) if outcomes else None,
                "suite_failed": [outcome.problem for outcome in outcomes if not outcome.passed],
                "problems": [outcome.to_dict() for outcome in outcomes],
            }
        )
    return entries


def workload_entries(result: ScoreboardResult) -> list[dict[str, Any]]:
    """One entry per workload: its target, and per optimizer the times to target."""
    entries = []
    for task in result.tasks:
        rows = []
        for entry in result.entries:
            if entry.workload != task.name:
                continue
            ratios = {
                key: scores.ratios.get(task.name, {}).get(entry.optimizer)
                for key, scores in (("cpu_seconds", result.by_cpu), ("steps", result.by_steps))
                if scores is not None
            }
            rows.append(
                {
                    "optimizer": entry.optimizer,
                    "setting": entry.setting,
                    "seeds": entry.seeds,
                    "steps_to_target": entry.steps,
                    "cpu_seconds_to_target": entry.cpu_seconds,
                    "median_steps": entry.median_steps,
                    "median_cpu_seconds": entry.median_cpu_seconds,
                    "reached": entry.reached,
                    "diverged": entry.diverged,
                    "ratio_cpu_seconds": ratios.get("cpu_seconds"),
                    "ratio_steps": ratios.get("steps"),
                    "timing_disturbed": bool(entry.timing),
                    "timing": entry.timing,
                }
            )
        entries.append(
            {
                "workload": task.name,
                "description": task.description,
                "metric": task.metric,
                "target": task.target,
                "epochs": task.epochs,
                "optimizers": rows,
            }
        )
    return entries


def payload(result: ScoreboardResult) -> dict[str, Any]:
    """Everything results.json holds (see the module's docstring)."""
    config = result.config
    profiles: dict[str, Any] = {}
    for key, scores in (("cpu_seconds", result.by_cpu), ("steps", result.by_steps)):
        if scores is not None:
            profiles["taus"] = scores.taus
            profiles[key] = scores.profiles
    return {
        "budget": {
            "quick": config.quick,
            "tuning": config.tuning,
            "trials": config.trials,
            "seeds": config.seeds,
            "epochs": config.epochs,
            "workloads_left_out": config.left_out,
        },
        "scoring": {
            "reference": REFERENCE,
            "tau_min": TAU_MIN,
            "tau_max": TAU_MAX,
            "num_points": NUM_POINTS,
            "score": "integrated profile of CPU seconds to target",
            "score_steps": "integrated profile of optimizer steps to target",
            "disturbed": DISTURBED,
        },
        "storage": result.storage,
        "optimizers": optimizer_entries(result),
        "workloads": workload_entries(result),
        "profiles": profiles,
        "suite": {
            "ran": bool(result.suite_problems),
            "message": result.suite_message,
            "problems": result.suite_problems,
        },
        "bench": {
            "rows": result.bench_rows,
            "results": [item.to_dict() for item in result.bench_results],
        },
        "wall_seconds": result.wall_seconds,
        "runs_ran": result.runs_ran,
    }


def write_results_json(result: ScoreboardResult, path: Path) -> Path:
    """Write results.json to ``path`` (strict JSON: no Infinity) and return it."""
    path.write_text(json.dumps(finite(payload(result)), indent=1, allow_nan=False))
    return path
