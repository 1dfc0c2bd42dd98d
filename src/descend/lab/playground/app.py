"""The playground's web application: one page, its static files, and a JSON API.

- ``GET /``: the page (``static/index.html``); its state lives in the query string, so a link
  holds a whole setting.
- ``GET /api/catalog``: the rules with their sliders, the problems, the schedules.
- ``GET /api/problem?problem=ravine:kappa=20``: the loss surface and, for a quadratic, theory.
- ``GET /api/run?problem=...&rule=adam:lr=0.1&schedule=...&average=...&steps=...&seed=...&tol=...``:
  one run.

A bad value is answered with status 400 and ``{"error": "<what is wrong and what is
allowed>"}``, which the page shows; anything unexpected with status 500 and a one-line message,
never a traceback. Every answer carries ``Server-Timing`` with the time spent computing it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from descend.lab.playground import compute
from descend.lab.playground.controls import catalog, query_number

STATIC = Path(__file__).parent / "static"
#: Default tolerance of "steps until the loss stays below".
TOLERANCE = 1e-6


def _json(payload: Any, status: int, started: float) -> Response:
    """A JSON answer with the server's compute time in ``Server-Timing``."""
    milliseconds = 1e3 * (time.perf_counter() - started)
    if isinstance(payload, dict) and status == 200:
        payload = {**payload, "server_ms": milliseconds}
    return Response(json.dumps(payload, allow_nan=False), status_code=status,
                    media_type="application/json",
                    headers={"Server-Timing": f"compute;dur={milliseconds:.2f}",
                             "Cache-Control": "no-store"})


def _endpoint(compute_answer: Callable[[dict[str, str]], Any]) -> Callable:
    """A route that answers ``compute_answer(query)`` as JSON, bad input as a 400 message."""

    def route(request: Request) -> Response:
        started = time.perf_counter()
        try:
            return _json(compute_answer(dict(request.query_params)), 200, started)
        except ValueError as error:
            return _json({"error": str(error)}, 400, started)
        except Exception as error:  # noqa: BLE001  (the page gets one line, not a traceback)
            return _json({"error": f"the server could not compute this "
                                   f"({type(error).__name__}: {error})"}, 500, started)

    return route


def _problem(query: dict[str, str]) -> dict[str, Any]:
    return compute.problem_view(query.get("problem") or "ravine")


def _run(query: dict[str, str]) -> dict[str, Any]:
    if not query.get("rule"):
        raise ValueError("rule is missing: expected an optimizer such as rule=adam:lr=0.1")
    steps = int(query_number(query, "steps", 200, 1, compute.MAX_STEPS, integer=True))
    seed = int(query_number(query, "seed", 0, 0, 2 ** 31 - 1, integer=True))
    tolerance = query_number(query, "tol", TOLERANCE, 1e-300, 1e300)
    return compute.run_view(query.get("problem") or "ravine", query["rule"],
                            query.get("schedule", ""), query.get("average", ""), steps, seed,
                            tolerance)


def _page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


def create_app() -> Starlette:
    """The playground application (an ASGI app; :mod:`descend.lab.playground.server` runs
    it)."""
    return Starlette(routes=[
        Route("/", _page),
        Route("/api/catalog", _endpoint(lambda query: catalog())),
        Route("/api/problem", _endpoint(_problem)),
        Route("/api/run", _endpoint(_run)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
