"""NumPy functional API in the style of CS231n's ``optim.py``.

Every function has the signature ``update(w, dw, config=None) -> (next_w, config)``: ``w`` are the
weights, ``dw`` the gradient of the loss with respect to them, ``config`` a dict of
hyperparameters and state (missing entries take their defaults, missing state starts at zeros).
Inputs are never modified: the returned config is a new dict holding the new state.

Each function runs the same rule as the matching PyTorch optimizer, under the course's names:

=================  =====================================================================
function           config keys (defaults)
=================  =====================================================================
sgd                learning_rate (1e-2)
sgd_momentum       learning_rate (1e-2), momentum (0.9), velocity
nesterov_momentum  learning_rate (1e-2), momentum (0.9), velocity
adagrad            learning_rate (1e-2), epsilon (1e-8), cache, t
rmsprop            learning_rate (1e-2), decay_rate (0.99), epsilon (1e-8), cache
adam               learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8), m, v, t
adamw              as adam, plus weight_decay (1e-2)
=================  =====================================================================

Every function also accepts the rule's other hyperparameters under their own names
(``weight_decay``, ``maximize``, ``amsgrad`` with state ``v_max``, ``centered`` with state
``grad_avg``, ...). ``t`` counts the updates already made; an update increments it first, so
the first update uses ``t = 1`` in Adam's bias correction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from descend import rules
from descend.kernels import numpy_update
from descend.rules.spec import Rule

Update = Callable[[np.ndarray, np.ndarray, "dict[str, Any] | None"], "tuple[np.ndarray, dict]"]


@dataclass(frozen=True)
class FunctionalSpec:
    """How one functional update names a rule's hyperparameters and state.

    ``renames`` maps config keys to rule names (hyperparameters or slots); ``defaults`` are the
    course's defaults by config key; ``fixed`` pins rule hyperparameters the function does not
    expose; ``counts_steps`` exposes the step counter as ``t``.
    """

    rule: Rule
    renames: dict[str, str]
    defaults: dict[str, Any]
    fixed: dict[str, Any] = field(default_factory=dict)
    counts_steps: bool = False

    def config_keys(self) -> set[str]:
        """Every key a config may hold."""
        to_rule = self._to_rule_names()
        names = {hyper.name for hyper in self.rule.hypers if hyper.name not in self.fixed}
        names |= {slot.name for slot in self.rule.slots}
        keys = {to_rule.get(name, name) for name in names}
        return keys | ({"t"} if self.counts_steps else set())

    def _to_rule_names(self) -> dict[str, str]:
        """Rule name -> config key."""
        return {rule_name: key for key, rule_name in self.renames.items()}

    def __call__(self, w: np.ndarray, dw: np.ndarray,
                 config: Mapping[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        config = dict(config or {})
        unknown = sorted(set(config) - self.config_keys())
        if unknown:
            raise ValueError(f"{self.rule.name}: unknown config key(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(sorted(self.config_keys()))}")
        w = np.asarray(w)
        dw = np.asarray(dw)
        if w.shape != dw.shape:
            raise ValueError(f"{self.rule.name}: w has shape {w.shape} but dw has shape "
                             f"{dw.shape}; expected equal shapes")
        merged = {**self.defaults, **config}
        slot_names = {slot.name for slot in self.rule.slots}
        hypers = dict(self.fixed)
        for key, value in merged.items():
            name = self.renames.get(key, key)
            if name not in slot_names and key != "t":
                hypers[name] = value
        hypers = self.rule.validate(hypers)
        step = int(merged.get("t", 0)) + 1
        if step < 1:
            raise ValueError(f"{self.rule.name}: t={merged['t']!r} is invalid: expected t >= 0")
        active = {slot.name for slot in self.rule.active_slots(hypers)}
        to_rule = self._to_rule_names()
        state = []
        for slot in self.rule.slots:
            key = to_rule.get(slot.name, slot.name)
            if slot.name not in active:
                state.append(None)
            elif key in config:
                value = np.asarray(config[key])
                if value.shape != w.shape:
                    raise ValueError(f"{self.rule.name}: {key} has shape {value.shape}, "
                                     f"expected {w.shape} like w")
                state.append(value)
            else:
                state.append(np.full_like(w, slot.initial_value(hypers)))
        next_w, *next_state = numpy_update(self.rule)(
            w, dw, *state, **self.rule.scalars(hypers, step))
        next_config = dict(merged)
        for slot, value in zip(self.rule.slots, next_state, strict=True):
            if slot.name in active:
                next_config[to_rule.get(slot.name, slot.name)] = np.asarray(value)
        if self.counts_steps:
            next_config["t"] = step
        return np.asarray(next_w, dtype=w.dtype), next_config


_ADAM_NAMES = {"learning_rate": "lr", "epsilon": "eps", "m": "exp_avg", "v": "exp_avg_sq",
               "v_max": "max_exp_avg_sq"}
_ADAM_DEFAULTS = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}

sgd = FunctionalSpec(rules.SGD, {"learning_rate": "lr"}, {"learning_rate": 1e-2},
                     fixed={"momentum": 0.0, "dampening": 0.0, "nesterov": False})
sgd_momentum = FunctionalSpec(rules.SGD_MOMENTUM, {"learning_rate": "lr"},
                              {"learning_rate": 1e-2, "momentum": 0.9})
nesterov_momentum = FunctionalSpec(rules.NESTEROV, {"learning_rate": "lr"},
                                   {"learning_rate": 1e-2, "momentum": 0.9})
adagrad = FunctionalSpec(rules.ADAGRAD,
                         {"learning_rate": "lr", "epsilon": "eps", "cache": "sum"},
                         {"learning_rate": 1e-2, "epsilon": 1e-8}, counts_steps=True)
rmsprop = FunctionalSpec(rules.RMSPROP,
                         {"learning_rate": "lr", "decay_rate": "alpha", "epsilon": "eps",
                          "cache": "square_avg"},
                         {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8})
adam = FunctionalSpec(rules.ADAM, _ADAM_NAMES, _ADAM_DEFAULTS, counts_steps=True,
                      fixed={"decoupled_weight_decay": False})
adamw = FunctionalSpec(rules.ADAMW, _ADAM_NAMES, {**_ADAM_DEFAULTS, "weight_decay": 1e-2},
                       counts_steps=True, fixed={"decoupled_weight_decay": True})

#: Every functional update by name.
UPDATES: dict[str, FunctionalSpec] = {
    "sgd": sgd, "sgd_momentum": sgd_momentum, "nesterov_momentum": nesterov_momentum,
    "adagrad": adagrad, "rmsprop": rmsprop, "adam": adam, "adamw": adamw,
}

__all__ = ["UPDATES", "FunctionalSpec", "adagrad", "adam", "adamw", "nesterov_momentum",
           "rmsprop", "sgd", "sgd_momentum"]
