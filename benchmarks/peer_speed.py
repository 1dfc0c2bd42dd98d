"""Optimizer step time on CPU: descend against the fastest CPU optimizers outside the project.

Contenders, each skipped with one line when its package is not installed (none of them is a
dependency of descend):

- Adam: descend's fused executor and its default (``backend="auto"``); torch.optim.Adam's
  for-loop (``foreach=False``), foreach and fused paths; DeepSpeed's ``DeepSpeedCPUAdam`` (the
  hand-vectorized C++ step of ZeRO-Offload, built at first use with ninja and a C++ compiler);
  optax's ``adam`` jitted by JAX on CPU; HeavyBall's ``AdamW`` (eager, and with
  ``--heavyball-compile`` its torch.compile'd step, which takes minutes to compile).
- Lion: descend's fused and auto; ``lion_pytorch.Lion``; DeepSpeed's ``DeepSpeedCPULion``;
  optax's ``lion``.

Method, on the three cases of step_speed.py (one 16M-element tensor, the 62 tensors of
ResNet-18, 1000 tensors of 1024), all float32:

- one process per thread count (torch threads, ``DESCEND_NUM_THREADS``, ``OMP_NUM_THREADS``,
  ``NUMBA_NUM_THREADS`` and XLA's intra-op threads all set to it);
- before a contender is timed, its parity with the reference over a few steps on a small
  problem whose gradients span seven decades (so that eps handling shows): torch.optim.Adam's
  for-loop for Adam, the closed form in float64 for Lion. The figure is
  ``max |d - d_ref| / max |d_ref|`` with ``d`` the parameters' total displacement; a contender
  beyond float32 noise (``PARITY_TOLERANCE``) is marked and not ranked;
- interleaved rounds: each round times every contender once, in an order rotated every round,
  so slow drifts of the shared machine fall on all of them alike; a sample is the mean of a few
  steps (sized to ``--sample-ms``), the figure is the median over rounds;
- x floor: the time over the memory-bandwidth floor (bytes a step must move divided by the best
  bandwidth an in-place streaming op reached in the same process and machine state);
- quiet (no load started by this run; other people's work still runs) and contended (one
  process spinning per core beside it, as step_speed.py's contention mode), in one invocation.

Usage: ``python benchmarks/peer_speed.py [--threads 1,2] [--rounds 21] [--modes quiet,busy]``;
``--smoke`` for a seconds-long check on tiny cases; ``--newcomer`` for the newcomer's view
instead: ``descend.AdamW`` against ``torch.optim.AdamW`` on a 76k-parameter MLP, with and without
Numba, and the first step of a fresh process with a warm and a cold kernel cache.
The peers install with ``pip install deepspeed jax optax heavyball`` (a virtual environment
made with ``--system-site-packages`` keeps them apart from the project's); DeepSpeed on a
CPU-only torch needs ``DS_ACCELERATOR=cpu`` (set here unless already set), and its first use
compiles the C++ steps (minutes; cached in ``~/.cache/torch_extensions``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from step_speed import CASES, Bandwidth, Contender, busy_neighbours, make_params

import descend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))

#: Hyperparameters every contender of a family gets (their defaults differ: HeavyBall's betas,
#: DeepSpeed's Lion lr, optax's Lion weight decay).
HYPERS: dict[str, dict[str, Any]] = {
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8},
    "lion": {"lr": 1e-4, "betas": (0.9, 0.99)},
}
#: float32 words a step moves per element: p read and written, g read, each slot read and
#: written (from the rule, as step_speed.py counts them).
WORDS = {
    "adam": Contender("adam", descend.Adam).words(),
    "lion": Contender("lion", descend.Lion).words(),
}
#: Largest parity figure still taken as float32 rounding. Implementations of the same formula
#: in float32 land near 1e-6 here; a different formula (eps inside the square root, or a clamp
#: instead of a sum) moves the tiny-gradient elements by a sizeable share of a step.
PARITY_TOLERANCE = 1e-4
PARITY_SHAPES = [(4099,), (31, 17), (3, 3, 3, 5), (1,), (64,)]
PARITY_STEPS = 4

SMOKE_CASES: dict[str, list[tuple[int, ...]]] = {
    "16K x 1": [(16384,)],
    "mixed (6)": [(16, 3, 7, 7), (16,), (16,), (16, 16, 3, 3), (100, 51), (100,)],
    "1024 x 20": [(1024,)] * 20,
}

#: Set per worker before HeavyBall's steps: None runs its ops eagerly (see Stepper.step).
_HEAVYBALL_COMPILE_MODE: list[Any] = []


# -- contenders -----------------------------------------------------------------------------------


class Stepper:
    """One contender's optimizer over its own copy of the parameters, behind one interface."""

    def __init__(
        self,
        params: list[torch.Tensor],
        optimizer: Any,
        before_step: Callable[[], None] | None = None,
    ) -> None:
        self.params = params
        self.optimizer = optimizer
        self.before_step = before_step

    def set_grads(self, grads: Sequence[torch.Tensor]) -> None:
        """Give every parameter a copy of its gradient."""
        for param, grad in zip(self.params, grads, strict=True):
            param.grad = grad.clone()

    def step(self) -> None:
        """One optimizer step."""
        if self.before_step is not None:
            self.before_step()
        self.optimizer.step()

    def values(self) -> list[torch.Tensor]:
        """The parameters now, as torch tensors."""
        return [param.detach().clone() for param in self.params]


