"""Optimizer step time: descend's fused and reference executors against torch.optim, on CPU.

Prints one table. For each case (a list of float32 parameter tensors) and optimizer it times
descend's fused executor, descend's reference executor and torch.optim's for-loop, foreach and
fused paths (where torch has one), as the median over repeated steps, and compares each with the
memory-bandwidth floor: the bytes a step must move (parameter, gradient and state, read and
written) divided by the best bandwidth an in-place streaming op reaches in the same run. Then it
measures the first step in a fresh process with a cold and with a warm kernel cache.

Usage: ``python benchmarks/step_speed.py [--cases ...] [--optimizers ...]``.
Threads: torch and the fused kernels both use ``torch.get_num_threads()``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch

import descend

MIB = 1 << 20


def resnet18_shapes() -> list[tuple[int, ...]]:
    """The 62 parameter tensors of torchvision's ResNet-18 (11.7M parameters)."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    in_channels = 64
    for stage, channels in enumerate((64, 128, 256, 512)):
        for block in range(2):
            downsample = block == 0 and stage > 0
            shapes += [(channels, in_channels, 3, 3), (channels,), (channels,),
                       (channels, channels, 3, 3), (channels,), (channels,)]
            if downsample:
                shapes += [(channels, in_channels, 1, 1), (channels,), (channels,)]
            in_channels = channels
    return shapes + [(1000, 512), (1000,)]


CASES: dict[str, list[tuple[int, ...]]] = {
    "16M x 1": [(16 * MIB,)],
    "ResNet-18 (62)": resnet18_shapes(),
    "1024 x 1000": [(1024,)] * 1000,
}

#: name -> (descend factory, torch factory, float32 words moved per parameter element).
OPTIMIZERS: dict[str, tuple[Callable, Callable, int]] = {
    "sgd": (lambda p, **k: descend.SGD(p, lr=0.01, **k),
            lambda p, **k: torch.optim.SGD(p, lr=0.01, **k), 3),
    "sgd momentum": (lambda p, **k: descend.SGD(p, lr=0.01, momentum=0.9, **k),
                     lambda p, **k: torch.optim.SGD(p, lr=0.01, momentum=0.9, **k), 5),
    "nesterov": (lambda p, **k: descend.Nesterov(p, lr=0.01, momentum=0.9, **k),
                 lambda p, **k: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True, **k),
                 5),
    "adagrad": (lambda p, **k: descend.Adagrad(p, **k),
                lambda p, **k: torch.optim.Adagrad(p, **k), 5),
    "rmsprop": (lambda p, **k: descend.RMSprop(p, **k),
                lambda p, **k: torch.optim.RMSprop(p, **k), 5),
    "adam": (lambda p, **k: descend.Adam(p, **k), lambda p, **k: torch.optim.Adam(p, **k), 7),
    "adamw": (lambda p, **k: descend.AdamW(p, **k), lambda p, **k: torch.optim.AdamW(p, **k),
              7),
}

PATHS = ("descend fused", "descend ref", "torch loop", "torch foreach", "torch fused")


