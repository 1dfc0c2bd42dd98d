"""Where trials live: Optuna storage opened from a URL, worker claims, heartbeats, stale trials.

Every trial is written to the storage as it starts, each epoch, and as it ends, so a crash or
``kill -9`` loses at most the trial in flight. Several workers (processes, or machines sharing
a PostgreSQL or MySQL database) can share one study: each claims a trial by recording its host
and process id, and a heartbeat thread keeps its claim fresh. A trial left RUNNING by a process
that died is failed (and so redone) as soon as a worker sees it: at once when the dead process
ran on the same host, otherwise once its heartbeat is older than the grace period.

Storage URLs may hold a password (``postgresql://user:password@host/db``): anything shown or
written uses :func:`display_url`, and error messages pass through :func:`redact`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import optuna
from optuna.trial import FrozenTrial, TrialState

#: Seconds between heartbeats of a running trial, and how old one may get before it is stale.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 60
#: Trial states that count toward a budget (pruned and diverged trials are finished results).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

HOST = socket.gethostname()
#: Attempts at opening a storage, and the errors that mean another worker is creating it.
RETRIES = 5
RACES = ("already exists", "locked", "UNIQUE constraint", "duplicate key")


#: Shown in place of a password.
MASK = "***"


#: Query-string keys whose values are secrets, matched case-insensitively anywhere in the key
#: (``password``, ``PASSWORD``, ``sslpassword``, ``passwd``, ``pwd``, ``secret``, ``token``,
#: ``api_key``, ...): drivers take several spellings, and SQLAlchemy passes them on as typed.
SECRET_KEYS = re.compile(r"pass|pwd|secret|token|key|auth|credential", re.IGNORECASE)
#: A query parameter: its key and its value.
_QUERY_ITEM = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """``(scheme, userinfo, rest)`` of ``scheme://userinfo@rest``, or ``None`` without one.

    The last ``@`` ends the user info, so a password holding ``@`` or ``/`` typed without
    percent-encoding is still found whole; an ``@`` in the query string (after the first
    ``?``) does not count when one comes before it.
    """
    scheme, separator, remainder = url.partition("://")
    before_query = remainder.partition("?")[0]
    searched = before_query if "@" in before_query else remainder
    userinfo, at, _ = searched.rpartition("@")
    return (scheme, userinfo, remainder[len(userinfo) + 1 :]) if separator and at else None


def _query_secrets(url: str) -> list[str]:
    """The values of the query parameters whose keys name secrets."""
    return [
        value
        for _, key, value in _QUERY_ITEM.findall(url)
        if SECRET_KEYS.search(unquote(key)) and value
    ]


def _passwords(url: str) -> list[str]:
    """Every password ``url`` may hold, as typed: the user info's (up to the last ``@``), the
    one SQLAlchemy reads (up to the first ``@``, which differs when the password holds an
    unencoded ``@``), and the values of secret query parameters."""
    found = []
    parts = _userinfo(url)
    if parts is not None and ":" in parts[1]:
        found.append(parts[1].split(":", 1)[1])
    match = re.match(r"[\w+]+://[^:/]*:([^@]*)@", url)
    if match:
        found.append(match.group(1))
    return [text for text in found + _query_secrets(url) if text]


def _password(url: str) -> str | None:
    """The password in ``url``'s user info or in a secret query parameter, if any."""
    passwords = _passwords(url)
    return passwords[0] if passwords else None


