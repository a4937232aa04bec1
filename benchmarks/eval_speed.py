"""dermseg.evaluation.folders.evaluate_folders against the official scorer, on the same folders in one run.

Writes N images x 5 attributes of synthetic truth/prediction masks (0/255 PNGs) to a temporary
folder, each image's size drawn from ``--sizes`` (by default half 1022x767, a common ISIC size,
and half spread over four other sizes: a mix we chose, not the dataset's), then times the
official ``isic_challenge_scoring.task2.score`` (run once: it takes tens of seconds) and
``evaluate_folders`` (best of ``--repeats``, with the default thread count and with one thread),
checks that the scores agree (max abs difference over every official key), and writes
benchmarks/results/eval_speed.json and the ``eval-speed`` section of BENCHMARKS.md.

Truth masks: each attribute present with its ISIC 2018 training frequency (pigment network 59 %,
milia-like cysts 26 %, globules 23 %, negative network 7 %, streaks 4 %), drawn as a few
ellipses inside a lesion; predictions: the truth shifted by a few pixels, with dropped and
extra blobs, and sometimes a blob where the truth is empty. The files are in the page cache
(just written) for both scorers.

    python benchmarks/eval_speed.py                  # 200 images x 5 attributes = 1000 pairs
    python benchmarks/eval_speed.py --images 50 --repeats 1 --sizes 1022x767:1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from bench_md import replace_section  # benchmarks/bench_md.py, beside this script
from PIL import Image, ImageDraw

from dermseg.attributes import ATTRIBUTES
from dermseg.evaluation import folders as evaluate
from dermseg.evaluation.folders import default_workers, evaluate_folders

ROOT = Path(__file__).resolve().parents[1]
TAG = "eval-speed"
DEFAULT_SIZES = "1022x767:4,1024x768:1,767x576:1,1504x1129:1,1280x960:1"
FREQUENCY = {
    "globules": 0.23,
    "milia_like_cyst": 0.26,
    "negative_network": 0.07,
    "pigment_network": 0.59,
    "streaks": 0.04,
}


def machine() -> str:
    """CPU model and core count, from /proc/cpuinfo where there is one."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return (
        f"{model}, {usable} usable cores ({os.cpu_count()} online), {platform.system()} {platform.release()}"
    )


def _ellipses(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int], n: int
) -> None:
    x0, y0, x1, y1 = box
    for _ in range(n):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        rx, ry = rng.uniform(5, (x1 - x0) / 4), rng.uniform(5, (y1 - y0) / 4)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)


def parse_sizes(text: str) -> tuple[list[tuple[int, int]], list[float]]:
    """``"1022x767:5,1024x768:1"`` -> sizes ``[(1022, 767), (1024, 768)]`` and probabilities."""
    sizes, weights = [], []
    for item in text.split(","):
        size, _, weight = item.partition(":")
        w, h = (int(v) for v in size.lower().split("x"))
        sizes.append((w, h))
        weights.append(float(weight or 1))
    return sizes, [x / sum(weights) for x in weights]


def write_pair(
    truth_dir: Path, pred_dir: Path, image: int, sizes: tuple[list[tuple[int, int]], list[float]], seed: int
) -> tuple[int, int]:
    """Write the five truth and five prediction masks of one image; return its size."""
    rng = np.random.default_rng([seed, image])
    size = sizes[0][rng.choice(len(sizes[0]), p=sizes[1])]
    w, h = size
    lesion = (int(w * rng.uniform(0.1, 0.3)), int(h * rng.uniform(0.1, 0.3)))
    lesion = (*lesion, int(w * rng.uniform(0.7, 0.9)), int(h * rng.uniform(0.7, 0.9)))
    for name in ATTRIBUTES:
        truth = Image.new("L", size, 0)
        if rng.random() < FREQUENCY[name]:
            _ellipses(ImageDraw.Draw(truth), rng, lesion, int(rng.integers(1, 8)))
        t = np.asarray(truth)
        pred = np.roll(t, tuple(rng.integers(-12, 13, 2)), axis=(0, 1)).copy()
        if t.any() and rng.random() < 0.2:
            pred[:] = 0  # missed
        pred_img = Image.fromarray(pred)
        if rng.random() < 0.3:
            _ellipses(ImageDraw.Draw(pred_img), rng, lesion, int(rng.integers(1, 3)))  # false positives
        name_png = f"ISIC_{image:07d}_attribute_{name}.png"
        truth.save(truth_dir / name_png)
        pred_img.save(pred_dir / name_png)
    return size


