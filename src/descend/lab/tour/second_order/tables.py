"""The tables of the first-order against second-order section: iterations and wall time to
the tolerance, Newton's iterations, what a dense Hessian costs, and the minibatch runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from descend.lab.report import Table
from descend.lab.tour.second_order import studies as orders
from descend.lab.tour.second_order.plan import ORDERS_ADAM_LR


def orders_table(studies: Sequence[orders.FullBatchStudy]) -> Table:
    """Iterations, wall time and evaluations until each full-batch run reaches the tolerance."""
    rows = []
    for study in studies:
        for run in study.runs:
            history = run.result.history
            index = study.iterations_to_tolerance(run)
            per_iteration = 1e3 * run.result.wall_time / max(run.iterations, 1)
            if index is None:
                iterations, seconds = f"> {run.iterations}", f"> {1e3 * history.time[-1]:.4g}"
                gradients, hessians = f"> {history.nfev[-1]}", None
            else:
                iterations, seconds = index, 1e3 * history.time[index]
                gradients = history.nfev[index]
                hessians = index if run.method == "newton" else None
            rows.append(
                [
                    study.name,
                    run.label,
                    run.setting,
                    iterations,
                    seconds,
                    per_iteration,
                    gradients,
                    hessians,
                ]
            )
    tolerance = studies[0].tolerance
    return Table(
        f"Full batch: iterations and wall time until ||g|| <= {tolerance:g} ||g_0||",
        [
            "problem",
            "method",
            "settings",
            "iterations",
            "wall time (ms)",
            "ms per iteration",
            "gradients",
            "Hessians",
        ],
        rows,
        "Wall time on one CPU thread, including every loss and gradient evaluation "
        "(line searches too) and the Hessians. '>' marks a run stopped at its cap "
        f"({studies[0].cap} iterations on the ravine, {studies[1].cap} on the digits). "
        "Newton, BFGS and L-BFGS pick each step length by a strong-Wolfe line search. "
        "GD runs at theory's best constant step 2/(L+mu), Nesterov at 1/L with the "
        f"momentum for kappa = L/mu; Adam at lr {ORDERS_ADAM_LR['ravine']:g} on the "
        f"ravine and {ORDERS_ADAM_LR['digits']:g} on the digits, the best of a sweep "
        "over 0.003 to 0.3 made when this tour was written.",
        summary_columns=(0, 1, 3, 4, 5),
    )


def newton_table(study: orders.FullBatchStudy) -> Table:
    """Newton's iterations on ``study`` (the digits): the gradient norm squared at each step."""
    history = study.run("newton").result.history
    norms = np.asarray(history.grad_norm)
    rows = []
    for k, norm in enumerate(norms):
        ratio = norm / norms[k - 1] ** 2 if k else None
        rows.append(
            [k, norm, float(history.loss[k] - study.f_star), ratio, history.step[k] if k else None]
        )
    return Table(
        "Newton's iterations on the digits: near the minimum the gradient norm is "
        "squared at each step",
        ["iteration", "||g_k||", "f - f*", "||g_k|| / ||g_(k-1)||^2", "step length"],
        rows,
        "Quadratic convergence means ||g_k|| <= C ||g_(k-1)||^2 for some constant "
        "C near the minimum: the ratio column stays bounded (under linear convergence "
        "it would grow without bound) while the gradient norm falls by more orders of "
        "magnitude at every step. The line search accepts the full Newton step "
        "(length 1).",
        summary_columns=(0, 1, 2, 3),
    )


def hessian_cost_table(dimension: int, solve: float) -> Table:
    """What a dense Hessian costs as the model grows, from one Newton solve measured on a
    ``dimension``-sized problem (``solve`` seconds)."""
    return Table(
        "What a dense Hessian costs as the model grows",
        [
            "parameters N",
            "gradient (8N bytes)",
            f"L-BFGS pairs, m = {orders.HISTORY_SIZE}",
            "dense Hessian (8N^2 bytes)",
            f"Hessian fits in {orders.MEMORY_BUDGET / 1e9:g} GB",
            "one Newton solve, extrapolated",
        ],
        orders.hessian_cost_rows(dimension, solve),
        f"float64 numbers. Solve time: one Newton solve measured here on the "
        f"{dimension} x {dimension} digits Hessian "
        f"({orders.format_seconds(solve)} on one thread) scaled by N^3, which "
        "ignores that the matrix stops fitting in memory long before.",
        summary_columns=(0, 3, 4, 5),
    )


def minibatch_table(study: orders.MinibatchStudy) -> Table:
    """Where each minibatch run ends, its noise floor and its worst, beside full-batch L-BFGS."""
    dimension = len(study.runs[0].result.x)
    rows = []
    for run in study.runs:
        gap = study.gap(run)
        epochs = run.result.extras["epochs"][-1]
        passes = float(run.passes[-1])
        rows.append(
            [
                run.label,
                run.setting,
                round(float(epochs), 1),
                round(passes, 1),
                float(gap[-1]),
                study.tail_gap(run),
                float(gap[1:].max()),
                study.reference_gap_at(passes),
            ]
        )
    return Table(
        f"Minibatches of {study.batch_size}: the loss above the minimum, f - f*, on the full data",
        [
            "method",
            "settings",
            "epochs",
            "passes computed",
            "at the end",
            "mean, last quarter",
            "worst",
            "full-batch L-BFGS, same passes",
        ],
        rows,
        "Epochs: batches drawn, in passes over the data (every run draws the same "
        "batches). Passes computed: batch gradients evaluated, line searches included, "
        "times the batch size over the number of samples. The last column is what "
        "full-batch L-BFGS reached with the same amount of gradient computation. f - f* "
        f"at the start is {float(study.gap(study.runs[0])[0]):.3g}. Newton ran "
        f"{study.newton_epochs} epochs only: each of its steps solves a dense "
        f"{dimension} x {dimension} system.",
        summary_columns=(0, 3, 4, 5, 6, 7),
    )
