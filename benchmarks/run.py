"""All of dermseg's speed and memory benchmarks, side by side, in one run on this machine.

Runs each benchmark script (each rewrites its own section of BENCHMARKS.md and its raw JSON in
benchmarks/results/), then writes a summary section with the headline numbers of this run:

* inference images/s at 512 px: dermseg torch vs dermseg ONNX Runtime vs smp Unet (same encoder);
* training images/s: UNetASPP vs smp Unet with the same encoder;
* data loading images/s on 4288x2848 JPEGs: full decode vs draft decode vs prepared cache;
* evaluation of 1000 mask pairs: dermseg vs the official isic-challenge-scoring;
* peak memory of a 6000x4000 prediction;
* with ``--with-predict`` (or from the last results of those benchmarks): ``dermseg predict`` end
  to end before/after the speed options, INT8 vs fp32 (``predict_speed.py``), smp ``Unet`` with the
  same encoder run naively (plain torch, one image at a time) against ``dermseg predict`` on the
  same checkpoint, images/s and Jaccard (``smp_naive.py``), and tiled vs one resize (``tiles.py``,
  which needs a checkpoint and is run on its own).

    python benchmarks/run.py                  # about 5 minutes on 2 CPU cores
    python benchmarks/run.py --with-predict   # + predict_speed.py and smp_naive.py (about 20 more minutes)
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
PREDICT_STEPS = [["predict_speed.py", "--epochs", "3"], ["smp_naive.py", "--epochs", "3"]]


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
    parser.add_argument(
        "--with-predict", action="store_true", help="also run predict_speed.py and smp_naive.py"
    )
    args = parser.parse_args()
    summary_only = args.summary_only
    steps = [*STEPS, *PREDICT_STEPS] if args.with_predict else STEPS
    for step in [] if summary_only else steps:
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
            f"Machine: {summary['machine']}, no GPU; "
            + (
                f"rewritten {started} from each benchmark's last results (their sections below give "
                "their dates). "
                if summary_only
                else f"started {started}. "
            )
            + f"Encoder {ENCODER} (random init) where a "
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
            *predict_rows(),
            "",
            "Command: `python benchmarks/run.py` (predict rows: `--with-predict`, which runs `predict_speed.py` "
            "and `smp_naive.py`, and `tiles.py`)",
            "<!-- /summary -->",
        ],
    )


def predict_rows() -> list[str]:
    """Summary rows from the last ``predict_speed.py``, ``smp_naive.py`` and ``tiles.py`` results,
    where they exist."""
    rows = []
    if (RESULTS / "predict_speed.json").is_file():
        speed = load("predict_speed.json")
        by_path = {r["path"]: r for r in speed["rows_1024x768"]}
        before = by_path["torch, no pipeline, PNG level 6"]
        best = max((r for r in speed["rows_1024x768"] if "INT8" not in r["path"]), key=lambda r: r["img_s"])
        fp32 = by_path["onnxruntime fp32, pipeline + PNG level 1"]
        int8 = by_path["onnxruntime INT8, pipeline + PNG level 1"]
        rows += [
            f"| predict img/s end to end, 1024x768, UNetASPP lite0 trained at 512 px ({speed['date']}): best fp32 path ({best['path']}) "
            f"| {best['img_s']:.2f} | torch, no pipeline, PNG level 6: {before['img_s']:.2f} | "
            f"{best['img_s'] / before['img_s']:.2f}x (Jaccard {best['vs_torch_fp32']:+.4f}) |",
            f"| predict img/s end to end, 1024x768: ONNX Runtime INT8 (pipeline, PNG level 1) | "
            f"{int8['img_s']:.2f} | fp32: {fp32['img_s']:.2f} | {int8['img_s'] / fp32['img_s']:.2f}x "
            f"(Jaccard {int8['vs_torch_fp32'] - fp32['vs_torch_fp32']:+.4f}) |",
        ]
    if (RESULTS / "smp_naive.json").is_file():
        smp = load("smp_naive.json")
        by_key = {r["key"]: r for r in smp["rows"]}
        naive = by_key["naive"]
        for key, what in (
            ("dermseg_default", "default (torch)"),
            ("dermseg_best", "best fp32 path (ONNX Runtime, pipeline, PNG level 1)"),
        ):
            r = by_key[key]
            rows.append(
                f"| predict img/s end to end, 1024x768, smp Unet lite0 checkpoint at 512 px ({smp['date']}): "
                f"dermseg predict {what} | {r['img_s']:.2f} | naive torch loop, same checkpoint: "
                f"{naive['img_s']:.2f} | {r['img_s'] / naive['img_s']:.2f}x (Jaccard {r['jaccard']:.4f} vs "
                f"{naive['jaccard']:.4f}) |"
            )
    if (RESULTS / "tiles.json").is_file():
        tiles = load("tiles.json")
        resized, tiled = tiles["rows"]["one resize"], tiles["rows"]["tiles, scale 1"]
        rows.append(
            f"| {tiles['image_size']} px synthetic images ({tiles['date'][:10]}): tiles at the training "
            f"scale, Jaccard / s per image | {tiled['jaccard']:.3f} / {tiled['s_per_image']:.2f} | "
            f"one resize: {resized['jaccard']:.3f} / {resized['s_per_image']:.2f} | "
            f"{tiled['jaccard'] - resized['jaccard']:+.3f} Jaccard |"
        )
    return rows


if __name__ == "__main__":
    main()