class OptaxStepper(Stepper):
    """An optax transformation jitted over the parameters as a list of JAX arrays (params and
    state donated, so the step updates in place as the torch contenders do)."""

    def __init__(self, params: list[torch.Tensor], transform: Any) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        self._jax, self._jnp = jax, jnp
        self.arrays = [jnp.array(param.detach().numpy().copy()) for param in params]
        self.grads = [
            jnp.array(param.grad.numpy().copy()) for param in params if param.grad is not None
        ]
        self.state = transform.init(self.arrays)

        def update(arrays: list, state: Any, grads: list) -> tuple[list, Any]:
            updates, state = transform.update(grads, state, arrays)
            return optax.apply_updates(arrays, updates), state

        self._update = jax.jit(update, donate_argnums=(0, 1))

    def set_grads(self, grads: Sequence[torch.Tensor]) -> None:
        """Replace the gradients (copies)."""
        self.grads = [self._jnp.array(grad.numpy().copy()) for grad in grads]

    def step(self) -> None:
        """One step, waited for (JAX dispatches asynchronously)."""
        self.arrays, self.state = self._update(self.arrays, self.state, self.grads)
        self._jax.block_until_ready(self.arrays)

    def values(self) -> list[torch.Tensor]:
        """The parameters now, as torch tensors."""
        import numpy

        return [torch.from_numpy(numpy.array(array)) for array in self.arrays]


@dataclass(frozen=True)
class Peer:
    """A contender: its family, the module it needs, and how to build it over parameters."""

    name: str
    family: str
    build: Callable[[list[torch.Tensor]], Stepper]
    needs: str = ""
    #: descend's own rows (ratios are taken against the others).
    ours: bool = False


def _torch_adam(**options: Any) -> Callable[[list[torch.Tensor]], Stepper]:
    return lambda params: Stepper(params, torch.optim.Adam(params, **HYPERS["adam"], **options))


def _descend(cls: type, family: str, backend: str) -> Callable[[list[torch.Tensor]], Stepper]:
    return lambda params: Stepper(params, cls(params, **HYPERS[family], backend=backend))


def _deepspeed_adam(params: list[torch.Tensor]) -> Stepper:
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    return Stepper(params, DeepSpeedCPUAdam(params, **HYPERS["adam"], adamw_mode=False))


def _deepspeed_lion(params: list[torch.Tensor]) -> Stepper:
    from deepspeed.ops.lion import DeepSpeedCPULion

    return Stepper(params, DeepSpeedCPULion(params, **HYPERS["lion"]))


def _optax(family: str) -> Callable[[list[torch.Tensor]], Stepper]:
    def build(params: list[torch.Tensor]) -> Stepper:
        import optax

        hypers = HYPERS[family]
        b1, b2 = hypers["betas"]
        if family == "adam":
            transform = optax.adam(hypers["lr"], b1=b1, b2=b2, eps=hypers["eps"])
        else:
            transform = optax.lion(hypers["lr"], b1=b1, b2=b2, weight_decay=0.0)
        return OptaxStepper(params, transform)

    return build


