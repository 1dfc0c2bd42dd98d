"""The scoreboard's HTML page, drawn with the bench report's machinery: the score table, the
performance profiles, per-workload times to target with their spread over seeds and the
"timing disturbed" flags, and the suite's pass/fail grid."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from descend.bench.metrics import median_time
from descend.bench.report import figure_html, label_colors
from descend.bench.results import DISTURBED, STEP_TIME_SPREAD, WALL_OVER_CPU
from descend.bench.scoreboard import ScoreboardResult, WorkloadEntry
from descend.bench.scoreboard_output import REFERENCE, optimizer_entries
from descend.bench.scoreboard_settings import DEFAULT_SEEDS, DEFAULT_TRIALS
from descend.bench.scoring import NUM_POINTS, TAU_MAX, TAU_MIN, Scores
from descend.reporting import Table, format_cell, page, render_table

#: Colours of the pass/fail grid's cells (the words pass/fail are written in them too).
_STYLE = """
body { max-width: 1200px; }
td.pass { background: #d4edda !important; color: #155724; }
td.fail { background: #f8d7da !important; color: #721c24; font-weight: 600; }
table.grid td, table.grid th { text-align: center; }
table.grid th { font-size: 0.85em; }
div.wide { overflow-x: auto; }
"""


def _budget(result: ScoreboardResult) -> str:
    config = result.config
    tuning = (
        "self-tuning: each optimizer runs with its own default hyperparameters"
        if config.trials == 0
        else f"external tuning: {config.trials} learning rates per workload and per suite "
        "problem, drawn from the optimizer's range in the rule registry"
    )
    text = (
        f"Budget: {tuning}; the chosen setting is rerun with {config.seeds} seed(s). "
        f"This invocation ran {result.runs_ran} run(s) in {result.wall_seconds:.0f} s of wall "
        "time (runs already in the storage were read back, not rerun)."
    )
    if config.quick:
        text += (
            f" This is the reduced budget of --quick ({config.trials} trials, "
            f"{config.seeds} seed(s)); the full budget is {DEFAULT_TRIALS} trials and "
            f"{DEFAULT_SEEDS} seeds."
        )
    if config.left_out:
        text += f" Default workloads not available here: {', '.join(config.left_out)}."
    return f"<p class='note'>{html.escape(text)}</p>"


def _method() -> str:
    return (
        "<p class='note'>Scoring as AlgoPerf computes it ("
        + html.escape(REFERENCE)
        + "): on each workload an optimizer's time is the median over seeds of its time to "
        "the target (infinite when half or more of the seeds miss it); its performance "
        "ratio is that time divided by the fastest optimizer's, infinite past "
        f"{TAU_MAX:g}x; its profile rho(tau) is the fraction of workloads with ratio at "
        f"most tau, for tau from {TAU_MIN:g} to {TAU_MAX:g}; its score is the area under the "
        "profile "
        f"(trapezoidal rule on {NUM_POINTS} points) divided by {TAU_MAX - TAU_MIN:g}: 1 for "
        f"the fastest everywhere, 0 for never within {TAU_MAX:g}x. Time is CPU seconds of "
        "training (the score) or "
        "optimizer steps; evaluations happen at the end of each epoch. Here tuning runs "
        "once with seed 0 and the setting with the best final validation score is rerun "
        "over seeds (AlgoPerf repeats the tuning per study). A run whose wall time is more "
        f"than {WALL_OVER_CPU:g}x its CPU time, or whose step time differs more than "
        f"{STEP_TIME_SPREAD:g}x from the median on its workload, is flagged "
        f"&quot;{DISTURBED}&quot;.</p>"
    )


def _score_table(result: ScoreboardResult) -> str:
    rows = []
    workloads = len(result.tasks)
    for entry in optimizer_entries(result):
        suite = (
            "-"
            if not entry["suite_problems"]
            else f"{entry['suite_passed']}/{entry['suite_problems']} "
            f"({entry['suite_pass_rate'] * 100:.0f}%)"
        )
        rows.append(
            [
                entry["rank"],
                entry["optimizer"],
                format_cell(entry["score"], 3),
                format_cell(entry["score_steps"], 3),
                f"{entry['workloads_reached']}/{workloads}" if workloads else "-",
                suite,
                ", ".join(entry["suite_failed"]) or "-",
            ]
        )
    headers = [
        "rank",
        "optimizer",
        "score (CPU seconds)",
        "score (steps)",
        "workloads reached",
        "suite passed",
        "suite problems failed",
    ]
    return render_table(
        Table(
            "Scores (best first)",
            headers,
            rows,
            numeric=[True, False, True, True, True, True, False],
        )
    )


def _profiles(result: ScoreboardResult, colors: dict[str, Any]) -> str:
    panels = [
        (scores, title)
        for scores, title in ((result.by_cpu, "CPU seconds"), (result.by_steps, "steps"))
        if scores is not None
    ]
    if not panels:
        return ""
    figure, axes = plt.subplots(1, len(panels), figsize=(11, 4), layout="constrained")
    for axis, (scores, title) in zip(list(getattr(axes, "flat", [axes])), panels, strict=True):
        assert isinstance(scores, Scores)
        for label in result.ranking():
            axis.step(
                scores.taus,
                scores.profiles[label],
                where="post",
                color=colors[label],
                label=f"{label} ({scores.scores[label]:.3f})",
            )
        axis.set_xlim(1, TAU_MAX)
        axis.set_ylim(-0.03, 1.03)
        axis.set_xlabel("tau (time / fastest time on the workload)")
        axis.set_ylabel("fraction of workloads within tau")
        axis.set_title(f"by {title} (legend: score)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(f"Performance profiles over {len(result.tasks)} workload(s)")
    return figure_html(figure, "performance profiles")


def _spread(values: list[float | None], digits: int) -> str:
    reached = [value for value in values if value is not None]
    if not reached:
        return "never"
    median = median_time(values)
    low, high = min(reached), max(reached)
    spread = "" if low == high else f" [{format_cell(low, digits)}–{format_cell(high, digits)}]"
    return f"{format_cell(median, digits)}{spread}"


def _workload_table(entries: list[WorkloadEntry], scores: dict[str, Scores | None]) -> str:
    rows = []
    for entry in entries:
        setting = (
            "all diverged"
            if entry.setting is None
            else ", ".join(f"{k}={v:.3g}" for k, v in entry.setting.items()) or "own values"
        )
        ratios = [
            format_cell(found.ratios[entry.workload][entry.optimizer], 3)
            if found is not None and entry.workload in found.ratios
            else "-"
            for found in (scores["cpu"], scores["steps"])
        ]
        rows.append(
            [
                entry.optimizer,
                setting,
                _spread(entry.steps, 4),
                _spread(entry.cpu_seconds, 3) + (" *" if entry.timing else ""),
                f"{entry.reached}/{len(entry.seeds)}",
                *ratios,
            ]
        )
    headers = [
        "optimizer",
        "setting",
        "steps to target: median [min–max]",
        "CPU s to target: median [min–max]",
        "seeds reached",
        "ratio (CPU s)",
        "ratio (steps)",
    ]
    return render_table(
        Table("", headers, rows, numeric=[False, False, True, True, True, True, True])
    )


def _seed_figure(workload: str, entries: list[WorkloadEntry], colors: dict[str, Any]) -> str:
    figure, axes = plt.subplots(
        1, 2, figsize=(11, 0.42 * len(entries) + 1.6), layout="constrained", sharey=True
    )
    for axis, key, title in ((axes[0], "steps", "steps"), (axes[1], "cpu_seconds", "CPU seconds")):
        for index, entry in enumerate(entries):
            values = getattr(entry, key)
            reached = [value for value in values if value is not None]
            color = colors[entry.optimizer]
            axis.plot(reached, [index] * len(reached), "o", color=color, alpha=0.7)
            median = entry.median_steps if key == "steps" else entry.median_cpu_seconds
            if math.isfinite(median):
                axis.plot([median], [index], "|", color="k", ms=14)
            missed = len(values) - len(reached)
            if missed:
                axis.text(
                    1.0,
                    index,
                    f" {missed} missed",
                    va="center",
                    fontsize=7,
                    transform=axis.get_yaxis_transform(),
                )
        axis.set_xlabel(f"{title} to the target (dots: seeds; bar: median)")
        axis.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(entries)), [entry.optimizer for entry in entries], fontsize=8)
    axes[0].invert_yaxis()
    figure.suptitle(f"{workload}: time to target over seeds")
    return figure_html(figure, f"time to target over seeds on {workload}")


def _timing_warnings(entries: list[WorkloadEntry]) -> list[str]:
    return [
        f"<p class='warning'>* {DISTURBED}: {html.escape(entry.optimizer)}: "
        f"{html.escape('; '.join(entry.timing))}. Its seconds are not a property of the "
        "optimizer; compare steps to target.</p>"
        for entry in entries
        if entry.timing
    ]


def _grid(result: ScoreboardResult) -> str:
    problems = [problem["problem"] for problem in result.suite_problems]
    head = "<tr><th>optimizer</th>" + "".join(f"<th>{html.escape(name)}</th>" for name in problems)
    head += "<th>passed</th></tr>"
    rows = []
    for label in result.ranking():
        outcomes = {outcome.problem: outcome for outcome in result.outcomes_of(label)}
        cells = []
        for name in problems:
            outcome = outcomes[name]
            lr = "own lr" if outcome.lr is None else f"lr {outcome.lr:.3g}"
            detail = (
                f"{lr}; median steps to pass {format_cell(outcome.steps_to_pass)}"
                if outcome.passed
                else f"no learning rate of {len(outcome.tuning)} passed"
                if not outcome.seed_runs
                else f"{lr} passed in tuning, not on most seeds"
            )
            kind = "pass" if outcome.passed else "fail"
            cells.append(f"<td class='{kind}' title='{html.escape(detail)}'>{kind}</td>")
        passed = sum(outcome.passed for outcome in outcomes.values())
        rows.append(
            f"<tr><th>{html.escape(label)}</th>{''.join(cells)}"
            f"<td class='num'>{passed}/{len(problems)}</td></tr>"
        )
    # Many problems make a wide grid: it scrolls sideways instead of widening the page.
    return "<div class='wide'><table class='grid'>" + head + "".join(rows) + "</table></div>"


def _problems_table(result: ScoreboardResult) -> str:
    theory = any(problem["theory"] for problem in result.suite_problems)
    rows = [
        [problem["problem"], problem["reason"], problem["criterion"], problem["steps"]]
        + ([problem["theory"] or "-"] if theory else [])
        for problem in result.suite_problems
    ]
    headers = ["problem", "why it is hard", "passes when", "steps"]
    return render_table(
        Table(
            "The problems",
            headers + (["theory"] if theory else []),
            rows,
            numeric=[False, False, False, True] + ([False] if theory else []),
        )
    )


def write_scoreboard_report(result: ScoreboardResult, path: Path) -> Path:
    """Write the scoreboard's HTML page to ``path`` and return it."""
    colors = label_colors(result.optimizers)
    parts = ["<h1>descend scoreboard</h1>", _budget(result), _method(), _score_table(result)]
    parts.append(_profiles(result, colors))
    scores = {"cpu": result.by_cpu, "steps": result.by_steps}
    for task in result.tasks:
        entries = [entry for entry in result.entries if entry.workload == task.name]
        target = (
            "none"
            if task.target is None
            else f"{task.target * 100:.1f}% validation accuracy"
            if task.metric == "accuracy"
            else f"validation loss {task.target:g}"
        )
        parts.append(
            f"<h2>{html.escape(task.name)}</h2><p>{html.escape(task.description)}; "
            f"{task.epochs} epochs; target: {html.escape(target)}.</p>"
        )
        parts.append(_workload_table(entries, scores))
        parts.extend(_timing_warnings(entries))
        parts.append(_seed_figure(task.name, entries, colors))
    parts.append("<h2>The pass/fail suite</h2>")
    if result.suite_message:
        parts.append(f"<p class='warning'>{html.escape(result.suite_message)}</p>")
    elif result.suite_problems:
        parts.append(
            "<p class='note'>Each optimizer tries the budget's learning rates on each "
            "problem with seed 0; the one that passed in the fewest steps is rerun over the "
            "seeds, and the problem counts as passed when more than half of the reruns pass "
            "(hover a cell for the details).</p>"
        )
        parts.append(_grid(result))
        parts.append(_problems_table(result))
    else:
        parts.append("<p class='note'>The suite was not among the workloads.</p>")
    path.write_text(page("descend scoreboard", parts, style=_STYLE), encoding="utf-8")
    return path
