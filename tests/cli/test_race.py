"""``descend race``: runs, saves as it goes, and fails with one clear line on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from descend.cli.main import main
from descend.lab import runner
from descend.lab.problems import make_problem
from descend.lab.runner import Contender, run


def test_race_prints_a_summary_with_theory_next_to_measurement(capsys):
    status = main(
        [
            "race",
            "ravine:kappa=10",
            "sgd:lr=0.1",
            "momentum:lr=0.05,momentum=0.5",
            "adam:lr=0.1",
            "--steps",
            "150",
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "kappa = 10" in out and "theory" in out and "measured" in out
    assert "0.9 " in out  # gradient descent at lr = 1/L contracts by 1 - mu/L = 0.9


@pytest.mark.slow
def test_race_saves_every_run_and_its_plots(tmp_path: Path, capsys):
    out = tmp_path / "race"
    status = main(
        [
            "race",
            "least_squares:batch_size=8",
            "momentum:lr=0.01",
            "functional.adam:learning_rate=0.05",
            "--schedule",
            "constant",
            "--schedule",
            "exponential:k=0.01",
            "--average",
            "0.9",
            "--steps",
            "60",
            "--out",
            str(out),
            "--gif",
        ]
    )
    assert status == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4
    assert all(len(r["loss"]) == 61 and len(r["averaged_loss"]) == 61 for r in records)
    assert records[1]["lr"][-1] == pytest.approx(0.01 * 2.718281828 ** (-0.01 * 59), rel=1e-6)
    for name in ("loss.png", "contour.png", "race.gif"):
        assert (out / name).stat().st_size > 1000


def _rows(printed: str) -> dict[str, list[str]]:
    """The summary table's rows by their first cell (specs short enough to fit one line)."""
    rows = {}
    for line in printed.splitlines():
        cells = line.split()
        if cells and ":" in cells[0] and "=" in cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


def test_race_saddle_reports_the_measured_escape_and_a_diverging_run_has_none(capsys):
    assert main(["race", "saddle", "sgd:lr=0.05", "sgd:lr=5.0", "--steps", "100"]) == 0
    rows = _rows(capsys.readouterr().out)
    problem = make_problem("saddle")
    trace = run(problem, Contender.parse("sgd:lr=0.05"), 100)
    escape = trace.settled_below(problem.escape_loss)
    # x^2 - y^2 from (1, 1e-3): y grows by 1.1 per step, so the loss passes -1 near step 73.
    assert escape is not None and 60 < escape < 90
    assert trace.losses[escape] <= -1 < trace.losses[escape - 1]
    assert rows["sgd:lr=0.05"][-1] == str(escape)
    diverged = rows["sgd:lr=5.0"]
    assert diverged[:2] == ["diverged", "(step"] and diverged[-1] == "-"


def test_a_noisy_race_shows_the_loss_above_the_minimum_and_the_noise_floor(tmp_path, capsys):
    out = tmp_path / "race"
    assert (
        main(
            [
                "race",
                "least_squares:batch_size=8",
                "sgd:lr=0.1",
                "sgd:lr=0.03",
                "--steps",
                "400",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "noise floor" in printed and "f - f*" in printed
    rows = _rows(printed)
    records = {
        r["label"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    floors = {}
    for label, record in records.items():
        excess = np.array(record["loss"]) - record["minimum_value"]
        final, floor = (float(v) for v in rows[label][:2])
        assert final == pytest.approx(excess[-1], rel=5e-3)
        floors[label] = np.mean(excess[-100:])
        assert floor == pytest.approx(floors[label], rel=5e-3)
    # The larger step bounces higher: the floor grows with the learning rate.
    assert floors["sgd:lr=0.1"] > 2 * floors["sgd:lr=0.03"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["race", "nope", "sgd"], "valid: ravine"),
        (["race", "ravine", "sgdd:lr=1"], "valid: sgd, sgd_momentum"),
        (["race", "ravine", "sgd:lr"], "malformed spec"),
        (["race", "ravine", "sgd", "--schedule", "fast"], "valid: constant, step"),
        (["race", "ravine", "sgd", "--average", "often"], "--average='often' is invalid"),
        (["race", "ravine", "sgd", "--steps", "0"], "--steps=0 is invalid"),
        (["race", "ravine", "sgd", "--gif"], "--gif needs --out"),
    ],
)
def test_bad_input_is_one_error_line_and_status_2(argv, message, capsys):
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error and error.startswith("descend race:")


def test_steps_beyond_the_machines_memory_are_one_line_naming_the_limit(capsys, monkeypatch):
    # 10**12 steps asked numpy for a 14.6 TiB array: a traceback, after the folder was made.
    assert main(["race", "ravine", "adam", "--steps", str(10**12)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--steps=1000000000000 is too many" in error
    assert "Traceback" not in error and "expected at most" in error
    # The limit is what the traces need: on a machine of 200 kB, half of it holds this many.
    monkeypatch.setattr(runner, "memory_bytes", lambda: 200_000)
    contenders = [Contender.parse("adam", average=0.9), Contender.parse("sgd", average=0.9)]
    problem = make_problem("ravine")
    most = runner.most_steps(problem, contenders)
    # Each run: 2 coordinates and 2 averaged ones, 6 more floats, 32 bytes of Python float.
    per_step = 2 * (8 * (2 * 2 + 6) + 32)
    assert most == 100_000 // per_step - 1
    argv = ["race", "ravine", "adam", "sgd", "--average", "0.9"]
    assert main([*argv, "--steps", str(most + 1)]) == 2
    assert f"expected at most {most} steps" in capsys.readouterr().err
    assert main([*argv, "--steps", str(most)]) == 0
    with pytest.raises(ValueError, match=f"steps={most + 1} is too many"):
        runner.race(problem, contenders, most + 1)
