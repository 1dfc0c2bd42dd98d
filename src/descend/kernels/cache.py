"""Where compiled executors keep their kernels: in memory, on disk, and while they load.

- :func:`cache_dir` and :func:`cached_source`: generated kernel modules are files in a cache
  directory, named by the hash of their source and checked against it on every load, so that
  compilers (Numba's ``cache=True``, Triton's own cache) key the machine code they save on a
  stable file and a fresh process starts from the disk.
- :class:`MachineCode`: the machine code a compiler caches beside a kernel file, checked against
  a manifest before it is loaded (loading it can run code).
- :func:`file_lock`: one process at a time compiles a kernel; a waiter never waits forever.
- :class:`KernelStore`: the kernels of one executor in memory, each loaded once, and loaded in
  a background thread when a step must not wait for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

#: Environment variable naming the kernel cache directory.
CACHE_ENV = "DESCEND_CACHE_DIR"
#: Seconds a process waits for another one compiling the same kernel before it says so, and
#: before it compiles the kernel itself without the lock. A holder that is stopped (Ctrl-Z)
#: is not waited for at all.
LOCK_NOTICE_SECONDS = 30.0
LOCK_TIMEOUT_SECONDS = 600.0


def cache_dir() -> Path:
    """Where generated kernels and their compiled code live.

    ``$DESCEND_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/descend/kernels``, else
    ``~/.cache/descend/kernels``.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "descend" / "kernels"


def cached_source(directory: Path, filename: str, source: str) -> Path:
    """The path of ``filename`` in the cache holding exactly ``source``.

    A file whose content differs (corrupted, truncated, edited) is replaced, with a warning,
    along with the machine code cached for it. Written to a temporary file, then renamed, so a
    concurrent process never sees a half-written file; an intact file is never rewritten,
    because Numba's disk cache is keyed on its modification time.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as error:
        raise ValueError(
            f"the kernel cache directory {directory} cannot be used ({error}): "
            f"set ${CACHE_ENV} to a writable directory; nothing was "
            "updated"
        ) from None
    path = directory / filename
    try:
        intact = path.read_text() == source
        present = True
    except (FileNotFoundError, UnicodeDecodeError):
        intact, present = False, path.exists()
    if intact:
        return path
    if present:
        warnings.warn(
            f"the cached kernel {path} does not match its generated source; recompiling it",
            RuntimeWarning,
            stacklevel=4,
        )
        for stale in (directory / "__pycache__").glob(f"{path.stem}.*"):
            stale.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as f:
        f.write(source)
    os.replace(f.name, path)
    return path


class MachineCode:
    """The machine code a compiler caches for one kernel file, checked against a manifest.

    Numba stores compiled code as pickles beside the source (``__pycache__``), and loading a
    pickle can run code. :meth:`record` writes the SHA-256 of each file after a successful
    compile; :meth:`verify` removes, before they are loaded, files that do not match it (with a
    warning) or that no manifest vouches for.
    """

    def __init__(self, source_path: Path) -> None:
        self.source_path = source_path
        self.manifest = source_path.with_suffix(".sha256")

    def files(self) -> list[Path]:
        """The cached machine-code files of this kernel."""
        return sorted((self.source_path.parent / "__pycache__").glob(f"{self.source_path.stem}.*"))

    def digests(self) -> dict[str, str]:
        """File name -> SHA-256 of its content."""
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in self.files()}

    def verify(self) -> None:
        """Remove cached machine code that the manifest does not vouch for."""
        files = self.files()
        if not files:
            return
        try:
            expected = json.loads(self.manifest.read_text())
        except (FileNotFoundError, ValueError):
            expected = None
        if expected is not None and expected == self.digests():
            return
        if expected is not None:
            warnings.warn(
                f"the compiled code cached for {self.source_path.name} does not "
                "match its manifest; recompiling it",
                RuntimeWarning,
                stacklevel=4,
            )
        self.remove()

    def remove(self) -> None:
        """Delete the cached machine code and its manifest."""
        for path in (*self.files(), self.manifest):
            path.unlink(missing_ok=True)

    def record(self) -> None:
        """Write the manifest of the machine code now cached."""
        with tempfile.NamedTemporaryFile(
            "w", dir=self.manifest.parent, suffix=".tmp", delete=False
        ) as f:
            json.dump(self.digests(), f)
        os.replace(f.name, self.manifest)


# -- the compile lock -----------------------------------------------------------------------------


class _Flock(Protocol):
    """What the lock uses of the ``fcntl`` module (absent where the OS has no ``flock``)."""

    LOCK_EX: int
    LOCK_NB: int
    LOCK_UN: int

    def flock(self, fd: IO[str], operation: int, /) -> None: ...


@contextlib.contextmanager
def file_lock(
    path: Path, notice: float | None = None, timeout: float | None = None
) -> Iterator[None]:
    """An exclusive lock between processes on ``path`` (where the OS offers ``fcntl``).

    Never waits forever: the holder writes its process id into the file, and a waiter goes on
    without the lock at once if that process is stopped, else warns after ``notice`` seconds
    (default :data:`LOCK_NOTICE_SECONDS`) and goes on after ``timeout`` seconds
    (:data:`LOCK_TIMEOUT_SECONDS`). At worst two processes then compile the same kernel, and
    one of them recompiles what it finds half-written.
    """
    notice = LOCK_NOTICE_SECONDS if notice is None else notice
    timeout = LOCK_TIMEOUT_SECONDS if timeout is None else timeout
    try:
        import fcntl
    except ImportError:  # no advisory locks here: concurrent compiles may warn, nothing worse
        yield
        return
    with open(path, "a+") as handle:
        locked = _acquire(fcntl, handle, path, notice, timeout)
        try:
            if locked:
                handle.seek(0)
                handle.truncate()
                handle.write(str(os.getpid()))
                handle.flush()
            yield
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _acquire(fcntl: _Flock, handle: IO[str], path: Path, notice: float, timeout: float) -> bool:
    """Take the lock on ``handle``, polling; ``False`` if its holder is stopped or
    ``timeout`` passed first (each with a warning)."""
    start = time.monotonic()
    noticed = False
    delay = 0.01
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        holder = lock_holder(path)
        if holder is not None and process_stopped(holder):
            warnings.warn(
                f"process {holder} holds {path} but is stopped; compiling the kernel "
                "without waiting for it",
                RuntimeWarning,
                stacklevel=5,
            )
            return False
        waited = time.monotonic() - start
        if waited >= timeout:
            warnings.warn(
                f"gave up waiting after {waited:.0f} s for process {holder} holding "
                f"{path}; compiling the kernel without it",
                RuntimeWarning,
                stacklevel=5,
            )
            return False
        if not noticed and waited >= notice:
            warnings.warn(
                f"waiting for process {holder} compiling the same kernel (lock "
                f"{path}); will go on without it after {timeout:.0f} s",
                RuntimeWarning,
                stacklevel=5,
            )
            noticed = True
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def lock_holder(path: Path) -> int | None:
    """The process id a lock's holder wrote into it, if any."""
    try:
        return int(path.read_text().strip() or "x")
    except (OSError, ValueError):
        return None


