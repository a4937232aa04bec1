"""The page in a real browser: headless Debian chromium driven by Playwright (see tests/browser.py).

The stand-in model marks the bright square of the test image as globules, negative network and
streaks, and the dark rest as milia-like cysts and pigment network, so where each overlay must
appear on the canvas is known.
"""

from __future__ import annotations

import base64
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dermseg.attributes import ATTRIBUTES
from dermseg.inference.segmenter import Segmenter
from dermseg.serve import BackgroundServer, create_app
from tests.browser import HTTP_STATUS_ERROR, BrowserPage
from tests.serve.conftest import encode, square_image

CAP = 300_000
IMAGE = square_image(60, width=200, height=150, at=(30, 40))
INSIDE = (60, 70)  # (x, y) in the square: globules, negative network, streaks
OUTSIDE = (170, 120)  # on the dark background: milia-like cysts, pigment network

PIXEL_JS = (
    "([x, y]) => Array.from(document.getElementById('canvas').getContext('2d').getImageData(x, y, 1, 1).data)"
)
CHECKSUM_JS = """() => {
  const c = document.getElementById('canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0;
  for (let i = 0; i < d.length; i += 1) s = (s * 31 + d[i]) % 1000000007;
  return s;
}"""


@pytest.fixture(scope="module")
def server(segmenter: Segmenter) -> Iterator[BackgroundServer]:
    meta = {"arch": "stand-in", "model_kwargs": {"encoder_name": "brightness"}}
    with BackgroundServer(create_app(segmenter, max_upload_bytes=CAP, meta=meta)) as running:
        yield running


@pytest.fixture
def page(new_page: Callable[..., BrowserPage], server: BackgroundServer) -> BrowserPage:
    view = new_page(accept_downloads=True)
    view.page.goto(server.url)
    view.page.wait_for_selector("body[data-state=idle]")
    return view


def _upload(view: BrowserPage, path: Path) -> None:
    view.page.set_input_files("#file", str(path))


def _pixel(view: BrowserPage, xy: tuple[int, int]) -> list[int]:
    return view.page.evaluate(PIXEL_JS, list(xy))


def test_upload_toggle_opacity_and_download(page: BrowserPage, tmp_path: Path, segmenter: Segmenter) -> None:
    path = tmp_path / "ISIC_0024306.png"
    path.write_bytes(encode(IMAGE))
    # the legend and the model panel come from the server
    assert page.page.locator("#legend tbody tr").count() == 5
    assert "Globules" in page.page.inner_text("#legend") and "stand-in" in page.page.inner_text("#model")
    assert "not a medical device" in page.page.inner_text("#notice").lower()

    _upload(page, path)
    page.page.wait_for_selector("body[data-state=ready]")
    assert page.page.is_visible("#stage") and not page.page.is_visible("#error")
    size = page.page.evaluate(
        "() => [document.getElementById('canvas').width, document.getElementById('canvas').height]"
    )
    assert size == [200, 150]
    row = page.page.locator("#legend tr[data-attribute=globules]")
    assert row.locator(".presence").inner_text().strip().endswith("1.00")
    area = segmenter(IMAGE).masks[0].mean() * 100  # about 60 x 60 of 200 x 150
    assert row.locator(".area").inner_text() == f"{area:.1f} %"
    assert "highest pixel probability" in row.locator(".presence").get_attribute("title")

    inside, outside = _pixel(page, INSIDE), _pixel(page, OUTSIDE)
    assert inside[:3] != [230, 230, 230] and outside[:3] != [40, 40, 40]  # overlays drawn on both
    before = page.page.evaluate(CHECKSUM_JS)

    # globules off: the square changes (negative network and streaks stay), the background does not
    page.page.click("#toggle-globules")
    assert page.page.evaluate(CHECKSUM_JS) != before
    assert _pixel(page, INSIDE) != inside and _pixel(page, OUTSIDE) == outside
    page.page.click("#toggle-globules")
    assert page.page.evaluate(CHECKSUM_JS) == before

    # opacity: the overlay gets stronger, and at 0 with outlines off the image shows through
    page.page.locator("#opacity").fill("90")
    assert page.page.inner_text("#opacity-value") == "90%"
    assert page.page.evaluate(CHECKSUM_JS) != before
    page.page.locator("#opacity").fill("0")
    page.page.uncheck("#outlines")
    assert _pixel(page, INSIDE)[:3] == [230, 230, 230] and _pixel(page, OUTSIDE)[:3] == [40, 40, 40]

    screenshot = page.page.screenshot(full_page=True)
    assert screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(screenshot) > 10_000

    with page.page.expect_download() as download:
        page.page.click("#download")
    saved = tmp_path / "download.zip"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "ISIC_0024306_masks.zip"
    with zipfile.ZipFile(saved) as zf:
        assert zf.namelist() == [f"ISIC_0024306_attribute_{a}.png" for a in ATTRIBUTES]
    assert page.errors() == []