def display_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: safe to print, log and write to files.

    ``postgresql+psycopg://alice:S3cret@host/db`` -> ``postgresql+psycopg://alice:***@host/db``;
    the values of query parameters that name secrets (``?PASSWORD=``, ``?token=``) too.
    """
    parts = _userinfo(url)
    if parts is not None and ":" in parts[1]:
        scheme, userinfo, rest = parts
        url = f"{scheme}://{userinfo.split(':', 1)[0]}:{MASK}@{rest}"

    def mask(match: re.Match) -> str:
        separator, key, value = match.groups()
        secret = SECRET_KEYS.search(unquote(key)) and value
        return f"{separator}{key}={MASK if secret else value}"

    return _QUERY_ITEM.sub(mask, url)


def redact(text: str, url: str) -> str:
    """``text`` (such as a driver's error message) with ``url``'s passwords masked, in the
    forms they may take: as typed, percent-decoded, and inside the URL itself.

    A password holding ``@``, ``:`` or ``/`` unencoded may be split by a parser into a
    password, a host, a port or a database name, and an error message may quote any of those
    pieces: each piece of three characters or more is masked too (shorter ones would mask
    pieces of ordinary words, and tell next to nothing).
    """
    text = text.replace(url, display_url(url))
    forms: set[str] = set()
    for password in _passwords(url):
        for form in (password, unquote(password)):
            forms.add(form)
            forms.update(piece for piece in re.split(r"[@:/?#&;=]", form) if len(piece) >= 3)
    # Longest first, so that a piece inside a longer form does not break the longer one up.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


def check_url(url: str) -> None:
    """Raise ``ValueError`` (the password masked) unless SQLAlchemy reads ``url`` as written.

    A password that holds an unencoded ``@`` is cut at it by SQLAlchemy, which would then send
    the rest to the server as a host name and port, and quote it in its error messages: such a
    URL is refused before any driver sees it, as is one SQLAlchemy cannot parse at all.
    """
    from sqlalchemy.engine import make_url  # (loaded with the storage)

    shown = display_url(url)
    expected = (
        "percent-encode '@' as %40, ':' as %3A and '/' as %2F in the user name and "
        "password (expected sqlite:///path/file.db, postgresql://user:password@host/db "
        "or mysql://user:password@host/db)"
    )
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 -- its message may quote a piece of the password
        raise ValueError(
            f"cannot open storage {shown!r}: not a URL SQLAlchemy can read (is "
            f"the port a number?); {expected}"
        ) from None
    if url.startswith("sqlite"):
        return  # a file path: no user info, and an '@' or ':' in a folder name is fine
    parts = _userinfo(url)
    password = parts[1].split(":", 1)[1] if parts is not None and ":" in parts[1] else None
    if password is not None and parsed.password != unquote(password):
        raise ValueError(
            f"cannot open storage {shown!r}: the user name or password holds an "
            f"unencoded '@' or '/'; {expected}"
        )


def storage_url(storage: str | None, out: Path) -> str:
    """The storage URL: ``storage`` as given (a URL, or a file path taken as SQLite), or
    ``bench.db`` in the output folder."""
    if storage is None:
        return f"sqlite:///{(out / 'bench.db').resolve()}"
    if "://" not in storage:
        return f"sqlite:///{Path(storage).expanduser().resolve()}"
    return storage


def check_sqlite_file(path: Path, url: str) -> None:
    """Raise ``ValueError`` unless the SQLite file at ``path`` is a sound database.

    Runs SQLite's own ``quick_check``, so a corrupted file fails here, in one line, and not in
    the middle of a benchmark.
    """
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        try:
            verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.Error as error:
        verdict = str(error)
    if verdict != "ok":
        raise ValueError(
            f"cannot open storage {display_url(url)!r}: the file is not a sound "
            f"SQLite database ({verdict.splitlines()[0]}); restore it from a copy "
            "or start another --out or --storage"
        )


def open_storage(url: str, create: bool = True) -> optuna.storages.RDBStorage:
    """Open the Optuna RDB storage at ``url`` (creating its tables if needed).

    With ``create=False`` a SQLite file must already exist (nothing is created). Raises
    ``ValueError`` with one line saying what went wrong (the password masked), so the command
    fails before any trial starts.
    """
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    check_url(url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.parent.is_dir():
            raise ValueError(
                f"cannot open storage {display_url(url)!r}: folder "
                f"{str(path.parent)!r} does not exist"
            )
        if not create and not path.is_file():
            raise ValueError(
                f"cannot open storage {display_url(url)!r}: file {str(path)!r} does not exist"
            )
        if path.is_file() and path.stat().st_size:
            check_sqlite_file(path, url)
    for attempt in range(RETRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE_PERIOD,
                )
            storage.get_all_studies()
            return storage
        except Exception as error:  # noqa: BLE001 -- any driver error means "cannot open"
            text = str(error)
            # Workers starting together race to create the tables: the loser tries again.
            if attempt + 1 < RETRIES and any(sign in text for sign in RACES):
                time.sleep(0.5 * (attempt + 1))
                continue
            reason = redact(text.strip().splitlines()[0], url) if text.strip() else ""
            raise ValueError(
                f"cannot open storage {display_url(url)!r}: "
                f"{type(error).__name__}: {reason} (expected "
                "sqlite:///path/file.db, postgresql://user@host/db or "
                "mysql://user@host/db, with its driver installed)"
            ) from None
    raise AssertionError("unreachable")


def trial_id(storage: optuna.storages.RDBStorage, study: optuna.Study, number: int) -> int:
    """The storage's id of trial ``number`` of ``study`` (what heartbeats are recorded by)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def claim(trial: optuna.Trial, study: optuna.Study, storage: optuna.storages.RDBStorage) -> int:
    """Mark ``trial`` as this process's, record its first heartbeat, and return its id."""
    trial.set_user_attr("worker", {"host": HOST, "pid": os.getpid()})
    identifier = trial_id(storage, study, trial.number)
    storage.record_heartbeat(identifier)
    return identifier


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.RDBStorage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat every few seconds while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_INTERVAL):
            with contextlib.suppress(Exception):  # a missed beat only risks a redo
                storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


