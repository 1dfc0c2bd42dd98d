"""Where trials live: Optuna storage opened from a URL, worker claims, heartbeats, stale trials.

Every trial is written to the storage as it starts, each epoch, and as it ends, so a crash or
``kill -9`` loses at most the trial in flight. Several workers (processes, or machines sharing
a PostgreSQL or MySQL database) can share one study: each claims a trial by recording its host
and process id, and a heartbeat thread keeps its claim fresh. A trial left RUNNING by a process
that died is failed (and so redone) as soon as a worker sees it: at once when the dead process
ran on the same host, otherwise once its heartbeat is older than the grace period.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

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


def storage_url(storage: str | None, out: Path) -> str:
    """The storage URL: ``storage`` as given (a URL, or a file path taken as SQLite), or
    ``bench.db`` in the output folder."""
    if storage is None:
        return f"sqlite:///{(out / 'bench.db').resolve()}"
    if "://" not in storage:
        return f"sqlite:///{Path(storage).expanduser().resolve()}"
    return storage


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Open (creating tables if needed) the Optuna RDB storage at ``url``.

    Raises ``ValueError`` with one line saying what went wrong, so the command fails before
    any trial starts.
    """
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise ValueError(f"cannot open storage {url!r}: folder {str(folder)!r} does not "
                             "exist")
    for attempt in range(RETRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE_PERIOD)
            storage.get_all_studies()
            return storage
        except Exception as error:  # noqa: BLE001 -- any driver error means "cannot open"
            text = str(error)
            # Workers starting together race to create the tables: the loser tries again.
            if attempt + 1 < RETRIES and any(sign in text for sign in RACES):
                time.sleep(0.5 * (attempt + 1))
                continue
            reason = text.strip().splitlines()[0] if text.strip() else ""
            raise ValueError(f"cannot open storage {url!r}: {type(error).__name__}: {reason} "
                             "(expected sqlite:///path/file.db, postgresql://user@host/db or "
                             "mysql://user@host/db, with its driver installed)") from None
    raise AssertionError("unreachable")


def claim(trial: optuna.Trial, storage: optuna.storages.RDBStorage) -> None:
    """Mark ``trial`` as this process's and record its first heartbeat."""
    trial.set_user_attr("worker", {"host": HOST, "pid": os.getpid()})
    storage.record_heartbeat(trial._trial_id)


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


def reclaim_stale(study: optuna.Study) -> int:
    """Fail the running trials whose worker is gone (so they are redone); return how many."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    now = datetime.datetime.now()
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _is_stale(trial, now):
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
                study._storage.set_trial_user_attr(trial._trial_id, "failed_because",
                                                   "its worker died")
                failed += 1
    return failed
