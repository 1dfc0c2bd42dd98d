"""A drop-in class's param-group defaults, read from its constructor's own signature, and the
constructor arguments refused as ``torch.optim`` refuses them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from descend.rules.spec import Rule

#: Constructor arguments that are not hyperparameters of a param group (``kwargs``: the
#: arguments a reference accepts and ignores).
_NOT_HYPERPARAMETERS = frozenset({"self", "params", "nonfinite", "backend", "__class__", "kwargs"})


def constructor_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A class's param-group defaults from its constructor's ``locals()``: every argument but
    ``params``, ``nonfinite``, ``backend`` and ``**kwargs``, in the signature's order (so each
    hyperparameter is named once, in the signature)."""
    return {name: value for name, value in arguments.items() if name not in _NOT_HYPERPARAMETERS}


def check_torch_arguments(rule: Rule, defaults: Mapping[str, Any]) -> None:
    """Refuse what ``torch.optim`` refuses, with the same exception type, and what descend
    does not implement (``capturable=True``).

    Tensor hyperparameters must hold one element; a tensor learning rate or tensor betas with
    ``foreach=True`` (and ``capturable=False``), and ``fused=True`` with ``foreach=True`` or
    ``differentiable=True``, are refused as torch refuses them; a packed key (``betas``) holds
    either only floats or only tensors.
    """
    foreach, fused = defaults.get("foreach"), defaults.get("fused")
    if defaults.get("capturable"):
        raise ValueError(
            "capturable=True is not supported by descend optimizers (CUDA-graph "
            "capture of the step); expected capturable=False"
        )
    names = [("lr", defaults.get("lr"))]
    for key in rule.group_keys:
        packed = defaults.get(key)
        if isinstance(packed, tuple | list):
            kinds = {isinstance(value, torch.Tensor) for value in packed}
            if len(kinds) > 1:
                raise ValueError(f"{key} must be either all floats or all Tensors")
            names += [(f"{key}[{index}]", value) for index, value in enumerate(packed)]
    for name, value in names:
        if isinstance(value, torch.Tensor):
            if foreach:
                raise ValueError(
                    f"{name} as a Tensor is not supported for capturable=False and foreach=True"
                )
            if value.numel() != 1:
                raise ValueError(f"Tensor {name} must be 1-element")
    if fused and defaults.get("differentiable"):
        raise RuntimeError("`fused` does not support `differentiable`")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
