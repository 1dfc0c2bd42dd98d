"""The playground in a real browser: headless Chromium, driven by Playwright, against a server
on a free loopback port. A slider moves the path and the rate readout, and both match what the
Python API computes for the settings the page then holds in its address."""

from __future__ import annotations

import shutil
import statistics
import urllib.parse

import numpy as np
import pytest

from descend import functional
from descend.lab import theory
from descend.lab.playground.server import running
from descend.lab.problems import Ravine

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((path for path in map(shutil.which, BROWSERS) if path), None)
playwright = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless Chromium not found (install Debian's chromium package; CI does)",
    ),
]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def server():
    with running() as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright.sync_playwright() as driver:
        # A persistent context gives Chromium a fresh profile folder of its own.
        context = driver.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1400},
        )
        yield context
        context.close()


def _open(browser, server: str, query: str):
    page = browser.new_page()
    page.goto(server + query)
    # Loaded: the problem and every run answered (or gave its error).
    page.wait_for_function(
        "(window.playground.problem || window.playground.errors.problem) && "
        "window.playground.state.runs.every((_, i) => "
        "window.playground.runs[i] || window.playground.errors['run' + i])",
        timeout=60000,
    )
    return page


def _move(page, run: int, name: str, position: int) -> None:
    """Move one optimizer's slider as a drag does: set it and fire ``input``."""
    page.locator(f'.card[data-run="{run}"] input[type=range][data-name="{name}"]').evaluate(
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
        str(position),
    )


def _settled(page, run: int, rule: str) -> None:
    page.wait_for_function(
        f"window.playground.runs[{run}] && window.playground.runs[{run}].rule === {rule!r}",
        timeout=60000,
    )


def _query(page) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(page.url).query))


def _heavy_ball(kappa: float, lr: float, momentum: float, steps: int) -> np.ndarray:
    problem = Ravine(kappa=kappa, picture=True)
    x, config = problem.start(), {"learning_rate": lr, "momentum": momentum}
    points = [x]
    for _ in range(steps):
        x, config = functional.sgd_momentum(x, problem.grad(x), config)
        points.append(x)
    return np.array(points)


def _readout(page, run: int) -> tuple[str, str]:
    row = page.locator(f'#readout tr[data-run="{run}"]')
    return row.locator("td.predicted").inner_text(), row.locator("td.measured").inner_text()


def test_a_slider_moves_the_path_and_the_rates_to_what_the_python_api_computes(browser, server):
    page = _open(
        browser,
        server,
        "?problem=ravine:kappa=20&steps=300&r1=sgd:lr=0.05&r2=sgd_momentum:lr=0.02,momentum=0.5",
    )
    before_path = page.evaluate("window.playground.runs[1].path")
    before = _readout(page, 1)
    _move(page, 1, "momentum", 800)
    spec = _query(page)["r2"]
    assert spec != "sgd_momentum:lr=0.02,momentum=0.5"  # the address holds the new setting
    _settled(page, 1, spec)
    settings = dict(item.split("=") for item in spec.split(":")[1].split(","))
    lr, momentum = float(settings["lr"]), float(settings["momentum"])
    assert momentum == pytest.approx(0.7992, abs=1e-3)
    path = np.array(page.evaluate("window.playground.runs[1].path"))
    expected = _heavy_ball(20.0, lr, momentum, 300)
    assert not np.allclose(path, before_path)
    np.testing.assert_allclose(path, expected, rtol=1e-5, atol=1e-12)
    predicted, measured = _readout(page, 1)
    assert (predicted, measured) != before
    eigenvalues = Ravine(kappa=20.0, picture=True).eigenvalues
    assert predicted == f"{theory.heavy_ball_rate(eigenvalues, lr, momentum):.4f}"
    assert measured == f"{theory.measured_rate(np.linalg.norm(expected, axis=1), 1e-150):.4f}"
    page.close()


def test_the_optimal_setting_is_one_click_away(browser, server):
    page = _open(
        browser, server, "?problem=ravine:kappa=100&steps=200&r1=sgd_momentum:lr=0.001,momentum=0.5"
    )
    page.locator('.card[data-run="0"] button[data-optimal="heavy ball"]').click()
    best = theory.heavy_ball_optimal(1.0, 100.0)
    page.wait_for_function(
        "window.playground.runs[0].rule !== 'sgd_momentum:lr=0.001,momentum=0.5'", timeout=60000
    )
    _settled(page, 0, _query(page)["r1"])
    assert _readout(page, 0)[0] == f"{best.rate:.4f}" == f"{9 / 11:.4f}"
    settings = dict(item.split("=") for item in _query(page)["r1"].split(":")[1].split(","))
    assert float(settings["lr"]) == pytest.approx(best.lr, rel=1e-5)
    assert float(settings["momentum"]) == pytest.approx(best.momentum, rel=1e-5)
    page.close()


