"""Generation speed of the synthetic dermoscopy generator on one core, per look.

Renders ``--n`` images (``render_sample``, no JPEG, no file writing) at ``--size`` pixels with
OpenCV limited to one thread and reports images per second of wall time and of this process's
CPU time (the CPU figure is what one free core would give; on a shared machine the wall figure
is lower). The 1-minute load average is printed, since other jobs slow the wall figure.

    OMP_NUM_THREADS=1 python benchmarks/synth_speed.py --n 100 --size 512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from dermseg.data.synthetic import SynthConfig, render_sample

RESULT = Path(__file__).resolve().parent / "results" / "synth_speed.json"


def speed(config: SynthConfig, n: int) -> dict[str, float]:
    """Images per second (wall and CPU) over ``n`` renders, after one warm-up render."""
    render_sample(np.random.default_rng(10**6), config)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        render_sample(np.random.default_rng([7, i]), config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall_img_s": n / wall, "cpu_img_s": n / cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--md", action="store_true", help="write the synth-speed section of BENCHMARKS.md")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    load = os.getloadavg()[0]
    results = {
        "classic": speed(SynthConfig(size=args.size), args.n),
        "real": speed(SynthConfig.real(size=args.size), args.n),
    }
    load_after = os.getloadavg()[0]
    for look, r in results.items():
        print(
            f"{look:8s} {args.size} px: {r['wall_img_s']:.1f} img/s wall, {r['cpu_img_s']:.1f} img/s CPU time"
        )
    print(f"1-minute load average {load:.1f} before, {load_after:.1f} after ({os.cpu_count()} CPUs)")
    payload = {
        "size": args.size,
        "n": args.n,
        "load_before": load,
        "load_after": load_after,
        "looks": results,
    }
    RESULT.write_text(json.dumps(payload, indent=1) + "\n")
    if args.md:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_md import replace_section

        rows = [f"| {look} | {r['wall_img_s']:.1f} | {r['cpu_img_s']:.1f} |" for look, r in results.items()]
        replace_section(
            "synth-speed",
            [
                "<!-- synth-speed -->",
                f"### Synthetic generator speed, {args.size} px, one core",
                "",
                f"`render_sample` only (no JPEG, no files), {args.n} images per look, OpenCV on one thread, "
                f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs shared with other jobs "
                f"(1-minute load average {load:.1f} before, {load_after:.1f} after). CPU time is what one free "
                "core gives; wall time was slowed by the other jobs.",
                "",
                "| look | images/s, wall | images/s, CPU time |",
                "|---|---|---|",
                *rows,
                "",
                f"Command: `OMP_NUM_THREADS=1 python benchmarks/synth_speed.py --n {args.n} --size {args.size} --md`",
                "<!-- /synth-speed -->",
            ],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