def median_time(function: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``function()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Bandwidth:
    """Memory bandwidth from an in-place streaming op (``x.neg_()``: read and write 4 B each)."""

    def __init__(self, elements: int = 64 * MIB) -> None:
        self.buffer = torch.randn(elements)
        self.samples: list[float] = []

    def measure(self, repeats: int = 9) -> float:
        """Measure once more (bytes per second) and keep the sample."""
        seconds = median_time(self.buffer.neg_, repeats)
        self.samples.append(2 * 4 * self.buffer.numel() / seconds)
        return self.samples[-1]

    @property
    def value(self) -> float:
        """The best sample: a floor is a lower bound on the time, so it takes the highest
        bandwidth the machine showed. (Freshly allocated memory streams slower here until the
        kernel backs it with huge pages, so the median would make the floor too lenient.)"""
        return max(self.samples)


def make_params(shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """Parameters with gradients (the gradients stay fixed: only the step is timed)."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=generator).requires_grad_() for shape in shapes]
    for param in params:
        param.grad = torch.randn(param.shape, generator=generator) * 1e-3
    return params


def build(path: str, descend_factory: Callable, torch_factory: Callable,
          params: list[torch.Tensor]) -> torch.optim.Optimizer | None:
    """The optimizer for one path, or None where torch has no such path."""
    try:
        if path == "descend fused":
            return descend_factory(params, backend="fused")
        if path == "descend ref":
            return descend_factory(params, backend="reference")
        if path == "torch loop":
            return torch_factory(params, foreach=False)
        if path == "torch foreach":
            return torch_factory(params, foreach=True)
        optimizer = torch_factory(params, fused=True)
        optimizer.step()
        return optimizer
    except (TypeError, RuntimeError, ValueError):
        return None


def time_steps(optimizer: torch.optim.Optimizer) -> float:
    """Median seconds per step, with repeats scaled to keep each measurement near a second."""
    optimizer.step()
    start = time.perf_counter()
    optimizer.step()
    once = time.perf_counter() - start
    repeats = max(5, min(41, int(1.0 / max(once, 1e-4))))
    return median_time(optimizer.step, repeats, warmup=1)


FIRST_STEP = """
import sys, time
import torch
import descend
params = [torch.randn(1024, requires_grad=True) for _ in range(1000)]
for p in params:
    p.grad = torch.randn(1024)
optimizer = descend.Adam(params, backend="fused")
start = time.perf_counter()
optimizer.step()
print(time.perf_counter() - start)
"""


def first_step_latency() -> tuple[float, float]:
    """Seconds of the first fused Adam step in a fresh process: cold cache, then warm."""
    with tempfile.TemporaryDirectory() as directory:
        env = dict(os.environ, DESCEND_CACHE_DIR=directory)
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"),
             env.get("PYTHONPATH", "")])
        results = []
        for _ in range(2):
            output = subprocess.run([sys.executable, "-c", FIRST_STEP], env=env, check=True,
                                    capture_output=True, text=True).stdout
            results.append(float(output.strip().splitlines()[-1]))
        return results[0], results[1]


def _device_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the GPU benchmark of benchmarks/step_speed_cuda.py")
    return parser


def main() -> None:
    """Run every case and print the table (``--device cuda``: step_speed_cuda.py's instead)."""
    device, rest = _device_parser().parse_known_args()
    if device.device == "cuda":
        import step_speed_cuda  # this script's folder is first on sys.path

        step_speed_cuda.main(rest)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     parents=[_device_parser()])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                        help="comma-separated optimizer names")
    args = parser.parse_args()
    bandwidth = Bandwidth()
    bandwidth.measure()
    rows = []
    for case in args.cases.split(","):
        shapes = CASES[case]
        for name in args.optimizers.split(","):
            descend_factory, torch_factory, words = OPTIMIZERS[name]
            params = make_params(shapes)
            elements = sum(p.numel() for p in params)
            times: dict[str, float | None] = {}
            for path in PATHS:
                optimizer = build(path, descend_factory, torch_factory, params)
                times[path] = None if optimizer is None else time_steps(optimizer)
                del optimizer
                gc.collect()
            bandwidth.measure()
            rows.append((case, name, elements, words, times))
            print(f"  measured {case} / {name}", file=sys.stderr, flush=True)
            del params
            gc.collect()
    cold, warm = first_step_latency()

    bytes_per_second = bandwidth.value
    print(f"# descend step speed: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, float32")
    median = statistics.median(bandwidth.samples)
    print(f"# bandwidth (x.neg_() on {bandwidth.buffer.numel() * 4 // MIB} MiB, best of "
          f"{len(bandwidth.samples)} samples; median {median / 1e9:.1f}): "
          f"{bytes_per_second / 1e9:.1f} GB/s")
    print("# times: median ms per step (x floor); ratios: descend fused time / torch time")
    header = (f"{'case':<15} {'optimizer':<13} {'floor':>7} "
              + " ".join(f"{p:>16}" for p in PATHS)
              + f" {'/loop':>6} {'/foreach':>8} {'/tfused':>7}")
    print(header)
    print("-" * len(header))
    for case, name, elements, words, times in rows:
        floor = words * 4 * elements / bytes_per_second
        cells = []
        for path in PATHS:
            value = times[path]
            cells.append(f"{'n/a':>16}" if value is None
                         else f"{value * 1e3:9.2f} ({value / floor:4.2f})")
        fused = times["descend fused"]
        ratios = []
        for path, width in (("torch loop", 6), ("torch foreach", 8), ("torch fused", 7)):
            other = times[path]
            ratios.append(f"{'n/a':>{width}}" if other is None or fused is None
                          else f"{fused / other:>{width}.3f}")
        print(f"{case:<15} {name:<13} {floor * 1e3:7.2f} " + " ".join(cells) + " "
              + " ".join(ratios))
    print(f"# first fused Adam step (1024 x 1000) in a fresh process: cold cache "
          f"{cold:.2f} s, warm cache {warm:.2f} s")


if __name__ == "__main__":
    main()
