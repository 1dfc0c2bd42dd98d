"""AdamW with compressed optimizer state, descend's formats beside the anchors, on one model.

One MLP (64-256-256-10) on scikit-learn's 8x8 digits (descend bench's fixed split, no
download) is trained from the same initial weights on the same minibatches for the same steps
with AdamW at one learning rate, by:

- ``torch.optim.AdamW``: the float32 reference;
- ``descend.AdamW`` at every ``state_precision`` (float32, bfloat16 with stochastic rounding,
  bfloat16-nearest, the negative control, bf16+ecc, int8, and per slot: an int8 first moment
  with a bf16+ecc second moment, and the other way round, to tell which slot tolerates 8 bits);
- the anchors that run on this machine, each optional: HeavyBall's AdamW (float32,
  ``storage_dtype="bfloat16"``, ``ecc="bf16+8"``; run eagerly, ``compile_step=False``),
  torchao's low-bit AdamW (``AdamW8bit``, ``AdamW4bit``, ``AdamWFp8``) and bitsandbytes'
  ``AdamW8bit``. One that is not installed or fails is a row "not run: <reason>".

Each row reports the final loss on the whole training split, the test accuracy, the training
loss at a few checkpoints, the largest gap between its minibatch losses and its float32
reference's over the run (torch's AdamW; HeavyBall's float32 for HeavyBall's formats, whose
AdamW differs from torch's), the bytes of optimizer state per parameter (descend:
``descend.state_nbytes``; the others: every distinct storage under the state, the inner
tensors of tensor subclasses included, over the parameter count) and the median time of one
``optimizer.step()`` (the machine may be shared: compare within a run).

    PYTHONPATH=src python benchmarks/state_precision_anchors.py [--steps 500] [--seeds 3]
        [--markdown] [--out DIR] [--anchors heavyball,torchao,bitsandbytes|none] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import descend
from descend.bench.data import digits_arrays

LEARNING_RATE = 1e-3
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.01
BATCH_SIZE = 32
HIDDEN = (256, 256)
#: Steps left out of the step-time median: compilation and first-touch allocation.
WARMUP_STEPS = 5
#: descend's formats, as the table names them, and the ``state_precision`` of each.
DESCEND_FORMATS: dict[str, object] = {
    "float32": "float32",
    "bfloat16": "bfloat16",
    "bfloat16-nearest": "bfloat16-nearest",
    "bf16+ecc": "bf16+ecc",
    "int8": "int8",
    "m int8, v bf16+ecc": {"exp_avg": "int8", "exp_avg_sq": "bf16+ecc"},
    "m bf16+ecc, v int8": {"exp_avg": "bf16+ecc", "exp_avg_sq": "int8"},
}
ANCHORS = ("heavyball", "torchao", "bitsandbytes")
TORCH_NAME = "torch.optim.AdamW"
HEAVYBALL_FLOAT32 = "heavyball.AdamW float32"

Builder = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


@dataclass
class Contender:
    """One row: how to build its optimizer, or why it is not run."""

    name: str
    state: str
    build: Builder | None
    reference: str = TORCH_NAME
    not_run: str = ""
    descend: bool = False

    @property
    def label(self) -> str:
        """The row's name in the table and the JSON."""
        return f"{self.name} {self.state}"


@dataclass
class Run:
    """One contender trained on one seed."""

    losses: list[float]
    checkpoints: dict[int, float]
    final_loss: float
    test_accuracy: float
    bytes_per_param: float
    step_ms: float


@dataclass
class Row:
    """One contender over every seed (``runs`` empty when it did not run)."""

    contender: Contender
    runs: list[Run] = field(default_factory=list)
    not_run: str = ""


@dataclass
class Data:
    """The digits splits as tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_data() -> Data:
    """descend bench's fixed split of the 8x8 digits (train and test)."""
    arrays = digits_arrays()
    return Data(
        *(torch.from_numpy(arrays[name]) for name in ("x_train", "y_train", "x_test", "y_test"))
    )


