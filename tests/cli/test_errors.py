"""Every mistake a user can make on the command line is one line on stderr and exit status 2,
never a traceback, and is caught before long work starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from descend.cli.arguments import output_folder
from descend.cli.main import main


def _one_line(capsys, argv: list[str]) -> str:
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert lines[0].startswith(f"descend {argv[0]}: error: ")
    return lines[0]


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A plain file where a folder is expected."""
    path = tmp_path / "file.txt"
    path.write_text("x")
    return path


FAST = ["--epochs", "1", "--trials", "1", "--seeds", "1"]


@pytest.mark.parametrize(
    "command",
    [
        ["race", "ravine", "sgd:lr=0.1", "--steps", "5"],
        ["demo", "--quick"],
        ["bench", "--task", "digits-logreg", *FAST],
        ["lr-find", "--task", "digits-logreg", "--steps", "10"],
        ["report", "--storage", "sqlite:///nowhere.db"],
    ],
)
def test_out_naming_a_file_is_refused_first(capsys, a_file, command):
    line = _one_line(capsys, [*command, "--out", str(a_file)])
    assert f"--out='{a_file}' is invalid" in line and "not a folder" in line


@pytest.mark.parametrize(
    "command",
    [
        ["race", "ravine", "sgd:lr=0.1", "--steps", "5"],
        ["demo", "--quick"],
        ["bench", "--task", "digits-logreg", *FAST],
        ["lr-find", "--task", "digits-logreg", "--steps", "10"],
    ],
)
def test_out_that_cannot_be_written_is_refused_first(capsys, tmp_path, command):
    if os.geteuid() == 0:
        # root writes through permission bits; Linux's /proc refuses new folders to everyone.
        if not Path("/proc/self").is_dir():
            pytest.skip("running as root without /proc: no folder here refuses writes")
        folder = Path("/proc/descend-test-out")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        folder = locked / "out"
    line = _one_line(capsys, [*command, "--out", str(folder)])
    assert f"--out='{folder}' is invalid: cannot write there" in line


@pytest.mark.parametrize(
    "argv",
    [
        ["race", "ravine", "sgd:lr=0.1", "--steps", "5", "--out", ""],
        ["demo", "--quick", "--out", ""],
        ["bench", "--task", "digits-logreg", *FAST, "--out", " "],
        ["lr-find", "--task", "digits-logreg", "--steps", "10", "--out", ""],
        ["report", "--storage", "sqlite:///nowhere.db", "--out", ""],
        ["bench", "--task", "digits-logreg", *FAST, "--storage", ""],
        ["report", "--storage", ""],
        ["bench", "--task", "", *FAST],
        ["bench", "--task", "digits-logreg", *FAST, "--data-dir", ""],
        ["lr-find", "--optimizer", ""],
        ["race", "ravine", "sgd:lr=0.1", "--steps", "5", "--schedule", ""],
        ["race", "ravine", "sgd:lr=0.1", "--steps", "5", "--average", ""],
    ],
)
def test_an_empty_path_or_value_is_refused_and_nothing_is_written(
    capsys, tmp_path, monkeypatch, argv
):
    # An empty --out was the current folder (demo wrote its report there) or no output at all
    # (race ran and saved nothing); an empty --storage was the current folder as SQLite.
    monkeypatch.chdir(tmp_path)
    flag = argv[argv.index("") - 1] if "" in argv else "--out"
    line = _one_line(capsys, argv)
    assert f"argument {flag}: expected a non-empty value" in line
    assert list(tmp_path.iterdir()) == []


def test_an_empty_out_folder_is_refused_from_python_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in ("", "  "):
        with pytest.raises(ValueError, match="expected a folder path"):
            output_folder(path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--schedules", ","], "--schedules=',' is invalid: expected one or more"),
        (["bench", "--threads", str(10**11)], "--threads=100000000000 is invalid"),
        (["race", "logistic:n=100000000000", "sgd"], "n=100000000000 with dim=2 is too large"),
        (["race", "least_squares:n=10000,dim=4000", "sgd"], "n x dim = 40000000 values"),
        (["race", "ravine", "torch.optim.LBFGS:lr=1"], "needs a closure"),
        (["race", "ravine", "torch.optim.SparseAdam"], "needs sparse gradients"),
        (["bench", "--optimizers", "torch.optim.LBFGS"], "needs a closure"),
        (["bench", "--optimizers", "adam,torch.optim.SparseAdam"], "needs sparse gradients"),
        (["race", "ravine:dim=100000000", "sgd"], "dim=100000000 in spec"),
        (["race", "ravin", "sgd"], "did you mean 'ravine'?"),
        (["race", "ravine", "adamm:lr=0.1"], "did you mean 'adam'?"),
        (["race", "ravine", "sgd", "--schedule", "cosin:total_steps=5"], "did you mean 'cosine'?"),
        (["bench", "--task", "digits_mlp"], "did you mean 'digits-mlp'?"),
        (["bench", "--schedules", "exponentail"], "did you mean 'exponential'?"),
        (["bench", "--target", "5"], "--target: target=5.0 is invalid"),
        (["bench", "--target", "nan"], "argument --target: expected a finite number"),
        (["bench", "--seeds", "0"], "argument --seeds: expected an integer >= 1"),
        (["bench", "--trials", "-1"], "argument --trials: expected an integer >= 0"),
        (["race", "ravine", "sgd", "--seed", "-1"], "argument --seed: expected an integer >= 0"),
        (["demo", "--seed", "-1"], "argument --seed: expected an integer >= 0"),
        (["lr-find", "--seed", "-1"], "argument --seed: expected an integer >= 0"),
        (["lr-find", "--start-lr", "1", "--end-lr", "0.1"], "expected --start-lr < --end-lr"),
        (["lr-find", "--end-lr", "inf"], "argument --end-lr: expected a finite number"),
        (["lr-find", "--optimizer", "torch.optim.LBFGS"], "needs a closure"),
        (["report", "--storage", "sqlite:///missing.db"], "does not exist"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, argv, message):
    line = _one_line(capsys, [*argv, *([] if argv[0] == "race" else ["--out", str(tmp_path)])])
    assert message in line


def test_report_on_a_missing_sqlite_file_creates_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = _one_line(capsys, ["report", "--storage", "sqlite:///missing.db", "--out", "out"])
    assert "missing.db" in line
    assert not (tmp_path / "missing.db").exists()


def test_a_corrupted_sqlite_storage_is_one_line(capsys, tmp_path):
    database = tmp_path / "bench.db"
    database.write_bytes(b"SQLite format 3\x00" + b"\x13" * 8192)
    for argv in (
        ["bench", "--task", "digits-logreg", *FAST, "--out", str(tmp_path)],
        ["report", "--storage", f"sqlite:///{database}", "--out", str(tmp_path)],
    ):
        assert "not a sound SQLite database" in _one_line(capsys, argv)


def test_labels_with_rich_markup_are_printed_literally(capsys):
    specs = ["torch.optim.SGD:lr=0.1,foreach=[/bold]", "torch.optim.SGD:lr=0.05,foreach=[red]"]
    assert main(["race", "ravine", *specs, "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "foreach=[/bold]" in out and "foreach=[red]" in out