def best_of(repeats: int, fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def time_without_empty_cache(repeats: int, pred_dir: Path, truth_dir: Path) -> float:
    """One thread, every mask decoded (a fresh cache per file): what the cache saves on this data."""
    original = evaluate._read_mask
    evaluate._read_mask = lambda path, what, empty, expected_hw=None: original(path, what, {}, expected_hw)
    try:
        return best_of(repeats, lambda: evaluate_folders(pred_dir, truth_dir, workers=1))[0]
    finally:
        evaluate._read_mask = original


def max_abs_diff(official: dict, ours: dict) -> float:
    assert list(official) == list(ours), (list(official), list(ours))
    diffs = []
    for key, value in official.items():
        if isinstance(value, dict):
            diffs += [abs(float(value[s]) - ours[key][s]) for s in ("jaccard", "dice")]
        else:
            diffs.append(abs(float(value) - ours[key]))
    return max(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="WxH:weight,... image sizes to draw from")
    parser.add_argument("--repeats", type=int, default=3, help="evaluate_folders runs; the best counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from isic_challenge_scoring import task2  # a test dependency, not one of dermseg's

    sizes = parse_sizes(args.sizes)
    load_before = os.getloadavg()  # other processes on the machine slow both scorers (and threads)
    with tempfile.TemporaryDirectory(prefix="dermseg-eval-speed-") as tmp:
        truth_dir, pred_dir = Path(tmp) / "truth", Path(tmp) / "pred"
        truth_dir.mkdir()
        pred_dir.mkdir()
        start = time.perf_counter()
        with ThreadPoolExecutor() as pool:
            drawn = list(
                pool.map(lambda i: write_pair(truth_dir, pred_dir, i, sizes, args.seed), range(args.images))
            )
        generate_s = time.perf_counter() - start
        pairs = len(list(truth_dir.iterdir()))
        size_counts = {f"{w}x{h}": drawn.count((w, h)) for w, h in sizes[0]}
        print(f"wrote {pairs} mask pairs in {generate_s:.1f} s; images per size {size_counts}")

        official_s, official = best_of(1, lambda: task2.score(truth_dir, pred_dir))
        print(f"official task2.score: {official_s:.2f} s")
        workers = default_workers()
        ours_s, ours = best_of(args.repeats, lambda: evaluate_folders(pred_dir, truth_dir))
        print(f"evaluate_folders ({workers} threads): {ours_s:.2f} s")
        serial_s, serial = best_of(args.repeats, lambda: evaluate_folders(pred_dir, truth_dir, workers=1))
        print(f"evaluate_folders (1 thread): {serial_s:.2f} s")
        nocache_s = time_without_empty_cache(args.repeats, pred_dir, truth_dir)
        print(f"evaluate_folders (1 thread, empty-mask cache off): {nocache_s:.2f} s")

    counts = ours.per_image_counts
    empty_truth = np.sum((counts[..., 0] + counts[..., 2]) == 0)
    empty_pred = np.sum((counts[..., 0] + counts[..., 1]) == 0)
    diff = max(max_abs_diff(official, ours.scores), max_abs_diff(official, serial.scores))
    record = {
        "tag": TAG,
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "load_average_before": [round(x, 2) for x in load_before],
        "args": vars(args),
        "pairs": pairs,
        "images_per_size": size_counts,
        "official_s": round(official_s, 3),
        "evaluate_folders_s": round(ours_s, 3),
        "evaluate_folders_workers": workers,
        "evaluate_folders_1_thread_s": round(serial_s, 3),
        "evaluate_folders_1_thread_no_cache_s": round(nocache_s, 3),
        "speedup": round(official_s / ours_s, 1),
        "speedup_1_thread": round(official_s / serial_s, 1),
        "speedup_1_thread_no_cache": round(official_s / nocache_s, 1),
        "max_abs_diff": diff,
        "bit_identical": official == ours.scores,
        "overall": ours.overall,
        "empty_truth_masks": int(empty_truth),
        "empty_prediction_masks": int(empty_pred),
        "images_with_attribute": ours.images_with_attribute,
    }
    print(json.dumps(record, indent=2))
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "eval_speed.json").write_text(json.dumps(record, indent=2) + "\n")
    write_section(record)


def write_section(record: dict) -> None:
    """Replace (or add) the eval-speed section of BENCHMARKS.md, leaving the others alone."""
    a = record["args"]
    command = "python benchmarks/eval_speed.py"
    defaults = {"images": 200, "sizes": DEFAULT_SIZES, "repeats": 3, "seed": 0}
    command += "".join(f" --{k} {v}" for k, v in a.items() if defaults.get(k) != v)
    sizes = ", ".join(f"{k} {v}" for k, v in record["images_per_size"].items())
    same = "bit-identical" if record["bit_identical"] else f"max abs difference {record['max_abs_diff']:.1e}"
    lines = [
        f"<!-- {TAG} -->",
        "### Scoring a prediction folder: `dermseg.evaluation.folders.evaluate_folders` vs the official scorer",
        "",
        f"Machine: {record['machine']}; {record['date']}. {record['pairs']} truth/prediction pairs "
        f"({a['images']} images x 5 attributes; images per size: {sizes}) of 0/255 PNGs, synthetic "
        "(attributes at their ISIC 2018 training frequencies), in the page cache. "
        f"Official `isic_challenge_scoring.task2.score` 5.6.0 run once; `evaluate_folders` best of "
        f"{a['repeats']}. Load average before the run (other processes): "
        f"{record['load_average_before'][0]:.1f}.",
        "",
        "| scorer | seconds | speed-up |",
        "|---|---:|---:|",
        f"| `isic_challenge_scoring.task2.score` | {record['official_s']:.2f} | 1.0x |",
        f"| `evaluate_folders` ({record['evaluate_folders_workers']} threads) "
        f"| {record['evaluate_folders_s']:.2f} | {record['speedup']:.1f}x |",
        f"| `evaluate_folders` (1 thread) | {record['evaluate_folders_1_thread_s']:.2f} "
        f"| {record['speedup_1_thread']:.1f}x |",
        f"| `evaluate_folders` (1 thread, empty-mask cache off) "
        f"| {record['evaluate_folders_1_thread_no_cache_s']:.2f} "
        f"| {record['speedup_1_thread_no_cache']:.1f}x |",
        "",
        f"Scores: {same} to the official ones over every key (overall Jaccard {record['overall']:.4f}). "
        f"Empty masks: {record['empty_truth_masks']} of {record['pairs']} truth, "
        f"{record['empty_prediction_masks']} of {record['pairs']} predictions; `evaluate_folders` decodes "
        "each distinct empty file content once (empty masks of one size are the same bytes).",
        "",
        f"Command: `{command}`",
        f"<!-- /{TAG} -->",
    ]
    replace_section(TAG, lines)


if __name__ == "__main__":
    main()
