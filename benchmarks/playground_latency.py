"""How fast the playground answers a slider: one 1000-step run on every 2-D problem.

For each problem and a few rules, the run is requested from a real playground server on a
loopback port, each time with a new learning rate (as a drag sends them, so nothing comes from
the cache), and the table gives medians over the repeats of:

- compute: the server's time to compute the run (``compute_ms`` in the answer);
- server: its time for the whole request, answer included (``Server-Timing``);
- round trip: from sending the request to holding the parsed answer, in this process;
- bytes: the size of the JSON answer.

A redraw in the page adds its drawing (a few milliseconds) to the round trip; the browser test
``tests/lab/test_playground_browser.py`` measures that end to end. Run with
``PYTHONPATH=src python benchmarks/playground_latency.py [--repeats N] [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import urllib.parse
import urllib.request

import numpy as np

from descend.lab.playground.controls import PROBLEMS
from descend.lab.playground.server import running

RULES = ("sgd", "sgd_momentum", "adam")


def numpy_call_us(repeats: int = 100_000) -> float:
    """Microseconds for one ``np.add`` of two 2-vectors: how fast this machine is right now
    for the small operations a 2-D run is made of."""
    a = b = np.ones(2)
    started = time.perf_counter()
    for _ in range(repeats):
        np.add(a, b)
    return 1e6 * (time.perf_counter() - started) / repeats


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=1000)
    arguments = parser.parse_args()
    print(
        f"# playground latency: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{arguments.steps} steps per run, median of {arguments.repeats} requests"
    )
    print(f"# one np.add of two 2-vectors: {numpy_call_us():.2f} us (machine speed right now)")
    header = (
        f"{'problem':<15}{'rule':<14}{'compute ms':>11}{'server ms':>11}"
        f"{'round trip ms':>15}{'bytes':>9}"
    )
    print(header)
    print("-" * len(header))
    with running() as url:
        for problem in PROBLEMS:
            urllib.request.urlopen(url + "api/problem?problem=" + problem).read()
            for rule in RULES:
                computes, servers, trips, sizes = [], [], [], []
                for repeat in range(arguments.repeats):
                    lr = 0.001 * (1 + 0.01 * repeat)  # a new value each time, as a drag sends
                    query = urllib.parse.urlencode(
                        {
                            "problem": problem,
                            "rule": f"{rule}:lr={lr:.6g}",
                            "steps": arguments.steps,
                        }
                    )
                    sent = time.perf_counter()
                    with urllib.request.urlopen(url + "api/run?" + query) as response:
                        body = response.read()
                        timing = response.headers["Server-Timing"]
                    answer = json.loads(body)
                    trips.append(1e3 * (time.perf_counter() - sent))
                    computes.append(answer["compute_ms"])
                    servers.append(float(timing.split("dur=")[1]))
                    sizes.append(len(body))
                print(
                    f"{problem:<15}{rule:<14}{statistics.median(computes):>11.1f}"
                    f"{statistics.median(servers):>11.1f}{statistics.median(trips):>15.1f}"
                    f"{int(statistics.median(sizes)):>9}"
                )


if __name__ == "__main__":
    main()
