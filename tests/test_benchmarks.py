"""benchmarks/peer_speed.py: its parity check tells a different formula from float32 rounding,
its rounds interleave every contender, disagreeing peers stay out of the ratios, and a smoke run
prints the quiet and the contended tables."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def run_script(name: str, *arguments: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``benchmarks/<name> arguments`` in its own process, from the benchmarks folder (the
    scripts import their neighbours), descend from this checkout; its output as text."""
    environment = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=BENCHMARKS,
        check=False,
    )


def benchmark_module(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (the scripts import their neighbours from
    their own folder, so it is on the path while it loads)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def peer_speed() -> ModuleType:
    """benchmarks/peer_speed.py as a module (it imports step_speed from its own folder)."""
    return benchmark_module("peer_speed")


class ClampedEpsAdam(torch.optim.Optimizer):
    """Adam with ``max(sqrt(v_hat), eps)`` in place of ``sqrt(v_hat) + eps`` (HeavyBall's
    denominator): the same iterates wherever ``sqrt(v_hat)`` is far above eps."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                state = self.state[param]
                if not state:
                    state.update(step=0, m=torch.zeros_like(param), v=torch.zeros_like(param))
                state["step"] += 1
                state["m"].lerp_(param.grad, 1 - beta1)
                state["v"].mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                m_hat = state["m"] / (1 - beta1 ** state["step"])
                v_hat = state["v"] / (1 - beta2 ** state["step"])
                param.sub_(group["lr"] * m_hat / v_hat.sqrt().clamp(min=group["eps"]))


def test_parity_passes_torch_paths_and_flags_a_clamped_eps(peer_speed):
    """torch's foreach and fused Adam agree with its for-loop within float32 rounding; an Adam
    whose only change is clamping the denominator at eps is beyond the tolerance."""
    for options in ({"foreach": True}, {"fused": True}):
        figure = peer_speed.parity(peer_speed._torch_adam(**options), "adam")
        assert figure <= peer_speed.PARITY_TOLERANCE / 10, (options, figure)

    def clamped(params):
        return peer_speed.Stepper(params, ClampedEpsAdam(params, **peer_speed.HYPERS["adam"]))

    assert peer_speed.parity(clamped, "adam") > 10 * peer_speed.PARITY_TOLERANCE


def test_lion_parity_against_the_closed_form(peer_speed):
    """lion_pytorch and descend match Lion's closed form; swapping the betas does not."""
    pytest.importorskip("lion_pytorch")
    from lion_pytorch import Lion

    import descend

    assert peer_speed.parity(peer_speed._lion_pytorch, "lion") <= peer_speed.PARITY_TOLERANCE
    ours = peer_speed._descend(descend.Lion, "lion", "reference")
    assert peer_speed.parity(ours, "lion") <= peer_speed.PARITY_TOLERANCE

    def swapped(params):
        return peer_speed.Stepper(params, Lion(params, lr=1e-4, betas=(0.99, 0.9)))

    assert peer_speed.parity(swapped, "lion") > peer_speed.PARITY_TOLERANCE


def test_rotations_put_every_contender_first_equally(peer_speed):
    """Each round is a permutation, and over a multiple of the count each contender leads (and
    closes) the same number of rounds."""
    orders = peer_speed.rotations(4, 8)
    assert len(orders) == 8
    for order in orders:
        assert sorted(order) == [0, 1, 2, 3]
    assert sorted(order[0] for order in orders) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sorted(order[-1] for order in orders) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_interleaved_times_each_contender_once_per_round(peer_speed):
    """The call log shows every contender's steps in each round before the next round begins,
    and one sample per contender per round."""
    log: list[str] = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def step(self):
            log.append(self.name)

    steppers = {name: Recorder(name) for name in "abc"}
    samples = peer_speed.interleaved(steppers, {"a": 1, "b": 2, "c": 3}, rounds=3)
    assert {name: len(values) for name, values in samples.items()} == {"a": 3, "b": 3, "c": 3}
    assert log == [
        "a",
        "b",
        "b",
        "c",
        "c",
        "c",
        "b",
        "b",
        "c",
        "c",
        "c",
        "a",
        "c",
        "c",
        "c",
        "a",
        "b",
        "b",
    ]


def test_summary_leaves_a_disagreeing_peer_unranked(peer_speed):
    """A faster peer that failed parity is neither a ratio nor the fastest peer."""
    medians = {"descend fused": 2e-3, "torch fused": 4e-3, "DeepSpeedCPUAdam": 1e-3}
    parities = {"adam/torch fused": 1e-6, "adam/DeepSpeedCPUAdam": 0.2}
    line = peer_speed.summary_line("quiet", "adam", "16M x 1", 1, medians, parities, 1e-3)
    assert "/torch fused 0.500" in line
    assert "/DeepSpeedCPUAdam unranked" in line
    assert "fastest peer torch fused" in line
    assert "2.00x floor" in line


@pytest.mark.parametrize(
    "argv, word",
    [
        (["--threads", "0"], "--threads"),
        (["--families", "adam,sgd"], "sgd"),
        (["--modes", "quiet,loud"], "loud"),
    ],
)
def test_bad_arguments_are_named(peer_speed, capsys, argv, word):
    """A bad command line stops with an error naming the bad value."""
    with pytest.raises(SystemExit):
        peer_speed.parse(argv)
    assert word in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_run_prints_quiet_and_contended_tables(peer_speed):
    """``--smoke`` runs a worker process, checks parity and prints, for both machine states,
    every case of every family with torch's three Adam paths and descend, each with a time, an
    x floor, a parity figure within tolerance and, for peers, a ratio."""
    completed = run_script("peer_speed.py", "--smoke")
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = completed.stdout
    quiet, _, contended = output.partition("## CONTENDED")
    assert "## QUIET" in quiet and contended
    expected = {
        "adam": ["descend auto", "torch loop", "torch foreach", "torch fused"],
        "lion": ["descend auto"],
    }
    if importlib.util.find_spec("numba") is not None:
        expected["adam"].append("descend fused")
        expected["lion"].append("descend fused")
    if importlib.util.find_spec("lion_pytorch") is not None:
        expected["lion"].append("lion-pytorch")
    number = r"(\d+\.\d+)"
    for table in (quiet, contended.partition("## summary")[0]):
        for family, names in expected.items():
            section = table.partition(f"### {family.capitalize()}")[2].partition("###")[0]
            for case in peer_speed.SMOKE_CASES:
                for name in names:
                    pattern = (
                        rf"^{re.escape(case)}\s+1 {re.escape(name)}\s+{number}\s+"
                        rf"{number}\s+(\S+)(.*)$"
                    )
                    match = re.search(pattern, section, re.MULTILINE)
                    assert match, (family, case, name, section)
                    assert float(match.group(1)) > 0 and float(match.group(2)) > 0
                    assert float(match.group(3)) <= peer_speed.PARITY_TOLERANCE
                    if not name.startswith("descend"):
                        assert re.fullmatch(rf"\s+{number}\s+{number}", match.group(4)), match[0]
    if "descend fused" in expected["adam"]:
        summary = output.partition("## summary")[2].splitlines()
        for mode in ("quiet ", "contended "):
            lines = [line for line in summary if line.startswith(mode)]
            assert len(lines) == len(expected) * len(peer_speed.SMOKE_CASES), summary
            assert all("/torch fused" in line for line in lines if " adam " in line)


@pytest.mark.slow
def test_matrix_step_time_smoke_run_prints_every_method_against_adamw():
    result = run_script("matrix_step_time.py", "--smoke", "--steps", "1", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| smoke")]
    assert {row.split("|")[2].strip() for row in rows} == {
        "adamw",
        "muon",
        "shampoo",
        "soap",
        "psgd_kron",
    }
    adamw = [row for row in rows if row.split("|")[2].strip() == "adamw"]
    assert all(row.split("|")[4].strip() == "1.0" for row in adamw)


@pytest.fixture(scope="module")
def state_precision_anchors() -> ModuleType:
    """benchmarks/state_precision_anchors.py as a module."""
    return benchmark_module("state_precision_anchors")


@pytest.mark.slow  # the first torch.optim step in a process takes seconds
def test_state_precision_anchor_that_fails_is_a_not_run_row(state_precision_anchors):
    """An anchor whose optimizer raises is reported as "not run: <type>: <message>" beside the
    rows that ran, and the float32 reference's gap to itself is zero."""
    module = state_precision_anchors

    def refuses(params):
        raise RuntimeError("no CPU kernel for this optimizer\nsecond line")

    rows = [
        module.Contender(module.TORCH_NAME, "float32", module._torch),
        module.Contender("anchor.AdamW8bit", "int8", refuses),
        module.Contender("absent.AdamW", "int8", None, not_run="ModuleNotFoundError: absent"),
    ]
    generator = torch.Generator().manual_seed(0)
    inputs, labels = torch.rand(64, 64, generator=generator), torch.arange(64) % 10
    data = module.Data(inputs, labels, inputs, labels)
    summary = module.summarize(module.run_all(rows, data, 3, [0]), 3)
    assert [entry["status"] for entry in summary] == [
        "ran",
        "not run: RuntimeError: no CPU kernel for this optimizer",
        "not run: ModuleNotFoundError: absent",
    ]
    assert summary[0]["max_loss_gap"] == 0.0 and len(summary[0]["runs"][0]["losses"]) == 3
    table = module.markdown_table(summary)
    assert "| anchor.AdamW8bit | int8 | not run: RuntimeError: no CPU kernel" in table


@pytest.mark.slow
def test_state_precision_anchors_quick_run_has_every_format_and_matches_torch(tmp_path):
    """``--quick`` prints a row for every descend format; descend's float32 AdamW follows
    torch.optim.AdamW's loss curve to 1e-6 relative (the same math), while bf16 with
    round-to-nearest, the negative control, visibly does not; the JSON and PNG are written."""
    formats = benchmark_module("state_precision_anchors").DESCEND_FORMATS
    completed = run_script(
        "state_precision_anchors.py",
        "--quick",
        "--anchors",
        "none",
        "--markdown",
        "--out",
        str(tmp_path),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    for label in ["float32", "bfloat16", "bfloat16-nearest", "bf16+ecc", "int8", *formats]:
        assert any(line.startswith(f"| descend.AdamW | {label} | ") for line in lines), label
    assert any(line.startswith("| torch.optim.AdamW | float32 | 8.00 |") for line in lines)
    import json

    rows = {
        row["label"]: row for row in json.loads((tmp_path / "results.json").read_text())["rows"]
    }
    torch_losses = torch.tensor(rows["torch.optim.AdamW float32"]["runs"][0]["losses"])
    assert len(torch_losses) == 30

    def relative_gap(label: str) -> float:
        losses = torch.tensor(rows[label]["runs"][0]["losses"])
        return float(((losses - torch_losses).abs() / torch_losses.abs()).max())

    assert relative_gap("descend.AdamW float32") <= 1e-6
    assert relative_gap("descend.AdamW bfloat16-nearest") > 1e-5
    assert rows["descend.AdamW bfloat16"]["bytes_per_param"] == pytest.approx(4.0, abs=0.01)
    assert (tmp_path / "loss_curves.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def method_parity() -> ModuleType:
    """benchmarks/method_parity.py as a module."""
    spec = importlib.util.spec_from_file_location("method_parity", BENCHMARKS / "method_parity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_method_parity_table_keeps_dtypes_apart_and_controls_out_of_the_summary(method_parity):
    """A property test's float32 and float64 draws are separate rows; a state error recorded
    without a dtype joins its test's row; a deliberately wrong copy is shown but never counted
    as the method's worst."""
    soap = "tests/optim/test_soap.py::test_every_option_matches_pytorch_optimizer[x]"
    lines = [
        json.dumps({"test": soap, "params": 1e-15, "state": None, "dtype": "float64"}),
        json.dumps({"test": soap, "params": None, "state": 3e-14, "dtype": None}),
        json.dumps(
            {
                "test": "tests/optim/test_ademamix.py::test_random_settings_match_x",
                "params": 2e-7,
                "state": 0.0,
                "dtype": "float32",
            }
        ),
        json.dumps(
            {
                "test": "tests/optim/test_ademamix.py::test_random_settings_match_x",
                "params": 1e-16,
                "state": 0.0,
                "dtype": "float64",
            }
        ),
        json.dumps(
            {
                "test": "tests/optim/test_soap.py::test_a_wrong_rotation_is_caught",
                "params": 0.014,
                "state": None,
                "dtype": "float64",
            }
        ),
    ]
    rows = method_parity.merged(lines)
    assert rows[(soap, "float64")] == {"params": 1e-15, "state": 3e-14}
    text = "\n".join(method_parity.table(rows))
    assert "| SOAP | pytorch_optimizer 4.1.0 | float64 | 1 | 1.0e-15 | 3.0e-14 |" in text
    assert "| AdEMAMix | pytorch_optimizer 4.1.0 | float32 | 1 | 2.0e-07 | 0 |" in text
    assert "| AdEMAMix | pytorch_optimizer 4.1.0 | float64 | 1 | 1.0e-16 | 0 |" in text
    assert "a_wrong_rotation_is_caught (control) | float64 | 1.4e-02 |" in text


def test_method_parity_refuses_an_unknown_test_file(method_parity, capsys):
    with pytest.raises(SystemExit) as stop:
        method_parity.parse(["--files", "test_nothing.py"])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "test_nothing.py" in error and "test_soap.py" in error


@pytest.fixture(scope="module")
def host_overhead() -> ModuleType:
    """benchmarks/host_overhead.py as a module (it imports step_speed from its own folder)."""
    return benchmark_module("host_overhead")


def test_host_overhead_empties_the_caches_before_every_call_outside_its_timing(host_overhead):
    """``--cold``: the eviction runs ahead of every timed call, between the clock reads of
    the calls, never inside one; the medians are the calls' own ticks."""
    events: list[str] = []
    ticks = iter(range(100))

    def clock() -> float:
        events.append("clock")
        return float(next(ticks))

    functions = {"a": lambda: events.append("a"), "b": lambda: events.append("b")}
    times = host_overhead.interleaved(functions, 3, clock, before=lambda: events.append("evict"))
    order = ["a", "b", "b", "a", "a", "b"]  # rotated each round
    assert events == [e for name in order for e in ("evict", "clock", name, "clock")]
    assert times == {"a": 1.0, "b": 1.0}
    events.clear()
    host_overhead.interleaved(functions, 1, clock)
    assert "evict" not in events


@pytest.mark.slow
@pytest.mark.parametrize("cold", [False, True])
def test_host_overhead_times_the_triton_host_part_of_every_case(cold):
    flags = ["--cold"] if cold else []
    result = run_script(
        "host_overhead.py", "--executor", "triton", "--smoke", "--repeats", "2", *flags
    )
    assert result.returncode == 0, result.stderr[-2000:]
    title = result.stdout.splitlines()[0]
    assert ("caches emptied before every call" in title) == cold, title
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    rows = [[cell.strip() for cell in row] for row in rows if row[0].strip() != "case"]
    expected = {
        (case, name)
        for case in ("ResNet-18 (62)", "GPT-2 124M (148)", "1000 x 1024")
        for name in ("Adam", "SGD momentum")
    }
    assert {(row[0], row[1]) for row in rows} == expected, result.stdout
    counts = {"ResNet-18 (62)": 62, "GPT-2 124M (148)": 148, "1000 x 1024": 1000}
    for case, _, milliseconds, per_tensor in rows:
        assert float(milliseconds) > 0
        # The per-tensor column is the step's host time over the case's tensor count.
        assert float(per_tensor) == pytest.approx(
            float(milliseconds) * 1e3 / counts[case], rel=0.02, abs=0.01
        )


def test_host_overhead_refuses_a_bad_repeat_count():
    result = run_script("host_overhead.py", "--repeats", "0", timeout=120)
    assert result.returncode == 2
    assert "--repeats 0 is invalid" in result.stderr.splitlines()[-1]


def test_the_format_table_says_what_each_format_costs_a_core(capsys, monkeypatch):
    """The last columns of ``step_speed.py --formats``: one core's time per element (time x
    threads / elements) and the cores that work needs to run at the floor of the format's
    bytes (time x threads / floor)."""
    step_speed = benchmark_module("step_speed")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)

    class FixedBandwidth:
        value = 10e9  # bytes per second

    elements = 1_000_000
    rows = [
        ("case", "adamw", "float32", elements, 2, 2.8e-3),
        ("case", "adamw", "int8", elements, 2, 4.0e-3),
    ]
    step_speed.print_format_table(rows, FixedBandwidth())
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    table = {line[2]: line[3:] for line in lines if line[:2] == ["case", "adamw"]}
    # float32: 28 B an element (p read and written, g read, two slots read and written).
    floor32 = elements * 28 / 10e9
    assert float(table["float32"][2]) == pytest.approx(2.8e-3 / floor32, abs=0.05)
    assert float(table["float32"][3]) == pytest.approx(2.8e-3 * 2 / elements * 1e9, abs=0.005)
    assert float(table["float32"][4]) == pytest.approx(2.8e-3 * 2 / floor32, abs=0.05)
    # int8: 12 B plus 2 slots x 2 x (1 B + a 4-byte scale per 256 elements).
    floor8 = elements * (12 + 4 * (1 + 4 / 256)) / 10e9
    assert float(table["int8"][1]) == pytest.approx(4.0 / 2.8, abs=0.005)
    assert float(table["int8"][4]) == pytest.approx(4.0e-3 * 2 / floor8, abs=0.05)
