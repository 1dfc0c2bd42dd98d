"""descend: optimizers for neural networks, and a lab that shows why each one exists.

- ``descend.SGD``, ``Adagrad``, ``RMSprop``, ``Adam``, ``AdamW``: drop-in ``torch.optim`` classes
  (every class of :mod:`descend.optim.classes` is exported here).
- ``descend.NAdam``, ``RAdam``, ``Muon`` (drop-in ``torch.optim``), ``Lion`` (``lion_pytorch``),
  ``SGDScheduleFree``, ``AdamWScheduleFree`` (``schedulefree``): the methods after the lecture.
- ``descend.LBFGS``: drop-in ``torch.optim.LBFGS`` (same iterates), with a non-finite guard.
- ``descend.secondorder``: Newton, BFGS and L-BFGS on NumPy vectors, with convergence histories.
- ``descend.Momentum``, ``descend.Nesterov``: the lecture's velocity forms as torch optimizers.
- ``descend.functional``: the CS231n-style NumPy API, ``update(w, dw, config) -> (w, config)``.
- ``descend.schedules``: learning-rate schedules; ``descend.ScheduledLR`` drives any optimizer.
- ``descend.WeightAverage``: Polyak / exponential averaging of weights.
- ``descend.state_nbytes(optimizer)``: bytes of optimizer state per parameter element (see
  ``state_precision=``, :mod:`descend.optim.precision`).
- ``descend.rules``: the math of each optimizer, written once.
- ``descend.specs``: optimizer and schedule specs as typed on the command line.

Names are imported on first use (PEP 562), so ``import descend`` is instant and the command
line answers ``descend --help`` without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Subpackages reachable as attributes (``descend.functional``) after ``import descend``.
_MODULES = (
    "bench",
    "functional",
    "kernels",
    "lab",
    "optim",
    "rules",
    "schedules",
    "secondorder",
    "specs",
)
#: Names of descend.optim exported here besides the rule optimizers (``optim.CLASSES``).
_OPTIM = ("LBFGS", "NonFiniteGradientError", "ScheduledLR", "WeightAverage")
#: Functions exported here, by the module that defines them.
_FUNCTIONS = {"state_nbytes": "descend.optim.param_state"}


def _exported() -> list[str]:
    optim = importlib.import_module("descend.optim")
    return [
        *optim.CLASSES,
        *_OPTIM,
        *_FUNCTIONS,
        "functional",
        "rules",
        "schedules",
        "secondorder",
        "specs",
    ]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"descend.{name}")
    if name == "__all__":
        return _exported()
    if name in _FUNCTIONS:
        value = getattr(importlib.import_module(_FUNCTIONS[name]), name)
        globals()[name] = value
        return value
    if name[:1].isupper():  # a class: the rule optimizers are known once descend.optim loads
        optim = importlib.import_module("descend.optim")
        if name in optim.CLASSES or name in _OPTIM:
            value = getattr(optim, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module 'descend' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_exported(), *_MODULES})
