"""``descend demo``: the lecture's optimizers racing down an ill-conditioned ravine."""

from __future__ import annotations

import argparse
import math

from rich.console import Console
from rich.table import Table

from descend.lab.demo import run_demo


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo", help="steps each optimizer needs on an ill-conditioned quadratic",
        description="Race the lecture's optimizers to a loss tolerance on a rotated quadratic, "
                    "next to the step counts convergence theory predicts.")
    parser.add_argument("--condition-number", type=float, default=100.0,
                        help="kappa = L / mu of the quadratic (default 100)")
    parser.add_argument("--tolerance", type=float, default=1e-6,
                        help="target loss (default 1e-6)")
    parser.add_argument("--max-steps", type=int, default=3000,
                        help="give up after this many steps (default 3000)")
    parser.add_argument("--dimension", type=int, default=2, help="dimension (default 2)")
    parser.set_defaults(func=run)


def _format_config(config: dict) -> str:
    names = {"learning_rate": "lr", "momentum": "rho"}
    return ", ".join(f"{names.get(key, key)}={value:.3g}" for key, value in config.items())


def run(arguments: argparse.Namespace) -> int:
    """Print the demo table."""
    if arguments.tolerance <= 0:
        raise ValueError(f"--tolerance={arguments.tolerance!r} is invalid: expected > 0")
    if arguments.max_steps < 1:
        raise ValueError(f"--max-steps={arguments.max_steps!r} is invalid: expected >= 1")
    console = Console()
    with console.status("racing optimizers..."):
        problem, rows = run_demo(arguments.condition_number, arguments.tolerance,
                                 arguments.max_steps, arguments.dimension)
    table = Table(title=f"Steps to loss {arguments.tolerance:g} on a rotated quadratic, "
                        f"kappa = {problem.condition_number:g}, dimension {arguments.dimension}")
    for column in ("optimizer", "setting", "hyperparameters", "steps", "theory predicts"):
        table.add_column(column, justify="right" if column in ("steps",
                                                               "theory predicts") else "left")
    for row in rows:
        steps = str(row.steps) if row.steps is not None else f"> {arguments.max_steps}"
        if row.predicted is None:
            predicted = ""
        else:
            predicted = "never" if math.isinf(row.predicted) else str(row.predicted)
        table.add_row(row.optimizer, row.setting, _format_config(row.config), steps, predicted)
    console.print(table)
    console.print(
        "Theory gives the worst-case asymptotic rate. At the optimal heavy-ball and Nesterov "
        "settings the iteration has a repeated eigenvalue, so the error decays like k * r^k "
        "and needs somewhat more steps than r^k alone predicts.")
    return 0
