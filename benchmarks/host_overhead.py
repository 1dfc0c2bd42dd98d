"""Host time of a fused step: everything a step does outside the kernel (checks, counters,
scalars, dispatch), per tensor, on many small tensors and on the ResNet-18-like list.

The kernel launch is replaced by nothing, so what remains is the host's share; the full step
is timed beside it in the same run (interleaved, medians). Both are timed as CPU time of the
process (every thread), which a busy neighbour disturbs far less than wall time: on a shared
machine the wall-time columns swing with the load, the CPU-time ones hardly.

    python benchmarks/host_overhead.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import descend
from descend.kernels.executor import get_executor

CASES: dict[str, list[tuple[int, ...]]] = {}


def _cases() -> dict[str, list[tuple[int, ...]]]:
    from step_speed import CASES as STEP_CASES

    return {"ResNet-18 (62)": STEP_CASES["ResNet-18 (62)"], "1000 x 1024": [(1024,)] * 1000}


def _optimizer(shapes: list[tuple[int, ...]], name: str) -> tuple[torch.optim.Optimizer, list]:
    params = [torch.randn(*shape, requires_grad=True) for shape in shapes]
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer = getattr(descend, name)(params, lr=1e-3, backend="fused")
    optimizer.step()
    return optimizer, params


def interleaved(
    functions: dict[str, Callable[[], object]],
    repeats: int,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, float]:
    """Median seconds of each function on ``clock``, timed in rotating order."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for round_index in range(repeats):
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
            start = clock()
            functions[name]()
            samples[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    fused = get_executor("fused")
    launch = type(fused).launch
    print("CPU time of the process, medians of interleaved rounds")
    print(
        "| case | optimizer | full step (ms) | host part (ms) | host us per tensor | host share |"
    )
    print("|---|---|---|---|---|---|")
    for case, shapes in _cases().items():
        for name in ("Adam", "SGD"):
            optimizer, params = _optimizer(shapes, name)

            def host_only(optimizer=optimizer) -> None:
                type(fused).launch = lambda *arguments, **keywords: None
                try:
                    optimizer.step()
                finally:
                    type(fused).launch = launch

            times = interleaved({"full": optimizer.step, "host": host_only}, args.repeats)
            full, host = times["full"], times["host"]
            print(
                f"| {case} | {name} | {full * 1e3:.3f} | {host * 1e3:.3f} | "
                f"{host / len(params) * 1e6:.2f} | {100 * host / full:.1f}% |"
            )


if __name__ == "__main__":
    main()
