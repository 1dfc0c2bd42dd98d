"""Local jobs: more worker processes on this machine that share a scoreboard's runs.

The bench's storage already lets workers share one budget (each run is claimed once, a worker
that finds every run claimed waits for the others, and a dead worker's run is marked failed
and run again). :class:`LocalJobs` starts ``count`` such workers as child processes of the
command, each with the same :class:`~descend.bench.scoreboard_settings.ScoreboardConfig`
(passed to the child, never on a command line, so a password in a storage URL does not show
in the process list) and ``threads`` torch threads. The command's own process is a worker
too, so ``--jobs 2`` on two cores runs two runs at a time.

A child writes nothing to the terminal: its output (and any traceback) goes to
``job-K.log`` in the output folder, which the command names if the child fails. Leaving the
``with`` block waits for every child; on an error or Ctrl-C in the command the children are
stopped, and what they finished is kept in the storage.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

#: Seconds a child gets to end by itself after the command is interrupted, before it is killed.
STOP_GRACE = 10.0


def _scoreboard_job(config: Any, threads: int, log: str) -> None:
    """A child's work: its output to ``log``, then every scoreboard run it can claim."""
    with open(log, "a", buffering=1) as stream:
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        sys.stdout = sys.stderr = stream
        import torch

        from descend.bench.scoreboard import Scoreboard

        torch.set_num_threads(threads)
        Scoreboard(config).run()


class LocalJobs:
    """``count`` child workers running the scoreboard ``config`` beside the command (see the
    module docstring); ``failures()`` names each that did not end cleanly, with its log."""

    def __init__(self, config: Any, count: int, threads: int) -> None:
        if not (isinstance(count, int) and count >= 0):
            raise ValueError(f"count={count!r} is invalid: expected a whole number >= 0")
        self.config = config
        self.count = count
        self.threads = threads
        self.logs = [Path(config.out) / f"job-{index}.log" for index in range(2, count + 2)]
        self.processes: list[multiprocessing.process.BaseProcess] = []

    def __enter__(self) -> LocalJobs:
        # A fresh interpreter per child (no fork of a process with threads and open storage).
        context = multiprocessing.get_context("spawn")
        for log in self.logs:
            log.parent.mkdir(parents=True, exist_ok=True)
            process = context.Process(
                target=_scoreboard_job, args=(self.config, self.threads, str(log)), daemon=True
            )
            process.start()
            self.processes.append(process)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is not None:
            for process in self.processes:
                if process.is_alive():
                    process.terminate()
            for process in self.processes:
                process.join(STOP_GRACE)
                if process.is_alive():
                    process.kill()
        for process in self.processes:
            process.join()

    def failures(self) -> list[str]:
        """One line per child that ended with an error: its exit code and its log."""
        return [
            f"job {index} ended with exit code {process.exitcode}; see {log}"
            for index, (process, log) in enumerate(zip(self.processes, self.logs, strict=True), 2)
            if process.exitcode not in (0, None)
        ]


__all__ = ["LocalJobs", "STOP_GRACE"]
