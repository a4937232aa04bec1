"""The cost of the prepared cache's checksums: each item checked when a process first reads it.

Prepares a cache of N synthetic images (682x512, cached at short side 512) and measures, in
one process: reading every item once with its check (a fresh dataset: the first epoch of a
training run, per process), reading them again (checked already: every later epoch), the
hashing alone, and a ``prepare`` re-run on unchanged data (which checks every item).

Writes its section of BENCHMARKS.md and ``benchmarks/results/cache_verify.json``.

    python benchmarks/cache_verify.py [--n 32] [--size 512]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_md import replace_section  # noqa: E402
from data_loading import machine  # noqa: E402

from dermseg.data.cache import CachedIsicDataset, open_cache, prepare_cache  # noqa: E402
from dermseg.data.cache_integrity import damaged_part  # noqa: E402
from dermseg.data.synthetic import SynthConfig, write_dataset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "cache_verify.json"


def _load_all(ds: CachedIsicDataset) -> float:
    """Seconds to ``load`` every item once (decode-free: memory map, unpack the masks)."""
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds.load(i)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data, cache_dir = Path(tmp) / "data", Path(tmp) / "cache"
        width = round(args.size * 4 / 3)
        write_dataset(
            data, args.n, size=width, seed=0, split="training", config=SynthConfig(height=args.size)
        )
        prepare_cache(data, cache_dir, args.size, workers=1)
        t0 = time.perf_counter()
        prepare_cache(data, cache_dir, args.size, workers=1)
        noop_s = time.perf_counter() - t0
        cache = open_cache(cache_dir, data)
        ids = [s.isic_id for s in cache.samples]
        runs = []
        for _ in range(3):  # best of 3: a fresh dataset checks every item again
            ds = CachedIsicDataset(cache, ids)
            ds.load(0)  # open the memory maps
            ds._checked.clear()
            first = _load_all(ds)
            again = _load_all(ds)
            runs.append((first, again))
        first, again = min(runs)
        split = next(iter(cache.splits.values()))
        images, masks = ds._arrays(split.samples[0].split)
        t0 = time.perf_counter()
        for e in split.samples:
            damaged_part(e, images, masks)
        hash_s = time.perf_counter() - t0
        item_bytes = sum(e.image_bytes + e.mask_bytes for e in cache.samples) / len(cache.samples)
    n = len(ids)
    result = {
        "n": n,
        "size": args.size,
        "item_bytes": item_bytes,
        "load_checked_ms": 1000 * first / n,
        "load_unchecked_ms": 1000 * again / n,
        "check_ms": 1000 * hash_s / n,
        "hash_gb_s": item_bytes * n / hash_s / 1e9,
        "prepare_noop_s": noop_s,
        "machine": machine(),
        "load_average_before": load_before,
        "date": datetime.date.today().isoformat(),
    }
    print(json.dumps(result, indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "<!-- cache-verify -->",
        f"### Prepared cache checksums: the cost of checking each item ({args.size} px)",
        "",
        f"Machine: {result['machine']}; Python {platform.python_version()}; {result['date']}. "
        f"{n} synthetic {width}x{args.size} images cached at {args.size} px "
        f"({item_bytes / 1e6:.2f} MB per item: image and packed masks), in the page cache; "
        f"`CachedIsicDataset.load` of every item, best of 3. Load average before the run: {load_before:.1f}.",
        "",
        "| | ms per item | per epoch of 2594 items (ISIC 2018 Task 2) |",
        "|---|---:|---:|",
        f"| first read in a process (checked: BLAKE2b-128) | {result['load_checked_ms']:.2f} | "
        f"{2.594 * result['load_checked_ms']:.1f} s |",
        f"| later reads (already checked) | {result['load_unchecked_ms']:.2f} | "
        f"{2.594 * result['load_unchecked_ms']:.1f} s |",
        f"| the check alone ({result['hash_gb_s']:.2f} GB/s) | {result['check_ms']:.2f} | "
        f"{2.594 * result['check_ms']:.1f} s |",
        "",
        f"`prepare` re-run on the unchanged data (stats the sources, checks every item): "
        f"{noop_s:.2f} s for the {n} items. Each process checks an item once, so only a run's "
        "first epoch (per DataLoader worker) pays the check; a training step on the same item "
        "costs far more.",
        "<!-- /cache-verify -->",
    ]
    replace_section("cache-verify", lines)


if __name__ == "__main__":
    main()