def _heavyball(compiled: bool) -> Callable[[list[torch.Tensor]], Stepper]:
    def build(params: list[torch.Tensor]) -> Stepper:
        import heavyball
        import heavyball.utils

        if not _HEAVYBALL_COMPILE_MODE:
            _HEAVYBALL_COMPILE_MODE.append(heavyball.utils.compile_mode)
        mode = _HEAVYBALL_COMPILE_MODE[0] if compiled else None
        optimizer = heavyball.AdamW(params, **HYPERS["adam"], weight_decay=0.0)
        # HeavyBall drops each gradient after using it (a training loop makes a new one); the
        # timed steps reuse one gradient.
        optimizer.consume_grad = False

        def select_mode() -> None:
            # The switch is a module global read at each call: set it for this contender.
            heavyball.utils.compile_mode = mode

        return Stepper(params, optimizer, select_mode)

    return build


def _lion_pytorch(params: list[torch.Tensor]) -> Stepper:
    from lion_pytorch import Lion

    return Stepper(params, Lion(params, **HYPERS["lion"]))


def peers(heavyball_compile: bool = False) -> list[Peer]:
    """Every contender, descend's first in each family."""
    rows = [
        Peer("descend fused", "adam", _descend(descend.Adam, "adam", "fused"), "numba", True),
        Peer("descend auto", "adam", _descend(descend.Adam, "adam", "auto"), ours=True),
        Peer("torch loop", "adam", _torch_adam(foreach=False)),
        Peer("torch foreach", "adam", _torch_adam(foreach=True)),
        Peer("torch fused", "adam", _torch_adam(fused=True)),
        Peer("DeepSpeedCPUAdam", "adam", _deepspeed_adam, "deepspeed"),
        Peer("optax adam (jit)", "adam", _optax("adam"), "optax"),
        Peer("heavyball eager", "adam", _heavyball(False), "heavyball"),
    ]
    if heavyball_compile:
        rows.append(Peer("heavyball compiled", "adam", _heavyball(True), "heavyball"))
    rows += [
        Peer("descend fused", "lion", _descend(descend.Lion, "lion", "fused"), "numba", True),
        Peer("descend auto", "lion", _descend(descend.Lion, "lion", "auto"), ours=True),
        Peer("lion-pytorch", "lion", _lion_pytorch, "lion_pytorch"),
        Peer("DeepSpeedCPULion", "lion", _deepspeed_lion, "deepspeed"),
        Peer("optax lion (jit)", "lion", _optax("lion"), "optax"),
    ]
    return rows


def unavailable(peer: Peer) -> str | None:
    """Why ``peer`` cannot run here (None when it can): a missing package, or a build that
    fails (DeepSpeed compiles its C++ step at first use)."""
    if peer.needs:
        try:
            __import__(peer.needs)
        except Exception as error:  # noqa: BLE001 - a broken install raises more than ImportError
            return f"{peer.needs} not importable ({type(error).__name__}: {error})"
    try:
        param = torch.zeros(8, requires_grad=True)
        param.grad = torch.ones(8)
        peer.build([param]).step()
    except Exception as error:  # noqa: BLE001 - any failure means the peer cannot be timed
        return f"fails to build or step: {type(error).__name__}: {str(error)[:200]}"
    return None


# -- parity ---------------------------------------------------------------------------------------


