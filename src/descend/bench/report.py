"""The HTML report: one self-contained file with tables and figures (PNG, inlined)."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt
import numpy as np

from descend.bench.metrics import curves, performance_profile
from descend.bench.results import (
    DISTURBED,
    STEP_TIME_SPREAD,
    SUMMARY_HEADERS,
    WALL_OVER_CPU,
    ContenderResult,
    summary_cells,
)
from descend.bench.tasks import Task
from descend.reporting import Table, format_cell, page, render_table

#: What the benchmark's page adds to the common stylesheet: room for wide figures and tables.
_STYLE = """
body { max-width: 1200px; }
"""


def _figure_html(figure: plt.Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(index % cmap.N) for index, label in enumerate(labels)}


def figure_html(figure: plt.Figure, alt: str) -> str:
    """``figure`` as an ``<img>`` with the PNG inlined (the figure is closed), described by
    ``alt``: how every figure of the bench's pages is embedded."""
    return _figure_html(figure, alt)


def label_colors(labels: Sequence[str]) -> dict[str, Any]:
    """One colour per optimizer label, in the order given, as the bench's report draws them."""
    return _colors(labels)


#: Which columns of the summary (:data:`SUMMARY_HEADERS`) hold numbers: all but the
#: optimizer and its setting.
_SUMMARY_NUMERIC = [False, False] + [True] * (len(SUMMARY_HEADERS) - 2)
_TRIAL_HEADERS = ["optimizer", "trial", "setting", "outcome", "epochs run", "last val score"]
_TRIAL_NUMERIC = [False, True, False, False, True, True]


def _learning_curves(task: Task, results: list[ContenderResult], colors: dict) -> str:
    accuracy = task.metric == "accuracy"
    keys = [("train_loss", "train loss"), ("val_loss", "validation loss")]
    if accuracy:
        keys += [("train_accuracy", "train accuracy"), ("val_accuracy", "validation accuracy")]
    figure, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), layout="constrained")
    for axis, (key, title) in zip(np.atleast_1d(axes), keys, strict=True):
        for result in results:
            runs = list(result.seed_runs.values())
            epochs, mean, std = curves(runs, key)
            if not len(epochs):
                continue
            color = colors[result.label]
            axis.plot(epochs, mean, color=color, label=result.label)
            axis.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
        if key == "val_accuracy" and task.target is not None:
            axis.axhline(task.target, color="k", ls=":", lw=1, label="target")
        if "loss" in key:
            axis.set_yscale("log")
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    figure.suptitle(f"{task.name}: mean and standard deviation over seeds (best setting)")
    return _figure_html(figure, f"learning curves on {task.name}")


def _sensitivity(task: Task, results: list[ContenderResult], colors: dict) -> str:
    figure, axis = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    floor = 0.0 if task.higher_is_better else None
    for result in results:
        points = [
            (trial["params"]["lr"], trial["last_score"], trial)
            for trial in result.trials
            if "lr" in trial["params"]
        ]
        if not points:
            continue
        points.sort(key=lambda point: point[0])
        color = colors[result.label]
        finished = [(lr, value) for lr, value, trial in points if trial["state"] == "complete"]
        if finished:
            axis.plot(*zip(*finished, strict=True), "o-", color=color, label=result.label)
        pruned = [
            (lr, value)
            for lr, value, trial in points
            if trial["state"] == "pruned" and not trial["diverged"] and value is not None
        ]
        if pruned:
            axis.plot(*zip(*pruned, strict=True), "o", mfc="none", color=color)
        diverged = [lr for lr, _, trial in points if trial["diverged"]]
        if diverged and floor is not None:
            axis.plot(diverged, [floor] * len(diverged), "x", color=color, ms=8)
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("final validation " + ("accuracy" if task.higher_is_better else "loss"))
    if not task.higher_is_better:
        axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    axis.set_title(
        f"{task.name}: learning-rate sensitivity (filled: completed trials; hollow: "
        "pruned, at their last epoch; x: diverged)",
        fontsize=9,
    )
    return _figure_html(figure, f"learning-rate sensitivity on {task.name}")


def _ratios(task: Task, results: list[ContenderResult]) -> str:
    shown = [result for result in results if result.seed_runs]
    if not shown:
        return ""
    columns = min(3, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(4.2 * columns, 3.2 * rows),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for axis, result in zip(axes.flat, shown, strict=False):
        runs = list(result.seed_runs.values())
        layers = list(runs[0].history[0].update_ratio) if runs[0].history else []
        for layer in layers:
            length = max(len(run.history) for run in runs)
            values = [
                np.mean(
                    [run.history[i].update_ratio[layer] for run in runs if i < len(run.history)]
                )
                for i in range(length)
            ]
            axis.plot(range(1, length + 1), values, label=layer)
        axis.axhline(1e-3, color="k", ls=":", lw=1)
        axis.set_yscale("log")
        axis.set_title(result.label, fontsize=9)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(shown) :]:
        axis.set_visible(False)
    figure.suptitle(f"{task.name}: update/weight ratio per layer (dotted: the 1e-3 rule of thumb)")
    return _figure_html(figure, f"update to weight ratios on {task.name}")


