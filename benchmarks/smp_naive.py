"""smp ``Unet`` run naively against ``dermseg predict`` on the same checkpoint: images/s and Jaccard.

Trains the ``demo`` recipe with ``model.arch=smp_unet`` (smp's ``Unet`` on the same
``tf_efficientnet_lite0`` encoder, ImageNet weights, the same decoder widths) exactly as
``predict_speed.py`` trains its UNetASPP (512 px working size, crops of 256, the same synthetic
1024x768 training images), or takes ``--checkpoint``. Writes the same kind of synthetic test set
as ``predict_speed.py`` (1024x768 JPEGs with Task 2 truth, seed 0), then times on it, each
command in a fresh process and images/s after start-up = ``(N - 1) / (t(N images) - t(1 image))``:

1. the naive loop of ``smp_naive_loop.py``: plain torch + smp, one image at a time, no dermseg
   code in the loop (whole image resized, no field-of-view crop, Pillow's default PNG level);
2. ``python -m dermseg predict`` on the same checkpoint: its default (torch, no pipeline, PNG
   level 1) and the best fp32 path of ``predict_speed.py`` (``--backend onnxruntime --pipeline
   --png-level 1``), so the architecture's share and the pipeline's share can be told apart;
3. with ``--unet-aspp-checkpoint``, the same two ``dermseg predict`` paths on that UNetASPP
   checkpoint (otherwise UNetASPP's numbers are ``predict_speed.py``'s, another run).

Each path is timed ``--repeats`` times, interleaved (path 1, 2, 3, 1, 2, 3, ...); the median is
reported. Every path's masks are scored with the official Task 2 Jaccard
(:func:`dermseg.evaluation.folders.evaluate_folders`) against the truth. Writes
``results/smp_naive.json`` and the ``smp-naive`` section of BENCHMARKS.md.

    python benchmarks/smp_naive.py [--images 40] [--epochs 8] [--repeats 3] [--checkpoint CKPT]
        [--unet-aspp-checkpoint CKPT] [--work DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_md import replace_section
from onnx_speed import machine
from predict_speed import SMALL, TRAIN_SETTINGS, dermseg, masks_of, synthetic, trained_description
from safetensors.torch import load_file

from dermseg.errors import DermsegError
from dermseg.evaluation.folders import evaluate_folders
from dermseg.inference.folder import collect_images
from dermseg.models.checkpoint import read_meta

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
TAG = "smp-naive"
RESULTS = HERE / "results" / "smp_naive.json"
BEST_FP32 = ["--backend", "onnxruntime", "--pipeline", "--png-level", "1"]


def train_smp_unet(work: Path, train_images: int, epochs: int) -> Path:
    """``predict_speed.py``'s training with ``model.arch=smp_unet``; the best checkpoint (reused if there)."""
    ckpt = work / "run" / "checkpoints" / "best.safetensors"
    if ckpt.is_file():
        return ckpt
    started = time.perf_counter()
    synthetic(work / "train", train_images, SMALL, seed=1, split="training")
    synthetic(work / "train", max(4, train_images // 6), SMALL, 1, "validation", train_images)
    settings = [*TRAIN_SETTINGS, f"train.epochs={epochs}", "model.arch=smp_unet"]
    sets = [arg for s in settings for arg in ("--set", s)]
    dermseg(["train", "--config", "demo", "--data", str(work / "train"), "--out", str(work / "run"), *sets])
    print(f"trained smp_unet in {time.perf_counter() - started:.0f} s", flush=True)
    return ckpt


def model_description(ckpt: Path, trained: bool) -> str:
    """What the checkpoint is, for the section: how it was trained, or its file and description."""
    meta = read_meta(ckpt)
    kwargs = meta["model_kwargs"]
    what = (
        f"encoder `{kwargs['encoder_name']}` from `{meta.get('encoder_init', '?')}` weights, decoder widths "
        f"{'/'.join(str(c) for c in kwargs['decoder_channels'])}, working size {meta['input_size']} px"
    )
    metrics = ckpt.parents[1] / "metrics.jsonl"
    if trained and metrics.is_file():
        return (
            f"the `demo` recipe with `model.arch=smp_unet` (smp's `Unet`, {what}) trained as "
            f"`predict_speed.py` trains its UNetASPP (crops of 256, synthetic 1024x768 images), "
            f"{trained_description(metrics)}"
        )
    return f"the given checkpoint `{ckpt.name}` (`{meta['arch']}`, {what})"


def denormal_weights(ckpt: Path) -> int:
    """Nonzero float weights below float32's smallest normal: slow on the CPU unless flushed to zero."""
    tiny = torch.finfo(torch.float32).tiny
    tensors = load_file(str(ckpt)).values()
    return sum(int(((t.abs() < tiny) & (t != 0)).sum()) for t in tensors if t.is_floating_point())


def naive(ckpt: Path, images: Path | list[Path], out: Path) -> tuple[float, dict]:
    """Wall seconds of ``smp_naive_loop.py`` on ``images`` in a fresh process, and what it printed."""
    inputs = [str(p) for p in images] if isinstance(images, list) else [str(images)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, str(HERE / "smp_naive_loop.py"), "--checkpoint", str(ckpt), *inputs]
    start = time.perf_counter()
    done = subprocess.run([*command, "--out", str(out)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"smp_naive_loop.py failed:\n{done.stdout}\n{done.stderr}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def check_arch(parser: argparse.ArgumentParser, path: Path, arch: str) -> None:
    """Exit 2 with one line unless ``path`` is a readable dermseg Task 2 checkpoint of ``arch``."""
    try:
        meta = read_meta(path)
    except DermsegError as err:
        parser.error(str(err))
    if meta["arch"] != arch:
        parser.error(f"{path}: a checkpoint of arch {meta['arch']!r}, expected {arch}")
    labels = meta.get("labels", {}).get("name", "isic2018_task2")  # older checkpoints: Task 2
    if labels != "isic2018_task2":
        parser.error(f"{path}: a model of the label set {labels!r}, expected isic2018_task2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="1024x768 test images")
    parser.add_argument("--train-images", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timings of each path, interleaved")
    parser.add_argument("--checkpoint", type=Path, help="an smp_unet checkpoint: no training")
    parser.add_argument("--unet-aspp-checkpoint", type=Path, help="also time dermseg predict on it")
    parser.add_argument("--no-write", action="store_true", help="results JSON only, leave BENCHMARKS.md")
    parser.add_argument(
        "--work", type=Path, help="work folder, kept: a trained model and data there are reused"
    )
    args = parser.parse_args()
    if args.images < 2 or args.repeats < 1:
        parser.error("--images must be >= 2 (timing is t(N) - t(1)) and --repeats >= 1")
    for given, arch in ((args.checkpoint, "smp_unet"), (args.unet_aspp_checkpoint, "unet_aspp")):
        if given is not None:
            check_arch(parser, given, arch)
    work = args.work or Path(tempfile.mkdtemp(prefix="smp-naive-"))
    try:
        run(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    ckpt = args.checkpoint or train_smp_unet(work, args.train_images, args.epochs)
    if not (work / "test").exists():
        synthetic(work / "test", args.images, SMALL, seed=0, split="test")
    test = next((work / "test").glob("*_Test_Input"))
    truth = next((work / "test").glob("*_Test_GroundTruth*"))
    images = collect_images([test])
    n = len(images)

    def predict(model: Path, options: list[str]) -> Callable[[Path], tuple[float, float]]:
        def timed(out: Path) -> tuple[float, float]:
            base = ["predict", "--checkpoint", str(model), *options]
            t_one = dermseg([*base, str(images[0]), "--out", str(out / "one")])
            return dermseg([*base, str(test), "--out", str(out / "all")]), t_one

        return timed

    loop_runs: list[dict] = []

    def naive_timed(out: Path) -> tuple[float, float]:
        t_one, _ = naive(ckpt, [images[0]], out / "one")
        t_all, report = naive(ckpt, test, out / "all")
        loop_runs.append(report)
        return t_all, t_one

    # key -> (what the row says, how to time it into a folder: (t(N), t(1)))
    paths = {
        "naive": ("smp Unet, naive torch loop (smp_naive_loop.py)", naive_timed),
        "dermseg_default": ("dermseg predict, smp Unet checkpoint, default (torch)", predict(ckpt, [])),
        "dermseg_best": (
            "dermseg predict, smp Unet checkpoint, best fp32 (onnxruntime, pipeline, PNG level 1)",
            predict(ckpt, BEST_FP32),
        ),
    }
    if args.unet_aspp_checkpoint is not None:
        paths["unet_aspp_default"] = (
            "dermseg predict, UNetASPP checkpoint, default (torch)",
            predict(args.unet_aspp_checkpoint, []),
        )
        paths["unet_aspp_best"] = (
            "dermseg predict, UNetASPP checkpoint, best fp32 (onnxruntime, pipeline, PNG level 1)",
            predict(args.unet_aspp_checkpoint, BEST_FP32),
        )

    load = os.getloadavg()
    times: dict[str, list[tuple[float, float]]] = {key: [] for key in paths}
    scores: dict[str, float] = {}
    masks: dict[str, dict[str, np.ndarray]] = {}
    for repeat in range(args.repeats):
        for key, (name, timed) in paths.items():
            out = work / f"{key}_{repeat}"
            t_all, t_one = timed(out)
            times[key].append((t_all, t_one))
            print(f"{name}, run {repeat + 1}: {(n - 1) / (t_all - t_one):.2f} img/s", flush=True)
            if key not in scores:
                scores[key] = evaluate_folders(out / "all", truth).overall
                masks[key] = masks_of(out / "all")
            shutil.rmtree(out)
    load_end = os.getloadavg()

    rows = []
    for key, (name, _) in paths.items():
        reference = masks["unet_aspp_default" if key.startswith("unet_aspp") else "dermseg_default"]
        rates = [(n - 1) / (a - o) for a, o in times[key]]
        identical = sum(m in masks[key] and np.array_equal(masks[key][m], reference[m]) for m in reference)
        rows.append(
            {
                "key": key,
                "path": name,
                "img_s": statistics.median(rates),
                "img_s_runs": rates,
                "t_all_s": statistics.median(a for a, _ in times[key]),
                "t_one_s": statistics.median(o for _, o in times[key]),
                "jaccard": scores[key],
                "masks_identical_to_default_same_checkpoint": identical / len(reference),
            }
        )
    loop_rates = [(r["images"] - 1) / (r["loop_s"] - r["first_image_s"]) for r in loop_runs]
    record = {
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "load_average_start_end": [round(load[0], 2), round(load_end[0], 2)],
        "images": n,
        "repeats": args.repeats,
        "model": model_description(ckpt, trained=args.checkpoint is None),
        "checkpoint_denormal_weights": denormal_weights(ckpt),
        "naive_in_process_img_s": statistics.median(loop_rates),
        "naive_ignored_postprocess": loop_runs[0]["ignored_postprocess"],
        "rows": rows,
    }
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(RESULTS)
    table = [
        "| path | images/s | runs | t(N) s | t(1) s | Jaccard | masks identical to dermseg default, same checkpoint |",
        "|---|---:|---|---:|---:|---:|---:|",
        *[
            f"| {r['path']} | {r['img_s']:.2f} | {' / '.join(f'{x:.2f}' for x in r['img_s_runs'])} | "
            f"{r['t_all_s']:.1f} | {r['t_one_s']:.1f} | {r['jaccard']:.4f} | "
            f"{r['masks_identical_to_default_same_checkpoint']:.0%} |"
            for r in rows
        ],
    ]
    print("\n".join(table))
    print(
        f"naive loop in-process (model loaded, first image left out): {record['naive_in_process_img_s']:.2f} img/s"
    )
    if args.no_write:
        return
    write_section(record, table, load, load_end)


def write_section(record: dict, table: list[str], load: tuple, load_end: tuple) -> None:
    ignored = record["naive_ignored_postprocess"]
    lines = [
        f"<!-- {TAG} -->",
        "## smp `Unet` run naively vs `dermseg predict` on the same checkpoint (`benchmarks/smp_naive.py`)",
        "",
        f"{record['machine']}; {record['date']}; load average (1/5/15 min) "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} when timing started, "
        f"{load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} at the end. "
        f"Model: {record['model']}. "
        f"{record['images']} synthetic 1024x768 JPEGs (the `predict_speed.py` test set's seed and size), "
        "masks only. Each path in a fresh process per timing, images/s after start-up = "
        f"(N - 1) / (t(N) - t(1)), {record['repeats']} timing(s) per path interleaved, median shown "
        "(all in `runs`). Jaccard: official Task 2 against the synthetic truth.",
        "",
        *table,
        "",
        "* The naive loop (`benchmarks/smp_naive_loop.py`): Pillow decode, the whole image resized "
        "(cv2 `INTER_AREA`) to a 512 px short side, normalised, reflect-padded to a multiple of 32 "
        "(smp refuses other sizes), the bare `smp.Unet` forward in torch (default threads, NCHW), "
        "sigmoid, bilinear upsampling, the checkpoint's thresholds, five PNGs at Pillow's default "
        "level, one image at a time. Timed inside its process with the model loaded, first image "
        f"left out, it runs at {record['naive_in_process_img_s']:.2f} img/s (median). It does not flush "
        "denormal floats to zero (`dermseg predict` does, `torch.set_flush_denormal(True)`); the "
        f"checkpoint has {record['checkpoint_denormal_weights']} denormal weight(s)."
        + (f" It ignores the checkpoint's post-processing {ignored}." if ignored else ""),
        "* `dermseg predict` default: torch, channels-last on the CPU, the dermoscope field of view "
        "cropped before the resize, no pipeline, PNG level 1. Best fp32: ONNX Runtime (the checkpoint "
        "exported at start-up), `--pipeline`, PNG level 1.",
        "* Differences between the naive row and the dermseg default on the same weights are the "
        "pipeline's (memory format, field-of-view crop, PNG level, ...); differences between this "
        "section's dermseg rows and `predict-speed`'s are the architecture's plus run-to-run noise "
        "(another run, another checkpoint) unless the UNetASPP rows above were measured here "
        "(`--unet-aspp-checkpoint`).",
        "",
        f"<!-- /{TAG} -->",
    ]
    replace_section(TAG, lines)


if __name__ == "__main__":
    main()
