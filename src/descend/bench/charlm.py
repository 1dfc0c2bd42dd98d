"""``charlm-transformer``: a small decoder-only transformer predicting the next character of
Python source code, with a corpus every machine has without a download.

The corpus is 34 source files of Python's standard library (:data:`CORPUS_FILES`, sorted
paths), chosen because they are byte-for-byte identical in CPython 3.11, 3.12 and 3.13. Each
file's line endings are normalized to ``\\n``; each file is split at fixed fractions of its
length into training (the first 80%), validation (the next 10%) and test (the last 10%)
characters, and the parts are joined in path order. Every file is checked against its
SHA-256 (:data:`FILE_SHA256`) and the whole selection against :data:`CORPUS_SHA256` before
anything trains: a Python whose standard library differs gets a :class:`CorpusMismatch`
naming the files, never a run on different text.

The model (:class:`CharTransformer`) is GPT-2's shape scaled down: learned token and position
embeddings, pre-LayerNorm blocks of causal self-attention
(:func:`torch.nn.functional.scaled_dot_product_attention`) and a GELU MLP, a final LayerNorm
and a linear read-out. The task's loss is the cross-entropy in bits per character.
"""

from __future__ import annotations

import hashlib
import math
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from descend.bench.data import TensorData
    from descend.bench.tasks import Task, TaskEntry

#: The standard-library files of the corpus, sorted; identical in CPython 3.11, 3.12, 3.13.
CORPUS_FILES: tuple[str, ...] = (
    "__future__.py",
    "_compression.py",
    "_markupbase.py",
    "_py_abc.py",
    "_threading_local.py",
    "_weakrefset.py",
    "asyncio/protocols.py",
    "concurrent/futures/_base.py",
    "difflib.py",
    "email/_encoded_words.py",
    "email/contentmanager.py",
    "email/headerregistry.py",
    "email/quoprimime.py",
    "graphlib.py",
    "heapq.py",
    "json/__init__.py",
    "multiprocessing/heap.py",
    "multiprocessing/reduction.py",
    "multiprocessing/sharedctypes.py",
    "optparse.py",
    "pyclbr.py",
    "string.py",
    "tomllib/_parser.py",
    "tracemalloc.py",
    "unittest/suite.py",
    "unittest/util.py",
    "urllib/robotparser.py",
    "weakref.py",
    "wsgiref/headers.py",
    "xml/dom/pulldom.py",
    "xml/dom/xmlbuilder.py",
    "xml/etree/ElementPath.py",
    "xml/sax/handler.py",
    "xml/sax/saxutils.py",
)

#: The first 16 hex digits of each file's SHA-256 (line endings normalized to ``\n``).
FILE_SHA256: dict[str, str] = {
    "__future__.py": "981d4c398849f9eb",
    "_compression.py": "3ad5d60627477a60",
    "_markupbase.py": "cb14dd6f2e2439eb",
    "_py_abc.py": "f9c6fe3dd9b51bd7",
    "_threading_local.py": "e1bf3dae66d0bfa6",
    "_weakrefset.py": "91895a451d06e9f5",
    "asyncio/protocols.py": "1d1b49988c338b4e",
    "concurrent/futures/_base.py": "8c6d5f09f7c535d4",
    "difflib.py": "0c6afc23568d55b3",
    "email/_encoded_words.py": "4178321600c0a19c",
    "email/contentmanager.py": "2d81026aef17e478",
    "email/headerregistry.py": "fada56c25b6a457c",
    "email/quoprimime.py": "77b454bd3ba3b5e3",
    "graphlib.py": "7bd338c5a475d110",
    "heapq.py": "6d43277e5c76fc0f",
    "json/__init__.py": "d5d41e2c29049515",
    "multiprocessing/heap.py": "f6bb79bb99b9ae48",
    "multiprocessing/reduction.py": "4999f8b9ae7b3e8a",
    "multiprocessing/sharedctypes.py": "77ef522912474652",
    "optparse.py": "07d224301cba312f",
    "pyclbr.py": "e8ca09333701ba41",
    "string.py": "24aeae1f0526250f",
    "tomllib/_parser.py": "4579b04a75664523",
    "tracemalloc.py": "c2cc84a05b824df7",
    "unittest/suite.py": "ed2da92bc9f97c53",
    "unittest/util.py": "fdcc640c3505d16d",
    "urllib/robotparser.py": "389b811835f9a3ba",
    "weakref.py": "56f8d313fb74019e",
    "wsgiref/headers.py": "0fbf95a47d8e4c0d",
    "xml/dom/pulldom.py": "614b88673d496a36",
    "xml/dom/xmlbuilder.py": "d4f33a8f01875562",
    "xml/etree/ElementPath.py": "ae8a80a8b51567b4",
    "xml/sax/handler.py": "64c7aae49f1dd382",
    "xml/sax/saxutils.py": "3fe2cdb6386e0c4d",
}

