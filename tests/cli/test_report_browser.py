"""The report in a real browser: headless Chromium loads every image and draws a page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((path for path in map(shutil.which, BROWSERS) if path), None)

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
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
]


def _dom(page: Path, tmp_path: Path) -> str:
    result = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile-dom'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def _image_counts(dom: str) -> tuple[int, int]:
    body = re.search(r"<body[^>]*>", dom).group(0)
    images = re.search(r'data-images="(\d+)"', body)
    broken = re.search(r'data-broken-images="(\d+)"', body)
    assert images and broken, f"the page's image check did not run: {body}"
    return int(images.group(1)), int(broken.group(1))


def test_every_image_loads(demo_report, tmp_path):
    out, _ = demo_report
    images, broken = _image_counts(_dom(out / "index.html", tmp_path))
    expected = len(re.findall(r"<img ", (out / "index.html").read_text()))
    assert images == expected >= 12
    assert broken == 0


def test_a_missing_image_is_caught(demo_report, tmp_path):
    out, _ = demo_report
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    (copy / "images" / "ravine_contour.png").unlink()
    images, broken = _image_counts(_dom(copy / "index.html", tmp_path))
    assert broken == 1 and images >= 12


def test_screenshot_is_not_blank(demo_report, tmp_path):
    out, _ = demo_report
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile-shot'}",
            "--window-size=1100,2400",
            f"--screenshot={shot}",
            (out / "index.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.shape[0] >= 2000
    assert pixels.std() > 20  # text and figures, not a flat page
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 200  # figures add many colours; blank or text-only pages have few


def test_a_click_enlarges_a_figure_and_escape_closes_it(demo_report, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    out, _ = demo_report
    with sync_api.sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(tmp_path / "profile-zoom"),
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = context.new_page()
        page.goto((out / "index.html").as_uri())
        page.wait_for_function("document.body.dataset.images !== undefined")
        zoom = page.locator("#zoom")
        assert zoom.is_hidden()
        page.locator('img[src="images/classics.png"]').click()
        assert zoom.is_visible()
        assert zoom.locator("img").get_attribute("src").endswith("images/classics.png")
        page.keyboard.press("Escape")
        assert zoom.is_hidden()
        context.close()


def _open(driver, tmp_path: Path, name: str, width: int):
    """A headless Chromium page ``width`` CSS pixels wide (and its context, to close)."""
    context = driver.chromium.launch_persistent_context(
        str(tmp_path / name),
        executable_path=CHROMIUM,
        headless=True,
        viewport={"width": width, "height": 900},
        args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"],
    )
    return context, context.new_page()


@pytest.mark.parametrize("width", [400, 1400])
def test_the_page_is_as_wide_as_the_window(demo_report, tmp_path, width):
    """On a phone (400 px) nothing widens the page: figures shrink to fit and wide tables
    scroll inside their own box."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    out, _ = demo_report
    with sync_api.sync_playwright() as driver:
        context, page = _open(driver, tmp_path, f"profile-{width}", width)
        page.goto((out / "index.html").as_uri())
        page.wait_for_function("document.body.dataset.images !== undefined")
        page_width = page.evaluate("document.documentElement.scrollWidth")
        widest_image = page.evaluate(
            "Math.max(...Array.from(document.images, i => i.getBoundingClientRect().right))"
        )
        scrolling = page.evaluate(
            "Array.from(document.querySelectorAll('table'), t => "
            "getComputedStyle(t.parentElement).overflowX)"
        )
        context.close()
    assert page_width == width
    assert widest_image <= width
    assert scrolling and set(scrolling) == {"auto"}
