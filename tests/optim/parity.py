"""Shared machinery for running a descend optimizer side by side with a reference optimizer."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch

import descend

#: Relative tolerance of the parity checks, by dtype.
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}

#: Every option combination the drop-in classes must match torch.optim on.
OPTION_GRID: dict[str, dict[str, list[Any]]] = {
    "SGD": dict(lr=[0.05], momentum=[0.0, 0.9], dampening=[0.0, 0.3], weight_decay=[0.0, 0.1],
                nesterov=[False, True], maximize=[False, True]),
    "Adagrad": dict(lr=[0.1], lr_decay=[0.0, 0.01], weight_decay=[0.0, 0.1],
                    initial_accumulator_value=[0.0, 0.1], maximize=[False, True]),
    "RMSprop": dict(lr=[0.01], centered=[False, True], momentum=[0.0, 0.5],
                    weight_decay=[0.0, 0.1], maximize=[False, True]),
    "Adam": dict(lr=[0.01], amsgrad=[False, True], weight_decay=[0.0, 0.1],
                 decoupled_weight_decay=[False, True], maximize=[False, True]),
    "AdamW": dict(lr=[0.01], amsgrad=[False, True], weight_decay=[0.0, 0.1],
                  maximize=[False, True]),
    "NAdam": dict(lr=[0.01], weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
                  momentum_decay=[4e-3, 0.05], maximize=[False, True]),
    "RAdam": dict(lr=[0.01], weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
                  maximize=[False, True]),
}


def option_combinations(name: str) -> list[dict[str, Any]]:
    """Every valid combination of the options in the grid for one class."""
    grid = OPTION_GRID[name]
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    if name == "SGD":
        combos = [c for c in combos
                  if not c["nesterov"] or (c["momentum"] > 0 and c["dampening"] == 0)]
    return combos


class ErrorTracker:
    """Worst relative difference between paired tensors over a whole run.

    A tensor's difference is measured against its scale, the largest magnitude the reference
    tensor took at any step of the run: a parameter that starts near 1 and ends near 0, or a
    running mean of noise, still carries rounding errors of the size of its larger past values,
    and dividing by its final value alone would only measure cancellation.
    """

    def __init__(self) -> None:
        self.scales: dict[object, float] = {}
        self.differences: dict[object, float] = {}

    def observe(self, key: object, actual: torch.Tensor, expected: torch.Tensor) -> None:
        """Record one step's pair for the tensor named ``key``."""
        if expected.numel() == 0:
            return
        scale = expected.double().abs().max().item()
        difference = (actual.double() - expected.double()).abs().max().item()
        self.scales[key] = max(self.scales.get(key, 0.0), scale)
        self.differences[key] = max(self.differences.get(key, 0.0), difference)

    def worst(self, keys: Callable[[object], bool] = lambda key: True) -> float:
        """The largest difference / scale over the tensors whose key passes ``keys``."""
        errors = [
            0.0 if difference == 0.0 else difference / max(self.scales[key], 1e-30)
            for key, difference in self.differences.items() if keys(key)
        ]
        return max(errors, default=0.0)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |actual - expected| / max |expected|`` for one pair of tensors."""
    tracker = ErrorTracker()
    tracker.observe(None, actual.detach(), expected.detach())
    return tracker.worst()


def make_params(shapes: Iterable[tuple[int, ...]], dtype: torch.dtype, seed: int,
                ) -> list[torch.Tensor]:
    """Random leaf tensors of the given shapes."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, dtype=dtype, generator=generator).requires_grad_()
            for shape in shapes]


def clone_params(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Independent copies of leaf tensors."""
    return [p.detach().clone().requires_grad_() for p in params]


def grouped(params: list[torch.Tensor], group_options: list[dict[str, Any]]) -> list[dict]:
    """Split params round-robin into one param group per entry of ``group_options``."""
    count = len(group_options)
    return [{"params": params[i::count], **options} for i, options in enumerate(group_options)
            if params[i::count]]


def run_side_by_side(
    make_ours: Callable[[list], torch.optim.Optimizer],
    make_reference: Callable[[list], torch.optim.Optimizer],
    shapes: list[tuple[int, ...]],
    dtype: torch.dtype,
    steps: int,
    seed: int = 0,
    group_options: list[dict[str, Any]] | None = None,
    missing_grad_every: int = 3,
    compare_state: bool = True,
) -> tuple[float, float, list, list, torch.optim.Optimizer, torch.optim.Optimizer]:
    """Step both optimizers on the same gradients; return the worst parameter and state errors.

    Errors are :class:`ErrorTracker`'s, checked after every step. Every
    ``missing_grad_every``-th parameter gets ``grad = None`` on odd steps, and parameter 1, when
    there is one, never gets a gradient, so skipped parameters are exercised. With
    ``compare_state`` the state keys of the reference must all exist in ours and match.
    """
    ours_params = make_params(shapes, dtype, seed)
    reference_params = clone_params(ours_params)
    options = group_options or [{}]
    ours = make_ours(grouped(ours_params, options))
    reference = make_reference(grouped(reference_params, options))
    generator = torch.Generator().manual_seed(seed + 1)
    tracker = ErrorTracker()
    for step in range(steps):
        for index, (a, b) in enumerate(zip(ours_params, reference_params, strict=True)):
            skipped = index == 1 or (index % missing_grad_every == 0 and step % 2 == 1)
            if skipped:
                a.grad = b.grad = None
                continue
            gradient = torch.randn(a.shape, dtype=dtype, generator=generator)
            a.grad, b.grad = gradient.clone(), gradient.clone()
        ours.step()
        reference.step()
        for index, (a, b) in enumerate(zip(ours_params, reference_params, strict=True)):
            tracker.observe(("param", index), a.detach(), b.detach())
            if not compare_state:
                continue
            reference_state = reference.state.get(b, {})
            our_state = ours.state.get(a, {})
            assert set(reference_state) <= set(our_state), (
                sorted(reference_state), sorted(our_state))
            for key, value in reference_state.items():
                if torch.is_tensor(value):
                    tracker.observe((key, index), our_state[key], value)
    param_error = tracker.worst(lambda key: key[0] == "param")
    state_error = tracker.worst(lambda key: key[0] != "param")
    return param_error, state_error, ours_params, reference_params, ours, reference


def descend_class(name: str) -> type[torch.optim.Optimizer]:
    """descend's class of this name."""
    return getattr(descend, name)


def torch_class(name: str) -> type[torch.optim.Optimizer]:
    """torch.optim's class of this name."""
    return getattr(torch.optim, name)
