"""``descend race``: runs, saves as it goes, and fails with one clear line on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from descend.cli.main import main


def test_race_prints_a_summary_with_theory_next_to_measurement(capsys):
    status = main(["race", "ravine:kappa=10", "sgd:lr=0.1", "momentum:lr=0.05,momentum=0.5",
                   "adam:lr=0.1", "--steps", "150"])
    assert status == 0
    out = capsys.readouterr().out
    assert "kappa = 10" in out and "theory" in out and "measured" in out
    assert "0.9 " in out  # gradient descent at lr = 1/L contracts by 1 - mu/L = 0.9


def test_race_saves_every_run_and_its_plots(tmp_path: Path, capsys):
    out = tmp_path / "race"
    status = main(["race", "least_squares:batch_size=8", "momentum:lr=0.01",
                   "functional.adam:learning_rate=0.05", "--schedule", "constant",
                   "--schedule", "exponential:k=0.01", "--average", "0.9", "--steps", "60",
                   "--out", str(out), "--gif"])
    assert status == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4
    assert all(len(r["loss"]) == 61 and len(r["averaged_loss"]) == 61 for r in records)
    assert records[1]["lr"][-1] == pytest.approx(0.01 * 2.718281828 ** (-0.01 * 59), rel=1e-6)
    for name in ("loss.png", "contour.png", "race.gif"):
        assert (out / name).stat().st_size > 1000


def test_race_saddle_reports_escape(capsys):
    assert main(["race", "saddle", "sgd:lr=0.05", "--steps", "100"]) == 0
    assert "escape" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["race", "nope", "sgd"], "valid: ravine"),
    (["race", "ravine", "sgdd:lr=1"], "valid: sgd, sgd_momentum"),
    (["race", "ravine", "sgd:lr"], "malformed spec"),
    (["race", "ravine", "sgd", "--schedule", "fast"], "valid: constant, step"),
    (["race", "ravine", "sgd", "--average", "often"], "--average='often' is invalid"),
    (["race", "ravine", "sgd", "--steps", "0"], "--steps=0 is invalid"),
    (["race", "ravine", "sgd", "--gif"], "--gif needs --out"),
])
def test_bad_input_is_one_error_line_and_status_2(argv, message, capsys):
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error and error.startswith("descend race:")
