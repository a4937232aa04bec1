"""Peak memory of ``dermseg predict`` over folders of many small images: does it stay flat?

Writes N small JPEGs (64x64 by default) and a tiny untrained checkpoint (the test suite's
``write_tiny_checkpoint`` at a 32 px working size: memory, not accuracy, is measured), runs
``python -m dermseg predict`` on them in a fresh process for each N, and reads the process's
peak resident set size (``ru_maxrss`` from ``wait4``) and its wall time. A run on 10 images
gives the floor (libraries and model). A second run into the same folder measures the resume
check (every image skipped).

    python benchmarks/archive_predict.py [--counts 10 1000 10000] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_md import replace_section
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import write_tiny_checkpoint  # noqa: E402


def _images(folder: Path, count: int, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(count):
        pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"ISIC_{k:07d}.jpg", quality=90)


def _run(args: list[str]) -> dict[str, float]:
    """Run ``dermseg`` with ``args``: wall seconds and peak RSS (MiB) of the process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dermseg", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"dermseg {' '.join(args)} failed:\n{out}\n{err}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "stdout": out.strip()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", type=int, nargs="+", default=[10, 1000, 10000])
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = write_tiny_checkpoint(work / "tiny.safetensors", ["data.size=32", "data.crop_size=32"])
        for count in args.counts:
            inputs, out = work / f"in{count}", work / f"out{count}"
            _images(inputs, count, args.size)
            command = ["predict", str(inputs), "--checkpoint", str(ckpt), "--out", str(out)]
            first = _run(command)
            again = _run(command)  # everything done: the resume check alone
            masks = sum(1 for name in os.listdir(out) if name.endswith(".png"))
            assert masks == 5 * count, (masks, count)
            row = {
                "images": count,
                "peak_rss_mib": first["peak_rss_mib"],
                "seconds": first["seconds"],
                "images_per_s": count / first["seconds"],
                "resume_peak_rss_mib": again["peak_rss_mib"],
                "resume_seconds": again["seconds"],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    record = {
        "rows": rows,
        "size": args.size,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d"),
    }
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "archive_predict.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "<!-- archive-predict -->",
        "### `predict` over many images: peak memory and resume (`benchmarks/archive_predict.py`)",
        "",
        f"Machine: {record['machine']}, shared with other jobs (load average "
        f"{record['load_average'][0]:.1f} at the end); {record['date']}. `python -m dermseg predict` "
        f"in a fresh process per folder of {args.size}x{args.size} JPEGs, masks only, a tiny untrained "
        "checkpoint (ResNet-18 UNetASPP at a 32 px working size: memory is measured, not accuracy). "
        "Peak RSS is the process's `ru_maxrss`; the second run into the same folder skips every image "
        "(the resume check: five `stat` calls per image). Times include start-up and the shared CPU.",
        "",
        "| images | peak RSS | wall time | images/s | rerun (all skipped): peak RSS | rerun: wall time |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['images']} | {r['peak_rss_mib']:.0f} MiB | {r['seconds']:.1f} s | {r['images_per_s']:.1f} "
            f"| {r['resume_peak_rss_mib']:.0f} MiB | {r['resume_seconds']:.1f} s |"
            for r in rows
        ),
        "",
        "<!-- /archive-predict -->",
    ]
    replace_section("archive-predict", lines)


if __name__ == "__main__":
    main()
