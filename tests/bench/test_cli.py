"""``descend bench`` and ``descend lr-find`` from the command line, bad input included."""

from __future__ import annotations

import json
import pickle

import optuna
import pytest

from descend.cli.main import main
from descend.specs import split_specs


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--task", "digits-cnn"],
            "unknown task 'digits-cnn'; did you mean 'digits-mlp'? valid: digits-logreg",
        ),
        (["--optimizers", "sgd,adamm"], "unknown optimizer 'adamm'"),
        (["--optimizers", "adam:beta=0.9"], "adam does not take beta"),
        (["--schedules", "linear"], "unknown schedule 'linear'"),
        (["--task", "cifar10-cnn", "--data-dir", "/nonexistent/cifar"], "does not exist"),
        (["--task", "cifar10-cnn"], "needs --data-dir"),
        (["--lr-range", "1:0.1"], "--lr-range='1:0.1' is invalid"),
        (["--tune", "momentum"], "malformed search range 'momentum'"),
        (["--storage", "sqlite:////nonexistent/folder/x.db"], "cannot open storage"),
        (["--storage", "nosuchdriver://host/db"], "cannot open storage"),
    ],
)
def test_bad_input_is_one_error_line_before_any_trial(capsys, tmp_path, extra, message):
    line = _error(
        capsys,
        [
            "bench",
            "--out",
            str(tmp_path / "out"),
            "--trials",
            "1",
            "--seeds",
            "1",
            "--epochs",
            "1",
            *extra,
        ],
    )
    assert line.startswith("descend bench: error: ") and message in line
    database = tmp_path / "out" / "bench.db"
    if database.exists():
        url = f"sqlite:///{database}"
        assert all(not study.n_trials for study in optuna.get_all_study_summaries(url))


def test_malformed_cifar_batch_is_one_error_line(capsys, cifar_dir, tmp_path):
    with open(cifar_dir / "data_batch_2", "wb") as handle:
        pickle.dump({b"labels": [1]}, handle)
    line = _error(
        capsys,
        [
            "bench",
            "--task",
            "cifar10-cnn",
            "--data-dir",
            str(cifar_dir),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert "malformed CIFAR-10 batch file" in line and "data_batch_2" in line


def test_split_specs_keeps_each_specs_own_commas():
    assert split_specs(["sgd,nesterov:lr=1e-3,momentum=0.9,adam:betas=(0.9,0.99)"]) == [
        "sgd",
        "nesterov:lr=1e-3,momentum=0.9",
        "adam:betas=(0.9,0.99)",
    ]
    assert split_specs(["sgd", "adam;rmsprop"]) == ["sgd", "adam", "rmsprop"]


@pytest.mark.slow
def test_bench_command_prints_the_table_and_writes_the_report(capsys, tmp_path):
    argv = [
        "bench",
        "--task",
        "digits-logreg",
        "--optimizers",
        "sgd",
        "--schedules",
        "constant,cosine",
        "--trials",
        "2",
        "--seeds",
        "1",
        "--epochs",
        "2",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    output = capsys.readouterr().out
    assert "sgd+cosine" in output and "tune val" in output
    assert (tmp_path / "report.html").stat().st_size > 10_000
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [row["optimizer"] for row in rows] == ["sgd", "sgd+cosine"]


def test_lr_find_command_writes_plot_and_suggestion(capsys, tmp_path):
    argv = [
        "lr-find",
        "--task",
        "digits-logreg",
        "--optimizer",
        "sgd",
        "--steps",
        "60",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    assert "suggested lr" in capsys.readouterr().out
    data = json.loads((tmp_path / "lr-find-digits-logreg-sgd.json").read_text())
    assert data["suggestion"] == data["suggestions"]["valley"]
    assert min(data["lrs"]) < data["suggestions"]["minimum"] < max(data["lrs"])
    assert (tmp_path / "lr-find-digits-logreg-sgd.png").exists()
    assert _error(capsys, ["lr-find", "--task", "nope"]).startswith("descend lr-find: error:")
