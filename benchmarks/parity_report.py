"""Largest difference between each descend drop-in class and its torch.optim counterpart.

Runs every option combination of ``descend.testing.OPTION_GRID``, as the parity tests do (100
steps, six tensors of mixed shapes, two param groups, some parameters without gradients) in
float32 and float64 and prints, per class and dtype, the worst relative difference of parameters
and of state tensors. A difference is measured against the largest magnitude that tensor took
during the run.

    python benchmarks/parity_report.py
"""

from __future__ import annotations

import torch
from rich.console import Console
from rich.table import Table

from descend.testing import (
    OPTION_GRID,
    TOLERANCE,
    descend_class,
    option_combinations,
    run_side_by_side,
    torch_class,
)

SHAPES = [(), (1,), (7, 3), (5,), (2, 3, 4), (33,)]


def main() -> None:
    """Print the table."""
    table = Table(title="descend vs torch.optim: worst relative difference over 100 steps")
    for column in ("class", "backend", "dtype", "combinations", "parameters", "state", "tolerance"):
        table.add_column(
            column, justify="left" if column in ("class", "backend", "dtype") else "right"
        )
    for name in OPTION_GRID:
        for backend in ("reference", "fused"):
            for dtype in (torch.float32, torch.float64):
                worst_param = worst_state = 0.0
                combinations = option_combinations(name)
                for options in combinations:
                    groups = [{}, {"lr": options["lr"] * 0.5}]
                    param_error, state_error, *_ = run_side_by_side(
                        lambda params, o=options, n=name, b=backend: descend_class(n)(
                            params, backend=b, **o
                        ),
                        lambda params, o=options, n=name: torch_class(n)(params, **o),
                        SHAPES,
                        dtype,
                        steps=100,
                        group_options=groups,
                    )
                    worst_param = max(worst_param, param_error)
                    worst_state = max(worst_state, state_error)
                table.add_row(
                    name,
                    backend,
                    str(dtype).removeprefix("torch."),
                    str(len(combinations)),
                    f"{worst_param:.2e}",
                    f"{worst_state:.2e}",
                    f"{TOLERANCE[dtype]:.0e}",
                )
    Console().print(table)


if __name__ == "__main__":
    main()
