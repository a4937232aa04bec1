"""Screenshot of `dermseg serve` for the README: docs/images/serve.png.

Runs the web app on a free loopback port with the given model, opens it in headless Debian
chromium (Playwright, /usr/bin/chromium), uploads one image and saves the page once the overlay
is drawn. Without --image a synthetic lesion showing several structures is used (the synthetic
generator of `dermseg demo`), so the screenshot carries no patient image.

    .venv/bin/python docs/make_screenshots.py demo_run/run/checkpoints/best.safetensors
    .venv/bin/python docs/make_screenshots.py CKPT --image ISIC_0000000.jpg --out docs/images/serve.png
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from PIL import Image

from dermseg.checkpoint import read_meta
from dermseg.data.imageio import write_image
from dermseg.data.synthetic import SynthConfig, render_sample, sample_rng
from dermseg.predict import Segmenter
from dermseg.serve import BackgroundServer, create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_BYTES = 300_000


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a dermseg .safetensors checkpoint or .onnx model")
    parser.add_argument("--image", type=Path, help="image to upload (default: a synthetic lesion)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "images" / "serve.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=780)
    args = parser.parse_args()

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
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(server.url)
            page.wait_for_selector("body[data-state=idle]")
            page.set_input_files("#file", str(image))
            page.wait_for_selector("body[data-state=ready]", timeout=120_000)
            png = page.screenshot()
            browser.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = shrink_png(png)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data) // 1024} KB)")


if __name__ == "__main__":
    main()