def parity_problem(seed: int = 1) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Small initial parameters and ``PARITY_STEPS`` gradients per parameter, whose magnitudes
    span 1e-7 to 1 (so that the elements where eps matters are among them)."""
    generator = torch.Generator().manual_seed(seed)
    start = [0.01 * torch.randn(shape, generator=generator) for shape in PARITY_SHAPES]
    grads = []
    for _ in range(PARITY_STEPS):
        grads.append(
            [
                torch.randn(shape, generator=generator)
                * 10.0 ** (-7 * torch.rand(shape, generator=generator))
                for shape in PARITY_SHAPES
            ]
        )
    return start, grads


def run_steps(
    peer_build: Callable[[list[torch.Tensor]], Stepper],
    start: list[torch.Tensor],
    grads: list[list[torch.Tensor]],
) -> list[torch.Tensor]:
    """The parameters after stepping a fresh copy of ``start`` with each list of ``grads``."""
    params = [value.clone().requires_grad_() for value in start]
    for param, grad in zip(params, grads[0], strict=True):
        param.grad = grad.clone()
    stepper = peer_build(params)
    for step_grads in grads:
        stepper.set_grads(step_grads)
        stepper.step()
    return stepper.values()


def lion_closed_form(
    start: list[torch.Tensor],
    grads: list[list[torch.Tensor]],
) -> list[torch.Tensor]:
    """Lion (Chen et al. 2023, Algorithm 2, no weight decay) in float64."""
    lr, (beta1, beta2) = HYPERS["lion"]["lr"], HYPERS["lion"]["betas"]
    params = [value.double() for value in start]
    moments = [torch.zeros_like(value) for value in params]
    for step_grads in grads:
        for index, grad in enumerate(step_grads):
            grad = grad.double()
            interpolated = beta1 * moments[index] + (1 - beta1) * grad
            params[index] = params[index] - lr * torch.sign(interpolated)
            moments[index] = beta2 * moments[index] + (1 - beta2) * grad
    return params


def reference(
    family: str,
    start: list[torch.Tensor],
    grads: list[list[torch.Tensor]],
) -> list[torch.Tensor]:
    """The parameters the reference reaches: torch.optim.Adam's for-loop, or Lion's closed
    form."""
    if family == "adam":
        return run_steps(_torch_adam(foreach=False), start, grads)
    return lion_closed_form(start, grads)


def parity(build: Callable[[list[torch.Tensor]], Stepper], family: str) -> float:
    """``max |d - d_ref| / max |d_ref|``, with ``d`` the total displacement of the parameters
    over the parity problem's steps and ``d_ref`` the reference's."""
    start, grads = parity_problem()
    ours = run_steps(build, start, grads)
    theirs = reference(family, start, grads)
    difference = max(
        float((a.double() - b.double()).abs().max()) for a, b in zip(ours, theirs, strict=True)
    )
    scale = max(
        float((b.double() - s.double()).abs().max()) for b, s in zip(theirs, start, strict=True)
    )
    return difference / scale


# -- timing ---------------------------------------------------------------------------------------


def rotations(count: int, rounds: int) -> list[list[int]]:
    """The order of each round: 0..count-1 rotated by one more place every round."""
    return [
        [(start + offset) % count for offset in range(count)]
        for start in (index % count for index in range(rounds))
    ]


def wait_for_kernels() -> None:
    """Let what descend loads in the background arrive (the kernels of its ``auto`` backend,
    until then run on the reference executor, and the compiled address reader), so that the
    timed steps are the steady state."""
    cache = sys.modules.get("descend.kernels.cache")
    if cache is not None:
        cache.finish_background_loads()


def steps_per_sample(stepper: Stepper, sample_seconds: float, limit: int = 50) -> int:
    """Steps whose mean makes one sample lasting about ``sample_seconds`` (after two warm-up
    steps, which also trigger every compilation)."""
    stepper.step()
    stepper.step()
    wait_for_kernels()
    start = time.perf_counter()
    stepper.step()
    once = time.perf_counter() - start
    return max(1, min(limit, round(sample_seconds / max(once, 1e-6))))


def interleaved(
    steppers: dict[str, Stepper],
    counts: dict[str, int],
    rounds: int,
    progress: Callable[[int], None] = lambda _: None,
) -> dict[str, list[float]]:
    """Seconds per step of each contender: one sample per round, in rotating order."""
    names = list(steppers)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index, order in enumerate(rotations(len(names), rounds)):
        for position in order:
            name = names[position]
            stepper, count = steppers[name], counts[name]
            start = time.perf_counter()
            for _ in range(count):
                stepper.step()
            samples[name].append((time.perf_counter() - start) / count)
        progress(index)
    return samples


# -- the worker: one process per thread count -----------------------------------------------------


def thread_environment(threads: int) -> dict[str, str]:
    """The environment of a worker that runs every executor on ``threads`` threads."""
    environment = dict(os.environ)
    environment.update(
        DESCEND_NUM_THREADS=str(threads),
        OMP_NUM_THREADS=str(threads),
        NUMBA_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        XLA_FLAGS=(
            f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
            f"intra_op_parallelism_threads={threads}"
        ),
        PYTHONPATH=os.pathsep.join(
            filter(None, [os.path.join(ROOT, "src"), HERE, os.environ.get("PYTHONPATH", "")])
        ),
    )
    environment.setdefault("DS_ACCELERATOR", "cpu")
    return environment


def worker(args: argparse.Namespace) -> None:
    """Measure every case on ``args.threads`` threads and write the results as JSON."""
    threads = args.threads_one
    torch.set_num_threads(threads)
    say = lambda text: print(f"[{threads} thread(s)] {text}", file=sys.stderr, flush=True)  # noqa: E731
    cases = SMOKE_CASES if args.smoke else {name: CASES[name] for name in args.cases.split(",")}
    result: dict[str, Any] = {
        "threads": threads,
        "skipped": [],
        "parity": {},
        "elements": {},
        "times": {},
        "counts": {},
        "bandwidth": {},
        "load": {},
    }
    contenders: list[Peer] = []
    for peer in peers(args.heavyball_compile):
        if peer.family not in args.families.split(","):
            continue
        reason = unavailable(peer)
        if reason is not None:
            result["skipped"].append(f"{peer.name} ({peer.family}): {reason}")
            say(f"skipped {peer.name}: {reason}")
            continue
        figure = parity(peer.build, peer.family)
        result["parity"][f"{peer.family}/{peer.name}"] = figure
        say(f"parity {peer.family}/{peer.name}: {figure:.2e}")
        contenders.append(peer)

    bandwidth_elements = (1 << 20) if args.smoke else 64 * (1 << 20)
    bandwidths = {mode: Bandwidth(bandwidth_elements) for mode in args.modes.split(",")}
    cores = os.cpu_count() or 1
    for case, shapes in cases.items():
        result["elements"][case] = sum(math.prod(shape) for shape in shapes)
        for family in args.families.split(","):
            steppers: dict[str, Stepper] = {}
            for peer in contenders:
                if peer.family == family:
                    steppers[peer.name] = peer.build(make_params(shapes))
            counts = {
                name: steps_per_sample(stepper, args.sample_ms / 1e3)
                for name, stepper in steppers.items()
            }
            result["counts"][f"{case}/{family}"] = counts
            for mode, bandwidth in bandwidths.items():
                neighbours = busy_neighbours(cores) if mode == "busy" else contextlib.nullcontext()
                where = f"{case} / {family} / {mode}"

                def progress(index: int, where: str = where) -> None:
                    if index % 5 == 4:
                        say(f"{where}: round {index + 1}/{args.rounds}")

                with neighbours:
                    result["load"].setdefault(mode, []).append(os.getloadavg()[0])
                    bandwidth.measure(3 if args.smoke else 9)
                    times = interleaved(steppers, counts, args.rounds, progress)
                result["times"][f"{mode}/{case}/{family}"] = times
            del steppers
            gc.collect()
    for mode, bandwidth in bandwidths.items():
        result["bandwidth"][mode] = bandwidth.samples
    with open(args.out, "w") as handle:
        json.dump(result, handle)


# -- the report -----------------------------------------------------------------------------------


def ranked(parity_figure: float | None) -> bool:
    """Whether a contender with this parity figure takes part in the ratios."""
    return parity_figure is not None and parity_figure <= PARITY_TOLERANCE


def ratio_cell(ours: float | None, theirs: float, theirs_ranked: bool, width: int) -> str:
    """descend's median over the peer's, or why there is none."""
    if not theirs_ranked:
        return f"{'unranked':>{width}}"
    if ours is None:
        return f"{'n/a':>{width}}"
    return f"{ours / theirs:>{width}.3f}"


#: The peers the issue's targets name, per family.
TARGETS = {"adam": ("torch fused", "DeepSpeedCPUAdam"), "lion": ("DeepSpeedCPULion",)}


def summary_line(
    mode: str,
    family: str,
    case: str,
    threads: int,
    medians: dict[str, float],
    parities: dict[str, float],
    floor: float,
) -> str:
    """descend fused against the targets' peers and the fastest ranked peer, and its x floor."""
    fused = medians["descend fused"]
    cells = []
    for name in TARGETS[family]:
        if name in medians:
            value = (
                f"{fused / medians[name]:.3f}"
                if ranked(parities.get(f"{family}/{name}"))
                else "unranked"
            )
            cells.append(f"/{name} {value}")
    others = {
        name: median
        for name, median in medians.items()
        if not name.startswith("descend") and ranked(parities.get(f"{family}/{name}"))
    }
    if others:
        fastest = min(others, key=others.__getitem__)
        cells.append(
            f"fastest peer {fastest} {others[fastest] * 1e3:.3f} ms "
            f"(/peer {fused / others[fastest]:.3f})"
        )
    shown = "contended" if mode == "busy" else mode
    return (
        f"{shown:<9} {family:<5} {case:<15} {threads} thr: descend fused "
        f"{fused * 1e3:8.3f} ms = {fused / floor:5.2f}x floor; " + "; ".join(cells)
    )