def make_model(seed: int) -> torch.nn.Module:
    """The MLP every contender trains, its initial weights drawn from ``seed``."""
    torch.manual_seed(seed)
    widths = (64, *HIDDEN, 10)
    layers: list[torch.nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(widths, widths[1:], strict=False)):
        if index:
            layers.append(torch.nn.ReLU())
        layers.append(torch.nn.Linear(fan_in, fan_out))
    return torch.nn.Sequential(*layers)


def minibatches(steps: int, seed: int, count: int) -> torch.Tensor:
    """The training indices of every step (``steps`` x batch), the same for every contender."""
    generator = torch.Generator().manual_seed(seed + 1)
    return torch.randint(count, (steps, BATCH_SIZE), generator=generator)


def storage_bytes(tensors: Iterable[Any]) -> int:
    """Bytes of the distinct storages under ``tensors``: a tensor subclass (torchao's
    quantized state) counts its inner tensors, and a storage shared by several entries
    (bitsandbytes' code map) counts once."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def visit(value: Any) -> None:
        nonlocal total
        if isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, torch.Tensor):
            flatten = getattr(value, "__tensor_flatten__", None)
            if flatten is not None and type(value) is not torch.Tensor:
                for name in flatten()[0]:
                    visit(getattr(value, name))
                return
            storage = value.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()

    for tensor in tensors:
        visit(tensor)
    return total


def bytes_per_param(optimizer: torch.optim.Optimizer, descend_row: bool) -> float:
    """Bytes of optimizer state per parameter element."""
    if descend_row:
        return float(descend.state_nbytes(optimizer))
    elements = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    return storage_bytes(optimizer.state.values()) / max(elements, 1)


def mean_loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Cross-entropy of ``model`` over a whole split."""
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(inputs), targets))


def train(
    contender: Contender, data: Data, steps: int, seed: int, checkpoints: Sequence[int]
) -> Run:
    """Train the model of ``seed`` with ``contender`` on ``seed``'s minibatches."""
    assert contender.build is not None
    model = make_model(seed)
    params = list(model.parameters())
    optimizer = contender.build(params)
    indices = minibatches(steps, seed, len(data.x_train))
    losses, times, at = [], [], {}
    for step in range(1, steps + 1):
        batch = indices[step - 1]
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
        loss.backward()
        started = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - started)
        losses.append(float(loss.detach()))
        if step in checkpoints:
            at[step] = mean_loss(model, data.x_train, data.y_train)
    with torch.no_grad():
        accuracy = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
    timed = times[WARMUP_STEPS:] or times
    return Run(
        losses=losses,
        checkpoints=at,
        final_loss=mean_loss(model, data.x_train, data.y_train),
        test_accuracy=accuracy,
        bytes_per_param=bytes_per_param(optimizer, contender.descend),
        step_ms=1e3 * statistics.median(timed),
    )


def one_line(error: BaseException) -> str:
    """An exception as one short line: its type and first line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160]}" if text else type(error).__name__


def _torch(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        params, lr=LEARNING_RATE, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY, foreach=False
    )


def _descend(precision: object) -> Builder:
    def build(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return descend.AdamW(
            params,
            lr=LEARNING_RATE,
            betas=BETAS,
            eps=EPS,
            weight_decay=WEIGHT_DECAY,
            state_precision=precision,
        )

    return build


def _quiet_import(name: str) -> Any:
    """Import ``name`` with its load-time chatter (missing native extensions for other
    devices) kept off the table."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        return __import__(name, fromlist=["_"])