#: SHA-256 of the whole selection: each file's path, a newline and its normalized text.
CORPUS_SHA256 = "b20442e95b3ff4e5fbc41e0a24ba500714437de5cb0de57a581d35bd7cec9a9e"

#: Where each file is cut: training characters before 80%, validation before 90%, test after.
SPLIT_FRACTIONS = (0.8, 0.9)


class CorpusMismatch(ValueError):
    """This Python's standard library is not the text the task was defined on."""


@dataclass(frozen=True)
class CharCorpus:
    """The corpus, split and checked.

    Attributes:
        train, val, test: the split's characters, each file's part joined in path order.
        vocabulary: every character of the corpus, sorted; a character's id is its index.
        sha256: SHA-256 of the selection (equal to :data:`CORPUS_SHA256`).
    """

    train: str
    val: str
    test: str
    vocabulary: str
    sha256: str

    def encode(self, text: str) -> torch.Tensor:
        """The ids of ``text``'s characters (int64)."""
        index = {char: position for position, char in enumerate(self.vocabulary)}
        return torch.tensor([index[char] for char in text], dtype=torch.int64)


def stdlib_root() -> Path:
    """The folder of this Python's standard-library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def read_corpus_files(root: Path) -> dict[str, str]:
    """Each corpus file's text under ``root``, line endings normalized; ``CorpusMismatch``
    naming every file that is missing or differs from :data:`FILE_SHA256`."""
    texts: dict[str, str] = {}
    missing, different = [], []
    for name in CORPUS_FILES:
        path = root / name
        if not path.is_file():
            missing.append(name)
            continue
        data = path.read_bytes().replace(b"\r\n", b"\n")
        if hashlib.sha256(data).hexdigest()[:16] != FILE_SHA256[name]:
            different.append(name)
            continue
        texts[name] = data.decode("utf-8")
    if missing or different:
        problems = [f"differ: {', '.join(different)}"] if different else []
        problems += [f"missing: {', '.join(missing)}"] if missing else []
        raise CorpusMismatch(
            f"task charlm-transformer trains on {len(CORPUS_FILES)} files of Python's "
            f"standard library as they are in CPython 3.11 to 3.13; under {root} (Python "
            f"{sys.version.split()[0]}) {len(missing) + len(different)} of them "
            f"{'; '.join(problems)}. It does not train on different text, so that its "
            "results compare across machines: run it with CPython 3.11, 3.12 or 3.13"
        )
    return texts


def corpus_sha256(texts: dict[str, str]) -> str:
    """SHA-256 of the selection: each file's path, a newline and its text, in path order."""
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(name.encode() + b"\n" + texts[name].encode("utf-8"))
    return digest.hexdigest()


def split_corpus(texts: dict[str, str]) -> CharCorpus:
    """Cut each file at :data:`SPLIT_FRACTIONS` of its length and join the parts."""
    parts: tuple[list[str], list[str], list[str]] = ([], [], [])
    for name in sorted(texts):
        text = texts[name]
        first, second = (int(len(text) * fraction) for fraction in SPLIT_FRACTIONS)
        for part, piece in zip(
            parts, (text[:first], text[first:second], text[second:]), strict=True
        ):
            part.append(piece)
    train, val, test = ("".join(part) for part in parts)
    vocabulary = "".join(sorted(set(train + val + test)))
    return CharCorpus(train, val, test, vocabulary, corpus_sha256(texts))