def print_mode(
    mode: str,
    results: list[dict[str, Any]],
    families: list[str],
    rounds: int,
) -> list[str]:
    """The table of one machine state, every thread count; returns the summary lines."""
    cores = os.cpu_count() or 1
    loads = [load for result in results for load in result["load"].get(mode, [])]
    label = (
        "QUIET (no load started by this run)"
        if mode == "quiet"
        else f"CONTENDED ({cores} processes spinning beside the run, one per core)"
    )
    print(
        f"\n## {label}: median ms per step over {rounds} interleaved rounds; (x floor) = "
        f"time / floor; fused/peer and auto/peer = descend's median / the peer's (below 1: "
        f"descend faster); 1-min load average while measuring: "
        f"{min(loads):.1f}-{max(loads):.1f}"
    )
    summary = []
    for family in families:
        print(f"\n### {family.capitalize()} ({WORDS[family]} float32 words per element)")
        header = (
            f"{'case':<15} {'thr':>3} {'contender':<19} {'ms':>9} {'x floor':>8} "
            f"{'parity':>9} {'fused/peer':>10} {'auto/peer':>10}"
        )
        print(header)
        print("-" * len(header))
        for result in results:
            threads = result["threads"]
            floor = WORDS[family] * 4 / max(result["bandwidth"][mode])
            for case, elements in result["elements"].items():
                times = result["times"].get(f"{mode}/{case}/{family}")
                if not times:
                    continue
                medians = {name: statistics.median(values) for name, values in times.items()}
                case_floor = floor * elements
                print(f"{case:<15} {threads:>3} {'(floor)':<19} {case_floor * 1e3:9.3f}")
                ours = {"fused": medians.get("descend fused"), "auto": medians.get("descend auto")}
                for name, median in medians.items():
                    figure = result["parity"].get(f"{family}/{name}")
                    is_ranked = ranked(figure)
                    mark = "" if is_ranked else " !"
                    cells = ""
                    if not name.startswith("descend"):
                        cells = (
                            ratio_cell(ours["fused"], median, is_ranked, 10)
                            + " "
                            + ratio_cell(ours["auto"], median, is_ranked, 10)
                        )
                    print(
                        f"{case:<15} {threads:>3} {name + mark:<19} {median * 1e3:9.3f} "
                        f"{median / case_floor:8.2f} {figure:9.1e} {cells}"
                    )
                if ours["fused"] is not None:
                    summary.append(
                        summary_line(
                            mode, family, case, threads, medians, result["parity"], case_floor
                        )
                    )
    return summary


