"""Threads that share a large compiled CPU step with the calling thread, and sleep when idle.

The fused kernels release the GIL, so plain Python threads run them in parallel. Work is taken
in chunks from a shared counter: the calling thread starts at once and keeps taking chunks, so a
helper thread that the OS wakes late (a busy neighbour process holds the other core) finds
little or nothing left, and the caller never waits on a helper that has not started. Idle
helpers block on a queue: they use no CPU between steps and never touch OpenMP, so torch's own
thread settings and kernels are left alone.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

#: Chunks per thread in one call: enough that the threads finish together, few enough that
#: taking a chunk costs nothing next to running it.
CHUNKS_PER_THREAD = 4

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def _helpers(count: int) -> ThreadPoolExecutor:
    """A pool of at least ``count`` helper threads (grown, never shrunk)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < count:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="descend-kernel")
            _pool_size = count
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def share(run: Callable[[int, int], None], items: int, threads: int) -> None:
    """Call ``run(first, last)`` over ``range(items)`` in chunks, on up to ``threads`` threads.

    Returns when every item is done; an exception in any thread is raised here.
    """
    if threads <= 1 or items <= 1:
        run(0, items)
        return
    chunk = max(1, items // (threads * CHUNKS_PER_THREAD))
    chunks = (items + chunk - 1) // chunk
    counter = itertools.count()  # next() on it is atomic under the GIL

    def work() -> None:
        while (index := next(counter)) < chunks:
            start = index * chunk
            run(start, min(start + chunk, items))

    pool = _helpers(threads - 1)
    futures: list[Future[None]] = [pool.submit(work) for _ in range(min(threads, chunks) - 1)]
    try:
        work()
    finally:
        for future in futures:
            # A helper that has not started yet will find nothing left: don't wait for it.
            if not future.cancel():
                future.result()
