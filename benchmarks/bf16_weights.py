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
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from collections.abc import Callable, Sequence

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


def main(argv: Sequence[str] | None = None) -> None:
    """Run every row at every learning rate and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds (mean ± std)")
    parser.add_argument("--lrs", default="1e-3,1e-4", help="comma list of learning rates")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    arguments = parser.parse_args(argv)
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
