"""NumPy functional API in the style of CS231n's ``optim.py``.

Every function has the signature ``update(w, dw, config=None) -> (next_w, config)``: ``w`` are the
weights, ``dw`` the gradient of the loss with respect to them, ``config`` a dict of
hyperparameters and state (missing entries take their defaults, missing state starts at zeros).
Inputs are never modified: the returned config is a new dict holding the new state.

Each function runs the same rule as the matching PyTorch optimizer, under the course's names and
defaults (the rule's :class:`~descend.rules.CourseForm`); :data:`UPDATES` lists them all. The
lecture's functions:

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
the first update uses ``t = 1`` in Adam's bias correction. Weights must be floating point.

The newer methods' functions follow the same pattern: a rule's running products and group state
(NAdam's ``mu_product``; Schedule-Free's ``k``, ``weight_sum``, ``lr_max``) are config entries
too, a slot that starts as a copy of the weights (Schedule-Free's ``z``) starts so, and a
rule's stage runs between its elementwise parts through torch: Muon's orthogonalization (on 2-D
weights), MARS's norm clip of its corrected gradient (config keys ``m``, ``v``, ``g_prev``; an
array of one dimension runs the AdamW the class gives biases, unless ``optimize_1d``). Rules with
matrix state (Shampoo, SOAP, PSGD-Kron) and Prodigy (whose step size is a sum over every
parameter of the model) are offered as classes only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from descend import rules
from descend.kernels.numpy import step_array
from descend.kernels.state import StepState
from descend.rules.registry import RegistryView
from descend.rules.spec import CourseForm, Rule

Update = Callable[[np.ndarray, np.ndarray, "dict[str, Any] | None"], "tuple[np.ndarray, dict]"]


class FunctionalSpec:
    """One functional update: a rule under its course's names (see :class:`CourseForm`)."""

    def __init__(self, rule: Rule) -> None:
        if rule.course is None:
            raise ValueError(f"rule {rule.name!r} has no course form, so no functional update")
        self.rule = rule
        self.course: CourseForm = rule.course
        self.name = self.course.name
        self.renames = dict(self.course.renames)
        self.defaults = dict(self.course.defaults)
        self.fixed = dict(self.course.fixed)
        self.counts_steps = self.course.counts_steps
        self.__doc__ = (
            f"``{self.name}(w, dw, config=None) -> (next_w, config)``: the "
            f"{rule.name!r} rule. {rule.summary}"
        )

    def __repr__(self) -> str:
        return f"functional.{self.name}"

    def config_keys(self) -> set[str]:
        """Every key a config may hold."""
        to_rule = self._to_rule_names()
        names = {hyper.name for hyper in self.rule.hypers if hyper.name not in self.fixed}
        names |= {slot.name for slot in self.rule.slots}
        names |= set(self.rule.state_names())
        keys = {to_rule.get(name, name) for name in names}
        return keys | ({"t"} if self.counts_steps else set())

    def _to_rule_names(self) -> dict[str, str]:
        """Rule name -> config key."""
        return {rule_name: key for key, rule_name in self.renames.items()}

    def __call__(
        self, w: np.ndarray, dw: np.ndarray, config: Mapping[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if not (config is None or isinstance(config, Mapping)):
            raise ValueError(
                f"{self.name}: config must be a dict or None, got {type(config).__name__}"
            )
        config = dict(config or {})
        unknown = sorted(set(config) - self.config_keys())
        if unknown:
            raise ValueError(
                f"{self.name}: unknown config key(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(self.config_keys()))}"
            )
        w = np.asarray(w)
        dw = np.asarray(dw)
        for label, array in (("w", w), ("dw", dw)):
            if not np.issubdtype(array.dtype, np.floating):
                raise ValueError(
                    f"{self.name}: {label} has dtype {array.dtype}; expected a "
                    "floating-point array (an update would truncate it)"
                )
        if w.shape != dw.shape:
            raise ValueError(
                f"{self.name}: w has shape {w.shape} but dw has shape "
                f"{dw.shape}; expected equal shapes"
            )
        stage = self.rule.stage
        if stage is not None and stage.ndim is not None and w.ndim != stage.ndim:
            raise ValueError(f"{self.name}: w has shape {w.shape}; expected a {stage.ndim}-D array")
        merged = {**self.defaults, **config}
        not_hypers = {slot.name for slot in self.rule.slots} | set(self.rule.state_names())
        hypers = dict(self.fixed)
        for key, value in merged.items():
            name = self.renames.get(key, key)
            if name not in not_hypers and key != "t":
                hypers[name] = value
        hypers = self.rule.validate(hypers)
        made = self._updates_made(merged.get("t", 0))
        active = {slot.name for slot in self.rule.active_slots(hypers)}
        to_rule = self._to_rule_names()
        current = {
            name: merged[to_rule.get(name, name)]
            for name in self.rule.state_names()
            if to_rule.get(name, name) in merged
        }
        state = []
        for slot in self.rule.slots:
            key = to_rule.get(slot.name, slot.name)
            if slot.name not in active:
                state.append(None)
            elif key in config:
                value = np.asarray(config[key])
                if value.shape != w.shape:
                    raise ValueError(
                        f"{self.name}: {key} has shape {value.shape}, expected {w.shape} like w"
                    )
                state.append(value)
            else:
                state.append(slot.initial(w, hypers))
        next_w, next_state, after = step_array(
            self.rule, w, dw, state, StepState.single(self.rule, made, current), hypers
        )
        next_config = dict(merged)
        for slot, value in zip(self.rule.slots, next_state, strict=True):
            if slot.name in active:
                next_config[to_rule.get(slot.name, slot.name)] = np.asarray(value)
        for name, value in after.running().items():
            next_config[to_rule.get(name, name)] = value
        if self.counts_steps:
            next_config["t"] = made + 1
        return np.asarray(next_w, dtype=w.dtype), next_config

    def _updates_made(self, t: Any) -> int:
        """``t``, the updates already made, as an integer; ``ValueError`` unless it is a whole
        number >= 0 (1.5 was truncated, inf overflowed)."""
        whole = isinstance(t, int | np.integer) or (
            isinstance(t, float | np.floating) and math.isfinite(t) and float(t).is_integer()
        )
        if isinstance(t, bool | np.bool_) or not whole or t < 0:
            raise ValueError(
                f"{self.name}: t={t!r} is invalid: expected a whole number of "
                "updates already made, >= 0"
            )
        return int(t)

    def rule_hypers(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The rule hyperparameters this update runs with for ``config`` (not checked): the
        course's defaults filled in, renamed to the rule's names, and the values it pins."""
        merged = {**self.defaults, **config}
        hypers = dict(self.fixed)
        hypers.update((self.renames.get(key, key), value) for key, value in merged.items())
        return hypers


_specs: dict[int, FunctionalSpec] = {}


def _updates() -> dict[str, FunctionalSpec]:
    found = {}
    for rule in rules.RULES.values():
        if rule.course is not None:
            spec = _specs.get(id(rule))
            if spec is None or spec.rule is not rule:
                spec = _specs[id(rule)] = FunctionalSpec(rule)
            found[rule.course.name] = spec
    return found


#: Every functional update by its course name, in the registry's order; read from the registry
#: each time, so a rule registered later (a plugin, a test) has its update too.
UPDATES: Mapping[str, FunctionalSpec] = RegistryView(_updates)


def __getattr__(name: str) -> FunctionalSpec:
    """``descend.functional.adam`` and every other update, looked up in :data:`UPDATES`."""
    try:
        return UPDATES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *UPDATES})


__all__ = ["UPDATES", "FunctionalSpec", *_updates()]