def test_a_shared_link_reproduces_the_runs(browser, server):
    page = _open(
        browser,
        server,
        "?problem=least_squares:batch_size=4&steps=150&seed=3"
        "&r1=adam:lr=0.05&s1=exponential:k=0.02&a1=0.9",
    )
    _move(page, 0, "beta1", 500)
    _settled(page, 0, _query(page)["r1"])
    shown = page.evaluate("window.playground.runs[0]")
    again = _open(browser, server, page.url[page.url.index("?") :])
    assert again.evaluate("window.playground.runs[0]")["path"] == shown["path"]
    assert again.evaluate("window.playground.runs[0]")["averaged_path"] == shown["averaged_path"]
    page.close()
    again.close()


def test_the_page_draws_something(browser, server, tmp_path):
    from PIL import Image

    page = _open(
        browser,
        server,
        "?problem=rosenbrock&steps=500&r1=adam:lr=0.05&r2=sgd_momentum:lr=0.001,momentum=0.9",
    )
    shot = tmp_path / "playground.png"
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3)[::5], axis=0)) > 200  # contours, paths, text
    page.close()


@pytest.mark.parametrize(
    "query, message",
    [
        ("?problem=ravine:kappa=-3", "kappa=-3 is out of range: expected a number from 1 to 1000"),
        ("?problem=ravine&r1=adam:beta1=2", "beta1=2 is out of range: expected 0 <= beta1 < 1"),
        ("?problem=ravine&steps=abc&r1=sgd", "steps='abc' is invalid: expected an integer"),
        ("?problem=volcano&r1=sgd", "problem='volcano' is not on the playground"),
    ],
)
def test_bad_values_in_the_address_get_a_clear_message_on_the_page(browser, server, query, message):
    page = _open(browser, server, query)
    page.wait_for_function("document.body.dataset.status === 'error'", timeout=60000)
    shown = page.locator("#errors").inner_text()
    assert message in shown
    assert "Traceback" not in page.content() and 'File "' not in shown
    page.close()


def test_hover_reads_a_point_of_a_path(browser, server):
    page = _open(browser, server, "?problem=ravine&steps=100&r1=sgd:lr=0.05")
    start = page.evaluate("window.playground.problem.start")
    canvas = page.locator("#contour")
    box = canvas.bounding_box()
    x, y = page.evaluate(
        "([x, y]) => { var p = document.getElementById('contour').plot; return [p.X(x), p.Y(y)]; }",
        start,
    )
    scale = box["width"] / page.evaluate("document.getElementById('contour').plot.w")
    page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
    tip = page.locator("#tooltip")
    assert tip.is_visible()
    assert "step 0" in tip.inner_text()
    page.close()


def test_a_drag_redraws_every_frame_of_a_1000_step_2d_problem(browser, server, record_property):
    page = _open(
        browser,
        server,
        "?problem=ravine:kappa=20&steps=1000&r1=sgd:lr=0.05&r2=sgd_momentum:lr=0.02,momentum=0.8",
    )
    done = len(page.evaluate("window.playground.timings"))
    for position in range(500, 590, 3):  # lr from 0.03 to 0.09: one input per frame
        _move(page, 0, "lr", position)
        page.wait_for_timeout(16)
    page.wait_for_function(
        f"window.playground.timings.length > {done} && "
        "window.playground.runs[0].rule === "
        "new URLSearchParams(location.search).get('r1')",
        timeout=60000,
    )
    timings = page.evaluate("window.playground.timings")[done:]
    compute = statistics.median(t["compute_ms"] for t in timings)
    total = statistics.median(t["total_ms"] for t in timings)
    record_property("compute_ms_median", compute)
    record_property("redraw_ms_median", total)
    print(
        f"\n1000-step drag: {len(timings)} redraws, server compute median {compute:.1f} ms, "
        f"input to redraw median {total:.1f} ms, max {max(t['total_ms'] for t in timings):.1f}"
    )
    # Every redraw ran the whole 1000-step problem and finished. How fast is measured (and
    # its 100 ms target checked) by benchmarks/playground_latency.py: a timed test would fail
    # on a busy machine, not on slow code.
    assert timings and all(t["steps"] == 1000 for t in timings)
    assert all(t["total_ms"] >= t["compute_ms"] >= 0 for t in timings)
    page.close()
