"""All of dermseg's speed and memory benchmarks, side by side, in one run on this machine.

Runs each benchmark script (each rewrites its own section of BENCHMARKS.md and its raw JSON in
benchmarks/results/), then writes a summary section with the headline numbers of this run:

* inference images/s at 512 px: dermseg torch vs dermseg ONNX Runtime vs smp Unet (same encoder);
* training images/s: UNetASPP vs smp Unet with the same encoder;
* data loading images/s on 4288x2848 JPEGs: full decode vs draft decode vs prepared cache;
* evaluation of 1000 mask pairs: dermseg vs the official isic-challenge-scoring;
* peak memory of a 6000x4000 prediction.

    python benchmarks/run.py                  # about 5 minutes on 2 CPU cores
    python benchmarks/run.py --summary-only   # rewrite the summary from the last results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench_md import replace_section

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ENCODER = "tf_efficientnet_lite0"
STEPS = [
    [
        "compare_models.py",
        "--encoder",
        ENCODER,
        "--weights",
        "none",
        "--size",
        "512",
        "--batch",
        "2",
        "--steps",
        "5",
        "--no-train",
    ],
    ["onnx_speed.py", "--encoders", ENCODER, "--repeats", "5"],
    ["data_loading.py"],
    ["eval_speed.py"],
    ["full_res_memory.py"],
]


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def main() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.strftime("%Y-%m-%d %H:%M")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="rewrite the summary from the last results, measure nothing",
    )
    summary_only = parser.parse_args().summary_only
    for step in [] if summary_only else STEPS:
        print(f"== {' '.join(step)}", flush=True)
        subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], cwd=HERE, env=env, check=True)
    compare = load(f"compare-cpu-{ENCODER}-512-speed.json")
    rows = {r["arch"]: r for r in compare["rows"]}
    onnx = next(r for r in load("onnx_speed.json")["rows"] if r["encoder"] == ENCODER)
    data = load("data_loading.json")
    ev = load("eval_speed.json")
    mem = load("full_res_memory.json")
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "started": started,
        "onnxruntime_vs_torch_512_img_s": {"torch": onnx["torch_ips"], "onnxruntime": onnx["ort_ips"]},
        "inference_512_img_s": {
            "unet_aspp_torch": rows["unet_aspp"]["infer_images_per_s"],
            "smp_unet_torch": rows["smp_unet"]["infer_images_per_s"],
        },
        "train_512_img_s": {
            "unet_aspp": rows["unet_aspp"]["train_images_per_s"],
            "smp_unet": rows["smp_unet"]["train_images_per_s"],
        },
        "data_loading_img_s": {
            k: data[k] for k in ("full_decode_img_s", "draft_decode_img_s", "cache_img_s")
        },
        "evaluation_1000_pairs_s": {"official": ev["official_s"], "dermseg": ev["evaluate_folders_s"]},
        "peak_memory_6000x4000_mib": mem["increase_mib"],
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    i, o, t, d, e = (
        summary[k]
        for k in (
            "inference_512_img_s",
            "onnxruntime_vs_torch_512_img_s",
            "train_512_img_s",
            "data_loading_img_s",
            "evaluation_1000_pairs_s",
        )
    )
    replace_section(
        "summary",
        [
            "<!-- summary -->",
            "## Summary of one `python benchmarks/run.py` run",
            "",
            f"Machine: {summary['machine']}, no GPU; started {started}. Encoder {ENCODER} (random init) where a "
            "model is involved; details and methods in the sections below.",
            "",
            "| what | dermseg | peer | ratio |",
            "|---|---:|---:|---:|",
            f"| inference img/s, 512 px, batch 2, torch: UNetASPP | {i['unet_aspp_torch']:.2f} | smp Unet: {i['smp_unet_torch']:.2f} | {i['unet_aspp_torch'] / i['smp_unet_torch']:.2f}x |",
            f"| inference img/s, 512 px, batch 1, UNetASPP (default decoder): ONNX Runtime | {o['onnxruntime']:.2f} | torch: {o['torch']:.2f} | {o['onnxruntime'] / o['torch']:.2f}x |",
            f"| training img/s, 512 px, batch 2: UNetASPP | {t['unet_aspp']:.2f} | smp Unet: {t['smp_unet']:.2f} | "
            f"{t['unet_aspp'] / t['smp_unet']:.2f}x |",
            f"| data loading img/s, 4288x2848 JPEG to 512 px: draft decode / prepared cache | "
            f"{d['draft_decode_img_s']:.1f} / {d['cache_img_s']:.1f} | full decode: {d['full_decode_img_s']:.1f} | "
            f"cache/full {d['cache_img_s'] / d['full_decode_img_s']:.0f}x |",
            f"| scoring 1000 mask pairs, seconds | {e['dermseg']:.2f} | official scorer: {e['official']:.2f} | "
            f"{e['official'] / e['dermseg']:.1f}x faster |",
            f"| peak memory of a 6000x4000 prediction (increase) | {summary['peak_memory_6000x4000_mib']:.0f} MiB "
            "| | |",
            "",
            "Command: `python benchmarks/run.py`",
            "<!-- /summary -->",
        ],
    )


if __name__ == "__main__":
    main()
