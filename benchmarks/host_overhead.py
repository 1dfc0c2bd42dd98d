"""Host time of a fused step: everything a step does outside the kernel (checks, counters,
scalars, dispatch), per tensor, on one small tensor (the fixed cost of a step), on many small
tensors and on the ResNet-18-like list, beside torch.optim's default step (its for-loop on CPU)
on the same tensors.

The kernel launch is replaced by nothing, so what remains is the host's share; the full step
and the kernel launches alone (the same launches, recorded from a step) are timed beside it in
the same run (interleaved, medians). All are timed as CPU time of the process (every thread),
which a busy neighbour disturbs far less than wall time: on a shared machine the wall-time
columns swing with the load, the CPU-time ones hardly.

``--layouts`` times instead the kernel of Adam on 1000 tensors of 1024 with its slots as a
compiled step creates them (each slot's tensors end to end, :mod:`descend.optim.packing`) and as
``torch.optim`` creates them (interleaved, loaded from a torch.optim.Adam state dict).

``--executor triton`` times the host part of the Triton executor's step (every launch replaced
by nothing, from the first step on) on the ResNet-18-like list, GPT-2 small's 148 tensors and
1000 tensors of 1024: on a CUDA GPU when there is one, else on CPU tensors with the kernels
built for Triton's interpreter, which the host part does not run. What Triton's own launches
cost on a GPU comes on top. ``--smoke`` shrinks every tensor (same counts) for a quick check.

``--cold`` empties the caches before every timed call (one pass over a buffer twice the size of
a large last-level cache, untimed), as a step in training follows a backward pass that has
streamed activations and gradients through them. Without it each call follows the one before
and finds the tensors' metadata, the address tables and the Python objects a step reads still in
cache, which flatters the host part: it reads several scattered objects per tensor.

    python benchmarks/host_overhead.py [--repeats N] [--layouts] [--executor triton] [--smoke]
                                       [--cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

if {"triton", "--executor=triton"} & set(sys.argv[1:]) and not torch.cuda.is_available():
    # Before triton is imported: without a GPU its kernels are built for the interpreter.
    os.environ["TRITON_INTERPRET"] = "1"

import descend
from descend.kernels.cache import finish_background_loads
from descend.kernels.executor import get_executor

CASES: dict[str, list[tuple[int, ...]]] = {}
#: Settings of each optimizer timed besides the learning rate (SGD with momentum: one slot).
OPTIONS: dict[str, dict[str, object]] = {"SGD": {"momentum": 0.9}}


def _cases() -> dict[str, list[tuple[int, ...]]]:
    from step_speed import CASES as STEP_CASES

    return {
        "1 x 1024": [(1024,)],
        "ResNet-18 (62)": STEP_CASES["ResNet-18 (62)"],
        "1000 x 1024": [(1024,)] * 1000,
    }


def _label(name: str) -> str:
    """How the tables name an optimizer timed with :data:`OPTIONS`."""
    return f"{name} momentum" if OPTIONS.get(name, {}).get("momentum") else name


def _optimizer(
    shapes: list[tuple[int, ...]],
    name: str,
    torch_state: bool = False,
    backend: str = "fused",
    device: str = "cpu",
) -> tuple[torch.optim.Optimizer, list]:
    params = [torch.randn(*shape, device=device, requires_grad=True) for shape in shapes]
    for param in params:
        param.grad = torch.randn_like(param)
    options = OPTIONS.get(name, {})
    optimizer = getattr(descend, name)(params, lr=1e-3, backend=backend, **options)
    if torch_state:
        # The state laid out as torch.optim creates it: tensor by tensor, slots interleaved.
        reference = getattr(torch.optim, name)(params, lr=1e-3, **options)
        reference.step()
        optimizer.load_state_dict(reference.state_dict())
    optimizer.step()
    # The steady state: the compiled address reader (and any kernel) loads in the background.
    finish_background_loads()
    return optimizer, params


def recorded_launches(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """The kernel launches of one step of ``optimizer`` (recorded while it steps), as a
    function that runs them again on the same tensors."""
    fused = get_executor("fused")
    launch = type(fused).launch
    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []

    def record(*arguments: object, **keywords: object) -> None:
        calls.append((arguments, keywords))
        launch(*arguments, **keywords)  # type: ignore[arg-type]

    type(fused).launch = record  # type: ignore[method-assign]
    try:
        optimizer.step()
    finally:
        type(fused).launch = launch  # type: ignore[method-assign]

    def run() -> None:
        for arguments, keywords in calls:
            launch(*arguments, **keywords)  # type: ignore[arg-type]

    return run


#: Bytes written to empty the caches (``--cold``): twice a 32 MiB last-level cache.
EVICTION_BYTES = 64 << 20


def cache_evictor(cold: bool, size: int = EVICTION_BYTES) -> Callable[[], None] | None:
    """For ``cold`` runs, a function that writes every byte of a ``size``-byte buffer (NumPy,
    on the calling thread: a torch op would wake torch's worker threads, which then spin
    beside the timed call), pushing out of the caches whatever the timed call had left there;
    ``None`` otherwise."""
    if not cold:
        return None
    buffer = np.zeros(size, dtype=np.uint8)

    def evict() -> None:
        np.add(buffer, 1, out=buffer)

    return evict


def interleaved(
    functions: dict[str, Callable[[], object]],
    repeats: int,
    clock: Callable[[], float] = time.process_time,
    before: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Median seconds of each function on ``clock``, timed in rotating order (``before``, if
    given, runs untimed ahead of every call)."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for round_index in range(repeats):
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
            if before is not None:
                before()
            start = clock()
            functions[name]()
            samples[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def layouts(repeats: int, cold: bool = False) -> None:
    """Kernel time of Adam on 1000 x 1024 with packed and with interleaved slots (``cold``:
    the caches emptied before every call)."""
    shapes = [(1024,)] * 1000
    kept = {
        label: _optimizer(shapes, "Adam", torch_state)
        for label, torch_state in (("packed", False), ("interleaved (torch's)", True))
    }
    times = interleaved(
        {label: recorded_launches(opt) for label, (opt, _) in kept.items()},
        repeats,
        before=cache_evictor(cold),
    )
    print(f"Kernel CPU time of Adam on 1000 x 1024, medians of interleaved rounds; {_caches(cold)}")
    print("| slots | kernel (ms) |")
    print("|---|---|")
    for label, seconds in times.items():
        print(f"| {label} | {seconds * 1e3:.3f} |")


def _small(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A stand-in of ``shape`` with each dimension at most 8 (``--smoke``)."""
    return tuple(min(size, 8) for size in shape)


