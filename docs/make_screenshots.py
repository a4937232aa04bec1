"""Screenshots for the README: docs/images/serve.png (`dermseg serve`) and report.png (a run report).

Both are taken in headless Debian chromium (Playwright, /usr/bin/chromium); PNGs are shrunk to a
256-colour palette when needed to stay small.

serve (the default when the first argument is a checkpoint): runs the web app on a free loopback
port with the given model, uploads one image and saves the page once the overlay is drawn (all of it:
--height is the window's, and the page may be longer). Without
--image a synthetic lesion showing several structures is used (the synthetic generator of
`dermseg demo`), so the screenshot carries no patient image.

report: opens a `dermseg report` page from disk (file://) and saves the top of it (header, summary
cards and the per-attribute table, cut at the end of that table or at --height) and, unless
--gallery-out is empty, a second crop of the gallery (its legend and its first --gallery-items
images).

    .venv/bin/python docs/make_screenshots.py demo_run/run/checkpoints/best.safetensors
    .venv/bin/python docs/make_screenshots.py serve CKPT --image ISIC_0000000.jpg --out docs/images/serve.png
    .venv/bin/python docs/make_screenshots.py report demo_run/run/report.html
    .venv/bin/python docs/make_screenshots.py report RUN_DIR --out docs/images/report.png \\
        --gallery-out docs/images/report_gallery.png
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from dermseg.data.imageio import write_image
from dermseg.data.synthetic import SynthConfig, render_sample, sample_rng
from dermseg.inference.segmenter import Segmenter
from dermseg.models.checkpoint import read_meta
from dermseg.serve import BackgroundServer, create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402 - the browser flags the tests use

if TYPE_CHECKING:
    from playwright.sync_api import Page

MAX_BYTES = 300_000


def _launch(playwright: object) -> object:
    """Headless Debian chromium with the flags the browser tests use."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


REPORT_MAX_BYTES = 400_000
IMAGES = Path(__file__).parent / "images"

#: Page coordinates of the index-th element matching a selector (the last one when fewer match).
BOX_JS = """([selector, index]) => {
  const all = document.querySelectorAll(selector);
  if (!all.length) return null;
  const el = all[Math.min(index, all.length - 1)];
  const r = el.getBoundingClientRect();
  return { x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height };
}"""