def _time_to_target(rows: list[dict], colors: dict) -> str:
    rows = [row for row in rows if row["target"] is not None]
    if not rows:
        return ""
    figure, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.5), layout="constrained")
    names = [f"{row['task']}: {row['optimizer']}" for row in rows]
    for axis, key, title in (
        (axes[0], "epochs_to_target", "epochs"),
        (axes[1], "seconds_to_target", "training seconds"),
    ):
        values = [row[key] for row in rows]
        finite = [value for value in values if math.isfinite(value)]
        cap = max(finite) * 1.15 if finite else 1.0
        for index, (row, value) in enumerate(zip(rows, values, strict=True)):
            color = colors.get(row["optimizer"], "C0")
            if math.isfinite(value):
                axis.barh(index, value, color=color)
                disturbed = (
                    f" {DISTURBED}"
                    if key == "seconds_to_target" and row["timing_disturbed"]
                    else ""
                )
                axis.text(
                    value,
                    index,
                    f" {value:.3g} ({row['reached']}/{row['seeds']}){disturbed}",
                    va="center",
                    fontsize=7,
                )
            else:
                axis.barh(index, cap, color="none", edgecolor="0.6", hatch="//")
                axis.text(
                    0,
                    index,
                    f" not reached ({row['reached']}/{row['seeds']})",
                    va="center",
                    fontsize=7,
                )
        axis.set_yticks(
            range(len(rows)), names if axis is axes[0] else [""] * len(rows), fontsize=8
        )
        axis.invert_yaxis()
        axis.set_xlabel(f"median {title} to the target over seeds")
        axis.grid(alpha=0.3, axis="x")
    figure.suptitle("Time to target (label: seeds that reached it)")
    return _figure_html(figure, "time to target")


def _profiles(rows: list[dict], colors: dict) -> str:
    rows = [row for row in rows if row["target"] is not None]
    if not rows:
        return ""
    taus = np.geomspace(1.0, 8.0, 200)
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for axis, key, title in (
        (axes[0], "seconds_to_target", "training seconds"),
        (axes[1], "epochs_to_target", "epochs"),
    ):
        times: dict[str, dict[str, float]] = {}
        for row in rows:
            times.setdefault(row["task"], {})[row["optimizer"]] = row[key]
        for label, rho in performance_profile(times, taus).items():
            axis.step(taus, rho, where="post", label=label, color=colors.get(label))
        axis.set_xscale("log")
        axis.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
        axis.minorticks_off()
        axis.set_ylim(-0.03, 1.03)
        axis.set_xlabel("tau (time / fastest time on the task)")
        axis.set_ylabel("fraction of tasks within tau")
        axis.set_title(f"by {title}")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    figure.suptitle(f"Performance profiles over {len(times)} task(s) (AlgoPerf style)")
    return _figure_html(figure, "performance profiles")


def _timing_warning(row: dict) -> str:
    return (
        f"<p class='warning'>* {DISTURBED}: {html.escape(row['optimizer'])}: "
        f"{html.escape('; '.join(row['timing']))}. Its seconds are not a property of the "
        "optimizer; compare epochs to target.</p>"
    )


def write_report(
    path: Path, tasks: Sequence[Task], results: list[ContenderResult], rows: list[dict]
) -> Path:
    """Write the HTML report to ``path`` and return it."""
    labels = list(dict.fromkeys(result.label for result in results))
    colors = _colors(labels)
    parts = [
        "<h1>descend bench</h1>",
        "<p class='note'>Each optimizer's hyperparameters were tuned with its own budget "
        "of trials (seed 0, scored by the final validation score); the best setting was "
        "then rerun with seeds 1..K. Test scores and times are over those reruns. Time "
        "to target is the median over seeds of the first epoch whose validation score "
        "reaches the task's target, in epochs (the primary figure) and in training "
        "seconds, which exclude evaluation and depend on the machine's load: a run whose "
        f"wall time is more than {WALL_OVER_CPU:g}x its CPU time, or whose time per step "
        "differs more than "
        f"{STEP_TIME_SPREAD:g}x the median of the task's runs, is marked "
        f"&quot;{DISTURBED}&quot;.</p>",
    ]
    for task in tasks:
        mine = [result for result in results if result.task == task.name]
        task_rows = [row for row in rows if row["task"] == task.name]
        unit = "accuracy, %" if task.metric == "accuracy" else "loss"
        target = (
            "none"
            if task.target is None
            else (
                f"{task.target * 100:.1f}% validation accuracy"
                if task.metric == "accuracy"
                else f"validation loss {task.target:g}"
            )
        )
        parts.append(
            f"<h2>{html.escape(task.name)}</h2><p>{html.escape(task.description)}; "
            f"{task.epochs} epochs; target: {html.escape(target)}; scores in "
            f"{unit}.</p>"
        )
        parts.append(
            render_table(
                Table(
                    "",
                    SUMMARY_HEADERS,
                    [summary_cells(row, task.metric) for row in task_rows],
                    numeric=_SUMMARY_NUMERIC,
                )
            )
        )
        parts.extend(_timing_warning(row) for row in task_rows if row["timing_disturbed"])
        parts.append(_learning_curves(task, mine, colors))
        if any("lr" in trial["params"] for result in mine for trial in result.trials):
            parts.append(_sensitivity(task, mine, colors))
        parts.append(_ratios(task, mine))
        trial_rows = [
            [
                result.label,
                trial["number"],
                ", ".join(f"{k}={v:.3g}" for k, v in trial["params"].items()),
                "diverged" if trial["diverged"] else trial["state"],
                trial["epochs"],
                format_cell(trial["last_score"]),
            ]
            for result in mine
            for trial in result.trials
        ]
        parts.append(
            "<details><summary>every tuning trial</summary>"
            + render_table(Table("", _TRIAL_HEADERS, trial_rows, numeric=_TRIAL_NUMERIC))
            + "</details>"
        )
    parts.append("<h2>Across tasks</h2>")
    parts.append(_time_to_target(rows, colors))
    parts.append(_profiles(rows, colors))
    path.write_text(page("descend bench", parts, style=_STYLE), encoding="utf-8")
    return path
