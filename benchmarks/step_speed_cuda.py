"""Optimizer step time on a GPU: descend's Triton executor against torch.optim's CUDA paths.

Prints one table. For each case (a list of float32 CUDA parameter tensors) and optimizer it times
torch.optim's for-loop, foreach and fused paths (where torch has one) and descend's Triton
executor, as the median over repeated steps timed with CUDA events, and compares each with the
memory-bandwidth floor: the bytes a step must move (parameter, gradient and state, read and
written) divided by the best bandwidth an in-place ``neg_`` reaches in the same run. It also
reports the host (CPU) time of ``step()`` for descend and for torch's fused path, the parity of
each descend optimizer with torch.optim's for-loop after a few steps, and the first step in a
fresh process with cold and with warm kernel caches (descend's and Triton's).

Usage: ``python benchmarks/step_speed_cuda.py [--cases ...] [--optimizers ...]`` (also
``python benchmarks/step_speed.py --device cuda ...``). ``--smoke`` runs tiny cases on CPU
tensors with Triton's interpreter, to check the script itself on a machine without a GPU; its
numbers mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

if "--smoke" in sys.argv[1:]:
    # Before triton is imported anywhere: kernels are built for the interpreter then.
    os.environ["TRITON_INTERPRET"] = "1"

import torch
from step_speed import resnet18_shapes

import descend

MIB = 1 << 20


def gpt2_shapes() -> list[tuple[int, ...]]:
    """The 148 parameter tensors of GPT-2 small (124M parameters, tied output embedding)."""
    width, vocabulary, context = 768, 50257, 1024
    shapes: list[tuple[int, ...]] = [(vocabulary, width), (context, width)]
    for _ in range(12):
        shapes += [
            (width,),
            (width,),  # ln_1
            (width, 3 * width),
            (3 * width,),
            (width, width),
            (width,),  # attention
            (width,),
            (width,),  # ln_2
            (width, 4 * width),
            (4 * width,),
            (4 * width, width),
            (width,),
        ]  # mlp
    return shapes + [(width,), (width,)]  # ln_f


CASES: dict[str, list[tuple[int, ...]]] = {
    "16M x 1": [(16 * MIB,)],
    "ResNet-18 (62)": resnet18_shapes(),
    "GPT-2 124M (148)": gpt2_shapes(),
    "1000 x 1024": [(1024,)] * 1000,
}
#: Tiny stand-ins for ``--smoke`` (same names, so the table has the same rows).
SMOKE_CASES: dict[str, list[tuple[int, ...]]] = {
    "16M x 1": [(8195,)],
    "ResNet-18 (62)": [(8, 3, 3, 3), (8,), (8,), (10, 8)],
    "GPT-2 124M (148)": [(50, 16), (16,), (16, 48), (48,)],
    "1000 x 1024": [(64,)] * 6,
}

#: name -> (descend class, torch class, keyword arguments, float32 words moved per element).
OPTIMIZERS: dict[str, tuple[Callable, Callable, dict, int]] = {
    "sgd momentum": (descend.SGD, torch.optim.SGD, dict(lr=0.01, momentum=0.9), 5),
    "adagrad": (descend.Adagrad, torch.optim.Adagrad, dict(lr=0.01), 5),
    "rmsprop": (descend.RMSprop, torch.optim.RMSprop, dict(lr=0.01), 5),
    "adam": (descend.Adam, torch.optim.Adam, dict(lr=0.001), 7),
    "adamw": (descend.AdamW, torch.optim.AdamW, dict(lr=0.001), 7),
}

PATHS = ("torch loop", "torch foreach", "torch fused", "descend")


class Clock:
    """Times calls on one device: CUDA events on a GPU, ``perf_counter`` on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def synchronize(self) -> None:
        """Wait for the device."""
        if self.cuda:
            torch.cuda.synchronize()

    def median(self, function: Callable[[], object], repeats: int, warmup: int = 3) -> float:
        """Median seconds of ``function()`` on the device over ``repeats`` calls."""
        for _ in range(warmup):
            function()
        self.synchronize()
        if not self.cuda:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                function()
                times.append(time.perf_counter() - start)
            return statistics.median(times)
        events = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            function()
            end.record()
            events.append((start, end))
        torch.cuda.synchronize()
        return statistics.median(start.elapsed_time(end) / 1e3 for start, end in events)

    def host(self, function: Callable[[], object], repeats: int) -> float:
        """Median host seconds of one ``function()`` call, the device left running behind."""
        self.synchronize()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        self.synchronize()
        return statistics.median(times)


