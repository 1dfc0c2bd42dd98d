"""A drop-in class's param-group defaults, read from its constructor's own signature."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Constructor arguments that are not hyperparameters of a param group (``kwargs``: the
#: arguments a reference accepts and ignores).
_NOT_HYPERPARAMETERS = frozenset({"self", "params", "nonfinite", "backend", "__class__", "kwargs"})


def constructor_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A class's param-group defaults from its constructor's ``locals()``: every argument but
    ``params``, ``nonfinite``, ``backend`` and ``**kwargs``, in the signature's order (so each
    hyperparameter is named once, in the signature)."""
    return {name: value for name, value in arguments.items() if name not in _NOT_HYPERPARAMETERS}
