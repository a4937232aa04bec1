"""Data loading speed: full decode vs draft decode vs the prepared cache, on ISIC-sized images.

Writes N synthetic 4288x2848 JPEGs (the most common ISIC 2018 size; synthetic 512 px samples
upscaled with Pillow, quality 90) and their five full-size PNG masks, then measures, in one
process, images per second of one dataset item each way (image + masks, background crop,
resize of the short side to 512, to tensors):

(a) full decode (``IsicDataset`` with ``decode_side=None``);
(b) JPEG draft decode at the working size (``IsicDataset`` with ``decode_side=512``, dermseg's default);
(c) the prepared cache (``CachedIsicDataset``), after ``prepare_cache`` (timed separately).

Writes its section of BENCHMARKS.md and ``benchmarks/results/data_loading.json``.

    python benchmarks/data_loading.py [--n 24] [--size 512]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_md import replace_section  # noqa: E402

from dermseg.attributes import ATTRIBUTES  # noqa: E402
from dermseg.data.cache import CachedIsicDataset, open_cache, prepare_cache  # noqa: E402
from dermseg.data.dataset import IsicDataset  # noqa: E402
from dermseg.data.layout import discover  # noqa: E402
from dermseg.data.synthetic import SynthConfig, split_folders, write_dataset  # noqa: E402
from dermseg.data.transforms import TransformConfig, build_eval_transform  # noqa: E402

WIDTH, HEIGHT = 4288, 2848
RESULTS = Path(__file__).resolve().parent / "results" / "data_loading.json"


def write_large_dataset(root: Path, n: int) -> None:
    """``n`` synthetic samples upscaled to 4288x2848 (JPEG quality 90, masks 0/255 PNG)."""
    write_dataset(root, n, size=512, seed=0, split="training", config=SynthConfig(height=340))
    images_dir, truth_dir = (root / name for name in split_folders("training"))
    for image_path in sorted(images_dir.glob("ISIC_*.jpg")):
        with Image.open(image_path) as img:
            img.convert("RGB").resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC).save(image_path, quality=90)
        for name in ATTRIBUTES:
            mask_path = truth_dir / f"{image_path.stem}_attribute_{name}.png"
            with Image.open(mask_path) as m:
                m.resize((WIDTH, HEIGHT), Image.Resampling.NEAREST).save(mask_path)


def images_per_s(dataset: object, n: int) -> float:
    """Items per second reading all ``n`` items of ``dataset`` once, in this process."""
    t0 = time.perf_counter()
    for i in range(n):
        dataset[i]  # type: ignore[index]
    return n / (time.perf_counter() - t0)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {usable} usable cores ({os.cpu_count()} online), {platform.platform()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data, cache_dir = Path(tmp) / "data", Path(tmp) / "cache"
        t0 = time.perf_counter()
        write_large_dataset(data, args.n)
        print(f"wrote {args.n} images of {WIDTH}x{HEIGHT} in {time.perf_counter() - t0:.1f} s", flush=True)
        samples = discover(data).samples
        resize = build_eval_transform(TransformConfig(size=args.size, crop_size=args.size))
        full = images_per_s(IsicDataset(samples, resize, decode_side=None), args.n)
        print(f"(a) full decode: {full:.2f} img/s", flush=True)
        draft = images_per_s(IsicDataset(samples, resize, decode_side=args.size), args.n)
        print(f"(b) draft decode: {draft:.2f} img/s", flush=True)
        t0 = time.perf_counter()
        prepare_cache(data, cache_dir, args.size, workers=1)
        prepare_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepare_cache(data, cache_dir, args.size, workers=1)
        noop_s = time.perf_counter() - t0
        cache_bytes = sum(p.stat().st_size for p in cache_dir.iterdir())
        cache = open_cache(cache_dir, data)
        cached_ds = CachedIsicDataset(cache, [s.isic_id for s in samples], resize)
        cached_ds[0]  # open the memory map
        cached = images_per_s(cached_ds, args.n)
        print(f"(c) cache: {cached:.2f} img/s (prepare {prepare_s:.1f} s, re-run {noop_s:.3f} s)", flush=True)

    result = {
        "n": args.n,
        "image_size": [WIDTH, HEIGHT],
        "size": args.size,
        "full_decode_img_s": full,
        "draft_decode_img_s": draft,
        "cache_img_s": cached,
        "prepare_s": prepare_s,
        "prepare_noop_s": noop_s,
        "cache_bytes": cache_bytes,
        "machine": machine(),
        "load_average_before": load_before,
        "date": datetime.date.today().isoformat(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    per_image_kb = cache_bytes / args.n / 1024
    lines = [
        "<!-- data-loading -->",
        f"### Loading ISIC-sized images: full decode vs draft decode vs prepared cache ({args.size} px)",
        "",
        f"Machine: {result['machine']}; Python {platform.python_version()}; {result['date']}. "
        f"{args.n} synthetic {WIDTH}x{HEIGHT} JPEGs (512 px samples upscaled, quality 90) with five "
        f"full-size 0/255 PNG masks each, in the page cache. One dataset item = image and masks, "
        f"background crop, short side resized to {args.size}, to tensors; one process, each image "
        f"read once. Load average before the run (other processes): {load_before:.1f}.",
        "",
        "| path | img/s | speed-up |",
        "|---|---:|---:|",
        f"| (a) full decode (`IsicDataset`, `decode_side=None`) | {full:.2f} | 1.0x |",
        f"| (b) JPEG draft decode (`IsicDataset`, `decode_side={args.size}`) | {draft:.2f} | "
        f"{draft / full:.1f}x |",
        f"| (c) prepared cache (`CachedIsicDataset`) | {cached:.1f} | {cached / full:.0f}x |",
        "",
        f"`prepare_cache` (one worker) took {prepare_s:.1f} s for the {args.n} images "
        f"({args.n / prepare_s:.2f} img/s, i.e. path (b) plus writing), a re-run on the unchanged "
        f"data {noop_s * 1000:.0f} ms (stat only); the cache holds {per_image_kb:.0f} KiB per image.",
        "",
        f"Command: `python benchmarks/data_loading.py --n {args.n} --size {args.size}`",
        "<!-- /data-loading -->",
    ]
    replace_section("data-loading", lines)


if __name__ == "__main__":
    main()