def print_report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Every table, quiet first."""
    cores = os.cpu_count() or 1
    print(
        f"# descend peer benchmark: {platform.processor() or platform.machine()}, {cores} "
        f"CPUs, torch {torch.__version__}, float32; command: {' '.join(sys.argv)}"
    )
    skipped = sorted({line for result in results for line in result["skipped"]})
    for line in skipped:
        print(f"# skipped: {line}")
    if not args.heavyball_compile:
        print(
            "# skipped: heavyball compiled (torch.compile on CPU takes minutes per case; "
            "--heavyball-compile adds it)"
        )
    for result in results:
        for mode, samples in result["bandwidth"].items():
            print(
                f"# bandwidth, {result['threads']} thread(s), {mode}: best "
                f"{max(samples) / 1e9:.1f} GB/s, median {statistics.median(samples) / 1e9:.1f} "
                f"(x.neg_() streaming, {len(samples)} samples)"
            )
    print(
        f"\n## parity before timing: max |d - d_ref| / max |d_ref| over {PARITY_STEPS} steps "
        f"(d: displacement of the parameters; reference: torch.optim.Adam foreach=False, "
        f"Lion's closed form in float64); above {PARITY_TOLERANCE:.0e} = disagrees, marked "
        f"'!' and unranked"
    )
    for result in results:
        cells = [
            f"{name} {figure:.1e}{'' if ranked(figure) else ' DISAGREES'}"
            for name, figure in result["parity"].items()
        ]
        print(f"{result['threads']} thread(s): " + "; ".join(cells))
    summary = []
    families = args.families.split(",")
    for mode in args.modes.split(","):
        summary += print_mode(mode, results, families, args.rounds)
    print(
        "\n## summary: descend fused / peer (targets: <= 0.9 against torch fused and "
        "DeepSpeed on every case; <= 3x floor on 1024 x 1000)"
    )
    for line in summary:
        print(line)


# -- the newcomer's view --------------------------------------------------------------------------


def newcomer_mlp() -> torch.nn.Module:
    """784-96-10 with a ReLU: 76,330 parameters (an MNIST-sized first model)."""
    return torch.nn.Sequential(torch.nn.Linear(784, 96), torch.nn.ReLU(), torch.nn.Linear(96, 10))


NEWCOMER_STEP = """
import json, statistics, sys, time, warnings
if {hide_numba}:
    sys.modules["numba"] = None  # a fresh `pip install descend`: no Numba
