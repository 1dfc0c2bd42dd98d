"""Optimizers that evaluate at other weights than they train at (Schedule-Free)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeGuard

import torch


class _ModeSwitch(Protocol):
    """An optimizer with a ``train()``/``eval()`` switch (Schedule-Free)."""

    param_groups: list[dict[str, Any]]

    def eval(self) -> object:
        """Move the parameters to the weights meant for evaluation."""

    def train(self) -> object:
        """Move the parameters back to the weights meant for training."""


def _has_mode_switch(optimizer: object) -> TypeGuard[_ModeSwitch]:
    """Whether ``optimizer`` has callable ``eval()`` and ``train()`` methods."""
    return callable(getattr(optimizer, "eval", None)) and callable(
        getattr(optimizer, "train", None)
    )


@contextmanager
def evaluation_mode(optimizer: torch.optim.Optimizer) -> Iterator[torch.optim.Optimizer]:
    """Evaluate inside the block with the weights ``optimizer`` means for evaluation.

    An optimizer with ``eval()`` and ``train()`` methods (descend's and the ``schedulefree``
    package's Schedule-Free optimizers) keeps its parameters at the training point y while
    training and moves them to the averaged point x on ``eval()``. This calls ``eval()`` on
    entry and, if the optimizer was training (every param group's ``train_mode``, where it
    keeps one), ``train()`` on exit, also when the block raises. Any other optimizer is left
    alone, so training code can wrap every evaluation::

        with evaluation_mode(optimizer):
            validation_loss = evaluate(model)
    """
    switch: object = optimizer  # the same object, seen through its train()/eval() switch
    if not _has_mode_switch(switch):
        yield optimizer
        return
    training = all(group.get("train_mode", True) for group in switch.param_groups)
    switch.eval()
    try:
        yield optimizer
    finally:
        if training:
            switch.train()
