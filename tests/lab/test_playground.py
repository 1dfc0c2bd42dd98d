"""The playground's server side: its controls come from the rules' specs, its runs are the
Python API's runs, its theory is theory's, and bad input gets one clear line."""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

from descend import functional, rules
from descend.lab import theory
from descend.lab.playground import compute, explain
from descend.lab.playground.controls import (
    PLAYGROUND_RULES,
    PROBLEMS,
    build_problem,
    catalog,
    parse_rule,
    rule_sliders,
)
from descend.lab.playground.server import bind, running
from descend.lab.problems import NoisyLeastSquares, Ravine
from descend.lab.runner import Contender, run
from descend.lab.surface import surface


@pytest.mark.parametrize("name", list(PLAYGROUND_RULES))
def test_every_hyperparameter_gets_a_control_from_its_spec(name):
    rule = rules.RULES[name]
    sliders = {slider.name: slider for slider in rule_sliders(rule)}
    # A choice among names (MARS's mars_type) has no control and keeps its default.
    assert list(sliders) == [hyper.name for hyper in rule.hypers if not hyper.choices]
    for hyper in (hyper for hyper in rule.hypers if not hyper.choices):
        slider = sliders[hyper.name]
        start = rule.listing.lab_hypers.get(hyper.name, hyper.default)
        assert slider.default == start and slider.doc == hyper.doc
        if hyper.kind is bool:
            assert slider.kind == "bool"
            continue
        assert slider.kind == ("int" if hyper.kind is int else "float")
        if hyper.optional:  # None (off) is the slider's exact 0, which it reads back as None
            assert slider.zero and slider.to_dict()["default"] == 0 and slider.check(0) is None
        else:
            assert slider.low <= start <= slider.high or (slider.zero and start == 0)
        # Both ends of every slider are values the rule accepts.
        zero = 0 if slider.kind == "int" else 0.0
        for value in (slider.low, slider.high) + ((zero,) if slider.zero else ()):
            rule.validate({**rule.defaults, hyper.name: slider.check(value)})


