"""A password in a storage URL never reaches the terminal, an error message or a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from descend.cli.main import main

PASSWORD = "S3cretPW"


def _everything_written(folder: Path) -> str:
    """Every file under ``folder`` (the database too), as text."""
    return "".join(
        path.read_bytes().decode("latin-1") for path in sorted(folder.rglob("*")) if path.is_file()
    )


# SQLAlchemy warns that SQLite ignores the query parameter (naming it, not its value).
@pytest.mark.filterwarnings("ignore:Query string argument")
@pytest.mark.slow
def test_a_password_reaches_no_output_and_no_file(capsys, tmp_path):
    # SQLite ignores a password query parameter, so the whole path runs offline: bench, then
    # report, each writing results.json and report.html.
    url = f"sqlite:///{tmp_path / 'bench.db'}?password={PASSWORD}"
    bench = [
        "bench",
        "--task",
        "digits-logreg",
        "--optimizers",
        "sgd:lr=0.5,torch.optim.SGD:lr=0.5,foreach=[red]",
        "--trials",
        "0",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--storage",
        url,
        "--out",
        str(tmp_path / "bench"),
    ]
    assert main(bench) == 0
    printed = capsys.readouterr()
    assert "password=***" in printed.out
    assert "foreach=[red]" in printed.out  # rich markup in a label, printed as typed
    assert main(["report", "--storage", url, "--out", str(tmp_path / "report")]) == 0
    reported = capsys.readouterr()
    # A failing server: the driver's error and ours, with the password in the user info.
    failing = f"postgresql+psycopg://alice:{PASSWORD}@127.0.0.1:1/db"
    assert (
        main(
            [
                "bench",
                "--task",
                "digits-logreg",
                "--trials",
                "0",
                "--storage",
                failing,
                "--out",
                str(tmp_path / "failing"),
            ]
        )
        == 2
    )
    failed = capsys.readouterr()
    assert "postgresql+psycopg://alice:***@127.0.0.1:1/db" in failed.err
    assert main(["report", "--storage", failing, "--out", str(tmp_path / "failing")]) == 2
    failed_report = capsys.readouterr()
    streams = [
        printed.out,
        printed.err,
        reported.out,
        reported.err,
        failed.out,
        failed.err,
        failed_report.out,
        failed_report.err,
    ]
    written = _everything_written(tmp_path)
    assert "results" in written and "<html" in written
    for text in [*streams, written]:
        assert PASSWORD not in text


@pytest.mark.filterwarnings("ignore:Query string argument")
@pytest.mark.parametrize("key", ["PASSWORD", "sslpassword"])
@pytest.mark.slow
def test_a_secret_query_parameter_is_masked_whatever_its_case(capsys, tmp_path, key):
    url = f"sqlite:///{tmp_path / 'bench.db'}?{key}={PASSWORD}"
    bench = [
        "bench",
        "--task",
        "digits-logreg",
        "--optimizers",
        "sgd:lr=0.5",
        "--trials",
        "0",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--storage",
        url,
        "--out",
        str(tmp_path / "bench"),
    ]
    assert main(bench) == 0
    printed = capsys.readouterr()
    assert f"{key}=***" in printed.out
    assert main(["report", "--storage", url, "--out", str(tmp_path / "report")]) == 0
    reported = capsys.readouterr()
    written = _everything_written(tmp_path)
    assert "results" in written and "<html" in written
    for text in [printed.out, printed.err, reported.out, reported.err, written]:
        assert PASSWORD not in text


@pytest.mark.parametrize(
    ("userinfo", "secrets"),
    [
        # An unencoded '@': SQLAlchemy cuts the password at the first one and reads the rest as
        # a host and a port ("invalid literal for int() with base 10: 'S3cretPW@127.0.0.1'").
        (f"alice:pa@ss:{PASSWORD}", [PASSWORD, f"pa@ss:{PASSWORD}"]),
        (f"alice:p@{PASSWORD}", [PASSWORD]),
        # A '/' in the user name: SQLAlchemy sees no user info, and the password in the path.
        (f"al/ice:{PASSWORD}", [PASSWORD]),
        # ':' and '/' are read as part of the password, and the connection fails.
        (f"alice:{PASSWORD[:4]}:x/{PASSWORD[4:]}", [f"{PASSWORD[:4]}:x/{PASSWORD[4:]}"]),
    ],
)
def test_a_password_in_a_malformed_url_reaches_no_output(capsys, tmp_path, userinfo, secrets):
    url = f"postgresql+psycopg://{userinfo}@127.0.0.1:1/db"
    for command in (["bench", "--task", "digits-logreg", "--trials", "0"], ["report"]):
        assert main([*command, "--storage", url, "--out", str(tmp_path / "out")]) == 2
        printed = capsys.readouterr()
        assert printed.err.count("\n") == 1 and "cannot open storage" in printed.err
        for text in [printed.out, printed.err, _everything_written(tmp_path)]:
            for secret in secrets:
                assert secret not in text
