"""Peak memory of predicting one full-resolution image (6000x4000 by default) with dermseg.

Runs the prediction in a fresh process and reads its peak resident set size
(``ru_maxrss``) before and after the prediction, so the increase is what the
prediction itself needed beyond the loaded libraries and model. The model is
UNetASPP with a random tf_efficientnet_lite0 encoder at the demo's working size:
the weights do not change the memory profile. One row per way of predicting: one resize of
the field, then tiles (``Segmenter.tiling``) at each of ``--tile-scales``, each in its own process.

    python benchmarks/full_res_memory.py [--width 6000 --height 4000 --input-size 512 --tile-scales 1 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_md import replace_section

ROOT = Path(__file__).resolve().parents[1]


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from dermseg.config import load_config, resolve_config_path
    from dermseg.inference.segmenter import Segmenter
    from dermseg.training.setup import build_model, checkpoint_meta

    cfg = load_config(
        resolve_config_path("demo"),
        [
            "model.encoder_weights=none",
            f"data.size={args.input_size}",
            f"data.crop_size={min(args.input_size, 160)}",
        ],
    )
    torch.manual_seed(0)
    seg = Segmenter.from_model(build_model(cfg), checkpoint_meta(cfg))
    if args.tile_scale is not None:
        from dermseg.inference.tiling import Tiling

        seg.tiling = Tiling(scale=args.tile_scale)
    rng = np.random.default_rng(0)
    small = (rng.random((args.height // 8, args.width // 8, 3)) * 255).astype(np.uint8)
    path = Path(tempfile.mkdtemp()) / "big.jpg"
    Image.fromarray(small).resize((args.width, args.height)).save(path, quality=90)
    seg(np.zeros((600, 400, 3), np.uint8))  # warm-up: allocator and kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    out = seg(path)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert out.probabilities.shape == (5, args.height, args.width)
    print(
        json.dumps(
            {
                "prediction": seg.tiling_description.removeprefix("prediction: "),
                "peak_before_mib": before,
                "peak_after_mib": after,
                "seconds": seconds,
            }
        )
    )


def _measure(args: argparse.Namespace, tile_scale: float | None) -> dict:
    """One prediction in a fresh process: its peak RSS before and after, and its seconds."""
    cmd = [sys.executable, __file__, "--child", "--width", str(args.width), "--height", str(args.height)]
    cmd += ["--input-size", str(args.input_size)]
    if tile_scale is not None:
        cmd += ["--tile-scale", str(tile_scale)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**result, "increase_mib": result["peak_after_mib"] - result["peak_before_mib"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=6000)
    p.add_argument("--height", type=int, default=4000)
    p.add_argument("--input-size", type=int, default=512)
    p.add_argument("--tile-scales", type=float, nargs="*", default=[1.0, 0.5])
    p.add_argument("--tile-scale", type=float, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    rows = [_measure(args, scale) for scale in [None, *args.tile_scales]]
    pixels = args.width * args.height
    one_map = pixels * 4 / 2**20  # one full-resolution float32 map
    record = {
        **rows[0],  # the one-resize row at the top level, as benchmarks/run.py reads it
        "rows": rows,
        "width": args.width,
        "height": args.height,
        "input_size": args.input_size,
        "float_map_mib": one_map,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "full_res_memory.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    replace_section(
        "full-res-memory",
        [
            "<!-- full-res-memory -->",
            f"### Peak memory of one {args.width}x{args.height} prediction",
            "",
            f"Machine: {record['machine']}; {record['date']}; the cores were shared with other jobs (the "
            f"seconds are noisy). `Segmenter` (torch, CPU), UNetASPP + tf_efficientnet_lite0 at working "
            f"size {args.input_size}, training crop {min(args.input_size, 160)} (the tile side), background "
            "crop, then one resize of the field or tiles (overlap 0.5, 4 per batch).",
            "",
            "| prediction | peak RSS before | peak RSS after | increase | in full-resolution float32 maps "
            "| seconds |",
            "|---|---:|---:|---:|---:|---:|",
            *(
                f"| {r['prediction']} | {r['peak_before_mib']:.0f} MiB | {r['peak_after_mib']:.0f} MiB "
                f"| {r['increase_mib']:.0f} MiB | {r['increase_mib'] / one_map:.1f} "
                f"| {r['seconds']:.2f} |"
                for r in rows
            ),
            "",
            f"One full-resolution float32 map is {one_map:.0f} MiB; the output itself is five of them "
            "(the probabilities of the five attributes).",
            "",
            "Command: `python benchmarks/full_res_memory.py`",
            "<!-- /full-res-memory -->",
        ],
    )


if __name__ == "__main__":
    main()
