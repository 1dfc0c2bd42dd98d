"""The benchmark's data: in-memory splits served in mini-batches, a user's loaders, and the
built-in datasets (scikit-learn's 8x8 digits, MNIST-1D), every one made offline."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorData:
    """An in-memory dataset served in mini-batches, shuffled by a caller-given generator.

    Faster than a ``DataLoader`` for the small built-in datasets, which is most of a tiny
    model's step time.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int) -> None:
        if len(inputs) != len(targets):
            raise ValueError(
                f"inputs ({len(inputs)}) and targets ({len(targets)}) differ in length"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: expected >= 1")
        self.inputs, self.targets, self.batch_size = inputs, targets, batch_size

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(self, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Mini-batches in a random order (``generator`` given) or in order (``None``)."""
        count = len(self.inputs)
        order = (
            torch.randperm(count, generator=generator)
            if generator is not None
            else torch.arange(count)
        )
        for start in range(0, count, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.inputs[index], self.targets[index]

    def with_batch_size(self, batch_size: int) -> TensorData:
        """The same data in batches of ``batch_size``."""
        return TensorData(self.inputs, self.targets, batch_size)


class LoaderData:
    """A user's iterable of ``(inputs, targets)`` batches, such as a ``DataLoader``.

    The loader does its own shuffling; the generator argument of :meth:`batches` is ignored.
    """

    def __init__(self, loader: Iterable[Batch]) -> None:
        self.loader = loader

    def __len__(self) -> int:
        dataset = getattr(self.loader, "dataset", None)
        return len(dataset) if dataset is not None else 0

    def batches(self, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """The loader's batches."""
        for batch in self.loader:
            inputs, targets = batch[0], batch[1]
            yield inputs, targets


Data = TensorData | LoaderData


def _split_indices(
    labels: np.ndarray, fractions: tuple[float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed stratified train/validation/test split of ``labels``' indices."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(fractions[0] * len(index)))
        n_val = int(round(fractions[1] * len(index)))
        train.append(index[:n_train])
        val.append(index[n_train : n_train + n_val])
        test.append(index[n_train + n_val :])
    return tuple(np.sort(np.concatenate(part)) for part in (train, val, test))


@lru_cache(maxsize=1)
def digits_arrays() -> dict[str, np.ndarray]:
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1], split 60/20/20 (fixed, stratified)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ValueError(
            "the digits tasks need scikit-learn: pip install 'descend[bench]'"
        ) from error
    digits = load_digits()
    inputs = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    train, val, test = _split_indices(labels, (0.6, 0.2), seed=0)
    return {
        "x_train": inputs[train],
        "y_train": labels[train],
        "x_val": inputs[val],
        "y_val": labels[val],
        "x_test": inputs[test],
        "y_test": labels[test],
    }


@lru_cache(maxsize=1)
def mnist1d_arrays() -> dict[str, np.ndarray]:
    """MNIST-1D generated with the ``mnist1d`` package's published arguments (seed 42).

    Uses the package's generator only (never its download path). The generator seeds NumPy's
    and Python's global random states, so both are restored afterwards.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise ValueError(
            "the MNIST-1D tasks need the mnist1d package: pip install 'descend[bench]'"
        ) from error
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    held_out = 500
    return {
        "x_train": x[:-held_out],
        "y_train": y[:-held_out],
        "x_val": x[-held_out:],
        "y_val": y[-held_out:],
        "x_test": data["x_test"].astype(np.float32),
        "y_test": data["y_test"].astype(np.int64),
    }


def tensor_splits(
    arrays: dict[str, np.ndarray], batch_size: int, eval_batch: int = 1000
) -> tuple[TensorData, TensorData, TensorData]:
    """Train, validation and test splits of ``arrays`` (``x_train``, ``y_train``, ...)."""

    def split(name: str, size: int) -> TensorData:
        return TensorData(
            torch.from_numpy(arrays[f"x_{name}"]), torch.from_numpy(arrays[f"y_{name}"]), size
        )

    return split("train", batch_size), split("val", eval_batch), split("test", eval_batch)
