"""The playground's web application: one page, its static files, and a JSON API.

- ``GET /``: the page (``static/index.html``); its state lives in the query string, so a link
  holds a whole setting.
- ``GET /api/catalog``: the rules with their sliders, the problems, the schedules.
- ``GET /api/problem?problem=ravine:kappa=20``: the loss surface and, for a quadratic, theory.
- ``GET /api/run?problem=...&rule=adam:lr=0.1&schedule=...&average=...&steps=...&seed=...&tol=...``
  ``&start=x,y``: one run (from ``start`` when given, else the problem's start).

A bad value is answered with status 400 and ``{"error": "<what is wrong and what is
allowed>", "scope": "page" or "run"}``, which the page shows: ``"page"`` (with ``"setting"``,
its name) for a setting all runs share, ``"run"`` for the optimizer's own; anything
unexpected with status 500 and a one-line message, never a traceback. Every answer carries
``Server-Timing`` with the time spent computing it.

The server answers only requests addressed to it (:class:`AddressCheck`): a ``Host`` header
naming this machine's loopback address or the address it listens on, and no ``Origin`` of
another site. It sends no CORS header, but without that check a page of another site could
still read its answers through DNS rebinding (its own name made to resolve to 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from descend.lab.playground import compute
from descend.lab.playground.controls import build_problem, catalog, query_number

STATIC = Path(__file__).parent / "static"
#: Default tolerance of "steps until the loss stays below".
TOLERANCE = 1e-6


def _json(payload: Any, status: int, started: float) -> Response:
    """A JSON answer with the server's compute time in ``Server-Timing``."""
    milliseconds = 1e3 * (time.perf_counter() - started)
    if isinstance(payload, dict) and status == 200:
        payload = {**payload, "server_ms": milliseconds}
    return Response(
        json.dumps(payload, allow_nan=False),
        status_code=status,
        media_type="application/json",
        headers={"Server-Timing": f"compute;dur={milliseconds:.2f}", "Cache-Control": "no-store"},
    )


def _query(request: Request) -> dict[str, str]:
    """The query parameters, each given once (taking the last of two would compute a setting
    other than one of those asked for)."""
    twice = sorted(
        {
            key
            for key, _ in request.query_params.multi_items()
            if len(request.query_params.getlist(key)) > 1
        }
    )
    if twice:
        raise ValueError(
            f"{', '.join(twice)} is given more than once in the query; expected each parameter once"
        )
    return dict(request.query_params)


class PageSettingError(ValueError):
    """A bad value of a setting the whole page shares (the problem, steps, seed, tolerance,
    start point), not of one optimizer: the page shows it once, named by its ``setting``."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def _page_setting(setting: str, read: Callable[[], Any]) -> Any:
    """``read()``, its ``ValueError`` marked as the page's ``setting``."""
    try:
        return read()
    except ValueError as error:
        raise PageSettingError(setting, str(error)) from None


def _endpoint(compute_answer: Callable[[dict[str, str]], Any]) -> Callable:
    """A route that answers ``compute_answer(query)`` as JSON, bad input as a 400 message."""

    def route(request: Request) -> Response:
        started = time.perf_counter()
        try:
            return _json(compute_answer(_query(request)), 200, started)
        except PageSettingError as error:
            answer = {"error": str(error), "scope": "page", "setting": error.setting}
            return _json(answer, 400, started)
        except ValueError as error:
            return _json({"error": str(error), "scope": "run"}, 400, started)
        except Exception as error:  # noqa: BLE001  (the page gets one line, not a traceback)
            return _json(
                {"error": f"the server could not compute this ({type(error).__name__}: {error})"},
                500,
                started,
            )

    return route


def _problem(query: dict[str, str]) -> dict[str, Any]:
    spec = query.get("problem") or "ravine"
    return _page_setting("problem", lambda: compute.problem_view(spec))