#: What a worker says when it finds its run was taken over (see :func:`owned`).
TAKEN_OVER = "another worker took this run over while this one was stalled; it is redone there"


@dataclass
class Ownership:
    """Whether a run still belongs to this worker; :func:`owned` sets ``lost``."""

    lost: bool = False


@contextlib.contextmanager
def owned(
    storage: optuna.storages.RDBStorage, study: optuna.Study, trial_id: int
) -> Iterator[Ownership]:
    """Run the body as the claimed trial's owner: its heartbeat is kept, and

    - a body that raises (Ctrl-C, an error in the user's model) tells the trial failed, so it
      is redone next time, and the error goes on;
    - a body that finds the trial already finished (this worker stalled past the grace
      period, say a suspended laptop, and another worker failed the trial to redo it) stops
      there: its result is dropped, since the other worker's run is the one counted, and
      ``lost`` is set instead of a crash.
    """
    ownership = Ownership()
    try:
        with heartbeat(storage, trial_id):
            yield ownership
    except optuna.exceptions.UpdateFinishedTrialError:
        ownership.lost = True
    except BaseException:
        number = storage.get_trial(trial_id).number
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        raise


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(trial: FrozenTrial, now: datetime.datetime) -> bool:
    worker = trial.user_attrs.get("worker")
    if worker is None:
        # Killed between creating the trial and claiming it: only its age tells.
        started = trial.datetime_start
        return started is not None and (now - started).total_seconds() > GRACE_PERIOD
    if worker.get("host") == HOST and worker.get("pid") != os.getpid():
        return not _process_alive(int(worker["pid"]))
    return False


def reclaim_stale(study: optuna.Study, storage: optuna.storages.RDBStorage) -> int:
    """Fail the running trials whose worker is gone (so they are redone); return how many."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    now = datetime.datetime.now()
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _is_stale(trial, now):
            # Another worker may fail the same trial at the same moment: either wins.
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_user_attr(
                    trial_id(storage, study, trial.number), "failed_because", "its worker died"
                )
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
                failed += 1
    return failed
