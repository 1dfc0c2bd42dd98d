"""``descend race``: run optimizer specs on one problem and compare them step by step."""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from descend.cli.arguments import non_empty, non_negative_int, output_folder

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from descend.lab.runner import Contender, Trace

# The lab (and torch, NumPy and rich with it) is imported inside the functions that use it, so
# that ``descend race --help`` and argument errors answer before any of it loads.


def epilog() -> str:
    """The ``--help`` listing: every problem with its settings (read from the registry, so a
    problem defined at run time is listed), the optimizers, the schedules, and examples."""
    from descend.lab.problems import problem_listing
    from descend.specs import SCHEDULES, optimizer_names

    return f"""\
problems, as name:key=value,... (e.g. ravine:kappa=100,dim=10); each setting with its default
and the values it accepts:
{problem_listing()}

optimizers: {", ".join(optimizer_names())}, torch.optim.<Class>, functional.<name>
schedules: {", ".join(SCHEDULES)}

examples:
  descend race ravine:kappa=100 sgd:lr=0.019 momentum:lr=0.005,momentum=0.9 adam:lr=0.1
  descend race rosenbrock adam:lr=1e-2 torch.optim.SGD:lr=1e-3,momentum=0.9 --steps 2000
  descend race least_squares:batch_size=8 momentum:lr=0.01 adam:lr=0.05 \\
      --schedule constant --schedule exponential:k=0.01 --out race-out --gif
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``race`` subcommand."""
    parser = subparsers.add_parser(
        "race",
        help="race optimizer specs on one problem",
        description=textwrap.fill(
            "Run each optimizer spec (with each schedule, if given) on a problem, recording "
            "loss, gradient norm, distance to the optimum and position at every step; print a "
            "summary table and optionally save everything.",
            100,
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("problem", help="problem spec, e.g. ravine:kappa=100")
    parser.add_argument(
        "specs", nargs="+", metavar="SPEC", help="optimizer specs, e.g. adam:lr=1e-2"
    )
    parser.add_argument("--steps", type=int, default=500, help="updates per run (default 500)")
    parser.add_argument(
        "--schedule",
        type=non_empty,
        action="append",
        default=None,
        metavar="SCHEDULE",
        help="learning-rate schedule, e.g. exponential:k=0.01; repeat to race "
        "every optimizer under every schedule",
    )
    parser.add_argument(
        "--average",
        type=non_empty,
        default=None,
        metavar="DECAY",
        help="also track averaged weights: an EMA decay in [0, 1) or 'polyak'",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="report the step from which loss - f* stays <= this (default: the problem's; "
        "1e-6, and on the noisy problems least_squares and logistic 10%% of f*, since "
        "minibatch noise keeps f - f* near a floor far above 1e-6)",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="minibatch seed (default 0)"
    )
    parser.add_argument(
        "--out",
        type=non_empty,
        default=None,
        metavar="DIR",
        help="save results.jsonl (one line per run, as each finishes) and plots",
    )
    parser.add_argument(
        "--gif",
        action="store_true",
        help="with --out on a 2-D problem: also save an animated race.gif",
    )
    parser.set_defaults(func=run)


def _average(text: str | None) -> float | str | None:
    if text is None or text == "polyak":
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"--average={text!r} is invalid: expected a decay in [0, 1) or 'polyak'"
        ) from None


def _short(value) -> str:
    """Three significant digits: the summary has to fit a terminal."""
    from descend.reporting import format_cell

    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.3g}"
    return format_cell(value)


def noise_floor(trace: Trace, fraction: float = 0.25) -> float:
    """Mean ``f - f*`` over the last ``fraction`` of a run (at the averaged weights when
    averaging was on): the level a run settles to under gradient noise."""
    import numpy as np

    losses = trace.averaged_losses if trace.averaged_losses is not None else trace.losses
    tail = losses[-max(1, int(len(losses) * fraction)) :]
    return float(np.mean(tail)) - (trace.minimum_value or 0.0)


