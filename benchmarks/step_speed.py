"""Optimizer step time: descend's fused and reference executors against torch.optim, on CPU.

Prints four tables, every figure a median and every comparison a ratio taken in the same run:

1. Steps. For each case (a list of float32 parameter tensors) and optimizer: descend's fused and
   reference executors and torch.optim's for-loop, foreach and fused paths (where torch has
   one), against the memory-bandwidth floor (the bytes a step must move divided by the best
   bandwidth an in-place streaming op reaches in the same run). Measured on a quiet machine and
   again *contended*: with one busy process per core running beside it, as DataLoader workers
   or a second experiment would.
2. Training loops. A small MLP and a small CNN, forward + backward + step, with descend's default
   optimizer against torch's default, with 1 and with all threads, quiet and contended. The two
   loops run interleaved, block by block, so both see the same machine.
3. Safety checks. The share of a fused step spent checking every tensor it touches.
4. First step. The first fused Adam step in a fresh process, with a cold and a warm kernel cache.

With ``--formats float32,bfloat16,bf16+ecc,int8`` it prints instead one table of the fused step
with its state stored in each format (``state_precision=``), against the float32 step and the
bandwidth floor of the bytes that format moves, every format measured in the same run, one
block of steps of each in turn; one table per mode of ``--modes`` (quiet, then contended).
Its last two columns say whether the format pays in speed on this machine: the step's CPU work
per element (nanoseconds of one core: time x threads / elements) and the cores that work needs
to keep pace with memory (time x threads / the floor of that format's bytes). A format whose
codecs need more cores than the machine has is compute-bound here and slower than its bytes
suggest; on a machine with that many cores per unit of bandwidth (or a GPU), it runs near the
floor of its bytes. Run with ``torch.set_num_threads(1)`` (``OMP_NUM_THREADS=1``) the work is
not shared between threads, so the columns read cleanest.

The optimizers are every rule of ``descend.rules`` that has a class with a ``torch.optim``
equivalent (plus SGD with momentum).

Usage: ``python benchmarks/step_speed.py [--cases ...] [--optimizers ...] [--modes quiet,busy]``
(``--quick`` for a short run). Threads: torch and the fused kernels both use
``torch.get_num_threads()``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import inspect
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

import descend
from descend.kernels.cache import finish_background_loads
from descend.optim.base import RuleOptimizer

MIB = 1 << 20


def resnet18_shapes() -> list[tuple[int, ...]]:
    """The 62 parameter tensors of torchvision's ResNet-18 (11.7M parameters)."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    in_channels = 64
    for stage, channels in enumerate((64, 128, 256, 512)):
        for block in range(2):
            downsample = block == 0 and stage > 0
            shapes += [
                (channels, in_channels, 3, 3),
                (channels,),
                (channels,),
                (channels, channels, 3, 3),
                (channels,),
                (channels,),
            ]
            if downsample:
                shapes += [(channels, in_channels, 1, 1), (channels,), (channels,)]
            in_channels = channels
    return shapes + [(1000, 512), (1000,)]


CASES: dict[str, list[tuple[int, ...]]] = {
    "16M x 1": [(16 * MIB,)],
    "ResNet-18 (62)": resnet18_shapes(),
    "1024 x 1000": [(1024,)] * 1000,
}

PATHS = ("descend fused", "descend ref", "torch loop", "torch foreach", "torch fused")


# -- the optimizers, from the registry ------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One optimizer row: descend's class with fixed arguments and its torch equivalent."""

    name: str
    cls: type[RuleOptimizer]
    arguments: dict[str, Any] = field(default_factory=dict)

    def descend(self, params: list[torch.Tensor], **options: Any) -> torch.optim.Optimizer:
        """descend's optimizer (``options``: ``backend``)."""
        return self.cls(params, **self.arguments, **options)

    def torch(self, params: list[torch.Tensor], **options: Any) -> torch.optim.Optimizer:
        """The torch.optim optimizer computing the same iterates (``options``: ``foreach``,
        ``fused``), with every hyperparameter both take copied from descend's group."""
        dotted, fixed = self.cls.torch_equivalent
        module, _, name = dotted.rpartition(".")
        torch_cls = getattr(importlib.import_module(module), name)
        group = self.cls([torch.zeros(1, requires_grad=True)], **self.arguments).param_groups[0]
        accepted = inspect.signature(torch_cls).parameters
        shared = {
            key: value
            for key, value in group.items()
            if key in accepted and key not in ("params", "foreach", "fused")
        }
        return torch_cls(params, **{**shared, **fixed, **options})

    def words(self) -> int:
        """float32 words a step moves per element: p read and written, g read, and each active
        slot read and written."""
        optimizer = self.cls([torch.zeros(1, requires_grad=True)], **self.arguments)
        hypers = optimizer.rule_hypers(optimizer.param_groups[0])
        return 3 + 2 * len(self.cls.rule.active_slots(hypers))