def process_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (Ctrl-Z, SIGSTOP) or traced, where /proc tells."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :][:1] in ("T", "t")


# -- kernels in memory ----------------------------------------------------------------------------

Key = TypeVar("Key", bound=Hashable)
#: Every store, so that a fork waits for all their background loads.
_stores: list[KernelStore[Any]] = []


class KernelStore(Generic[Key]):
    """The compiled kernels of one executor in memory, by key, each loaded once.

    ``load(key)`` makes a kernel (from the disk cache or the compiler). :meth:`get` waits for
    it; :meth:`if_ready` never waits, starting a background thread instead. ``kernels``,
    ``loading`` (background threads by key) and ``failures`` (what a background load raised,
    raised again by the next :meth:`if_ready` of its key) are open to tests.
    """

    def __init__(self, load: Callable[[Key], Any], thread_name: str) -> None:
        self.load = load
        self.thread_name = thread_name
        self.kernels: dict[Key, Any] = {}
        self.lock = threading.Lock()
        self.loading: dict[Key, threading.Thread] = {}
        self.failures: dict[Key, BaseException] = {}
        self.loading_lock = threading.Lock()
        _stores.append(self)

    def get(self, key: Key) -> Any:
        """The kernel for ``key``, from memory or loaded now (one thread at a time)."""
        kernel = self.kernels.get(key)
        if kernel is not None:
            return kernel
        with self.lock:
            kernel = self.kernels.get(key)
            if kernel is None:
                kernel = self.load(key)
                self.kernels[key] = kernel
        return kernel

    def if_ready(self, key: Key) -> Any | None:
        """The kernel if it is in memory; else ``None``, with a background thread loading it.
        Raises what a background attempt raised."""
        kernel = self.kernels.get(key)
        if kernel is not None:
            return kernel
        with self.loading_lock:
            failure = self.failures.pop(key, None)
            if failure is not None:
                raise failure
            if key not in self.loading:
                thread = threading.Thread(
                    target=self._load_in_background, args=(key,), name=self.thread_name
                )
                self.loading[key] = thread
                thread.start()
        return self.kernels.get(key)

    def _load_in_background(self, key: Key) -> None:
        """Load a kernel for :meth:`if_ready` (a non-daemon thread: a process that ends
        meanwhile waits for it rather than cutting a compile short)."""
        try:
            self.get(key)
        except BaseException as error:  # noqa: BLE001 - handed to the step that asks next
            with self.loading_lock:
                self.failures[key] = error
        finally:
            with self.loading_lock:
                self.loading.pop(key, None)

    def finish_loading(self) -> None:
        """Wait (at most :data:`LOCK_TIMEOUT_SECONDS` each) for the background loads."""
        for thread in list(self.loading.values()):
            if thread is not threading.current_thread():
                thread.join(LOCK_TIMEOUT_SECONDS)


def finish_background_loads() -> None:
    """Wait for everything loading in the background (kernels of every executor, the
    compiled address reader): before this process forks, so that no child starts with a lock
    (ours or a compiler's) held by a thread it does not have, and before a benchmark times
    steady-state steps (until a load arrives, steps take a slower path)."""
    for store in _stores:
        store.finish_loading()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=finish_background_loads)