def _caches(cold: bool) -> str:
    """How a table's title says the caches stood before each timed call."""
    if cold:
        return "caches emptied before every call"
    return "each call after the one before (caches warm)"


def triton_host(repeats: int, smoke: bool, cold: bool = False) -> None:
    """Host time of the Triton executor's step, its launches replaced by nothing (``cold``:
    the caches emptied before every step)."""
    from step_speed_cuda import CASES as CUDA_CASES

    triton = get_executor("triton")
    launch = type(triton).launch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"Host part of the Triton executor's step on {device} tensors (launches replaced by "
        f"nothing), wall time, median of interleaved rounds; {_caches(cold)}"
    )
    print("| case | optimizer | host part (ms) | host us per tensor |")
    print("|---|---|---|---|")
    evict = cache_evictor(cold)
    type(triton).launch = lambda *arguments, **keywords: None  # type: ignore[method-assign]
    try:
        for case in ("ResNet-18 (62)", "GPT-2 124M (148)", "1000 x 1024"):
            shapes = [_small(shape) if smoke else shape for shape in CUDA_CASES[case]]
            steps: dict[str, Callable[[], object]] = {
                name: _optimizer(shapes, name, backend="triton", device=device)[0].step
                for name in ("Adam", "SGD")
            }
            times = interleaved(steps, repeats, time.perf_counter, evict)
            for name, seconds in times.items():
                print(
                    f"| {case} | {_label(name)} | {seconds * 1e3:.3f} | "
                    f"{seconds / len(shapes) * 1e6:.2f} |"
                )
    finally:
        type(triton).launch = launch  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--layouts", action="store_true", help="packed against torch's slots")
    parser.add_argument(
        "--executor",
        choices=("fused", "triton"),
        default="fused",
        help="the executor whose host part is timed (default fused)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny tensors (--executor triton)")
    parser.add_argument(
        "--cold", action="store_true", help="empty the caches before every timed call"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats} is invalid: expected a positive count")
    if args.layouts:
        layouts(args.repeats, args.cold)
        return
    if args.executor == "triton":
        triton_host(args.repeats, args.smoke, args.cold)
        return
    fused = get_executor("fused")
    launch = type(fused).launch
    print(f"CPU time of the process, medians of interleaved rounds; {_caches(args.cold)}")
    evict = cache_evictor(args.cold)
    print(
        "| case | optimizer | full step (ms) | kernel (ms) | host part (ms) "
        "| host us per tensor | host share | torch.optim default (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case, shapes in _cases().items():
        for name in ("Adam", "SGD"):
            optimizer, params = _optimizer(shapes, name)

            def host_only(optimizer=optimizer) -> None:
                type(fused).launch = lambda *arguments, **keywords: None
                try:
                    optimizer.step()
                finally:
                    type(fused).launch = launch

            # torch's default on CPU tensors (its for-loop), on a copy of the same tensors.
            twins = [param.detach().clone().requires_grad_() for param in params]
            for twin, param in zip(twins, params, strict=True):
                twin.grad = param.grad.clone()
            default = getattr(torch.optim, name)(twins, lr=1e-3, **OPTIONS.get(name, {}))
            functions = {
                "full": optimizer.step,
                "host": host_only,
                "kernel": recorded_launches(optimizer),
                "torch": default.step,
            }
            times = interleaved(functions, args.repeats, before=evict)
            full, host, kernel = times["full"], times["host"], times["kernel"]
            print(
                f"| {case} | {_label(name)} | {full * 1e3:.3f} | {kernel * 1e3:.3f} | "
                f"{host * 1e3:.3f} | {host / len(params) * 1e6:.2f} | {100 * host / full:.1f}% | "
                f"{times['torch'] * 1e3:.3f} |"
            )


if __name__ == "__main__":
    main()
