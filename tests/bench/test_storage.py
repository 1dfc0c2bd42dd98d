"""Storage URLs: passwords masked, corrupted SQLite files and missing ones refused in one line."""

from __future__ import annotations

import pytest

from descend.bench.protocol import Bench, BenchConfig, make_contender
from descend.bench.storage import display_url, open_storage, redact
from descend.bench.tasks import get_task


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql+psycopg://alice:S3cretPW@host/db", "postgresql+psycopg://alice:***@host/db"),
        (
            "postgresql://alice:p%40ss@host:5432/db?sslmode=require",
            "postgresql://alice:***@host:5432/db?sslmode=require",
        ),
        ("mysql://bob:p@s/s@host/db", "mysql://bob:***@host/db"),
        (
            "postgresql://carol@host/db?password=zz&sslmode=require",
            "postgresql://carol@host/db?password=***&sslmode=require",
        ),
        ("postgresql://dave@host/db", "postgresql://dave@host/db"),
        ("sqlite:////tmp/bench.db", "sqlite:////tmp/bench.db"),
    ],
)
def test_display_url_masks_the_password_and_nothing_else(url, shown):
    assert display_url(url) == shown


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "Password",
        "passwd",
        "PWD",
        "sslpassword",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "api_key",
        "auth",
    ],
)
def test_secret_query_parameters_are_masked_whatever_their_case(key):
    url = f"postgresql://carol@host/db?sslmode=require&{key}=zz9&application_name=a"
    shown = display_url(url)
    assert shown == f"postgresql://carol@host/db?sslmode=require&{key}=***&application_name=a"
    assert redact(f"option {key}=zz9 refused", url) == f"option {key}=*** refused"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # SQLAlchemy reads the password up to the first '@', the host and port after it: an
        # error may quote "S3cr3t@host" as a port.
        ("postgresql://alice:pa@ss:S3cr3t@host/db", "postgresql://alice:***@host/db"),
        # An '@' in the query string does not end the user info.
        (
            "postgresql://alice:S3cr3t@host/db?application_name=a@b",
            "postgresql://alice:***@host/db?application_name=a@b",
        ),
    ],
)
def test_a_password_holding_separators_is_masked_whole_and_in_pieces(url, shown):
    assert display_url(url) == shown
    text = "invalid literal for int() with base 10: 'S3cr3t@host'; password 'pa'"
    assert "S3cr3t" not in redact(text, url)


def test_a_url_sqlalchemy_would_split_differently_is_refused_before_any_driver(tmp_path):
    with pytest.raises(ValueError) as error:
        open_storage("postgresql://alice:pa@ss:S3cr3t@127.0.0.1:1/db")
    assert "S3cr3t" not in str(error.value) and "%40" in str(error.value)
    with pytest.raises(ValueError, match="unencoded") as error:
        open_storage("postgresql://al/ice:S3cr3t@127.0.0.1:1/db")
    assert "S3cr3t" not in str(error.value)


def test_redact_masks_the_password_in_any_text():
    url = "postgresql://alice:p%40ss@host/db"
    text = f"could not connect to {url}: password p@ss (p%40ss) refused"
    assert redact(text, url) == (
        "could not connect to postgresql://alice:***@host/db: password *** (***) refused"
    )


@pytest.mark.slow
def test_a_corrupted_sqlite_file_is_refused_before_anything_runs(tmp_path):
    task = get_task("digits-logreg")
    config = BenchConfig(trials=1, seeds=1, epochs=1, out=tmp_path)
    Bench([task], [make_contender("adam")], config).run()
    database = tmp_path / "bench.db"
    data = bytearray(database.read_bytes())
    page = 4096
    data[2 * page : 2 * page + 512] = b"\xff" * 512  # a b-tree page header in pieces
    database.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a sound SQLite database"):
        Bench([task], [make_contender("adam")], config)
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match="not a sound SQLite database"):
        open_storage(f"sqlite:///{tmp_path / 'garbage.db'}")


def test_opening_without_create_leaves_a_missing_file_missing(tmp_path):
    missing = tmp_path / "missing.db"
    with pytest.raises(ValueError, match="missing.db' does not exist"):
        open_storage(f"sqlite:///{missing}", create=False)
    assert not missing.exists()
    with pytest.raises(ValueError, match="does not exist"):
        Bench.from_storage(f"sqlite:///{missing}", "bench", tmp_path)
    assert not missing.exists()