def contenders() -> dict[str, Contender]:
    """Every elementwise registry rule whose class has a torch.optim equivalent, plus SGD with
    momentum. A rule with a matrix stage (Muon) is left out: its step is matrix products on
    2-D weights, which the memory floor of this table does not measure."""
    rows: dict[str, Contender] = {}
    classes = descend.optim.optimizer_classes()
    for rule in descend.rules.RULES.values():
        cls = classes.get(rule.name)
        if cls is None or cls.torch_equivalent is None or rule.stage is not None:
            continue
        rows[rule.name] = Contender(rule.name, cls)
        if rule.name == "sgd":
            rows["sgd momentum"] = Contender("sgd momentum", cls, {"momentum": 0.9})
    return rows


# -- timing ---------------------------------------------------------------------------------------


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


@contextlib.contextmanager
def busy_neighbours(count: int, limit_seconds: float = 1800) -> Iterator[None]:
    """``count`` processes spinning on a core each (stopped on exit, or after ``limit_seconds``
    if this process dies first)."""
    code = f"import time\nend = time.time() + {limit_seconds}\nwhile time.time() < end: pass"
    processes = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let them reach their loops
        yield
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def make_params(shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """Parameters with gradients (the gradients stay fixed: only the step is timed)."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=generator).requires_grad_() for shape in shapes]
    for param in params:
        param.grad = torch.randn(param.shape, generator=generator) * 1e-3
    return params


def build(
    path: str,
    contender: Contender,
    params: list[torch.Tensor],
) -> torch.optim.Optimizer | None:
    """The optimizer for one path, or None where torch has no such path."""
    try:
        if path == "descend fused":
            return contender.descend(params, backend="fused")
        if path == "descend ref":
            return contender.descend(params, backend="reference")
        if path == "torch loop":
            return contender.torch(params, foreach=False)
        if path == "torch foreach":
            return contender.torch(params, foreach=True)
        optimizer = contender.torch(params, fused=True)
        optimizer.step()
        return optimizer
    except (TypeError, RuntimeError, ValueError):
        return None


def time_steps(optimizer: torch.optim.Optimizer, budget: float) -> float:
    """Median seconds per step, with repeats scaled to keep each measurement near ``budget``
    (after what descend loads in the background has arrived: the steady state)."""
    optimizer.step()
    finish_background_loads()
    start = time.perf_counter()
    optimizer.step()
    once = time.perf_counter() - start
    repeats = max(5, min(41, int(budget / max(once, 1e-4))))
    return median_time(optimizer.step, repeats, warmup=1)


def step_rows(
    cases: list[str], names: list[str], budget: float, bandwidth: Bandwidth
) -> list[tuple]:
    """Table 1's measurements for one machine state."""
    rows = []
    table = contenders()
    for case in cases:
        for name in names:
            contender = table[name]
            params = make_params(CASES[case])
            elements = sum(p.numel() for p in params)
            times: dict[str, float | None] = {}
            for path in PATHS:
                optimizer = build(path, contender, params)
                times[path] = None if optimizer is None else time_steps(optimizer, budget)
                del optimizer
                gc.collect()
            bandwidth.measure()
            rows.append((case, name, elements, contender.words(), times))
            print(f"  measured {case} / {name}", file=sys.stderr, flush=True)
            del params
            gc.collect()
    return rows


def print_step_table(mode: str, rows: list[tuple], bandwidth: Bandwidth) -> None:
    """Table 1 for one machine state."""
    bytes_per_second = bandwidth.value
    print(
        f"\n## steps, {mode}: median ms per step (x floor); ratios: descend fused time / "
        "torch time (below 1: descend is faster)"
    )
    header = (
        f"{'case':<15} {'optimizer':<13} {'floor':>7} "
        + " ".join(f"{p:>16}" for p in PATHS)
        + f" {'/loop':>6} {'/foreach':>8} {'/tfused':>7}"
    )
    print(header)
    print("-" * len(header))
    for case, name, elements, words, times in rows:
        floor = words * 4 * elements / bytes_per_second
        cells = []
        for path in PATHS:
            value = times[path]
            cells.append(
                f"{'n/a':>16}" if value is None else f"{value * 1e3:9.2f} ({value / floor:4.2f})"
            )
        fused = times["descend fused"]
        ratios = []
        for path, width in (("torch loop", 6), ("torch foreach", 8), ("torch fused", 7)):
            other = times[path]
            ratios.append(
                f"{'n/a':>{width}}"
                if other is None or fused is None
                else f"{fused / other:>{width}.3f}"
            )
        print(
            f"{case:<15} {name:<13} {floor * 1e3:7.2f} " + " ".join(cells) + " " + " ".join(ratios)
        )


# -- training loops -------------------------------------------------------------------------------


def small_mlp() -> tuple[torch.nn.Module, torch.Tensor]:
    """The 64-128-10 MLP of the report that found the shared-CPU slowdown, batch 32."""
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    return model, torch.randn(32, 64)


def small_cnn() -> tuple[torch.nn.Module, torch.Tensor]:
    """A small CNN on 1x28x28 images (two conv layers, 26K parameters), batch 32."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 7 * 7, 10),
    )
    return model, torch.randn(32, 1, 28, 28)


MODELS = {"MLP 64-128-10": small_mlp, "CNN 2 conv": small_cnn}
LOOP_OPTIMIZERS = {
    "sgd momentum": (
        lambda p: descend.SGD(p, lr=0.01, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    ),
    "adam": (lambda p: descend.Adam(p, lr=1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
}


def loop_times(
    model_name: str, optimizer_name: str, blocks: int, steps_per_block: int = 10
) -> tuple[float, float]:
    """Median ms per training step for descend's and torch's default optimizer, interleaved."""
    torch.manual_seed(0)
    model, inputs = MODELS[model_name]()
    twin, _ = MODELS[model_name]()
    twin.load_state_dict(model.state_dict())
    targets = torch.randint(0, 10, (inputs.shape[0],))
    make_descend, make_torch = LOOP_OPTIMIZERS[optimizer_name]
    runs = [(model, make_descend(model.parameters())), (twin, make_torch(twin.parameters()))]

    def train(network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(network(inputs), targets).backward()
        optimizer.step()

    for network, optimizer in runs:
        for _ in range(5):
            train(network, optimizer)
    finish_background_loads()  # descend's auto backend loads its kernel in the background
    samples: list[list[float]] = [[], []]
    for _ in range(blocks):
        for index, (network, optimizer) in enumerate(runs):
            start = time.perf_counter()
            for _ in range(steps_per_block):
                train(network, optimizer)
            samples[index].append((time.perf_counter() - start) / steps_per_block)
    return statistics.median(samples[0]) * 1e3, statistics.median(samples[1]) * 1e3


def loop_rows(thread_counts: list[int], blocks: int) -> list[tuple]:
    """Table 2's measurements for one machine state."""
    rows = []
    saved = torch.get_num_threads()
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for model_name in MODELS:
                for optimizer_name in LOOP_OPTIMIZERS:
                    ours, theirs = loop_times(model_name, optimizer_name, blocks)
                    rows.append((model_name, optimizer_name, threads, ours, theirs))
    finally:
        torch.set_num_threads(saved)
    return rows


def print_loop_table(results: dict[str, list[tuple]]) -> None:
    """Table 2."""
    print(
        "\n## training loops (forward + backward + step): median ms per step, descend's "
        "default (backend='auto') against torch.optim's default"
    )
    header = (
        f"{'model':<15} {'optimizer':<13} {'threads':>7} {'mode':<9} {'descend':>9} "
        f"{'torch':>9} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    for mode, rows in results.items():
        for model_name, optimizer_name, threads, ours, theirs in rows:
            worst = max(worst, ours / theirs)
            print(
                f"{model_name:<15} {optimizer_name:<13} {threads:>7} {mode:<9} {ours:9.3f} "
                f"{theirs:9.3f} {ours / theirs:7.3f}"
            )
    print(f"# worst ratio {worst:.3f} (target: at most 1.05 in every row)")


# -- safety checks --------------------------------------------------------------------------------


def check_share(repeats: int) -> tuple[float, float]:
    """Median ms of a fused Adam step on the ResNet-18 list, and of the checks it makes (the
    plan's comparison of every tensor's metadata with what it was built for)."""
    params = make_params(CASES["ResNet-18 (62)"])
    optimizer = descend.Adam(params, backend="fused")
    optimizer.step()
    group = optimizer.param_groups[0]
    plan = optimizer._plans[id(group)]
    step = median_time(optimizer.step, repeats)
    checks = median_time(
        lambda: plan.prepare(params, optimizer.state, optimizer._label), repeats * 20
    )
    return step * 1e3, checks * 1e3


# -- first step -----------------------------------------------------------------------------------

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
            [
                os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"),
                env.get("PYTHONPATH", ""),
            ]
        )
        results = []
        for _ in range(2):
            output = subprocess.run(
                [sys.executable, "-c", FIRST_STEP],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results.append(float(output.strip().splitlines()[-1]))
        return results[0], results[1]


# -- main -----------------------------------------------------------------------------------------


def format_bytes(name: str) -> float:
    """Bytes one element of a slot occupies in a storage format."""
    from descend.kernels.codecs import CODECS, INT8_BLOCK

    codec = CODECS[name]
    if codec.storage is None:
        return 4.0
    size = torch.empty(0, dtype=codec.storage).element_size()
    companions = {"ecc": 1.0, "scale": 4.0 / INT8_BLOCK}
    return size + sum(companions[c] for c in codec.companions)


def format_rows(cases: list[str], names: list[str], formats: list[str], rounds: int) -> list[tuple]:
    """The fused step per storage format: (case, optimizer, format, elements, slots, median
    seconds), the formats' steps interleaved in ``rounds`` blocks, in an order rotated every
    round, so all see the same machine."""
    table = contenders()
    rows = []
    for case in cases:
        for name in names:
            contender = table[name]
            optimizers = {}
            for fmt in formats:
                params = make_params(CASES[case])
                optimizers[fmt] = contender.descend(params, backend="fused", state_precision=fmt)
                optimizers[fmt].step()
            finish_background_loads()
            samples: dict[str, list[float]] = {fmt: [] for fmt in formats}
            order = list(optimizers)
            for index in range(rounds):  # the order rotates, so no format always runs first
                for fmt in order[index % len(order) :] + order[: index % len(order)]:
                    samples[fmt].append(median_time(optimizers[fmt].step, 5, warmup=1))
            slots = (contender.words() - 3) // 2
            elements = sum(torch.Size(shape).numel() for shape in CASES[case])
            for fmt in formats:
                rows.append((case, name, fmt, elements, slots, statistics.median(samples[fmt])))
            print(f"  measured formats of {case} / {name}", file=sys.stderr, flush=True)
            del optimizers
            gc.collect()
    return rows


def print_format_table(rows: list[tuple], bandwidth: Bandwidth) -> None:
    """The table of :func:`format_rows`: ms per step, ratio to float32, x the floor of the
    bytes that format moves (p read and written, g read, each slot read and written)."""
    print(
        "\n## fused step per state format: median ms per step; ratio to the float32 step "
        "(same run); x floor of the bytes the format moves"
    )
    print(
        "(core ns/elem: one core's time per element, ms x threads / elements; cores to floor: "
        "the cores that work needs to run at the floor of the format's bytes)"
    )
    print(
        f"{'case':<16} {'optimizer':<10} {'format':<17} {'ms':>8} {'/ f32':>7} {'x floor':>8}"
        f" {'core ns/elem':>13} {'cores to floor':>15}"
    )
    threads = torch.get_num_threads()
    baseline = {(case, name): ms for case, name, fmt, _, _, ms in rows if fmt == "float32"}
    for case, name, fmt, elements, slots, seconds in rows:
        moved = elements * (12 + 2 * slots * format_bytes(fmt))
        floor = moved / bandwidth.value
        base = baseline.get((case, name))
        ratio = f"{seconds / base:7.2f}" if base else f"{'-':>7}"
        work = seconds * threads
        print(
            f"{case:<16} {name:<10} {fmt:<17} {seconds * 1e3:8.2f} {ratio} {seconds / floor:8.1f}"
            f" {work / elements * 1e9:13.2f} {work / floor:15.1f}"
        )


def _device_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: the GPU benchmark of benchmarks/step_speed_cuda.py",
    )
    return parser


def main() -> None:
    """Run every table and print it (``--device cuda``: step_speed_cuda.py's instead)."""
    device, rest = _device_parser().parse_known_args()
    if device.device == "cuda":
        import step_speed_cuda  # this script's folder is first on sys.path

        step_speed_cuda.main(rest)
        return
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], parents=[_device_parser()]
    )
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument(
        "--optimizers", default=",".join(contenders()), help="comma-separated optimizer names"
    )
    parser.add_argument(
        "--modes",
        default="quiet,busy",
        help="quiet, busy (one spinning process per core beside the run), or both",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repeats and only the ResNet-18 case (a rough check)",
    )
    parser.add_argument(
        "--formats",
        default="",
        help="comma-separated state formats: print only the table of the fused step per format",
    )
    args = parser.parse_args()
    if args.formats:
        names = args.optimizers.split(",") if "--optimizers" in sys.argv else ["adamw"]
        cores = os.cpu_count() or 1
        for mode in args.modes.split(","):
            neighbours = busy_neighbours(cores) if mode == "busy" else contextlib.nullcontext()
            with neighbours:
                bandwidth = Bandwidth()
                bandwidth.measure()
                rows = format_rows(args.cases.split(","), names, args.formats.split(","), 9)
                bandwidth.measure()
            label = mode if mode == "quiet" else f"contended ({cores} busy processes beside it)"
            print(
                f"\n# {label}, {torch.get_num_threads()} threads; bandwidth (x.neg_() on "
                f"256 MiB, best): {bandwidth.value / 1e9:.1f} GB/s"
            )
            print_format_table(rows, bandwidth)
        return
    budget = 0.3 if args.quick else 1.0
    cases = ["ResNet-18 (62)"] if args.quick else args.cases.split(",")
    names = args.optimizers.split(",")
    unknown = sorted(set(names) - set(contenders()))
    if unknown:
        parser.error(f"unknown optimizer(s) {', '.join(unknown)}; valid: {', '.join(contenders())}")
    modes = args.modes.split(",")
    cores = os.cpu_count() or 1
    blocks = 15 if args.quick else 40
    steps: dict[str, list[tuple]] = {}
    loops: dict[str, list[tuple]] = {}
    bandwidths: dict[str, Bandwidth] = {}
    for mode in modes:
        neighbours = busy_neighbours(cores) if mode == "busy" else contextlib.nullcontext()
        with neighbours:
            bandwidths[mode] = Bandwidth()
            bandwidths[mode].measure()
            steps[mode] = step_rows(cases, names, budget, bandwidths[mode])
            loops[mode] = loop_rows(sorted({1, torch.get_num_threads()}), blocks)
    step_ms, check_ms = check_share(9 if args.quick else 25)
    cold, warm = first_step_latency()

    print(
        f"# descend step speed: {platform.processor() or platform.machine()}, {cores} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, float32"
    )
    for mode in modes:
        samples = bandwidths[mode].samples
        print(
            f"# bandwidth {mode} (x.neg_() on 256 MiB, best of {len(samples)}; median "
            f"{statistics.median(samples) / 1e9:.1f}): {bandwidths[mode].value / 1e9:.1f} GB/s"
        )
    for mode in modes:
        label = mode if mode == "quiet" else f"contended ({cores} busy processes beside it)"
        print_step_table(label, steps[mode], bandwidths[mode])
    print_loop_table(loops)
    print(
        f"\n## safety checks: {check_ms * 1e3:.1f} us of a {step_ms:.2f} ms fused Adam step "
        f"on the ResNet-18 list ({100 * check_ms / step_ms:.2f}%; target under 2%)"
    )
    print(
        f"## first fused Adam step (1024 x 1000) in a fresh process: cold cache {cold:.2f} s, "
        f"warm cache {warm:.2f} s"
    )


if __name__ == "__main__":
    main()