class Bandwidth:
    """Memory bandwidth from an in-place streaming op (``x.neg_()``: read and write 4 B each)."""

    def __init__(self, clock: Clock, device: torch.device, elements: int) -> None:
        self.clock = clock
        self.buffer = torch.randn(elements, device=device)
        self.samples: list[float] = []

    def measure(self, repeats: int = 20) -> None:
        """Measure once more and keep the sample (bytes per second)."""
        seconds = self.clock.median(self.buffer.neg_, repeats)
        self.samples.append(2 * 4 * self.buffer.numel() / seconds)

    @property
    def value(self) -> float:
        """The best sample: a floor is a lower bound on the time."""
        return max(self.samples)


def make_params(shapes: list[tuple[int, ...]], device: torch.device) -> list[torch.Tensor]:
    """Parameters with fixed gradients (only the step is timed)."""
    generator = torch.Generator(device=device).manual_seed(0)
    params = [
        torch.randn(shape, generator=generator, device=device).requires_grad_() for shape in shapes
    ]
    for param in params:
        param.grad = torch.randn(param.shape, generator=generator, device=device) * 1e-3
    return params


def build(
    path: str, name: str, params: list[torch.Tensor], backend: str
) -> torch.optim.Optimizer | None:
    """The optimizer of one path, stepped once, or None where torch has no such path here
    (descend's errors are raised: the run must not hide them)."""
    descend_class, torch_class, options, _ = OPTIMIZERS[name]
    if path == "descend":
        optimizer = descend_class(params, backend=backend, **options)
        optimizer.step()
        return optimizer
    try:
        if path == "torch loop":
            optimizer = torch_class(params, foreach=False, **options)
        elif path == "torch foreach":
            optimizer = torch_class(params, foreach=True, **options)
        else:
            optimizer = torch_class(params, fused=True, **options)
        optimizer.step()
        return optimizer
    except (TypeError, RuntimeError, ValueError):
        return None


def parity(
    name: str, shapes: list[tuple[int, ...]], device: torch.device, backend: str, steps: int = 20
) -> float:
    """Worst relative difference (max |a - b| / max |b| over tensors) between descend and
    torch.optim's for-loop after ``steps`` steps on the same random gradients."""
    descend_class, torch_class, options, _ = OPTIMIZERS[name]
    ours = make_params(shapes, device)
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    a = descend_class(ours, backend=backend, **options)
    b = torch_class(theirs, foreach=False, **options)
    generator = torch.Generator(device=device).manual_seed(1)
    for _ in range(steps):
        for p, q in zip(ours, theirs, strict=True):
            gradient = torch.randn(p.shape, generator=generator, device=device)
            p.grad, q.grad = gradient, gradient.clone()
        a.step()
        b.step()
    worst = 0.0
    for p, q in zip(ours, theirs, strict=True):
        if q.numel():
            scale = q.detach().abs().max().item()
            worst = max(worst, (p - q).abs().max().item() / max(scale, 1e-30))
    return worst


FIRST_STEP = """
import sys, time
import torch
import descend
device, count, size = torch.device(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
params = [torch.randn(size, device=device, requires_grad=True) for _ in range(count)]
for p in params:
    p.grad = torch.randn(size, device=device)
optimizer = descend.Adam(params, backend="triton")
if device.type == "cuda":
    torch.cuda.synchronize()
start = time.perf_counter()
optimizer.step()
if device.type == "cuda":
    torch.cuda.synchronize()
print(time.perf_counter() - start)
"""


def first_step_latency(device: torch.device, count: int, size: int) -> tuple[float, float]:
    """Seconds of the first Adam step (``count`` tensors of ``size``) in a fresh process: cold
    caches (descend's generated modules and Triton's compiled kernels), then warm."""
    with tempfile.TemporaryDirectory() as directory:
        env = dict(
            os.environ,
            DESCEND_CACHE_DIR=os.path.join(directory, "descend"),
            TRITON_CACHE_DIR=os.path.join(directory, "triton"),
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(root, "src"), env.get("PYTHONPATH", "")])
        results = []
        for _ in range(2):
            command = [sys.executable, "-c", FIRST_STEP, str(device), str(count), str(size)]
            output = subprocess.run(
                command, env=env, check=True, capture_output=True, text=True
            ).stdout
            results.append(float(output.strip().splitlines()[-1]))
        return results[0], results[1]