def test_the_catalog_lists_every_rule_problem_and_schedule():
    listed = catalog()
    # Every rule without a stage, and the one whose stage steps vectors (MARS's norm clip).
    assert [r["name"] for r in listed["rules"]] == [
        name for name, rule in rules.RULES.items() if rule.stage is None or name == "mars"
    ]
    assert "muon" not in [r["name"] for r in listed["rules"]]
    assert [p["name"] for p in listed["problems"]] == list(PROBLEMS)
    assert {"constant", "step", "exponential", "1/t", "cosine"} <= {
        s["name"] for s in listed["schedules"]
    }
    json.dumps(listed)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("bowl", "problem='bowl' is not on the playground; choose one of ravine"),
        ("ravine:dim=5", "problem ravine has no setting dim"),
        ("ravine:kappa=-3", "kappa=-3 is out of range: expected a number from 1 to 1000"),
        ("ravine:kappa='steep'", "kappa='steep' is invalid: expected a number"),
        ("least_squares:batch_size=2.5", "batch_size=2.5 is invalid: expected an integer"),
        ("ravine:kappa", "malformed spec"),
    ],
)
def test_bad_problem_settings_say_what_is_allowed(spec, message):
    with pytest.raises(ValueError, match=message):
        build_problem(spec)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("lamb:lr=0.1", "optimizer 'lamb' is not a rule; valid: sgd"),
        ("muon:lr=0.1", "optimizer 'muon' steps matrices"),
        ("adam:beta1=2", "beta1=2 is out of range: expected 0 <= beta1 < 1"),
        ("sgd:speed=1", "unknown hyperparameter"),
    ],
)
def test_bad_optimizer_settings_say_what_is_allowed(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_rule(spec)


def _heavy_ball_by_hand(problem: Ravine, lr: float, momentum: float, steps: int) -> np.ndarray:
    """The functional API's SGD+Momentum, written out as the course does."""
    x, config = problem.start(), {"learning_rate": lr, "momentum": momentum}
    points = [x]
    for _ in range(steps):
        x, config = functional.sgd_momentum(x, problem.grad(x), config)
        points.append(x)
    return np.array(points)


def test_a_run_is_the_python_apis_run_with_theorys_rate_beside_the_measured_one():
    view = compute.run_view(
        "ravine:kappa=30", "sgd_momentum:lr=0.02,momentum=0.7", "", "", 400, 0, 1e-6
    )
    problem = Ravine(kappa=30.0, picture=True)
    expected = _heavy_ball_by_hand(problem, 0.02, 0.7, 400)
    np.testing.assert_allclose(view["path"], expected, rtol=1e-5, atol=1e-12)
    eigenvalues = problem.eigenvalues
    assert view["theory"]["method"] == "heavy ball"
    assert view["theory"]["predicted"] == pytest.approx(
        theory.heavy_ball_rate(eigenvalues, 0.02, 0.7), rel=1e-6
    )
    assert view["theory"]["measured"] == pytest.approx(
        theory.measured_rate(np.linalg.norm(expected, axis=1), floor=1e-150), rel=1e-4
    )
    excess = np.array([problem.loss(x) for x in expected])
    above = np.flatnonzero(excess > 1e-6)
    assert view["steps_to_tolerance"] == above[-1] + 1
    # Each direction's theory line starts at its error and contracts at its own rate.
    errors = np.abs(problem.quadratic.errors(expected))
    for d in range(2):
        np.testing.assert_allclose(view["theory"]["errors"][d], errors[:, d], rtol=1e-5)
        assert view["theory"]["lines"][d][0] == pytest.approx(errors[0, d], rel=1e-5)


def test_schedules_averaging_and_minibatches_match_the_lab_runner():
    view = compute.run_view(
        "least_squares:batch_size=8", "adam:lr=0.05", "exponential:k=0.01", "0.9", 120, 3, 1e-6
    )
    problem = NoisyLeastSquares(batch_size=8)
    trace = run(problem, Contender.parse("adam:lr=0.05", "exponential:k=0.01", 0.9), 120, seed=3)
    np.testing.assert_allclose(view["path"], trace.trajectory, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(
        view["averaged_path"], trace.averaged_trajectory, rtol=1e-5, atol=1e-12
    )
    assert view["theory"]["method"] is None  # Adam: no theory rate, but the errors are shown
    assert len(view["theory"]["errors"][0]) == 121


def test_the_problem_view_carries_theorys_optimum_and_rate_map():
    view = compute.problem_view("ravine:kappa=50")
    quadratic = view["quadratic"]
    assert quadratic["kappa"] == pytest.approx(50.0)
    best = theory.heavy_ball_optimal(1.0, 50.0)
    assert quadratic["optimal"]["heavy ball"]["lr"] == pytest.approx(best.lr)
    assert quadratic["optimal"]["heavy ball"]["momentum"] == pytest.approx(best.momentum)
    rates = np.array(quadratic["maps"]["heavy ball"])
    assert rates.min() >= best.rate - 1e-3  # nothing on the map beats the optimum
    alphas, betas = quadratic["maps"]["alphas"], quadratic["maps"]["betas"]
    i, j = 30, 40
    assert rates[i, j] == pytest.approx(
        min(theory.heavy_ball_rate([1.0, 50.0], alphas[j], betas[i]), compute.MAP_CEILING), rel=1e-3
    )
    assert compute.problem_view("saddle")["quadratic"] is None


@pytest.mark.parametrize("problem", [Ravine(kappa=20, picture=True), NoisyLeastSquares()])
def test_a_quadratics_surface_is_its_loss_at_every_grid_point(problem):
    grid = surface(problem, resolution=25)
    pointwise = [[problem.loss(np.array([x, y])) for x in grid.xs] for y in grid.ys]
    np.testing.assert_allclose(grid.values, pointwise, rtol=1e-12, atol=1e-12)


def _get(url: str) -> tuple[int, Any, dict]:
    """Status, headers (case-insensitive) and JSON body of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def test_the_api_answers_bad_values_with_a_400_and_one_clear_line():
    with running() as url:
        status, headers, body = _get(url + "api/run?problem=ravine&rule=adam:lr=0.1&steps=50")
        assert status == 200 and len(body["path"]) == 51
        assert headers["Server-Timing"].startswith("compute;dur=")
        for query, message in [
            ("problem=ravine&rule=adam:lr=0.1&steps=abc", "steps='abc' is invalid"),
            ("problem=ravine&rule=adam:lr=0.1&steps=0", "steps='0' is out of range"),
            ("problem=ravine:kappa=0&rule=sgd", "kappa=0 is out of range"),
            ("problem=ravine&rule=sgd&average=often", "average='often' is invalid"),
            ("problem=ravine&rule=sgd&schedule=fast", "unknown schedule 'fast'"),
            ("problem=ravine", "rule is missing"),
        ]:
            status, _, body = _get(url + "api/run?" + query)
            assert status == 400 and message in body["error"] and "Traceback" not in body["error"]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert b"descend playground" in page.read()


def test_a_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"--port={port} is in use"):
            bind("127.0.0.1", port)
    with pytest.raises(ValueError, match="--port=70000 is invalid"):
        bind("127.0.0.1", 70000)


def _ask(url: str, path: str, method: str = "GET", headers: dict | None = None) -> tuple[int, str]:
    """Status and body text of a request with the given headers (``Host`` among them)."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _raw(url: str, request: bytes) -> bytes:
    """Everything the server answers to ``request`` sent as is, until it closes."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_only_requests_addressed_to_this_server_from_its_own_page_are_answered():
    # DNS rebinding: a page of another site, its name made to resolve to 127.0.0.1, reaches
    # the server with its own name in Host; its Origin names it too.
    with running() as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        path = "/api/run?problem=ravine&rule=sgd&steps=5"
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"LocalHost:{port}",
            f"[::1]:{port}",
            f"app.localhost:{port}",
        ):
            status, body = _ask(url, path, headers={"Host": host})
            assert status == 200 and len(json.loads(body)["path"]) == 6, host
        for host in (
            "evil.example",
            f"evil.example:{port}",
            f"127.0.0.1:{port + 1}",
            "127.0.0.1",
            f"127.0.0.1.evil.example:{port}",
            f"127.0.0.1:{port}x",
        ):
            status, body = _ask(url, path, headers={"Host": host})
            assert status == 421 and body.count("\n") == 1 and "refused" in body, host
        own = {"Host": f"127.0.0.1:{port}"}
        status, _ = _ask(url, path, headers={**own, "Origin": f"http://localhost:{port}"})
        assert status == 200
        for method in ("GET", "POST"):
            for origin in (
                "http://evil.example",
                f"http://evil.example:{port}",
                "null",
                f"https://127.0.0.1:{port}",
                f"http://127.0.0.1:{port + 1}",
            ):
                status, body = _ask(url, path, method, headers={**own, "Origin": origin})
                assert status == 403 and body.count("\n") == 1, (method, origin)
                assert "evil" not in body or "refused" in body


def test_unreadable_requests_get_a_status_and_one_line_not_a_reset():
    with running() as url:
        port = url.rstrip("/").rsplit(":", 1)[1]
        head = f"Host: 127.0.0.1:{port}\r\n".encode()
        # 200 KB of URL: the server answers 414 and lets the client read it (no reset).
        long = _raw(url, b"GET /api/run?rule=" + b"a" * 200_000 + b" HTTP/1.1\r\n" + head + b"\r\n")
        assert long.startswith(b"HTTP/1.1 414 ")
        assert long.split(b"\r\n\r\n", 1)[1].count(b"\n") == 1
        # A chunked body whose chunk size is not hexadecimal.
        for _ in range(5):
            bad = _raw(
                url,
                b"POST /api/run HTTP/1.1\r\n"
                + head
                + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            )
            assert bad.startswith(b"HTTP/1.1 400 ") and b"malformed" in bad
            assert bad.count(b"HTTP/1.1") == 1  # one answer, not the app's as well
        status, _ = _ask(url, "/api/catalog")  # the server is still well
        assert status == 200


def test_a_setting_given_twice_is_refused_by_the_api():
    with running() as url:
        for query, twice in [
            ("problem=ravine&rule=sgd:lr=0.1,lr=0.2", "'lr' is given twice"),
            ("problem=ravine:kappa=5,kappa=50&rule=sgd", "'kappa' is given twice"),
            ("problem=ravine&rule=sgd&rule=adam", "rule is given more than once"),
            ("problem=ravine&rule=sgd&steps=5&steps=50", "steps is given more than once"),
        ]:
            status, _, body = _get(url + "api/run?" + query)
            assert status == 400 and twice in body["error"], query


# -- the words beside the plots, the regimes, the start point, the errors' scope -------------


def test_the_verdict_says_why_gradient_descent_diverges_with_theorys_numbers():
    view = compute.run_view("ravine:kappa=20", "sgd:lr=0.11", "", "", 200, 0, 1e-6)
    verdict = view["theory"]["verdict"]
    # Gradient descent's mode along lambda: e <- (1 - lr lambda) e; 2/L is where it grows.
    assert verdict["factors"] == pytest.approx([abs(1 - 0.11 * 1), abs(1 - 0.11 * 20)])
    assert verdict["limit"] == pytest.approx(2 / 20, rel=1e-9)
    assert verdict["regimes"] == ["monotone", "diverges"] and verdict["regime"] == "diverges"
    assert "lr 0.11 is above 2/L = 2/20 = 0.1" in verdict["sentence"]
    assert "grows by 1.2 per step" in verdict["sentence"]
    assert view["diverged_at"] is not None


def test_the_verdict_of_a_converging_setting_names_each_modes_factor_and_the_rate():
    view = compute.run_view("ravine:kappa=20", "sgd:lr=0.09", "", "", 200, 0, 1e-6)
    verdict = view["theory"]["verdict"]
    assert verdict["regimes"] == ["monotone", "oscillates"]  # 1 - 0.09 * 20 = -0.8 flips
    assert max(verdict["factors"]) == pytest.approx(view["theory"]["predicted"])
    assert "below 2/L = 2/20 = 0.1" in verdict["sentence"]
    assert f"factor {theory.gd_rate(np.array([1.0, 20.0]), 0.09):.4g}" in verdict["sentence"]
    momentum = compute.run_view(
        "ravine:kappa=20", "sgd_momentum:lr=0.02,momentum=0.8", "", "", 50, 0, 1e-6
    )["theory"]["verdict"]
    # Momentum 0.8, above the optimum's 0.40: both modes' roots are complex, they spiral.
    assert momentum["regimes"] == ["oscillates", "oscillates"]
    assert "spirals in" in momentum["sentence"]
    assert "2(1 + momentum)/L = 2(1 + 0.8)/20 = 0.18" in momentum["sentence"]


@pytest.mark.parametrize("momentum", [0.0, 0.3, 0.9])
def test_the_stability_limit_is_the_closed_form_of_each_method(momentum):
    L = 40.0
    assert explain.stability_limit("heavy ball", L, momentum) == pytest.approx(
        2 * (1 + momentum) / L, rel=1e-9
    )
    assert explain.stability_limit("Nesterov", L, momentum) == pytest.approx(
        2 * (1 + momentum) / ((1 + 2 * momentum) * L), rel=1e-9
    )


def test_the_regime_map_agrees_with_theorys_rate_and_its_labels_sit_in_their_regions():
    view = compute.problem_view("ravine:kappa=20")
    maps = view["quadratic"]["maps"]
    for method in ("heavy ball", "Nesterov"):
        codes = np.array(maps["regimes"][method]["codes"])
        rates = np.array(maps[method])
        assert ((codes == 2) == (rates >= 1 - 1e-9)).mean() > 0.999
        labels = maps["regimes"][method]["labels"]
        assert {label["regime"] for label in labels} == {"monotone", "oscillates", "diverges"}
        for label in labels:
            i, j = label["row"], label["column"]
            assert label["lr"] == pytest.approx(maps["alphas"][j], rel=1e-5)
            assert label["momentum"] == pytest.approx(maps["betas"][i], rel=1e-5)
            assert explain.REGIMES[codes[i, j]] == label["regime"]


@pytest.mark.parametrize("kappa", [10.0, 20.0, 100.0, 1000.0])
def test_the_optimum_in_a_link_has_the_digits_that_keep_its_rate(kappa):
    optimal = compute.problem_view(f"ravine:kappa={kappa:g}")["quadratic"]["optimal"]
    eigenvalues = np.array([1.0, kappa])
    for method in ("gradient descent", "heavy ball", "Nesterov"):
        rounded = optimal[method]["rounded"]
        assert len(repr(rounded["lr"]).lstrip("0.").replace(".", "")) <= 10
        assert rounded["digits"] <= 10
        got = theory.rate(method, eigenvalues, rounded["lr"], rounded["momentum"])
        assert f"{got:.4f}" == f"{optimal[method]['rate']:.4f}"


def test_a_run_starts_where_the_start_point_says():
    view = compute.run_view("ravine:kappa=20", "sgd:lr=0.05", "", "", 30, 0, 1e-6, "-4,2")
    problem = Ravine(kappa=20.0, picture=True)
    x, config, points = np.array([-4.0, 2.0]), {"learning_rate": 0.05}, []
    for _ in range(31):
        points.append(x)
        x, config = functional.sgd(x, problem.grad(x), config)
    np.testing.assert_allclose(view["path"], points, rtol=1e-5, atol=1e-12)
    for text, message in [("99,0", "outside the window"), ("1", "is invalid"), ("a,b", "invalid")]:
        with pytest.raises(ValueError, match=message):
            compute.start_point(text, problem)


def test_the_api_says_whether_an_error_is_the_pages_setting_or_the_optimizers():
    with running() as url:
        for query, scope, setting, message in [
            ("problem=ravine&rule=sgd&steps=-5", "page", "steps", "steps='-5' is out of range"),
            ("problem=ravine:kappa=0&rule=sgd", "page", "problem", "kappa=0 is out of range"),
            ("problem=ravine&rule=sgd&start=99,0", "page", "start", "outside the window"),
            ("problem=ravine&rule=sgd&tol=x", "page", "tol", "tol='x' is invalid"),
            ("problem=ravine&rule=adam:beta1=2", "run", None, "beta1=2 is out of range"),
        ]:
            status, _, body = _get(url + "api/run?" + query)
            assert status == 400 and message in body["error"], query
            assert body["scope"] == scope and body.get("setting") == setting, query
        status, _, body = _get(url + "api/problem?problem=volcano")
        assert status == 400 and body["scope"] == "page" and body["setting"] == "problem"


@pytest.mark.parametrize(
    "parse, spec, suggestion",
    [
        (parse_rule, "adamm:lr=0.1", "did you mean 'adam'?"),
        (parse_rule, "nesterv", "did you mean 'nesterov'?"),
        (parse_rule, "adam:lrr=0.1", "did you mean 'lr'?"),
        (build_problem, "ravin", "did you mean 'ravine'?"),
    ],
)
def test_a_misspelt_name_gets_the_closest_one(parse, spec, suggestion):
    with pytest.raises(ValueError, match=re.escape(suggestion)):
        parse(spec)


def test_mars_is_offered_on_the_points_as_itself_and_matrix_methods_are_refused():
    """A point stands for the model's weights, so the page's MARS corrects and clips it (its
    lab_hypers) rather than running the AdamW it gives biases; asked for, the fallback runs."""
    assert "mars" in PLAYGROUND_RULES
    assert not {"muon", "shampoo", "soap", "psgd_kron"} & set(PLAYGROUND_RULES)
    rule, hypers = parse_rule("mars:lr=0.05")
    assert rule is rules.RULES["mars"] and hypers["optimize_1d"] is True
    assert parse_rule("mars:lr=0.05,optimize_1d=False")[1]["optimize_1d"] is False
    with pytest.raises(ValueError, match="matrix state"):
        parse_rule("psgd_kron")
    common = {"schedule": "", "average": "", "steps": 1000, "seed": 0, "tolerance": 1e-6}
    corrected = compute.run_view("ravine:kappa=20", "mars:lr=0.05", **common)
    fallback = compute.run_view("ravine:kappa=20", "mars:lr=0.05,optimize_1d=False", **common)
    # Corrected, it settles below the tolerance; the fallback (AdamW) has not in as many steps.
    assert corrected["steps_to_tolerance"] is not None
    assert fallback["steps_to_tolerance"] is None
    # The page's run is the lab runner's run of the torch class with the same settings.
    contender = Contender.parse("mars:lr=0.05,optimize_1d=True")
    trace = run(build_problem("ravine:kappa=20"), contender, steps=1000)
    np.testing.assert_allclose(corrected["loss"], trace.excess, rtol=1e-5, atol=0)