def _run(query: dict[str, str]) -> dict[str, Any]:
    # The page's shared settings first: their errors are the page's, not this optimizer's.
    problem = query.get("problem") or "ravine"
    built = _page_setting("problem", lambda: build_problem(problem))
    steps = _page_setting(
        "steps", lambda: int(query_number(query, "steps", 200, 1, compute.MAX_STEPS, True))
    )
    seed = _page_setting("seed", lambda: int(query_number(query, "seed", 0, 0, 2**31 - 1, True)))
    tolerance = _page_setting("tol", lambda: query_number(query, "tol", TOLERANCE, 1e-300, 1e300))
    start = query.get("start", "")
    _page_setting("start", lambda: compute.start_point(start, built))
    if not query.get("rule"):
        raise ValueError("rule is missing: expected an optimizer such as rule=adam:lr=0.1")
    return compute.run_view(
        problem,
        query["rule"],
        query.get("schedule", ""),
        query.get("average", ""),
        steps,
        seed,
        tolerance,
        start,
    )


def _page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``*.localhost``, ``127.x``,
    ``::1``)."""
    host = host.lower().strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(text: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a ``Host`` header or an origin's ``host[:port]`` (``[::1]:8765``);
    the port is None when left out; ``None`` when ``text`` is not of that form."""
    text = text.strip().lower()
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    else:
        name, colon, port = text.partition(":")
        port = port if colon else None
    if not name or (port is not None and not (port.isdigit() and int(port) <= 65535)):
        return None
    return name, None if port is None else int(port)


class AddressCheck:
    """ASGI middleware: refuse a request whose ``Host`` is not this server (421) or whose
    ``Origin`` is another site (403), with one line of text.

    A name is this server when it is a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``),
    the address the connection came in on, or one of ``names`` (the ``--host`` it was started
    with, the machine's host name); a port, when given, must be the one it listens on, and
    without one the listening port must be 80 (as a browser leaves it out).
    """

    def __init__(self, app: Callable, names: Iterable[str] = ()) -> None:
        self.app = app
        self.names = {name.lower().strip("[]") for name in names if name}

    def _ours(self, name: str, port: int | None, server: tuple | None) -> bool:
        local_host, local_port = (server[0], server[1]) if server else (None, None)
        if port is None:
            port = 80
        if local_port is not None and port != local_port:
            return False
        return (
            is_loopback(name)
            or name in self.names
            or (local_host is not None and name == str(local_host).lower())
        )

    def refusal(self, scope: dict) -> tuple[int, str] | None:
        """``(status, message)`` when the request is to be refused, else ``None``."""
        headers: dict[str, list[str]] = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        server = scope.get("server")
        hosts = headers.get("host", [])
        where = f"{server[0]}:{server[1]}" if server else "this machine"
        parsed = split_host(hosts[0]) if len(hosts) == 1 else None
        if parsed is None or not self._ours(*parsed, server):
            shown = hosts[0] if len(hosts) == 1 else f"{len(hosts)} Host headers"
            return 421, (
                f"descend playground: refused a request for {shown[:100]!r}: this "
                f"server answers requests for {where} or localhost only"
            )
        for origin in headers.get("origin", []):
            parts = urlsplit(origin.strip())
            netloc = split_host(parts.netloc) if parts.scheme == "http" else None
            if netloc is None or not self._ours(*netloc, server):
                return 403, (
                    f"descend playground: refused a request from the page "
                    f"{origin[:100]!r}: this server answers its own page only"
                )
        return None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Pass the request on, or answer its refusal."""
        refused = self.refusal(scope) if scope["type"] in ("http", "websocket") else None
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, message = refused
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await Response(
            message + "\n",
            status_code=status,
            media_type="text/plain",
            headers={"Cache-Control": "no-store"},
        )(scope, receive, send)


def create_app(names: Iterable[str] = ()) -> AddressCheck:
    """The playground application (an ASGI app; :mod:`descend.lab.playground.server` runs
    it), answering requests addressed to loopback, to the address a connection came in on, or
    to one of ``names`` (see :class:`AddressCheck`)."""
    app = Starlette(
        routes=[
            Route("/", _page),
            Route("/api/catalog", _endpoint(lambda query: catalog())),
            Route("/api/problem", _endpoint(_problem)),
            Route("/api/run", _endpoint(_run)),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    return AddressCheck(app, [*names, socket.gethostname()])