import torch
import descend
torch.set_num_threads({threads})
sys.path.insert(0, {here!r})
from peer_speed import newcomer_mlp, interleaved, steps_per_sample, Stepper
torch.manual_seed(0)
inputs, targets = torch.randn(64, 784), torch.randint(0, 10, (64,))
builders = {{
    "torch.optim.AdamW()": lambda p: torch.optim.AdamW(p),
    "descend.AdamW() auto": lambda p: descend.AdamW(p),
    "descend.AdamW(backend='reference')": lambda p: descend.AdamW(p, backend="reference"),
}}
if not {hide_numba}:
    builders["descend.AdamW(backend='fused')"] = lambda p: descend.AdamW(p, backend="fused")
steppers = {{}}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name, build in builders.items():
        model = newcomer_mlp()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        params = list(model.parameters())
        steppers[name] = Stepper(params, build(params))
    counts = {{name: steps_per_sample(s, 0.005) for name, s in steppers.items()}}
said = sorted({{f"{{w.category.__name__}}: {{w.message}}" for w in caught}})
times = interleaved(steppers, counts, {rounds})
print(json.dumps({{"medians": {{name: statistics.median(values) for name, values in times.items()}},
                  "warnings": said}}))
"""

FIRST_STEP = """
import json, time
start = time.perf_counter()
import torch
imported_torch = time.perf_counter()
{import_line}
imported = time.perf_counter()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(784, 96), torch.nn.ReLU(), torch.nn.Linear(96, 10))
torch.nn.functional.cross_entropy(model(torch.randn(64, 784)),
                                  torch.randint(0, 10, (64,))).backward()
modelled = time.perf_counter()
optimizer = {optimizer}(model.parameters())
built = time.perf_counter()
optimizer.step()
first = time.perf_counter()
optimizer.step()
second = time.perf_counter()
print(json.dumps({{"import torch": imported_torch - start, "import": imported - imported_torch,
                  "model": modelled - imported, "construct": built - modelled,
                  "first step": first - built,
                  "second step": second - first}}))
