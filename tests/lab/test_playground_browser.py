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
from descend.lab import plots, theory
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


def _open(browser, server: str, query: str, width: int = 1400, height: int = 1400):
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(server + query)
    # Loaded: the problem and every run answered (or gave its error).
    page.wait_for_function(
        "(window.playground.problem || window.playground.errors['page:problem']) && "
        "window.playground.state.runs.every((_, i) => "
        "window.playground.runs[i] || window.playground.errors['run' + i] || "
        "Object.keys(window.playground.errors).some(k => k.startsWith('page:')))",
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
    # The link holds the digits that keep the optimum's rate, not all 17 of a float.
    for name, value in (("lr", best.lr), ("momentum", best.momentum)):
        assert float(settings[name]) == pytest.approx(value, rel=1e-4)
        assert len(settings[name].lstrip("0.").replace(".", "")) <= 6, settings[name]
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


# -- layout, the words beside the plots, the rate map, the start point, legends -------------

LAYOUT = "?problem=ravine:kappa=20&r1=sgd:lr=0.09&r2=sgd_momentum:lr=0.02,momentum=0.8"


def _box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def test_at_1400_px_the_sliders_and_the_main_plots_share_the_screen(browser, server):
    page = _open(browser, server, LAYOUT, width=1400, height=900)
    controls, slider = _box(page, "#controls"), _box(page, '.card[data-run="0"] input[type=range]')
    assert page.evaluate("document.documentElement.scrollWidth") == 1400
    for figure in ("#contour", "#ratemap", "#loss"):
        box = _box(page, figure)
        assert box["x"] >= controls["x"] + controls["width"], figure  # beside the controls
        # Each canvas is drawn at its column's width (less its 1 px border each side).
        column = page.evaluate(f"document.querySelector('{figure}').parentNode.clientWidth")
        assert abs(box["width"] - column) <= 3 and box["width"] > 400, figure
    # On the first screen: an optimizer's slider, the paths and the rate map, side by side.
    for box in (slider, _box(page, "#contour"), _box(page, "#ratemap")):
        assert box["y"] >= 0 and box["y"] + box["height"] <= 900
    assert _box(page, "#contour")["y"] == pytest.approx(_box(page, "#ratemap")["y"], abs=2)
    page.close()


def test_at_400_px_the_page_stacks_and_scrolls_only_down(browser, server):
    page = _open(browser, server, LAYOUT, width=400, height=800)
    assert page.evaluate("document.documentElement.scrollWidth") == 400
    assert page.evaluate("document.body.scrollWidth") <= 400
    controls, contour, ratemap = (
        _box(page, "#controls"),
        _box(page, "#contour"),
        _box(page, "#ratemap"),
    )
    assert contour["y"] >= controls["y"] + controls["height"]  # plots below the controls
    assert ratemap["y"] >= contour["y"] + contour["height"]  # and below each other
    for box in (controls, contour, ratemap, _box(page, ".table-holder")):
        assert box["x"] >= 0 and box["x"] + box["width"] <= 400
    page.close()


def test_the_words_beside_the_plots_say_why_a_run_diverges_from_the_servers_numbers(
    browser, server
):
    page = _open(browser, server, "?problem=ravine:kappa=20&steps=200&r1=sgd:lr=0.11")
    run = page.evaluate("window.playground.runs[0]")
    step, verdict = run["diverged_at"], run["theory"]["verdict"]
    assert step is not None and "lr 0.11 is above 2/L = 2/20 = 0.1" in verdict["sentence"]
    loss_words = page.locator("#loss-explain").inner_text()
    assert f"Optimizer 1 diverged at step {step}: {verdict['sentence']}" in loss_words
    assert verdict["sentence"] in page.locator("#map-explain").inner_text()
    status = page.locator("#status").inner_text()
    assert f"optimizer 1 diverged at step {step} of 200" in status
    assert "200 steps computed" not in status
    page.close()


def test_the_rate_map_has_a_colour_scale_regimes_and_sets_a_run_by_click(browser, server):
    page = _open(browser, server, "?problem=ravine:kappa=20&r1=sgd_momentum:lr=0.02,momentum=0.5")
    words = page.locator("#map-explain").inner_text()
    assert "monotone, oscillates, diverges" in words and "Click the map" in words
    # The colour bar: grey above (rate >= 1), the darkest colour at its foot (rate 0).
    bottom, over = page.evaluate(
        """() => { var c = document.getElementById('ratemap'), p = c.plot;
        var x = Math.round((p.w - p.m.r + 20) * devicePixelRatio);
        var ctx = c.getContext('2d');
        var at = y => Array.from(ctx.getImageData(x, Math.round(y * devicePixelRatio), 1, 1).data);
        return [at(p.h - p.m.b - 2), at(p.m.t + 9)]; }"""
    )
    assert bottom[:3] == pytest.approx([68, 1, 84], abs=12) and over[:3] == [222, 222, 222]
    canvas = page.locator("#ratemap")
    x, y = page.evaluate(
        "() => { var p = document.getElementById('ratemap').plot; return [p.X(0.05), p.Y(0.6)]; }"
    )
    scale = canvas.bounding_box()["width"] / page.evaluate(
        "document.getElementById('ratemap').plot.w"
    )
    canvas.click(position={"x": x * scale, "y": y * scale})
    page.wait_for_function(
        "new URLSearchParams(location.search).get('r1') !== 'sgd_momentum:lr=0.02,momentum=0.5'",
        timeout=60000,
    )
    spec = _query(page)["r1"]
    _settled(page, 0, spec)
    settings = dict(item.split("=") for item in spec.split(":")[1].split(","))
    assert float(settings["lr"]) == pytest.approx(0.05, rel=0.03)
    assert float(settings["momentum"]) == pytest.approx(0.6, abs=0.02)
    theory_now = page.evaluate("window.playground.runs[0].theory")
    assert theory_now["lr"] == float(settings["lr"])
    assert theory_now["momentum"] == float(settings["momentum"])
    page.close()


def test_dragging_the_start_point_moves_every_run_and_the_link(browser, server):
    page = _open(browser, server, "?problem=ravine:kappa=20&steps=50&r1=sgd:lr=0.05")
    canvas = page.locator("#contour")
    box = canvas.bounding_box()
    start = page.evaluate("window.playground.problem.start")
    at = page.evaluate(
        "([x, y]) => { var p = document.getElementById('contour').plot; return [p.X(x), p.Y(y),"
        " p.X(-4), p.Y(-1)]; }",
        start,
    )
    scale = box["width"] / page.evaluate("document.getElementById('contour').plot.w")
    page.mouse.move(box["x"] + at[0] * scale, box["y"] + at[1] * scale)
    page.mouse.down()
    page.mouse.move(box["x"] + at[2] * scale, box["y"] + at[3] * scale, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "window.playground.runs[0] && window.playground.state.start && "
        "window.playground.runs[0].path[0].join(',') === "
        "window.playground.state.start.split(',').map(Number).join(',')",
        timeout=60000,
    )
    moved = [float(v) for v in _query(page)["start"].split(",")]
    assert moved == pytest.approx([-4, -1], abs=0.1)
    assert page.evaluate("window.playground.runs[0].path[0]") == moved
    assert "moved from the problem's start" in page.locator("#paths-explain").inner_text()
    page.close()


def test_runs_of_one_optimizer_differ_by_lightness_as_in_the_report(browser, server):
    page = _open(
        browser,
        server,
        "?problem=ravine:kappa=20&r1=sgd:lr=0.05&r2=sgd:lr=0.05&s2=step:step_size=50,gamma=0.5"
        "&r3=adam:lr=0.1",
    )
    rows = page.locator("#readout tbody tr")
    colours = [rows.nth(k).locator("svg line").get_attribute("stroke") for k in range(3)]
    # The second channel is the report's (descend.lab.plots.styles): the family's colour, then
    # its next shade; a run of another family keeps its own colour.
    shown = [style.color.upper() for style in plots.styles(["sgd", "sgd", "adam"])]
    assert [c.upper() for c in colours] == shown and colours[0] != colours[1]
    assert "(its colour)" in rows.nth(0).inner_text() and "(darker)" in rows.nth(1).inner_text()
    assert "(" not in rows.nth(2).locator("td").first.inner_text()
    page.close()


def test_the_smaller_mistakes_get_clear_words(browser, server):
    page = _open(browser, server, "?problem=ravine&steps=-5&r1=sgd&r2=adam")
    page.wait_for_function("document.body.dataset.status === 'error'", timeout=60000)
    shown = page.locator("#errors").inner_text()
    assert "page setting steps: steps='-5' is out of range" in shown
    assert "optimizer 1" not in shown and shown.count("steps='-5'") == 1
    page.close()
    page = _open(browser, server, "?problem=ravine&r1=adamm:lr=0.1")
    page.wait_for_function("document.body.dataset.status === 'error'", timeout=60000)
    assert "did you mean 'adam'?" in page.locator("#errors").inner_text()
    page.close()
    runs = "".join(f"&r{k}=sgd:lr=0.0{k}" for k in range(1, 6))
    page = _open(browser, server, "?problem=ravine" + runs)
    page.wait_for_function("document.body.dataset.status === 'error'", timeout=60000)
    assert (
        "r5 is ignored: the page compares at most 4 optimizers"
        in page.locator("#errors").inner_text()
    )
    assert len(page.evaluate("window.playground.runs")) == 4
    page.close()


def test_switching_an_optimizer_starts_from_its_own_default_lr(browser, server):
    page = _open(browser, server, "?problem=ravine&r1=sgd:lr=0.09")
    page.locator('.card[data-run="0"] select[data-name="rule"]').select_option("adam")
    page.wait_for_function(
        "new URLSearchParams(location.search).get('r1') === 'adam'", timeout=60000
    )
    _settled(page, 0, "adam")
    default = next(
        s["default"]
        for rule in page.evaluate("window.playground.catalog.rules")
        if rule["name"] == "adam"
        for s in rule["sliders"]
        if s["name"] == "lr"
    )
    shown = page.locator('.card[data-run="0"] input[type=text][data-name="lr"]').input_value()
    assert float(shown) == default != 0.09
    page.close()
