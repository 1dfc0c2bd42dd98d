"""Loading a state dict or a pickle: what ``load_state_dict`` checks before it changes
anything, how loaded state is brought to what a step expects, and the constructor settings
(outside the param groups) that a pickle or copy of an optimizer keeps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from descend.optim import sharded
from descend.optim.checks import describe, step_dtype
from descend.optim.precision import (
    STATE_DICT_KEY,
    StatePrecision,
    encode_loaded,
    loaded_storage,
    plain_state_dict,
)
from descend.optim.weights import (
    WeightPrecision,
    check_loaded_corrections,
    convert_loaded_corrections,
    float32_weights,
)

if TYPE_CHECKING:
    from descend.optim.base import RuleOptimizer


def load_converted(
    optimizer: RuleOptimizer,
    state_dict: Mapping[str, Any],
    load: Callable[[dict[str, Any]], None],
) -> None:
    """Load ``state_dict`` into ``optimizer`` with torch's ``load`` after checking it
    (:func:`check_loaded_state`), converting its state into the optimizer's storage formats.

    Compressed slots are decoded first (so torch loads, and casts, plain values); then each
    slot is stored in the optimizer's format, the checkpoint's own storage kept where it is
    in that format already. The random stream continues from the checkpoint's stream step.
    """
    record = state_dict.get(STATE_DICT_KEY) if isinstance(state_dict, Mapping) else None
    check_loaded_corrections(optimizer, record)  # before anything loads
    # bf16 weights with float32 masters load their state as float32 (see weights.py).
    with float32_weights(optimizer, stepping=False):
        _load_converted(optimizer, state_dict, load)
    convert_loaded_corrections(optimizer, record)


def _load_converted(
    optimizer: RuleOptimizer,
    state_dict: Mapping[str, Any],
    load: Callable[[dict[str, Any]], None],
) -> None:
    kept: Mapping[Any, Any] = {}
    record = None
    if isinstance(state_dict, Mapping):
        kept = loaded_storage(state_dict)
        record = state_dict.get(STATE_DICT_KEY)
        state_dict = plain_state_dict(state_dict)
    check_loaded_state(optimizer, state_dict)
    skipped = int(state_dict.get("skipped_steps", 0))
    load({key: value for key, value in state_dict.items() if key != "skipped_steps"})
    optimizer.skipped_steps = skipped
    if isinstance(record, Mapping):
        optimizer._stream_step = int(record.get("stream_step", optimizer._stream_step))
    saved_ids = [key for group in state_dict["param_groups"] for key in group["params"]]
    encode_loaded(optimizer, saved_ids, kept)


def check_loaded_state(optimizer: RuleOptimizer, state_dict: Mapping[str, Any]) -> None:
    """Refuse a state dict ``optimizer`` cannot load, before anything is loaded: not a state
    dict, another number of groups or parameters, hyperparameters the rule refuses, or state
    tensors that do not fit their parameters (``ValueError`` naming the parameter)."""
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"load_state_dict expects an optimizer state dict (a mapping "
            f"with 'state' and 'param_groups'), got {describe(state_dict)}; "
            "nothing was loaded"
        )
    groups = state_dict.get("param_groups")
    saved_state = state_dict.get("state")
    if not isinstance(groups, list) or not isinstance(saved_state, Mapping):
        raise ValueError(
            "not an optimizer state dict: expected the keys 'state' and 'param_groups'"
        )
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(
            f"the state dict has {len(groups)} parameter groups, this "
            f"optimizer {len(optimizer.param_groups)}; nothing was loaded"
        )
    for index, (saved, group) in enumerate(zip(groups, optimizer.param_groups, strict=True)):
        rule = optimizer.rule_for(group)
        slot_names = {slot.name: slot for slot in rule.slots}
        ids = saved.get("params", [])
        if len(ids) != len(group["params"]):
            raise ValueError(
                f"parameter group {index} of the state dict has {len(ids)} "
                f"parameters, this optimizer's {len(group['params'])}; "
                "nothing was loaded"
            )
        loaded = {**group, **{k: v for k, v in saved.items() if k != "params"}}
        try:
            hypers = optimizer.rule_hypers(loaded)
            rule.validate(hypers, rule.display_names())
        except (ValueError, KeyError) as error:
            raise ValueError(
                f"parameter group {index} of the state dict: {error}; nothing was loaded"
            ) from None
        for key, param in zip(ids, group["params"], strict=True):
            entry = saved_state.get(key)
            if not entry:
                continue
            for name, value in entry.items():
                slot = slot_names.get(name)
                if slot is None:
                    continue
                if value is None and not (slot.unconditional and slot.active(hypers)):
                    continue  # not created yet (torch.optim.SGD saves such a buffer)
                if not isinstance(value, torch.Tensor):
                    raise ValueError(
                        f"the state dict's {name!r} for {optimizer._label(param)} is "
                        f"{describe(value)}: expected a tensor of the parameter's shape "
                        "(a damaged checkpoint?); nothing was loaded"
                    )
                if value.shape != param.shape:
                    raise ValueError(
                        f"the state dict's {name!r} for {optimizer._label(param)} has shape "
                        f"{tuple(value.shape)}, but the parameter has shape "
                        f"{tuple(param.shape)} (a checkpoint of another model?); nothing "
                        "was loaded"
                    )
                sharded.check_state(value, param, name, optimizer._label, loading=True)
            for slot in rule.active_slots(hypers):
                if slot.name not in entry and slot.unconditional:
                    raise ValueError(
                        f"the state dict has state for {optimizer._label(param)} but no "
                        f"{slot.name!r}, which {type(optimizer).__name__} keeps for every "
                        "parameter (a checkpoint of another optimizer?); nothing was loaded"
                    )


def counters_as_tensors(optimizer: RuleOptimizer) -> None:
    """Step counters and running products saved as numbers (older checkpoints) become
    tensors, as ``torch.optim`` makes them."""
    scalar_keys = {
        "step",
        *(
            product.name
            for group in optimizer.param_groups
            for product in optimizer.rule_for(group).products
        ),
    }
    for param_state in optimizer.state.values():
        for key in scalar_keys & param_state.keys():
            value = param_state[key]
            if not isinstance(value, torch.Tensor):
                param_state[key] = torch.tensor(float(value), dtype=step_dtype())


def saved_settings(optimizer: RuleOptimizer) -> dict[str, Any]:
    """The settings a pickle or copy of ``optimizer`` keeps besides torch's state:
    ``nonfinite``, ``backend``, ``cautious``, the count of skipped steps and the class's
    ``extra_settings``."""
    settings = dict(
        nonfinite=optimizer.nonfinite,
        backend=optimizer.backend,
        skipped_steps=optimizer.skipped_steps,
        _precision=optimizer._precision,
        _stream_step=optimizer._stream_step,
        cautious=optimizer.cautious,
        _weights=optimizer._weights,
    )
    settings.update({name: getattr(optimizer, name) for name in optimizer.extra_settings})
    return settings


def restore_settings(optimizer: RuleOptimizer, state: dict[str, Any]) -> None:
    """Move the settings of :func:`saved_settings` from ``state`` (a pickled optimizer's, or
    the state ``load_state_dict`` loads) onto ``optimizer``; a setting that ``state`` lacks
    keeps the optimizer's current value (so a load keeps the constructor's settings)."""
    current = optimizer.__dict__
    optimizer.nonfinite = state.pop("nonfinite", current.get("nonfinite", "propagate"))
    optimizer.backend = state.pop("backend", current.get("backend", "auto"))
    optimizer.skipped_steps = state.pop("skipped_steps", current.get("skipped_steps", 0))
    optimizer._precision = state.pop("_precision", current.get("_precision") or StatePrecision())
    optimizer._stream_step = state.pop("_stream_step", current.get("_stream_step", 0))
    optimizer.cautious = state.pop("cautious", current.get("cautious", False))
    optimizer._weights = state.pop("_weights", current.get("_weights") or WeightPrecision())
    for name in optimizer.extra_settings:
        setattr(optimizer, name, state.pop(name, current.get(name)))