def summary_table(
    problem, contenders: list[Contender], traces: list[Trace], tolerance: float
) -> Table:
    """The terminal summary: one row per run, with theory's rate where it applies."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from descend.lab import theory
    from descend.lab.problems import Ravine
    from descend.lab.rates import predicted_rate, theory_method

    known = problem.minimum_value is not None
    caption = []
    if known:
        caption.append(
            f"f - f*: the loss above the minimum f* = {problem.minimum_value:.6g} "
            "at the end (at the averaged weights when averaging)"
        )
        caption.append(f"steps: from this step on, f - f* stays <= {tolerance:g}")
    if problem.stochastic and known:
        caption.append("noise floor: mean f - f* over the last quarter of the run")
    if problem.escape_loss is not None:
        caption.append(f"escape: from this step on, the loss stays <= {problem.escape_loss:.3g}")
    if isinstance(problem, Ravine):
        caption.append("theory / measured: linear rate per step")
    table = Table(
        title=problem.describe(),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        caption="; ".join(caption),
        caption_justify="left",
    )
    columns = (["f - f*", "steps"] if known else ["loss"]) + ["|grad|", "distance"]
    if problem.stochastic and known:
        columns.insert(1, "noise floor")
    if problem.escape_loss is not None:
        columns.append("escape")
    quadratic = isinstance(problem, Ravine)
    if quadratic:
        columns += ["theory", "measured"]
    table.add_column("run", overflow="fold", min_width=14)
    for column in columns:
        table.add_column(column, justify="right")
    for contender, trace in zip(contenders, traces, strict=True):
        steps = trace.steps_to(tolerance)
        end = trace.final_loss - (trace.minimum_value or 0.0)
        row = [escape(trace.label), _short(end)]
        if trace.diverged_at is not None:
            row[1] = f"diverged (step {trace.diverged_at})"
        if problem.stochastic and known:
            row.append(_short(noise_floor(trace)) if trace.diverged_at is None else "-")
        if known:
            row.append(str(steps) if steps is not None else "-")
        row += [_short(float(trace.grad_norms[-1])), _short(float(trace.distances[-1]))]
        if problem.escape_loss is not None:
            row.append(_short(trace.settled_below(problem.escape_loss)))
        if quadratic:
            covered = theory_method(contender)
            predicted = (
                predicted_rate(covered[0], problem.eigenvalues, covered[1], covered[2])
                if covered
                else None
            )
            try:
                measured = theory.measured_rate(trace.distances, floor=1e-150)
            except ValueError:
                measured = None
            row += [_short(predicted), _short(measured)]
        table.add_row(*row)
    return table


def run(arguments: argparse.Namespace) -> int:
    """Run the race; print the summary; save results and plots if asked."""
    from descend.lab.problems import make_problem
    from descend.specs import check_method_name, parse_schedule

    if arguments.steps < 1:
        raise ValueError(f"--steps={arguments.steps!r} is invalid: expected >= 1")
    tolerance = arguments.tolerance
    if tolerance is not None and not (tolerance > 0 and math.isfinite(tolerance)):
        raise ValueError(f"--tolerance={tolerance!r} is invalid: expected > 0")
    problem = make_problem(arguments.problem)
    tolerance = problem.tolerance if tolerance is None else tolerance
    average = _average(arguments.average)
    schedules = arguments.schedule or [None]
    # Names first, before torch loads with the runner: a typo answers at once.
    for spec in arguments.specs:
        check_method_name(spec)
    for schedule in schedules:
        if schedule is not None:
            parse_schedule(schedule)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from descend.lab.runner import Contender, most_steps, race, steps_memory_text

    contenders = [
        Contender.parse(spec, None if schedule in (None, "constant") else schedule, average)
        for spec in arguments.specs
        for schedule in schedules
    ]
    if arguments.gif and arguments.out is None:
        raise ValueError("--gif needs --out DIR to write the GIF into")
    most = most_steps(problem, contenders)
    if arguments.steps > most:
        raise ValueError(
            f"--steps={arguments.steps} is too many for this machine's memory: "
            f"{steps_memory_text(problem, contenders, arguments.steps)}; "
            f"expected at most {most} steps"
        )
    out = output_folder(arguments.out) if arguments.out is not None else None
    results = None
    if out is not None:
        results = out / "results.jsonl"
        results.write_text("", encoding="utf-8")

    def save(trace: Trace) -> None:
        if results is not None:
            with results.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"problem": arguments.problem, **trace.to_dict()}) + "\n")

    console = Console()
    with Progress(
        TextColumn("racing"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("race", total=arguments.steps * len(contenders))
        traces = race(
            problem,
            contenders,
            arguments.steps,
            seed=arguments.seed,
            progress=lambda n: progress.advance(task, n),
            on_trace=save,
        )
    console.print(summary_table(problem, contenders, traces, tolerance))
    if out is not None:
        _plot(problem, traces, out, arguments.gif, console)
    return 0


def _plot(problem, traces: list[Trace], out: Path, gif: bool, console: Console) -> None:
    from rich.markup import escape

    from descend.lab import plots  # (matplotlib loads only when plotting)

    written = [
        plots.curves(
            traces,
            out / "loss.png",
            problem.describe(),
            log=problem.minimum_value is not None,
            metric="excess" if problem.minimum_value is not None else "loss",
            averaged=any(t.averaged_losses is not None for t in traces),
        )
    ]
    if problem.dimension == 2 and problem.bounds is not None:
        written.append(
            plots.contour(
                problem,
                traces,
                out / "contour.png",
                averaged=any(t.averaged_trajectory is not None for t in traces),
            )
        )
        if gif:
            written.append(plots.race_gif(problem, traces, out / "race.gif"))
    elif gif:
        console.print("--gif skipped: the animation needs a 2-D problem")
    console.print(escape("Saved " + ", ".join(str(p) for p in [out / "results.jsonl", *written])))
