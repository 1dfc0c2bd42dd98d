"""Time of a cautious fused step against a plain one: float32 Adam, one thread.

Three contenders on the same tensors, timed in interleaved rounds (medians of CPU time of the
process): the plain fused step, the cautious step in the rule's own kernels (a count pass and
an apply pass, see :mod:`descend.kernels.caution`) and the older form of the cautious step (the
plain step after a copy of each parameter, then a count rule writing a scratch tensor, a torch
sum per tensor and an apply rule), which the fused executor still runs when told it does not
fuse caution. Prints one row per case with each time and the ratios to the plain step.

    python benchmarks/caution_speed.py [--repeats N] [--steps N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

os.environ.setdefault("DESCEND_NUM_THREADS", "1")

import torch

import descend
from descend.kernels.fused import FusedExecutor

#: The cases: name -> shapes of the parameter list.
CASES: dict[str, list[tuple[int, ...]]] = {
    "16M x 1": [(1 << 24,)],
    "1000 x 1024": [(1024,)] * 1000,
}
#: Smaller cases of the same kinds, for a smoke run.
QUICK_CASES: dict[str, list[tuple[int, ...]]] = {
    "256K x 1": [(1 << 18,)],
    "100 x 1024": [(1024,)] * 100,
}
CONTENDERS = ("plain", "cautious", "old cautious")


@contextmanager
def older_form() -> Iterator[None]:
    """The fused executor told it does not fuse caution: its blocks run the older form."""
    FusedExecutor.fuses_caution = False
    try:
        yield
    finally:
        FusedExecutor.fuses_caution = True


def _stepper(shapes: list[tuple[int, ...]], contender: str, steps: int) -> Callable[[], None]:
    """A function running ``steps`` Adam steps of ``contender`` on fresh tensors of
    ``shapes`` (its kernels compiled and its plan built beforehand)."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=generator).requires_grad_() for shape in shapes]
    for param in params:
        param.grad = torch.randn(param.shape, generator=generator)
    optimizer = descend.Adam(params, lr=1e-3, backend="fused", cautious=contender != "plain")
    old = contender == "old cautious"

    def run() -> None:
        if old:
            with older_form():
                for _ in range(steps):
                    optimizer.step()
        else:
            for _ in range(steps):
                optimizer.step()

    run()
    return run


def measure(
    cases: dict[str, list[tuple[int, ...]]], repeats: int, steps: int
) -> dict[str, dict[str, float]]:
    """Median seconds per step of each contender on each case, timed in rotating order."""
    results = {}
    for case, shapes in cases.items():
        runs = {contender: _stepper(shapes, contender, steps) for contender in CONTENDERS}
        samples: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for round_index in range(repeats):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.process_time()
                runs[name]()
                samples[name].append((time.process_time() - start) / steps)
        results[case] = {name: statistics.median(values) for name, values in samples.items()}
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    """The results as a text table: milliseconds per step and ratios to the plain step."""
    lines = [
        f"{'case':<14}{'plain ms':>10}{'cautious ms':>13}{'old ms':>10}"
        f"{'cautious/plain':>16}{'old/plain':>11}"
    ]
    for case, times in results.items():
        plain = times["plain"]
        lines.append(
            f"{case:<14}{plain * 1e3:>10.3f}{times['cautious'] * 1e3:>13.3f}"
            f"{times['old cautious'] * 1e3:>10.3f}{times['cautious'] / plain:>16.2f}"
            f"{times['old cautious'] / plain:>11.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed sample")
    parser.add_argument("--quick", action="store_true", help="small cases (a smoke run)")
    arguments = parser.parse_args(argv)
    torch.set_num_threads(1)
    cases = QUICK_CASES if arguments.quick else CASES
    print(f"float32 Adam, fused executor, {os.environ['DESCEND_NUM_THREADS']} thread(s)")
    print(table(measure(cases, arguments.repeats, arguments.steps)))


if __name__ == "__main__":
    main()