def synthetic_lesion(folder: Path, segmenter: Segmenter, size: int = 640, candidates: int = 12) -> Path:
    """A synthetic test lesion (seed 0) showing several structures, the one on which ``segmenter``
    finds the most of them (then the largest predicted area)."""
    config = SynthConfig(size=size, height=size * 3 // 4)
    best, best_key = None, (-1, -1.0)
    index = 0
    while candidates > 0 and index < 500:
        sample = render_sample(sample_rng(0, "test", index), config)
        if int(sample.masks.reshape(5, -1).any(axis=1).sum()) >= 3:
            candidates -= 1
            masks = segmenter(sample.image).masks.reshape(5, -1)
            key = (int(masks.any(axis=1).sum()), float(masks.mean()))
            if key > best_key:
                best, best_key = (index, sample.image), key
        index += 1
    if best is None:
        raise RuntimeError("no synthetic sample with several structures")
    path = folder / f"ISIC_{best[0]:07d}.jpg"
    write_image(path, best[1], quality=92)
    return path


def shrink_png(png: bytes, limit: int = MAX_BYTES) -> bytes:
    """The screenshot as a PNG under ``limit`` bytes (a 256-colour palette when needed)."""
    if len(png) <= limit:
        return png
    img = Image.open(io.BytesIO(png)).convert("RGB")
    for colours in (256, 128, 64):
        buffer = io.BytesIO()
        # The octree keeps the few saturated UI colours (the legend swatches) exact.
        img.quantize(colours, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
            buffer, format="PNG", optimize=True
        )
        if buffer.tell() <= limit:
            break
    return buffer.getvalue()


def serve_screenshot(args: argparse.Namespace) -> None:
    """docs/images/serve.png: the web app with one analysed image."""
    from playwright.sync_api import sync_playwright

    segmenter = Segmenter.from_path(args.checkpoint)
    meta = (
        getattr(segmenter.model, "meta", None)
        if args.checkpoint.suffix == ".onnx"
        else read_meta(args.checkpoint)
    )
    app = create_app(segmenter, meta=meta, source=args.checkpoint.name)
    with tempfile.TemporaryDirectory() as tmp:
        image = args.image or synthetic_lesion(Path(tmp), segmenter)
        with BackgroundServer(app) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(server.url)
            page.wait_for_selector("body[data-state=idle]")
            page.set_input_files("#file", str(image))
            page.wait_for_selector("body[data-state=ready]", timeout=120_000)
            png = page.screenshot(full_page=True)  # the whole side panel, should it outgrow --height
            browser.close()
    _write(args.out, shrink_png(png))


def report_screenshots(args: argparse.Namespace) -> None:
    """docs/images/report.png (the top of the report) and report_gallery.png (its gallery)."""
    from playwright.sync_api import sync_playwright

    path = args.report / "report.html" if args.report.is_dir() else args.report
    if not path.is_file():
        raise SystemExit(f"no report at {path} (write one with `dermseg report RUN_DIR`)")
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_function("() => Array.from(document.images).every((img) => img.complete)")
        # the top: header, summary and the attribute table, cut below the table when it fits
        table = page.evaluate(BOX_JS, ["section#attributes", 0])
        bottom = args.height if table is None else min(args.height, table["y"] + table["height"] + 8)
        top_png = page.screenshot(clip={"x": 0, "y": 0, "width": args.width, "height": bottom})
        gallery_png = None
        if args.gallery_out:
            gallery_png = _gallery_crop(page, args.gallery_items)
        browser.close()
    _write(args.out, shrink_png(top_png, REPORT_MAX_BYTES))
    if gallery_png is not None:
        _write(args.gallery_out, shrink_png(gallery_png, REPORT_MAX_BYTES))


def _gallery_crop(page: Page, items: int) -> bytes | None:
    """The gallery section from its title to the end of its ``items``-th image, or None without one."""
    section = page.evaluate(BOX_JS, ["section#gallery", 0])
    last = page.evaluate(BOX_JS, ["section#gallery .item", items - 1])
    if section is None or last is None:
        print("the report has no gallery image: no gallery screenshot")
        return None
    margin = 16  # at the sides; below, less than the gap to the next image (14 px)
    clip = {
        "x": max(0.0, section["x"] - margin),
        "y": section["y"],
        "width": section["width"] + 2 * margin,
        "height": last["y"] + last["height"] + 8 - section["y"],
    }
    return page.screenshot(full_page=True, clip=clip)


def _write(out: Path, data: bytes) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"wrote {out} ({len(data) // 1024} KB)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] not in ("serve", "report") and not argv[0].startswith("-"):
        argv = ["serve", *argv]  # the original usage: a checkpoint first
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="what", required=True)

    serve = commands.add_parser("serve", help="the web app with one analysed image (docs/images/serve.png)")
    serve.add_argument("checkpoint", type=Path, help="a dermseg .safetensors checkpoint or .onnx model")
    serve.add_argument("--image", type=Path, help="image to upload (default: a synthetic lesion)")
    serve.add_argument("--out", type=Path, default=IMAGES / "serve.png")
    serve.add_argument("--width", type=int, default=1280)
    serve.add_argument("--height", type=int, default=780)
    serve.set_defaults(run=serve_screenshot)

    report = commands.add_parser(
        "report", help="the top and the gallery of a run report (docs/images/report*.png)"
    )
    report.add_argument(
        "report", type=Path, help="a report.html written by `dermseg report`, or its run folder"
    )
    report.add_argument("--out", type=Path, default=IMAGES / "report.png")
    report.add_argument(
        "--gallery-out",
        type=lambda text: Path(text) if text else None,
        default=IMAGES / "report_gallery.png",
        help="where the gallery crop goes; an empty string for none",
    )
    report.add_argument("--gallery-items", type=int, default=2, help="gallery images in the crop")
    report.add_argument("--width", type=int, default=1280)
    report.add_argument(
        "--height", type=int, default=1600, help="the viewport, and the most the top crop shows"
    )
    report.set_defaults(run=report_screenshots)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