def test_drag_and_drop(page: BrowserPage) -> None:
    data = base64.b64encode(encode(square_image(30, width=120, height=90))).decode()
    page.page.evaluate(
        """(data) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], "dropped lesion.png", { type: "image/png" }));
          const target = document.getElementById("drop");
          for (const type of ["dragenter", "dragover", "drop"]) {
            const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
            target.dispatchEvent(new DragEvent(type, init));
          }
        }""",
        data,
    )
    page.page.wait_for_selector("body[data-state=ready]")
    assert page.page.get_attribute("#download", "download") == "dropped_lesion_masks.zip"
    assert "dropped lesion.png" in page.page.inner_text("#caption")
    assert page.errors() == []


def test_non_image_shows_the_message(page: BrowserPage, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a picture")
    _upload(page, path)
    page.page.wait_for_selector("#error:not([hidden])")
    assert page.page.inner_text("#error") == (
        "notes.txt is not an image dermseg reads; expected JPEG, PNG, TIFF, BMP or WebP."
    )
    assert not page.page.is_visible("#stage")
    assert page.errors(ignore=[HTTP_STATUS_ERROR]) == []


def test_corrupt_image_shows_the_message(page: BrowserPage, tmp_path: Path) -> None:
    path = tmp_path / "ISIC_0000001.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    _upload(page, path)
    page.page.wait_for_selector("#error:not([hidden])")
    assert page.page.inner_text("#error").startswith("ISIC_0000001.jpg could not be read")
    assert page.errors(ignore=[HTTP_STATUS_ERROR]) == []


def test_too_large_file_shows_the_message(page: BrowserPage, tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(encode(IMAGE) + b"\0" * CAP)
    # checked in the page before anything is sent ...
    _upload(page, path)
    page.page.wait_for_selector("#error:not([hidden])")
    assert "larger than the upload limit of 0.3 MB" in page.page.inner_text("#error")
    # ... and by the server, whose 413 message the page shows when the page's own check is bypassed
    page.page.evaluate("() => { state.info.max_upload_bytes = 1e12; }")
    page.page.evaluate("() => { document.getElementById('error').hidden = true; }")
    _upload(page, path)
    page.page.wait_for_selector("#error:not([hidden])")
    assert page.page.inner_text("#error") == "The file is larger than the upload limit of 0.3 MB."
    assert page.errors(ignore=[HTTP_STATUS_ERROR]) == []
    # the page recovers: a good image after the errors is analysed
    good = tmp_path / "good.png"
    good.write_bytes(encode(IMAGE))
    _upload(page, good)
    page.page.wait_for_selector("body[data-state=ready]")
    assert not page.page.is_visible("#error")


def test_console_error_collection_works(new_page: Callable[..., BrowserPage]) -> None:
    view = new_page()
    view.page.set_content("<script>console.error('boom'); undefined_function();</script>")
    assert view.console_errors == ["boom"] and len(view.page_errors) == 1
    assert view.errors(ignore=["boom", "undefined_function"]) == []


def test_image_decoding_matches_the_stand_in(segmenter: Segmenter) -> None:
    # the browser tests' expectations about where each overlay lies hold for the stand-in model
    masks = segmenter(IMAGE).masks
    x, y = INSIDE
    assert masks[:, y, x].tolist() == [True, False, True, False, True]
    x, y = OUTSIDE
    assert masks[:, y, x].tolist() == [False, True, False, True, False]
    assert masks[0].mean() == pytest.approx(60 * 60 / (200 * 150), abs=0.005)
