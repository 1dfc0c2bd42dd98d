"""Step time of the matrix methods (Muon, Shampoo, SOAP, PSGD-Kron) against AdamW, on CPU.

Each method steps its 2-D and larger weights and gives the rest to AdamW, as
``split_parameters`` does. Two parameter lists: the ResNet-18-like list of ``step_speed.py``
and a GPT-2-small-like list (two of GPT-2 small's twelve blocks, width 768, without the
50257-row embedding, which every recipe gives to AdamW). Per method it prints the median step
at its defaults (the refresh amortized over the steps timed; for a refresh every f-th step,
timed at f = ``--steps`` and scaled to the default f), the median step with the refresh
switched off (the elementwise part and the products that apply the preconditioner), and the
refresh's cost per step at the defaults, each also as a multiple of AdamW's step in the same
run. Rounds interleave the methods; medians of the rounds.

    python benchmarks/matrix_step_time.py [--steps N] [--rounds R] [--threads T] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from step_speed import CASES

import descend


def gpt2_small_like(blocks: int = 2, width: int = 768) -> list[tuple[int, ...]]:
    """Shapes of ``blocks`` GPT-2-small transformer blocks (attention, MLP, LayerNorms)."""
    shapes: list[tuple[int, ...]] = []
    for _ in range(blocks):
        shapes += [(width,), (width,), (3 * width, width), (3 * width,), (width, width), (width,)]
        shapes += [(width,), (width,), (4 * width, width), (4 * width,), (width, 4 * width)]
        shapes += [(width,)]
    return shapes + [(width,), (width,)]


#: Each method: its class and the arguments that switch its refresh off (Shampoo: see
#: :data:`PERIODIC`).
METHODS: dict[str, tuple[type, dict[str, object]]] = {
    "adamw": (descend.AdamW, {}),
    "muon": (descend.Muon, {}),
    "shampoo": (descend.Shampoo, {}),
    "soap": (descend.SOAP, {"precondition_frequency": 10**9}),
    "psgd_kron": (descend.PSGDKron, {"preconditioner_update_probability": 1e-9}),
}

#: The methods whose refresh runs every f-th step: the argument and its default f. A round of
#: ``--steps`` steps is timed with f = ``--steps`` (one refresh a round), and the refresh's
#: cost is scaled to the default f: at f = 100 (Shampoo's), a round of 10 steps would hold a
#: refresh in one round of ten, or none. Shampoo computes its first roots at step f (it
#: takes its grafted method's steps before) and refuses a refresh period longer than that
#: first step, so its runs first step up to f, and its run without refresh has f one step
#: beyond every timed step.
PERIODIC: dict[str, tuple[str, int]] = {
    "shampoo": ("preconditioning_compute_steps", 100),
    "soap": ("precondition_frequency", 10),
}


def build(
    name: str, shapes: list[tuple[int, ...]], refresh: bool, steps: int, rounds: int
) -> tuple[object, list]:
    """The method's optimizer over fresh parameters with gradients, after two steps (with
    ``refresh``, a periodic refresh every ``steps`` steps; without, none in the ``rounds``
    timed rounds: see :data:`PERIODIC`)."""
    cls, without_refresh = METHODS[name]
    params = [torch.randn(*shape, requires_grad=True) for shape in shapes]
    for param in params:
        param.grad = torch.randn_like(param) * 1e-2
    groups = params if name == "adamw" else cls.split_parameters(params)
    options = dict(without_refresh) if not refresh else {}
    warm_up = 2
    if name in PERIODIC and (refresh or name == "shampoo"):
        period = steps if refresh else rounds * steps + 1
        options = {PERIODIC[name][0]: period}
        warm_up = max(warm_up, period) if name == "shampoo" else warm_up
    optimizer = cls(groups, lr=1e-3, **options)
    for _ in range(warm_up):
        optimizer.step()
    return optimizer, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps timed per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--smoke", action="store_true", help="tiny shapes: checks the script")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.steps < 1 or args.rounds < 1 or args.threads < 1:
        parser.error("--steps, --rounds and --threads must be positive")
    cases = {
        "ResNet-18 (62)": CASES["ResNet-18 (62)"],
        "GPT-2-small-like (2 blocks)": gpt2_small_like(),
    }
    if args.smoke:
        cases = {"smoke": [(8, 4), (4,), (3, 2, 2, 2)], "smoke GPT-2": gpt2_small_like(1, 8)}
    print(
        f"CPU, float32, {args.threads} thread(s); "
        f"medians of {args.rounds} rounds of {args.steps} steps"
    )
    print(
        "| case | method | step (ms) | x AdamW | without refresh (ms) | x AdamW "
        "| refresh per step (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for case, shapes in cases.items():
        runs = {
            (name, refresh): build(name, shapes, refresh, args.steps, args.rounds)[0]
            for name in METHODS
            for refresh in ((True,) if name in ("adamw", "muon") else (True, False))
        }
        samples: dict[tuple[str, bool], list[float]] = {key: [] for key in runs}
        for _ in range(args.rounds):
            for key, optimizer in runs.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    optimizer.step()
                samples[key].append((time.perf_counter() - start) / args.steps * 1e3)
        median = {key: statistics.median(values) for key, values in samples.items()}
        adamw = median["adamw", True]
        for name in METHODS:
            plain = median.get((name, False), median[name, True])
            refresh = median[name, True] - plain
            if name in PERIODIC:  # one refresh in ``steps`` steps, scaled to the default f
                refresh *= args.steps / PERIODIC[name][1]
            step = plain + refresh
            print(
                f"| {case} | {name} | {step:.1f} | {step / adamw:.1f} | {plain:.1f} | "
                f"{plain / adamw:.1f} | {refresh:.1f} |"
            )


if __name__ == "__main__":
    main()