def main(argv: list[str] | None = None) -> None:
    """Run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument(
        "--optimizers", default=",".join(OPTIMIZERS), help="comma-separated optimizer names"
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per measurement")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny cases on CPU tensors with Triton's interpreter (checks the "
        "script, measures nothing)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # no kernel is built before this point
        device, cases, repeats, bandwidth_elements = (torch.device("cpu"), SMOKE_CASES, 2, MIB)
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device: run on a GPU machine, or pass --smoke")
        device, cases, repeats, bandwidth_elements = (
            torch.device("cuda"),
            CASES,
            args.repeats,
            256 * MIB,
        )
    clock = Clock(device)
    bandwidth = Bandwidth(clock, device, bandwidth_elements)
    bandwidth.measure()
    rows = []
    for case in args.cases.split(","):
        shapes = cases[case]
        for name in args.optimizers.split(","):
            params = make_params(shapes, device)
            elements = sum(p.numel() for p in params)
            times: dict[str, float | None] = {}
            host: dict[str, float | None] = {}
            for path in PATHS:
                optimizer = build(path, name, params, "triton")
                if optimizer is None:
                    times[path] = host[path] = None
                else:
                    times[path] = clock.median(optimizer.step, repeats)
                    host[path] = clock.host(optimizer.step, repeats)
                del optimizer
                gc.collect()
            bandwidth.measure()
            rows.append((case, name, elements, OPTIMIZERS[name][3], times, host))
            print(f"  measured {case} / {name}", file=sys.stderr, flush=True)
            del params
            gc.collect()
    parities = {
        name: parity(name, cases["ResNet-18 (62)"], device, "triton")
        for name in args.optimizers.split(",")
    }
    count, size = (8, 64) if args.smoke else (1000, 1024)
    cold, warm = first_step_latency(device, count, size)

    if device.type == "cuda":
        title = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        title = "CPU tensors under TRITON_INTERPRET=1 (smoke run: the numbers mean nothing)"
    import triton

    print(
        f"# descend GPU step speed: {title}, torch {torch.__version__}, triton "
        f"{triton.__version__}, float32"
    )
    print(
        f"# bandwidth (x.neg_() on {bandwidth.buffer.numel() * 4 // MIB} MiB, best of "
        f"{len(bandwidth.samples)} samples; median "
        f"{statistics.median(bandwidth.samples) / 1e9:.1f}): {bandwidth.value / 1e9:.1f} GB/s"
    )
    print(
        f"# times: median ms per step over {repeats} steps (x floor); /fused: descend time / "
        "torch fused time; host: median microseconds of CPU time in step()"
    )
    header = (
        f"{'case':<17} {'optimizer':<13} {'floor':>7} "
        + " ".join(f"{p:>16}" for p in PATHS)
        + f" {'/fused':>7} {'host descend':>12} {'host tfused':>11}"
    )
    print(header)
    print("-" * len(header))
    for case, name, elements, words, times, host in rows:
        floor = words * 4 * elements / bandwidth.value
        cells = [
            f"{'n/a':>16}"
            if times[path] is None
            else f"{times[path] * 1e3:9.3f} ({times[path] / floor:4.2f})"
            for path in PATHS
        ]
        ours, fused = times["descend"], times["torch fused"]
        ratio = "n/a" if ours is None or fused is None else f"{ours / fused:.3f}"
        host_cells = [
            f"{'n/a':>{width}}" if host[path] is None else f"{host[path] * 1e6:>{width}.1f}"
            for path, width in (("descend", 12), ("torch fused", 11))
        ]
        print(
            f"{case:<17} {name:<13} {floor * 1e3:7.3f} "
            + " ".join(cells)
            + f" {ratio:>7} "
            + " ".join(host_cells)
        )
    print(
        "# parity with torch.optim's for-loop after 20 steps on the ResNet-18 list "
        "(max |descend - torch| / max |torch|, worst tensor): "
        + ", ".join(f"{name} {error:.1e}" for name, error in parities.items())
    )
    print(
        f"# first descend Adam step ({count} x {size}) in a fresh process: cold caches "
        f"{cold:.2f} s, warm caches {warm:.2f} s"
    )


if __name__ == "__main__":
    main()
