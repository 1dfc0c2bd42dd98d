"""Pure-bf16 training: weights kept in bfloat16, stepped by torch's AdamW (round to nearest)
and by descend's AdamW with ``param_precision``, against a float32 model.

The MLP and data of ``state_precision_anchors.py`` (64-256-256-10 on scikit-learn's digits,
descend bench's fixed split, no download), the same initial weights and minibatches for every
row, AdamW at each learning rate given. The bf16 rows run the model in bfloat16 (weights,
activations, gradients); the float32 row is the reference. Each row reports the final loss on
the whole training split (the model evaluated in float32), the test accuracy, and the bytes
per parameter of weights plus optimizer state. Where updates fall below half a bf16 ulp of
their weights (small learning rates, late training) round-to-nearest drops them and the bf16
model stalls; stochastic rounding and the split master keep them.

    PYTHONPATH=src python benchmarks/bf16_weights.py [--steps 500] [--seeds 3]
        [--lrs 1e-3,1e-4] [--markdown]

``--step-time`` times one AdamW step on 10M parameters in 18 tensors instead (one thread,
float32 state, interleaved rounds, medians of wall time; ``--rounds``): descend's float32
fused step on float32 weights, torch's AdamW on bf16 weights, and descend's AdamW with each
``param_precision`` on bf16 weights; and the peak memory a step adds to the process (the
resident-set high-water mark after the step, reset before it through
``/proc/self/clear_refs``, less the resident set before it; Linux only).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("DESCEND_NUM_THREADS", "1")

import torch

# A sibling script (run from benchmarks/, which Python puts first on the path).
from state_precision_anchors import (
    BETAS,
    EPS,
    WEIGHT_DECAY,
    Data,
    load_data,
    make_model,
    mean_loss,
    minibatches,
)

import descend

Builder = Callable[[list[torch.nn.Parameter], float], torch.optim.Optimizer]

#: The rows: name, weight dtype, and how the optimizer is built.
ROWS: list[tuple[str, torch.dtype, Builder]] = [
    (
        "torch.optim.AdamW, float32 weights (reference)",
        torch.float32,
        lambda p, lr: torch.optim.AdamW(p, lr=lr, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY),
    ),
    (
        "torch.optim.AdamW, bf16 weights, round to nearest",
        torch.bfloat16,
        lambda p, lr: torch.optim.AdamW(p, lr=lr, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY),
    ),
    (
        'descend.AdamW, param_precision="bfloat16" (stochastic rounding)',
        torch.bfloat16,
        lambda p, lr: descend.AdamW(
            p, lr=lr, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY, param_precision="bfloat16"
        ),
    ),
    (
        'descend.AdamW, param_precision="bf16+ecc" (split master)',
        torch.bfloat16,
        lambda p, lr: descend.AdamW(
            p, lr=lr, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY, param_precision="bf16+ecc"
        ),
    ),
    (
        'descend.AdamW, param_precision="bf16+ecc", state_precision="int8"',
        torch.bfloat16,
        lambda p, lr: descend.AdamW(
            p,
            lr=lr,
            betas=BETAS,
            eps=EPS,
            weight_decay=WEIGHT_DECAY,
            param_precision="bf16+ecc",
            state_precision="int8",
        ),
    ),
]


def bytes_per_param(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> float:
    """Bytes of weights plus optimizer state per parameter element."""
    params = list(model.parameters())
    elements = sum(p.numel() for p in params)
    weights = sum(p.numel() * p.element_size() for p in params)
    state = sum(
        value.numel() * value.element_size()
        for entry in optimizer.state.values()
        for value in entry.values()
        if isinstance(value, torch.Tensor)
    )
    return (weights + state) / elements


def train(
    build: Builder, dtype: torch.dtype, lr: float, data: Data, steps: int, seed: int
) -> tuple[float, float, float]:
    """Final training loss, test accuracy and bytes per parameter of one run."""
    model = make_model(seed).to(dtype)
    optimizer = build(list(model.parameters()), lr)
    indices = minibatches(steps, seed, len(data.x_train))
    inputs = data.x_train.to(dtype)
    for batch in indices:
        optimizer.zero_grad()
        logits = model(inputs[batch])
        torch.nn.functional.cross_entropy(logits.float(), data.y_train[batch]).backward()
        optimizer.step()
    evaluated = copy.deepcopy(model).float()
    with torch.no_grad():
        accuracy = float((evaluated(data.x_test).argmax(1) == data.y_test).float().mean())
    final = mean_loss(evaluated, data.x_train, data.y_train)
    return final, accuracy, bytes_per_param(model, optimizer)


#: The step-time mode's tensors: 10M parameters in 18 tensors of three sizes.
STEP_SHAPES: list[tuple[int, ...]] = (
    [(1000, 1000)] * 6 + [(500, 1000)] * 6 + [(1000, 1000 // 6)] * 6
)
#: The step-time mode's contenders: name, weight dtype, and how the optimizer is built.
STEP_ROWS: list[tuple[str, torch.dtype, Builder]] = [
    (
        "descend.AdamW fused, float32 weights",
        torch.float32,
        lambda p, lr: descend.AdamW(p, lr=lr, backend="fused"),
    ),
    ("torch.optim.AdamW, bf16 weights", torch.bfloat16, lambda p, lr: torch.optim.AdamW(p, lr=lr)),
    (
        'descend.AdamW fused, param_precision="bfloat16"',
        torch.bfloat16,
        lambda p, lr: descend.AdamW(p, lr=lr, backend="fused", param_precision="bfloat16"),
    ),
    (
        'descend.AdamW fused, param_precision="bf16+ecc"',
        torch.bfloat16,
        lambda p, lr: descend.AdamW(p, lr=lr, backend="fused", param_precision="bf16+ecc"),
    ),
]


def _resident(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def release_freed_memory() -> None:
    """Make glibc return freed memory to the system: every large block at once from now on (a
    fixed mmap threshold of 64 KiB, which also stops glibc raising it as blocks are freed)
    and the free pages it holds now (``malloc_trim``), so that the resident set shows each
    step's temporary tensors; a no-op without glibc. (Not set while timing: the page faults
    of fresh blocks would slow a step that allocates.)"""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_step_memory(optimizer: torch.optim.Optimizer) -> float:
    """Bytes the process's resident set grows by at its peak during one step (Linux)."""
    release_freed_memory()
    Path("/proc/self/clear_refs").write_text("5")  # resets the high-water mark
    before = _resident("VmRSS")
    optimizer.step()
    return float(_resident("VmHWM") - before)


