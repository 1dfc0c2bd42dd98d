"""descend.Shampoo against distributed Shampoo (``facebookresearch/optimizers``): the largest
difference of each parameter over a float64 run, relative to its largest magnitude.

A convolution's weight (4, 3, 3, 3) and a linear weight (8, 5) in one param group, a bias (5,)
in a second with half the learning rate, 100 steps of random gradients, inverse roots every 10
steps. descend is configured as its defaults (Adam grafting, ``betas=(0.9, 0.999)``,
``matrix_eps`` 1e-12, blocks of 8192) but for the learning rate and the frequency, and so is
the reference, with merging to two dimensions (``target_parameter_dimensionality=2``) and its
factors in float64. descend steps vectors by the grafted method alone; the reference does so
before its first roots, so its bias group's first roots come after the run. Each option row
changes one setting on both sides.

The reference keeps its learning rate and its bias corrections as float32 tensors (the
default dtype); with ``--float64-scalars`` the default dtype is float64 and the learning rate a
power of 2, so both are exact and the rows measure the algorithms alone.

The reference is not on PyPI: put its checkout's folder (the one holding
``distributed_shampoo``) on PYTHONPATH.

    PYTHONPATH=path/to/optimizers python benchmarks/shampoo_reference_parity.py [--float64-scalars]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

import descend
from descend.testing import ErrorTracker

SHAPES = [(4, 3, 3, 3), (8, 5), (5,)]
STEPS = 100
FREQUENCY = 10
#: One setting changed per row, on both sides.
CASES: list[dict[str, Any]] = [
    {},
    {"grafting": "adagrad"},
    {"grafting": "sgd"},
    {"max_dim": 4},  # the linear weight cut into 4 x 4 blocks
    {"max_dim": 6},  # the linear weight cut into 6-row blocks, the convolution unmerged
    {"max_dim": 20},  # the convolution merged to (12, 9)
    {"betas": (0.0, 1.0)},
    {"weight_decay": 0.05},
    {"weight_decay": 0.05, "decoupled": False},
]


def run(reference: Any, lr: float, **case: Any) -> list[float]:
    """The worst relative difference of each parameter over one run."""
    grafting = case.get("grafting", "adam")
    max_dim = case.get("max_dim", 8192)
    betas = case.get("betas", (0.9, 0.999))
    weight_decay = case.get("weight_decay", 0.0)
    decoupled = case.get("decoupled", True)
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, dtype=torch.float64, generator=generator) for shape in SHAPES]
    ours_params = [tensor.clone().requires_grad_() for tensor in start]
    theirs_params = [tensor.clone().requires_grad_() for tensor in start]
    ours = descend.Shampoo(
        [{"params": ours_params[:2]}, {"params": ours_params[2:], "lr": lr / 2}],
        lr=lr,
        betas=betas,
        weight_decay=weight_decay,
        weight_decouple=decoupled,
        preconditioning_compute_steps=FREQUENCY,
        grafting=grafting,
        max_preconditioner_dim=max_dim,
        backend="reference",
    )
    grafting_configs = {
        "adam": reference.AdamPreconditionerConfig(beta2=0.999, epsilon=1e-8),
        "adagrad": reference.AdaGradPreconditionerConfig(epsilon=1e-8),
        "sgd": reference.SGDPreconditionerConfig(),
    }
    decay_type = reference.WeightDecayType.DECOUPLED if decoupled else reference.WeightDecayType.L2
    never = 10**6
    theirs = reference.DistributedShampoo(
        [
            {
                "params": theirs_params[:2],
                "precondition_frequency": FREQUENCY,
                "start_preconditioning_step": FREQUENCY,
            },
            {
                "params": theirs_params[2:],
                "lr": lr / 2,
                "precondition_frequency": never,
                "start_preconditioning_step": never,
            },
        ],
        lr=lr,
        betas=betas,
        epsilon=1e-12,
        weight_decay=weight_decay,
        weight_decay_type=decay_type,
        max_preconditioner_dim=max_dim,
        grafting_config=grafting_configs[grafting],
        distributed_config=reference.SingleDeviceDistributedConfig(
            target_parameter_dimensionality=2
        ),
        preconditioner_config=reference.RootInvShampooPreconditionerConfig(
            factor_matrix_dtype=torch.float64, inv_factor_matrix_dtype=torch.float64
        ),
    )
    tracker = ErrorTracker()
    for _ in range(STEPS):
        for mine, their in zip(ours_params, theirs_params, strict=True):
            gradient = torch.randn(mine.shape, dtype=torch.float64, generator=generator)
            mine.grad, their.grad = gradient.clone(), gradient.clone()
        ours.step()
        theirs.step()
        for index, (mine, their) in enumerate(zip(ours_params, theirs_params, strict=True)):
            tracker.observe(index, mine.detach(), their.detach())
    return [tracker.worst(lambda key, index=index: key == index) for index in range(len(SHAPES))]


def main() -> None:
    """Print one row per case and the worst difference of all."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--float64-scalars",
        action="store_true",
        help="float64 default dtype and a power-of-2 lr: the reference's scalars exact",
    )
    args = parser.parse_args()
    try:
        import distributed_shampoo as reference
    except ImportError:
        print(
            "distributed_shampoo is not importable: put its checkout on PYTHONPATH", file=sys.stderr
        )
        sys.exit(2)
    if args.float64_scalars:
        torch.set_default_dtype(torch.float64)
    lr = 2.0**-7 if args.float64_scalars else 1e-2
    print(f"| case | {' | '.join(str(shape) for shape in SHAPES)} |")
    print("|---|" + "---|" * len(SHAPES))
    worst = 0.0
    for case in CASES:
        errors = run(reference, lr, **case)
        worst = max(worst, *errors)
        label = ", ".join(f"{key}={value}" for key, value in case.items()) or "defaults"
        print(f"| {label} | " + " | ".join(f"{error:.2e}" for error in errors) + " |")
    print(f"worst: {worst:.2e}")


if __name__ == "__main__":
    main()
