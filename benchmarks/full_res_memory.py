"""Peak memory of predicting one full-resolution image (6000x4000 by default) with dermseg.

Runs the prediction in a fresh process and reads its peak resident set size
(``ru_maxrss``) before and after the prediction, so the increase is what the
prediction itself needed beyond the loaded libraries and model. The model is
UNetASPP with a random tf_efficientnet_lite0 encoder at the demo's working size:
the weights do not change the memory profile.

    python benchmarks/full_res_memory.py [--width 6000 --height 4000 --input-size 512]
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
    print(json.dumps({"peak_before_mib": before, "peak_after_mib": after, "seconds": seconds}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=6000)
    p.add_argument("--height", type=int, default=4000)
    p.add_argument("--input-size", type=int, default=512)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--width",
        str(args.width),
        "--height",
        str(args.height),
        "--input-size",
        str(args.input_size),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    pixels = args.width * args.height
    one_map = pixels * 4 / 2**20  # one full-resolution float32 map
    increase = result["peak_after_mib"] - result["peak_before_mib"]
    record = {
        **result,
        "width": args.width,
        "height": args.height,
        "input_size": args.input_size,
        "increase_mib": increase,
        "float_map_mib": one_map,
        "increase_in_float_maps": increase / one_map,
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
            f"Machine: {record['machine']}; {record['date']}. `Segmenter` (torch, CPU), UNetASPP + "
            f"tf_efficientnet_lite0 at working size {args.input_size}, background crop + resize path.",
            "",
            "| peak RSS before | peak RSS after | increase | in full-resolution float32 maps | seconds |",
            "|---:|---:|---:|---:|---:|",
            f"| {result['peak_before_mib']:.0f} MiB | {result['peak_after_mib']:.0f} MiB "
            f"| {increase:.0f} MiB "
            f"| {increase / one_map:.1f} (one map = {one_map:.0f} MiB) | {result['seconds']:.2f} |",
            "",
            "The output itself is five float32 maps (the probabilities of the five attributes).",
            "",
            "Command: `python benchmarks/full_res_memory.py`",
            "<!-- /full-res-memory -->",
        ],
    )


if __name__ == "__main__":
    main()