@lru_cache(maxsize=1)
def load_corpus() -> CharCorpus:
    """The checked, split corpus from this Python's standard library."""
    corpus = split_corpus(read_corpus_files(stdlib_root()))
    if corpus.sha256 != CORPUS_SHA256:
        raise CorpusMismatch(
            f"the charlm-transformer corpus hashes to {corpus.sha256}, not {CORPUS_SHA256}"
        )
    return corpus


def windows(ids: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows of ``context`` ids and, for each, the next ids (shifted by
    one): shapes ``(count, context)``; the tail shorter than a window is dropped."""
    count = (len(ids) - 1) // context
    if count < 1:
        raise ValueError(f"{len(ids)} characters make no window of {context}")
    inputs = ids[: count * context].view(count, context)
    targets = ids[1 : count * context + 1].view(count, context)
    return inputs, targets


def bits_per_character(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of next-character ``logits`` ``(batch, time, vocabulary)`` against
    ``targets`` ``(batch, time)``, in bits."""
    nats = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    return nats / math.log(2)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which each position sees itself and earlier ones only."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width={width} is not a multiple of heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, width)`` to the same shape."""
        batch, time, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, time, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        mixed = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(mixed.transpose(1, 2).reshape(batch, time, width))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: ``x + attention(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, width)`` to the same shape."""
        x = x + self.attention(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """A decoder-only transformer over characters: token and learned position embeddings,
    ``depth`` pre-LayerNorm blocks, a final LayerNorm and a linear read-out.

    Initialized as GPT-2: weights normal with standard deviation 0.02, the projections back
    into the residual stream scaled down by ``sqrt(2 * depth)``, biases zero.
    """

    def __init__(
        self, vocabulary: int, context: int, width: int = 128, depth: int = 3, heads: int = 4
    ) -> None:
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocabulary, width)
        self.positions = nn.Parameter(torch.zeros(context, width))
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(depth)))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocabulary)
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)
            elif param.ndim >= 2:
                into_residual = name.endswith(("proj.weight", "mlp.2.weight"))
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * depth) if into_residual else 0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-character logits ``(batch, time, vocabulary)`` for ids ``(batch, time)``."""
        time = ids.shape[1]
        if time > self.context:
            raise ValueError(f"sequence of {time} is longer than the context {self.context}")
        x = self.tokens(ids) + self.positions[:time]
        return self.head(self.ln(self.blocks(x)))


#: The task's shape: characters per window, windows per step, and the model's size.
CONTEXT, BATCH, WIDTH, DEPTH, HEADS = 64, 32, 128, 3, 4
#: Validation bits per character that counts as reaching the target: what AdamW at the best
#: learning rate of a sweep (5e-4 to 1e-2, no schedule; 1e-3 won) reaches in five epochs,
#: so a run of the default six epochs leaves room to reach it later.
TARGET_BITS = 2.2
#: Passes over the training windows in a default run.
EPOCHS = 6


def charlm_splits(
    corpus: CharCorpus, context: int = CONTEXT, batch_size: int = BATCH
) -> tuple[TensorData, TensorData, TensorData]:
    """The corpus's training, validation and test windows as the bench's in-memory splits."""
    from descend.bench.data import TensorData

    def split(text: str, size: int) -> TensorData:
        return TensorData(*windows(corpus.encode(text), context), size)

    return split(corpus.train, batch_size), split(corpus.val, 256), split(corpus.test, 256)


def charlm_task(entry: TaskEntry) -> Task:
    """The ``charlm-transformer`` task of ``entry``: the checked corpus, its splits, the model
    factory and the loss in bits per character."""
    corpus = load_corpus()
    train, val, test = charlm_splits(corpus)
    vocabulary = len(corpus.vocabulary)

    def model() -> CharTransformer:
        return CharTransformer(vocabulary, CONTEXT, WIDTH, DEPTH, HEADS)

    return entry.make(
        model,
        train,
        val,
        test,
        loss=bits_per_character,
        epochs=EPOCHS,
        target=TARGET_BITS,
        metric="loss",
        details={
            "corpus_sha256": corpus.sha256,
            "characters": f"{len(corpus.train)}/{len(corpus.val)}/{len(corpus.test)}",
            "vocabulary": str(vocabulary),
            "parameters": str(sum(p.numel() for p in model().parameters())),
        },
    )
