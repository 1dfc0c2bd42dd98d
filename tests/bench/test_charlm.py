"""charlm-transformer: the corpus is the same text in every process (and refused when it is
not), the model is a causal transformer of the stated size, and a few steps lower its loss."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from descend.bench import charlm
from descend.bench.data import TensorData
from descend.bench.tasks import get_task
from descend.bench.training import train
from descend.specs import parse_optimizer

SOURCE = Path(__file__).resolve().parents[2] / "src"

#: Printed by a fresh interpreter: the corpus hash and a hash of each split's text.
SPLIT_DIGEST = (
    "import hashlib\n"
    "from descend.bench.charlm import load_corpus\n"
    "corpus = load_corpus()\n"
    "print(corpus.sha256, *(hashlib.sha256(part.encode()).hexdigest()\n"
    "      for part in (corpus.train, corpus.val, corpus.test, corpus.vocabulary)))\n"
)


def test_the_corpus_matches_its_hash_and_splits_each_file_80_10_10():
    corpus = charlm.load_corpus()
    assert corpus.sha256 == charlm.CORPUS_SHA256
    texts = charlm.read_corpus_files(charlm.stdlib_root())
    assert list(texts) == list(charlm.CORPUS_FILES) == sorted(charlm.CORPUS_FILES)
    assert 20 <= len(texts) <= 40
    total = sum(len(text) for text in texts.values())
    assert len(corpus.train) + len(corpus.val) + len(corpus.test) == total
    assert abs(len(corpus.train) / total - 0.8) < 1e-3
    assert abs(len(corpus.val) / total - 0.1) < 1e-3
    # Each file contributes its head to training and its tail to the test split.
    assert corpus.train.startswith(texts[charlm.CORPUS_FILES[0]][:1000])
    assert corpus.test.endswith(texts[charlm.CORPUS_FILES[-1]][-1000:])
    assert corpus.vocabulary == "".join(sorted(set(corpus.train + corpus.val + corpus.test)))
    assert "\r" not in corpus.vocabulary


@pytest.mark.slow
def test_the_split_is_identical_in_two_fresh_processes():
    environment = {**os.environ, "PYTHONPATH": str(SOURCE)}
    outputs = [
        subprocess.run(
            [sys.executable, "-c", SPLIT_DIGEST],
            capture_output=True,
            text=True,
            check=True,
            env=environment,
        ).stdout.split()
        for _ in range(2)
    ]
    assert outputs[0] == outputs[1]
    assert outputs[0][0] == charlm.CORPUS_SHA256


def _copy_corpus(folder: Path) -> None:
    for name in charlm.CORPUS_FILES:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((charlm.stdlib_root() / name).read_bytes())


def test_a_different_standard_library_is_refused_naming_the_files(tmp_path):
    _copy_corpus(tmp_path)
    changed, removed = "heapq.py", "json/__init__.py"
    with open(tmp_path / changed, "a", encoding="utf-8") as handle:
        handle.write("# one more line\n")
    (tmp_path / removed).unlink()
    with pytest.raises(charlm.CorpusMismatch) as caught:
        charlm.read_corpus_files(tmp_path)
    message = str(caught.value)
    assert f"differ: {changed}" in message and f"missing: {removed}" in message
    assert "3.11" in message and "charlm-transformer" in message
    assert isinstance(caught.value, ValueError)


def test_windows_line_endings_read_as_the_same_text(tmp_path):
    _copy_corpus(tmp_path)
    path = tmp_path / "graphlib.py"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    texts = charlm.read_corpus_files(tmp_path)
    assert charlm.corpus_sha256(texts) == charlm.CORPUS_SHA256


def test_windows_are_non_overlapping_and_targets_are_the_next_characters():
    ids = torch.arange(100)
    inputs, targets = charlm.windows(ids, 8)
    assert inputs.shape == targets.shape == (12, 8)
    assert torch.equal(inputs[1], torch.arange(8, 16))
    assert torch.equal(targets, inputs + 1)
    with pytest.raises(ValueError, match="no window"):
        charlm.windows(torch.arange(5), 8)


def test_bits_per_character_of_uniform_logits_is_log2_of_the_vocabulary():
    logits = torch.zeros(2, 5, 97)
    targets = torch.randint(0, 97, (2, 5))
    assert float(charlm.bits_per_character(logits, targets)) == pytest.approx(math.log2(97))


def _model(context: int = 64) -> charlm.CharTransformer:
    torch.manual_seed(0)
    return charlm.CharTransformer(97, context, charlm.WIDTH, charlm.DEPTH, charlm.HEADS)


def test_the_model_has_the_stated_shape_and_size():
    model = _model()
    ids = torch.randint(0, 97, (3, 64))
    assert model(ids).shape == (3, 64, 97)
    assert model(ids[:, :10]).shape == (3, 10, 97)
    parameters = sum(param.numel() for param in model.parameters())
    assert 500_000 <= parameters <= 2_000_000
    assert isinstance(model.blocks[0].ln1, torch.nn.LayerNorm)
    with pytest.raises(ValueError, match="longer than the context"):
        model(torch.zeros(1, 65, dtype=torch.int64))


def test_attention_is_causal_a_later_character_never_changes_earlier_logits():
    model = _model().eval()
    ids = torch.randint(0, 97, (2, 64), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 40] = (changed[:, 40] + 1) % 97
    with torch.no_grad():
        before, after = model(ids), model(changed)
    assert torch.equal(before[:, :40], after[:, :40])
    assert not torch.allclose(before[:, 40:], after[:, 40:])


def test_the_registered_task_scores_validation_bits_per_character():
    task = get_task("charlm-transformer")
    assert task.metric == "loss" and not task.higher_is_better
    assert task.target == charlm.TARGET_BITS and task.loss is charlm.bits_per_character
    assert task.details["corpus_sha256"] == charlm.CORPUS_SHA256
    assert isinstance(task.train, TensorData) and task.train.batch_size == charlm.BATCH
    inputs, targets = next(task.train.batches(None))
    assert inputs.shape == targets.shape == (charlm.BATCH, charlm.CONTEXT)
    assert task.reached(charlm.TARGET_BITS - 0.1) and not task.reached(charlm.TARGET_BITS + 0.1)


@pytest.mark.slow
def test_a_few_adamw_steps_lower_the_validation_loss():
    task = get_task("charlm-transformer")
    assert isinstance(task.train, TensorData)
    assert isinstance(task.val, TensorData) and isinstance(task.test, TensorData)

    def head(data: TensorData, count: int) -> TensorData:
        return TensorData(data.inputs[:count], data.targets[:count], data.batch_size)

    short = dataclasses.replace(
        task, train=head(task.train, 640), val=head(task.val, 256), test=head(task.test, 256)
    )
    result = train(short, parse_optimizer("adamw:lr=3e-3"), seed=0, epochs=2)
    assert not result.diverged and len(result.history) == 2
    # An untrained model predicts about uniformly: log2(97) = 6.6 bits.
    assert result.history[-1].val_loss < 0.75 * math.log2(97)
    assert result.history[-1].val_loss < result.history[0].val_loss
    assert result.test_loss is not None and result.test_loss < 0.75 * math.log2(97)
