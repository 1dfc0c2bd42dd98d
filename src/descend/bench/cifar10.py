"""CIFAR-10 from the standard python batches (``cifar-10-batches-py``) in a local directory.

Each batch file is a pickle of a dict with ``b"data"`` (a ``uint8`` array of shape ``(n, 3072)``:
1024 red, then 1024 green, then 1024 blue values of a 32x32 image, row by row) and
``b"labels"`` (``n`` ints in 0..9). Training batches are ``data_batch_1`` .. ``data_batch_5``,
the test batch ``test_batch``. Nothing is downloaded: point ``--data-dir`` at the extracted
folder.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

TRAIN_FILES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_FILE = "test_batch"
#: Per-channel mean and standard deviation of the CIFAR-10 training set (for normalizing).
MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)
#: Training images held out for validation (the last ones, a fixed split).
VALIDATION = 5000


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` int64 from one batch file.

    Raises ``ValueError`` naming the file and what is wrong with it.
    """
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
    ) as error:
        raise ValueError(
            f"malformed CIFAR-10 batch file {str(path)!r}: not a python pickle "
            f"({type(error).__name__}: {error}); expected the files of "
            "cifar-10-python.tar.gz"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(
            f"malformed CIFAR-10 batch file {str(path)!r}: expected a dict with "
            f"b'data' and b'labels', got {keys}"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"malformed CIFAR-10 batch file {str(path)!r}: b'data' must be uint8 "
            f"of shape (n, 3072), got {data.dtype} {data.shape}"
        )
    if (
        labels.shape != (len(data),)
        or not np.issubdtype(labels.dtype, np.integer)
        or (len(labels) and (labels.min() < 0 or labels.max() > 9))
    ):
        raise ValueError(
            f"malformed CIFAR-10 batch file {str(path)!r}: b'labels' must be "
            f"{len(data)} integers in 0..9, got shape {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def write_batch(path: str | Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images ``(n, 3, 32, 32)`` uint8 and labels as one batch file in CIFAR-10's format."""
    images = np.asarray(images, dtype=np.uint8)
    batch = {
        b"batch_label": Path(path).name.encode(),
        b"labels": [int(y) for y in labels],
        b"data": images.reshape(len(images), 3072),
        b"filenames": [f"image_{i}.png".encode() for i in range(len(images))],
    }
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)


def _normalize(images: np.ndarray) -> np.ndarray:
    scaled = images.astype(np.float32) / 255.0
    return (scaled - MEAN[:, None, None]) / STD[:, None, None]


def load_cifar10(data_dir: str | Path | None) -> dict[str, np.ndarray]:
    """Train/validation/test arrays (normalized float32 images, int64 labels) from ``data_dir``.

    Reads every ``data_batch_*`` file there is (at least one) and ``test_batch``; the last
    ``min(5000, n/10)`` training images are the validation split.
    """
    if data_dir is None:
        raise ValueError(
            "task cifar10-cnn needs --data-dir: the folder with CIFAR-10's python "
            "batches (data_batch_1..5, test_batch), from cifar-10-python.tar.gz"
        )
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"CIFAR-10 directory {str(folder)!r} does not exist; give the folder "
            "with data_batch_1..5 and test_batch (cifar-10-batches-py)"
        )
    train_paths = [folder / name for name in TRAIN_FILES if (folder / name).is_file()]
    missing = [name for name in (TRAIN_FILES[0], TEST_FILE) if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"CIFAR-10 directory {str(folder)!r} lacks {', '.join(missing)}; "
            "expected data_batch_1..5 and test_batch (cifar-10-batches-py)"
        )
    parts = [read_batch(path) for path in train_paths]
    x_train = np.concatenate([images for images, _ in parts])
    y_train = np.concatenate([labels for _, labels in parts])
    x_test, y_test = read_batch(folder / TEST_FILE)
    held_out = min(VALIDATION, len(x_train) // 10)
    if held_out < 1:
        raise ValueError(
            f"CIFAR-10 directory {str(folder)!r} has only {len(x_train)} training "
            "images; need at least 10"
        )
    return {
        "x_train": _normalize(x_train[:-held_out]),
        "y_train": y_train[:-held_out],
        "x_val": _normalize(x_train[-held_out:]),
        "y_val": y_train[-held_out:],
        "x_test": _normalize(x_test),
        "y_test": y_test,
    }
