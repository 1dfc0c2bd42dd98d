"""Optimizers that evaluate at other weights than they train at (Schedule-Free)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


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
    if not (callable(getattr(optimizer, "eval", None))
            and callable(getattr(optimizer, "train", None))):
        yield optimizer
        return
    training = all(group.get("train_mode", True) for group in optimizer.param_groups)
    optimizer.eval()
    try:
        yield optimizer
    finally:
        if training:
            optimizer.train()