def step_time(rounds: int, steps: int) -> None:
    """Print each step-time contender's median seconds per step and peak added memory."""
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    built = []
    for name, dtype, build in STEP_ROWS:
        params = [
            torch.nn.Parameter(torch.randn(s, generator=generator).to(dtype)) for s in STEP_SHAPES
        ]
        for param in params:
            param.grad = (torch.randn(param.shape, generator=generator) * 1e-3).to(dtype)
        optimizer = build(params, 1e-4)
        optimizer.step()  # state created, kernels compiled
        built.append((name, optimizer))
    elements = sum(p.numel() for p in built[0][1].param_groups[0]["params"])
    times: dict[str, list[float]] = {name: [] for name, _ in built}
    peaks: dict[str, list[float]] = {name: [] for name, _ in built}
    for _ in range(rounds):
        for name, optimizer in built:
            start = time.perf_counter()
            for _ in range(steps):
                optimizer.step()
            times[name].append((time.perf_counter() - start) / steps)
    for _ in range(rounds):  # after the timing: see release_freed_memory
        for name, optimizer in built:
            peaks[name].append(peak_step_memory(optimizer))
    print(
        f"{elements / 1e6:.1f}M parameters in {len(STEP_SHAPES)} tensors, one thread, "
        f"{rounds} interleaved rounds of {steps} steps (medians)"
    )
    for name, _ in built:
        seconds = statistics.median(times[name])
        peak = statistics.median(peaks[name])
        print(
            f"  {name}: {seconds * 1e3:.1f} ms/step, peak added memory "
            f"{peak / 2**20:.1f} MiB ({peak / elements:.2f} B/param)"
        )
    ms = [statistics.median(times[name]) * 1e3 for name, _ in built]
    extra = [statistics.median(peaks[name]) / elements for name, _ in built]
    print(
        f"Summary: on one thread a {elements / 1e6:.0f}M-parameter AdamW step ({len(STEP_SHAPES)} "
        f"tensors, float32 state, {rounds} interleaved rounds on a shared machine, medians) "
        f'took {ms[2]:.1f} ms with "bfloat16" and {ms[3]:.1f} ms with "bf16+ecc", against '
        f"{ms[0]:.1f} ms for descend's float32 fused step and {ms[1]:.1f} ms for torch's bf16 "
        f"AdamW; the step's peak added memory was {extra[2]:.1f} and {extra[3]:.1f} B/param "
        f"({extra[1]:.1f} for torch's)."
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run every row at every learning rate and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds (mean ± std)")
    parser.add_argument("--lrs", default="1e-3,1e-4", help="comma list of learning rates")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--step-time", action="store_true", help="time a 10M-parameter step")
    parser.add_argument("--rounds", type=int, default=5, help="step-time interleaved rounds")
    arguments = parser.parse_args(argv)
    if arguments.step_time:
        if arguments.rounds < 1:
            parser.error(f"--rounds {arguments.rounds} is invalid: expected at least 1")
        step_time(arguments.rounds, 3)
        return
    try:
        lrs = [float(text) for text in arguments.lrs.split(",")]
    except ValueError:
        parser.error(f"--lrs {arguments.lrs!r} is invalid: expected numbers separated by commas")
    if arguments.steps < 1 or arguments.seeds < 1 or any(lr <= 0 for lr in lrs):
        parser.error("--steps and --seeds must be at least 1 and every lr positive")
    torch.set_num_threads(1)
    data = load_data()
    header = "| lr | optimizer | B/param (weights + state) | final train loss | test accuracy |"
    print(header if arguments.markdown else header.replace("|", " "))
    if arguments.markdown:
        print("|---|---|---|---|---|")
    for lr in lrs:
        for name, dtype, build in ROWS:
            seeds = range(arguments.seeds)
            runs = [train(build, dtype, lr, data, arguments.steps, seed) for seed in seeds]
            losses = [run[0] for run in runs]
            spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
            accuracy = statistics.mean(run[1] for run in runs)
            cells = [
                f"{lr:g}",
                name,
                f"{runs[0][2]:.2f}",
                f"{statistics.mean(losses):.4f} ± {spread:.4f}",
                f"{accuracy:.3f}",
            ]
            print("| " + " | ".join(cells) + " |" if arguments.markdown else "  ".join(cells))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