def heavyball_contenders() -> list[Contender]:
    """HeavyBall's AdamW at float32, bf16 storage and bf16+8 ECC (eager steps)."""
    variants = {
        "float32": {},
        "bfloat16 (storage_dtype)": {"storage_dtype": "bfloat16"},
        "bf16+8 (ecc)": {"ecc": "bf16+8"},
    }
    try:
        heavyball = _quiet_import("heavyball")
    except Exception as error:  # noqa: BLE001 - any import failure is a reason not to run
        return [Contender("heavyball.AdamW", s, None, not_run=one_line(error)) for s in variants]

    def builder(options: dict[str, str]) -> Builder:
        def build(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
            optimizer: torch.optim.Optimizer = heavyball.AdamW(
                params,
                lr=LEARNING_RATE,
                betas=BETAS,
                eps=EPS,
                weight_decay=WEIGHT_DECAY,
                compile_step=False,
                **options,
            )
            return optimizer

        return build

    return [
        Contender(
            "heavyball.AdamW",
            state,
            builder(options),
            reference=TORCH_NAME if not options else HEAVYBALL_FLOAT32,
        )
        for state, options in variants.items()
    ]


def torchao_contenders() -> list[Contender]:
    """torchao's 8-bit, 4-bit and FP8 AdamW (their steps run through torch.compile)."""
    variants = {
        "AdamW8bit": "int8 block 256",
        "AdamW4bit": "int4 block 128",
        "AdamWFp8": "fp8 e4m3 block 256",
    }
    try:
        optim = _quiet_import("torchao.optim")
    except Exception as error:  # noqa: BLE001 - any import failure is a reason not to run
        return [
            Contender(f"torchao.{n}", s, None, not_run=one_line(error)) for n, s in variants.items()
        ]

    def builder(cls: Any) -> Builder:
        def build(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
            optimizer: torch.optim.Optimizer = cls(
                params, lr=LEARNING_RATE, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY
            )
            return optimizer

        return build

    return [
        Contender(f"torchao.{name}", state, builder(getattr(optim, name)))
        for name, state in variants.items()
    ]


def bitsandbytes_contenders() -> list[Contender]:
    """bitsandbytes' 8-bit blockwise AdamW."""
    name, state = "bitsandbytes.AdamW8bit", "int8 block 256 dynamic"
    try:
        bitsandbytes = _quiet_import("bitsandbytes")
    except Exception as error:  # noqa: BLE001 - any import failure is a reason not to run
        return [Contender(name, state, None, not_run=one_line(error))]

    def build(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        optimizer: torch.optim.Optimizer = bitsandbytes.optim.AdamW8bit(
            params, lr=LEARNING_RATE, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY
        )
        return optimizer

    return [Contender(name, state, build)]


ANCHOR_CONTENDERS: dict[str, Callable[[], list[Contender]]] = {
    "heavyball": heavyball_contenders,
    "torchao": torchao_contenders,
    "bitsandbytes": bitsandbytes_contenders,
}


def contenders(anchors: Sequence[str]) -> list[Contender]:
    """Every row, the float32 reference first."""
    rows = [Contender(TORCH_NAME, "float32", _torch)]
    rows += [
        Contender("descend.AdamW", label, _descend(precision), descend=True)
        for label, precision in DESCEND_FORMATS.items()
    ]
    for anchor in anchors:
        rows += ANCHOR_CONTENDERS[anchor]()
    return rows


def run_all(
    rows: Sequence[Contender], data: Data, steps: int, seeds: Sequence[int], log: Any = None
) -> list[Row]:
    """Train every contender on every seed; a contender that raises becomes "not run"."""
    checkpoints = checkpoint_steps(steps)
    results = []
    for contender in rows:
        row = Row(contender, not_run=contender.not_run)
        if contender.build is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row.runs = [train(contender, data, steps, s, checkpoints) for s in seeds]
            except Exception as error:  # noqa: BLE001 - an anchor failing here is a finding
                row.runs, row.not_run = [], one_line(error)
        if log is not None:
            print(f"  {contender.label}: {'ran' if row.runs else row.not_run}", file=log)
        results.append(row)
    return results


def checkpoint_steps(steps: int) -> list[int]:
    """Five evenly spaced steps, the last one included."""
    return sorted({max(1, round(steps * k / 5)) for k in range(1, 6)})


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for a single value)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


def summarize(rows: Sequence[Row], steps: int) -> list[dict[str, Any]]:
    """Each row's numbers: per-seed curves and the aggregates the table prints."""
    by_label = {row.contender.label: row for row in rows}
    reference = by_label[f"{TORCH_NAME} float32"]
    float32_mean, float32_std = mean_std([run.final_loss for run in reference.runs])
    summary = []
    for row in rows:
        entry: dict[str, Any] = {
            "label": row.contender.label,
            "optimizer": row.contender.name,
            "state": row.contender.state,
            "status": "ran" if row.runs else f"not run: {row.not_run}",
        }
        if row.runs:
            own = by_label.get(row.contender.reference)
            if own is None or not own.runs:
                own = reference
            gaps = [
                float(np.max(np.abs(np.subtract(run.losses, base.losses))))
                for run, base in zip(row.runs, own.runs, strict=True)
            ]
            final_mean, final_std = mean_std([run.final_loss for run in row.runs])
            entry.update(
                reference=own.contender.label,
                final_loss_mean=final_mean,
                final_loss_std=final_std,
                within_one_std_of_float32=(
                    None
                    if math.isnan(float32_std)
                    else abs(final_mean - float32_mean) <= float32_std
                ),
                test_accuracy_mean=statistics.fmean(run.test_accuracy for run in row.runs),
                checkpoints={
                    str(step): statistics.fmean(run.checkpoints[step] for run in row.runs)
                    for step in checkpoint_steps(steps)
                },
                max_loss_gap=max(gaps),
                bytes_per_param=statistics.fmean(run.bytes_per_param for run in row.runs),
                step_ms=statistics.median(run.step_ms for run in row.runs),
                runs=[
                    vars(run) | {"checkpoints": {str(k): v for k, v in run.checkpoints.items()}}
                    for run in row.runs
                ],
            )
        summary.append(entry)
    return summary


COLUMNS = (
    "optimizer",
    "state",
    "B/param",
    "final train loss",
    "≤1σ of fp32",
    "test acc",
    "train loss at steps",
    "max |Δloss|",
    "vs",
    "step ms",
)


def cells(entry: dict[str, Any]) -> list[str]:
    """One table row as text."""
    if entry["status"] != "ran":
        return [entry["optimizer"], entry["state"], entry["status"], *[""] * 7]
    std = entry["final_loss_std"]
    final = f"{entry['final_loss_mean']:.4f}" + ("" if math.isnan(std) else f" ± {std:.4f}")
    within = entry["within_one_std_of_float32"]
    return [
        entry["optimizer"],
        entry["state"],
        f"{entry['bytes_per_param']:.2f}",
        final,
        "-" if within is None else ("yes" if within else "no"),
        f"{entry['test_accuracy_mean']:.3f}",
        " / ".join(f"{value:.3f}" for value in entry["checkpoints"].values()),
        f"{entry['max_loss_gap']:.2e}",
        "heavyball fp32" if entry["reference"] == HEAVYBALL_FLOAT32 else "torch fp32",
        f"{entry['step_ms']:.3f}",
    ]


def markdown_table(summary: Sequence[dict[str, Any]]) -> str:
    """The table in Markdown."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(entry)) + " |" for entry in summary]
    return "\n".join(lines)


def print_table(summary: Sequence[dict[str, Any]], title: str, markdown: bool) -> None:
    """Print the table: Markdown, or rich's when it is installed."""
    if not markdown:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            markdown = True
    if markdown:
        print(f"### {title}\n")
        print(markdown_table(summary))
        return
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column)
    for entry in summary:
        table.add_row(*cells(entry))
    Console(width=220).print(table)


def plot(summary: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Loss curves (seed-mean minibatch loss, smoothed) side by side: descend's formats, the
    anchors, and each against its float32 reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [entry for entry in summary if entry["status"] == "ran"]
    panels = {
        "descend.AdamW": [e for e in ran if e["optimizer"] in ("descend.AdamW", TORCH_NAME)],
        "anchors": [e for e in ran if e["optimizer"] != "descend.AdamW"],
    }
    # One colour per row in every panel; anchors dashed.
    colors = {entry["label"]: plt.get_cmap("tab20")(index % 20) for index, entry in enumerate(ran)}

    def style(entry: dict[str, Any]) -> dict[str, Any]:
        own = entry["optimizer"] in ("descend.AdamW", TORCH_NAME)
        return {"color": colors[entry["label"]], "linestyle": "-" if own else "--"}

    figure, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    for axis, (name, entries) in zip(axes[:2], panels.items(), strict=True):
        for entry in entries:
            curve = np.mean([run["losses"] for run in entry["runs"]], axis=0)
            width = max(1, len(curve) // 25)
            smooth = np.convolve(curve, np.ones(width) / width, mode="valid")
            axis.plot(
                np.arange(len(smooth)) + width, smooth, label=entry["label"], lw=1.2, **style(entry)
            )
        axis.set(title=name, xlabel="step", ylabel="minibatch loss (moving mean)", yscale="log")
        axis.legend(fontsize=7)
    by_label = {entry["label"]: entry for entry in ran}
    for entry in ran:
        base = by_label[entry["reference"]]
        if entry is base:
            continue
        gap = np.mean(
            [
                np.abs(np.subtract(run["losses"], other["losses"]))
                for run, other in zip(entry["runs"], base["runs"], strict=True)
            ],
            axis=0,
        )
        width = max(1, len(gap) // 25)
        smooth = np.convolve(gap, np.ones(width) / width, mode="valid")
        axes[2].plot(
            np.arange(len(smooth)) + width,
            smooth + 1e-12,
            label=entry["label"],
            lw=1,
            **style(entry),
        )
    axes[2].set(
        title="|loss - its float32 reference's loss|", xlabel="step", yscale="log", ylabel="gap"
    )
    axes[2].legend(fontsize=6)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; a bad value stops with a one-line error and exit status 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps per run")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds (mean ± std)")
    parser.add_argument("--anchors", default=",".join(ANCHORS), help="comma list, or 'none'")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--out", type=Path, help="write loss_curves.png and results.json here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="30 steps, one seed: a smoke run")
    arguments = parser.parse_args(argv)
    if arguments.quick:
        arguments.steps, arguments.seeds = 30, 1
    for name in ("steps", "seeds", "threads"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name} {getattr(arguments, name)} is invalid: expected at least 1")
    anchors = [] if arguments.anchors == "none" else arguments.anchors.split(",")
    for anchor in anchors:
        if anchor not in ANCHORS:
            parser.error(
                f"--anchors names {anchor!r}: expected some of {', '.join(ANCHORS)}, or 'none'"
            )
    arguments.anchors = anchors
    return arguments


def main(argv: Sequence[str] | None = None) -> None:
    """Run every contender, print the table, and write the figure and JSON if asked."""
    arguments = parse(argv)
    torch.set_num_threads(arguments.threads)
    seeds = list(range(arguments.seed, arguments.seed + arguments.seeds))
    data = load_data()
    rows = run_all(contenders(arguments.anchors), data, arguments.steps, seeds, log=sys.stderr)
    summary = summarize(rows, arguments.steps)
    title = (
        f"AdamW lr {LEARNING_RATE:g} wd {WEIGHT_DECAY:g}, MLP 64-{'-'.join(map(str, HIDDEN))}-10"
        f" on digits, batch {BATCH_SIZE}, {arguments.steps} steps, seeds {seeds}"
    )
    print_table(summary, title, arguments.markdown)
    if arguments.out is not None:
        arguments.out.mkdir(parents=True, exist_ok=True)
        config = {
            "steps": arguments.steps,
            "seeds": seeds,
            "lr": LEARNING_RATE,
            "betas": BETAS,
            "eps": EPS,
            "weight_decay": WEIGHT_DECAY,
            "batch_size": BATCH_SIZE,
            "hidden": HIDDEN,
            "threads": arguments.threads,
            "torch": torch.__version__,
        }
        (arguments.out / "results.json").write_text(
            json.dumps({"config": config, "rows": summary}, indent=1)
        )
        plot(summary, arguments.out / "loss_curves.png", title)


if __name__ == "__main__":
    main()