"""


def fresh_process(code: str, environment: dict[str, str]) -> dict[str, Any]:
    """Run ``code`` in a new interpreter; its last line of output, as JSON."""
    completed = subprocess.run(
        [sys.executable, "-c", code], env=environment, check=True, capture_output=True, text=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def newcomer(args: argparse.Namespace) -> None:
    """Step time on the 76k MLP (with Numba, and hidden as in a bare install) and first-step
    time of a fresh process with a cold and a warm kernel cache."""
    threads = torch.get_num_threads()
    environment = thread_environment(threads)
    parameters = sum(p.numel() for p in newcomer_mlp().parameters())
    print(
        f"# descend newcomer benchmark: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}; command: {' '.join(sys.argv)}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"\n## AdamW step on a 784-96-10 MLP ({parameters:,} parameters), median us over "
        f"{args.rounds} interleaved rounds (gradients fixed; step only), one process per row "
        f"group"
    )
    header = f"{'install':<24} {'thr':>3} {'optimizer':<36} {'us':>9} {'/ torch':>8}"
    print(header)
    print("-" * len(header))
    for count in map(int, args.threads.split(",")):
        for hide in (False, True):
            code = NEWCOMER_STEP.format(
                hide_numba=hide, here=HERE, rounds=args.rounds, threads=count
            )
            measured = fresh_process(code, thread_environment(count))
            medians = measured["medians"]
            base = medians["torch.optim.AdamW()"]
            install = "without Numba (hidden)" if hide else "with Numba"
            for name, median in medians.items():
                print(
                    f"{install:<24} {count:>3} {name:<36} {median * 1e6:9.1f} {median / base:8.2f}"
                )
            for line in measured["warnings"]:
                print(f"{install:<24} {count:>3} warned: {line}")
    repeats = args.first_step_repeats
    print(
        f"\n## first step in a fresh process with {threads} threads (python -c: import; "
        f"model: build the MLP, one forward and backward; construct AdamW; step), median "
        f"seconds of {repeats} processes; cold: DESCEND_CACHE_DIR an empty folder, warm: "
        f"the same folder again"
    )
    header = (
        f"{'optimizer':<22} {'cache':<6} {'import torch':>12} {'import':>8} "
        f"{'model':>7} {'construct':>9} {'first step':>10} {'2nd step':>9}"
    )
    print(header)
    print("-" * len(header))
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    descend_code = FIRST_STEP.format(import_line="import descend", optimizer="descend.AdamW")
    torch_code = FIRST_STEP.format(import_line="pass", optimizer="torch.optim.AdamW")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as directory:
            cached = dict(environment, DESCEND_CACHE_DIR=directory)
            rows.setdefault(("descend.AdamW auto", "cold"), []).append(
                fresh_process(descend_code, cached)
            )
            rows.setdefault(("descend.AdamW auto", "warm"), []).append(
                fresh_process(descend_code, cached)
            )
        rows.setdefault(("torch.optim.AdamW", "-"), []).append(
            fresh_process(torch_code, environment)
        )
    for (name, cache), runs in rows.items():
        cells = " ".join(
            f"{statistics.median(run[key] for run in runs):>{width}.3f}"
            for key, width in (
                ("import torch", 12),
                ("import", 8),
                ("model", 7),
                ("construct", 9),
                ("first step", 10),
                ("second step", 9),
            )
        )
        print(f"{name:<22} {cache:<6} {cells}")


# -- main -----------------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--families", default="adam,lion", help="adam, lion or both")
    parser.add_argument(
        "--modes",
        default="quiet,busy",
        help="quiet, busy (one spinning process per core beside the run) or both",
    )
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds per mode")
    parser.add_argument(
        "--sample-ms",
        type=float,
        default=20.0,
        help="about how long one sample (a few steps) lasts",
    )
    parser.add_argument(
        "--heavyball-compile",
        action="store_true",
        help="also time HeavyBall's torch.compile'd step (minutes to compile)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny cases, 2 rounds, 1 thread: checks the script in seconds",
    )
    parser.add_argument(
        "--newcomer", action="store_true", help="the newcomer's view (76k MLP, first step) instead"
    )
    parser.add_argument(
        "--first-step-repeats",
        type=int,
        default=3,
        help="--newcomer: fresh processes per first-step row",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads-one", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.sample_ms = 2, 1.0
        if "--threads" not in (argv if argv is not None else sys.argv):
            args.threads = "1"
    for name, value, allowed in (
        ("--families", args.families, HYPERS),
        ("--modes", args.modes, ("quiet", "busy")),
        ("--cases", args.cases, CASES),
    ):
        unknown = sorted(set(value.split(",")) - set(allowed))
        if unknown:
            parser.error(f"{name}: unknown {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    counts = args.threads.split(",")
    if not all(count.isdigit() and int(count) > 0 for count in counts):
        parser.error(f"--threads {args.threads!r}: expected positive integers, e.g. 1,2")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: expected at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run one worker per thread count, then print the tables (or the newcomer's view)."""
    args = parse(argv)
    # A terminated run still stops its spinning neighbours and its worker (the cleanup is in
    # finally blocks, which a plain SIGTERM skips).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.worker:
        worker(args)
        return
    if args.newcomer:
        newcomer(args)
        return
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for threads in map(int, args.threads.split(",")):
            out = os.path.join(directory, f"{threads}.json")
            command = [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                "--threads-one",
                str(threads),
                "--out",
                out,
                "--cases",
                args.cases,
                "--families",
                args.families,
                "--modes",
                args.modes,
                "--rounds",
                str(args.rounds),
                "--sample-ms",
                str(args.sample_ms),
            ]
            command += ["--smoke"] * args.smoke + ["--heavyball-compile"] * args.heavyball_compile
            # The worker's stdout (DeepSpeed's build log) goes to stderr, with the progress.
            worker_process = subprocess.Popen(
                command, env=thread_environment(threads), stdout=sys.stderr
            )
            try:
                if worker_process.wait() != 0:
                    raise SystemExit(
                        f"the {threads}-thread worker failed "
                        f"(exit status {worker_process.returncode})"
                    )
            finally:
                if worker_process.poll() is None:  # interrupted: let it stop its neighbours
                    worker_process.terminate()
                    worker_process.wait()
            with open(out) as handle:
                results.append(json.load(handle))
    print_report(results, args)
    print(
        f"\n# wall time {time.perf_counter() - started:.0f} s; 1-min load average at the end "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
