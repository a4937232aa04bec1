"""The report page in a real browser: headless Debian chromium driven by Playwright (tests/browser.py).

A tiny run (one epoch on the synthetic data, as in test_report.py) is reported once for the module,
and its ``report.html`` is opened from disk (``file://``), as a user opens the file they were sent.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from dermseg.cli import main
from dermseg.config import load_config
from dermseg.report.html import SECTIONS
from dermseg.training.loop import train
from tests import browser
from tests.browser import BrowserPage
from tests.conftest import TINY_TRAIN

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Request

# The browser fixtures of tests/browser.py, for this module's tests.
chromium_browser = browser.chromium_browser
new_page = browser.new_page

SECTION_IDS = ("summary", "attributes", "curves", "roc", "pr", "thresholds", "gallery", "config")

#: Per image: natural size, and the mean and spread of its pixel values drawn on a canvas.
IMAGES_JS = """() => Array.from(document.images).map((img) => {
  const out = { alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight };
  if (!img.naturalWidth) return out;
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0, sum = 0, sq = 0;
  for (let i = 0; i < d.length; i += 4) {
    const v = (d[i] + d[i + 1] + d[i + 2]) / 3;
    n += 1; sum += v; sq += v * v;
  }
  out.mean = sum / n;
  out.std = Math.sqrt(Math.max(0, sq / n - (sum / n) ** 2));
  return out;
})"""

#: Where a section lies after a jump: its top, the sticky nav's bottom, and whether the page is at its end.
POSITION_JS = """(id) => {
  const el = document.getElementById(id);
  const root = document.documentElement;
  return {
    hash: location.hash,
    top: el.getBoundingClientRect().top,
    bottom: el.getBoundingClientRect().bottom,
    scrollY: window.scrollY,
    atEnd: window.scrollY + window.innerHeight >= root.scrollHeight - 2,
  };
}"""


@pytest.fixture(scope="module")
def reported(
    chromium_browser: Browser,  # first, so that a missing chromium skips before the training
    synth_dataset: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """``dermseg report`` of one tiny epoch on the synthetic data; returns the HTML file."""
    run_dir = tmp_path_factory.mktemp("report-browser") / "tiny-run"
    train(load_config(None, [*TINY_TRAIN, f"data.root={synth_dataset}"]), synth_dataset, run_dir)
    assert main(["report", str(run_dir)]) == 0
    return run_dir / "report.html"


@pytest.fixture
def opened(new_page: Callable[..., BrowserPage], reported: Path) -> tuple[BrowserPage, list[str], list[str]]:
    """The report loaded in a fresh page; with every URL it requested and every request that failed."""
    view = new_page(width=1280, height=900)
    requested: list[str] = []
    failed: list[str] = []
    view.page.on("request", lambda request: requested.append(request.url))
    view.page.on("requestfailed", lambda request: failed.append(_failure(request)))
    view.page.goto(reported.resolve().as_uri(), wait_until="load")
    return view, requested, failed


def _failure(request: Request) -> str:
    return f"{request.url[:80]}: {request.failure}"


def _spread(png: bytes) -> tuple[tuple[int, int], float]:
    """An image's size and the standard deviation of its grey values."""
    picture = Image.open(io.BytesIO(png))
    return picture.size, float(np.asarray(picture.convert("L"), dtype=np.float64).std())


def test_page_loads_cleanly_without_the_network(
    opened: tuple[BrowserPage, list[str], list[str]], reported: Path
) -> None:
    view, requested, failed = opened
    assert view.errors() == [] and failed == []
    assert requested, "the page itself was not recorded"
    assert requested[0] == reported.resolve().as_uri()
    outside = [url[:80] for url in requested if not url.startswith(("file:", "data:"))]
    assert outside == [], "the report reached for the network"
    # whatever the page holds that could fetch something, in the live DOM: only data: URIs
    sources = view.page.evaluate(
        """() => Array.from(document.querySelectorAll('[src], link[href], object[data]'))
             .map((e) => e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('data'))"""
    )
    assert sources and all(s.startswith("data:") for s in sources), [s[:40] for s in sources]
    assert view.page.title().endswith("dermseg report")


def test_every_section_is_there_and_visible(opened: tuple[BrowserPage, list[str], list[str]]) -> None:
    view, _, _ = opened
    assert tuple(key for key, _ in SECTIONS) == SECTION_IDS
    for key, title in SECTIONS:
        section = view.page.locator(f"section#{key}")
        assert section.count() == 1, key
        assert section.is_visible(), key
        box = section.bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] > 40, (key, box)
        assert section.locator("h2").inner_text() == title
    # nothing sticks out sideways at a desktop width
    widths = view.page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths


def test_every_image_loaded_and_is_not_blank(opened: tuple[BrowserPage, list[str], list[str]]) -> None:
    view, _, _ = opened
    images = view.page.evaluate(IMAGES_JS)
    assert len(images) >= 4 + 3  # four plots and at least one gallery item of three panels
    for image in images:
        assert image["complete"] and image["width"] >= 32 and image["height"] >= 32, image
        assert image["std"] > 5, f"blank image: {image}"
    # as drawn on the page too: each plot's element screenshot varies
    for key in ("curves", "roc", "pr", "thresholds"):
        img = view.page.locator(f"section#{key} img")
        assert img.count() == 1, key
        assert img.is_visible()
        size, spread = _spread(img.screenshot())
        assert min(size) >= 100 and spread > 10, (key, size, spread)
    gallery = view.page.locator("section#gallery .item img")
    assert gallery.count() >= 3 and gallery.count() % 3 == 0
    for k in range(gallery.count()):
        assert gallery.nth(k).is_visible()
        size, spread = _spread(gallery.nth(k).screenshot())
        assert min(size) >= 64 and spread > 3, (k, size, spread)


def test_nav_links_jump_to_their_section(opened: tuple[BrowserPage, list[str], list[str]]) -> None:
    view, _, _ = opened
    viewport = view.page.viewport_size
    assert viewport is not None
    links = view.page.locator("nav a")
    assert [links.nth(k).get_attribute("href") for k in range(links.count())] == [
        f"#{key}" for key in SECTION_IDS
    ]
    for key in (*reversed(SECTION_IDS), *SECTION_IDS[1:]):  # the farthest first, then back down
        view.page.click(f"nav a[href='#{key}']")
        where = view.page.evaluate(POSITION_JS, key)
        assert where["hash"] == f"#{key}"
        # the nav is sticky: still on screen wherever the page is scrolled
        nav = view.page.locator("nav").bounding_box()
        assert nav is not None and abs(nav["y"]) <= 3 and view.page.locator("nav").is_visible()
        # the section starts just below the nav (its heading not hidden under it), or the page
        # ends before it can get there
        below_nav = nav["height"] - 2 <= where["top"] <= nav["height"] + 16
        assert below_nav or (where["atEnd"] and nav["height"] - 2 <= where["top"] < viewport["height"]), (
            key,
            where,
            nav,
        )
        assert where["bottom"] > 0
    assert view.errors() == []


def test_full_page_screenshot_is_not_blank(opened: tuple[BrowserPage, list[str], list[str]]) -> None:
    view, _, _ = opened
    png = view.page.screenshot(full_page=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (width, height), spread = _spread(png)
    assert width == 1280 and height > 3 * 900  # eight sections: several screens long
    assert spread > 20
    # every band of the page holds something: no stretch of a screen's height is one flat colour
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    for top in range(0, height - 900, 450):
        assert grey[top : top + 900].std() > 5, f"blank band at {top}px"
