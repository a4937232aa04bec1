"""End-to-end ``dermseg predict`` throughput on the CPU, each lever on its own, with an accuracy guard.

Trains the ``demo`` recipe (UNetASPP + ``tf_efficientnet_lite0``, ImageNet weights) briefly at a
512 px working size on synthetic 1024x768 images, exports it to ONNX (float, and INT8 calibrated
on the training images), writes synthetic test sets of 1024x768 and 4288x2848 JPEGs with Task 2
truth, and then:

1. times ``python -m dermseg predict`` end to end, masks only, for every path (backend, model
   file, ``--pipeline``, ``--png-level``, and at 4288x2848 ``--draft-decode`` against the default
   full-scale decoding): images/s after start-up, i.e. ``(N - 1) / (t(N images) - t(1 image))``,
   each command in a fresh process;
2. guards accuracy: the official Task 2 Jaccard (:func:`dermseg.evaluation.folders.evaluate_folders`)
   of each path's masks against the truth, its difference from the fp32 torch path (at 4288x2848:
   the fp32 torch path, which decodes at full scale), and the share of masks pixel-identical to it;
3. measures the levers that are not ``predict`` options at network level: ONNX Runtime graph
   optimisation and intra/inter-op thread splits, batching, torch threads and channels_last;
4. breaks one image's time into stages (decode as predict does it, with the full-scale decode beside it, field of view,
   resize, network, upsample, threshold, PNG encode at levels 6 and 1, atomic write).

Writes the ``predict-speed`` section of BENCHMARKS.md.

    python benchmarks/predict_speed.py [--images 40] [--large 6] [--epochs 8] [--no-write]
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

import cv2
import numpy as np
import torch
from bench_md import replace_section
from onnx_speed import machine, median_seconds
from PIL import Image

from dermseg.data.imageio import mask_image, read_image
from dermseg.data.synthetic import SynthConfig, write_dataset
from dermseg.evaluation.folders import evaluate_folders
from dermseg.inference.export import export_onnx
from dermseg.inference.folder import collect_images, write_together
from dermseg.inference.quantize import export_int8
from dermseg.inference.segmenter import Segmenter, full_frame_field

ROOT = Path(__file__).resolve().parents[1]
TAG = "predict-speed"
SMALL, LARGE = (1024, 768), (4288, 2848)
TRAIN_SETTINGS = [
    "data.size=512",
    "data.crop_size=256",
    "train.max_minutes=null",
    "data.workers=0",
]


def dermseg(args: list[str]) -> float:
    """Wall seconds of ``python -m dermseg <args>`` in a fresh process (exit 0 or 2 expected)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dermseg", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"dermseg {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def train(data: Path, out: Path, epochs: int) -> Path:
    """The demo recipe trained ``epochs`` epochs at 512 px; its best checkpoint."""
    sets = [arg for s in [*TRAIN_SETTINGS, f"train.epochs={epochs}"] for arg in ("--set", s)]
    dermseg(["train", "--config", "demo", "--data", str(data), "--out", str(out), *sets])
    return out / "checkpoints" / "best.safetensors"


def trained_description(metrics: Path) -> str:
    """How long the checkpoint trained and its validation Jaccard, from the run's ``metrics.jsonl``."""
    epochs = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    epochs = [e for e in epochs if "jaccard" in e]
    best = max(epochs, key=lambda e: e["jaccard"])
    return (
        f"{len(epochs)} epoch(s) run, best validation Jaccard {best['jaccard']:.3f} "
        f"(epoch {best['epoch']}, the checkpoint used)"
    )


def synthetic(
    root: Path, n: int, size: tuple[int, int], seed: int, split: str, start_id: int = 0
) -> tuple[Path, Path]:
    """``n`` synthetic JPEGs of ``size`` and their truth: ``(image folder, truth folder)``."""
    config = SynthConfig(size=size[0], height=size[1])
    write_dataset(root, n, size=size[0], seed=seed, split=split, start_id=start_id, config=config)
    return next(root.glob(f"*_{split.title()}_Input")), next(root.glob(f"*_{split.title()}_GroundTruth*"))


def stage_times(segmenter: Segmenter, images: list[Path], out: Path) -> dict[str, float]:
    """Median seconds of each stage of one image's prediction, over ``images``."""
    rows: list[dict[str, float]] = []
    for path in images:
        t: dict[str, float] = {}
        clock = [time.perf_counter()]

        def lap(name: str, t: dict[str, float] = t, clock: list[float] = clock) -> None:
            now = time.perf_counter()
            t[name] = now - clock[0]
            clock[0] = now

        read_image(path)
        t["decode, full scale"] = time.perf_counter() - clock[0]
        clock[0] = time.perf_counter()
        decoded = segmenter.read(path)  # what predict does (a JPEG draft with --draft-decode)
        h, w = decoded.pixels.shape[:2]
        full_h, full_w = decoded.size
        lap(
            f"decode as predict: JPEG draft 1/{round(full_w / w)}" if decoded.reduced else "decode as predict"
        )
        box = segmenter.field_of_view(decoded.pixels)
        lap("field of view")
        x = segmenter.network_input(decoded.pixels, box)
        lap("crop + resize + normalise")
        with torch.no_grad():
            probs = segmenter.network_probabilities(x)
        lap("network")
        # as Segmenter.probabilities upsamples: OpenCV bilinear into the field's box of the full frame
        box = full_frame_field(box, decoded)
        small = probs[0].numpy()
        full = np.zeros((small.shape[0], full_h, full_w), np.float32)
        for k in range(small.shape[0]):
            view = full[k, box.top : box.bottom, box.left : box.right]
            view[...] = cv2.resize(small[k], (box.width, box.height), interpolation=cv2.INTER_LINEAR)
        lap("upsample")
        masks = segmenter.binarise(full, box)
        lap("threshold + postprocess")
        files = {f"{path.stem}_{k}.png": mask_image(m) for k, m in enumerate(masks)}
        lap("mask images")
        for name, img in files.items():
            img.save(out / f"enc_{name}", format="PNG")
        lap("PNG encode x5 (level 6)")
        for name, img in files.items():
            img.save(out / f"enc1_{name}", format="PNG", compress_level=1)
        lap("PNG encode x5 (level 1)")
        write_together(out, files, compress_level=1)
        lap("atomic write x5 (level 1, fsync)")
        rows.append(t)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def network_sweep(ckpt: Path, onnx_path: Path, int8_path: Path) -> dict[str, float]:
    """Network-only images/s (normalised 3x512x683 input, the field of a 1024x768 image), median of 5."""
    import onnxruntime as ort

    x = torch.randn(4, 3, 512, 683, generator=torch.Generator().manual_seed(0))
    rates: dict[str, float] = {}

    def rate(fn: Callable[[], object], batch: int = 1) -> float:
        return batch / median_seconds(fn, warmup=1, repeats=5)

    def session(path: Path, level: str, intra: int, inter: int) -> object:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level.upper()}")
        opts.intra_op_num_threads, opts.inter_op_num_threads = intra, inter
        if inter > 1:
            opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    one = x[:1].numpy()
    for level, intra, inter in [
        ("basic", 0, 0),
        ("all", 0, 0),
        ("all", 1, 1),
        ("all", 2, 1),
        ("all", 1, 2),
        ("all", 2, 2),
    ]:
        s = session(onnx_path, level, intra, inter)
        split = "default threads" if intra == 0 else f"intra-op {intra}, inter-op {inter}"
        rates[f"onnxruntime fp32, optimisation {level}, {split}"] = rate(
            lambda s=s: s.run(None, {"image": one})
        )
    for batch in (2, 4):
        s = session(onnx_path, "all", 0, 0)
        xb = x[:batch].numpy()
        rates[f"onnxruntime fp32, batch {batch}"] = rate(lambda s=s, xb=xb: s.run(None, {"image": xb}), batch)
    for intra in (0, 1):
        s = session(int8_path, "all", intra, 0 if intra == 0 else 1)
        split = "default threads" if intra == 0 else "intra-op 1"
        rates[f"onnxruntime INT8, {split}"] = rate(lambda s=s: s.run(None, {"image": one}))
    # the default (NCHW) memory format first: Segmenter.from_checkpoint runs CPU models channels-last
    model = Segmenter.from_checkpoint(ckpt).model.to(memory_format=torch.contiguous_format)
    default_threads = torch.get_num_threads()
    with torch.no_grad():
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            rates[f"torch fp32, {threads} thread(s)"] = rate(lambda: model(x[:1]))
        torch.set_num_threads(default_threads)
        rates["torch fp32, batch 2"] = rate(lambda: model(x[:2]), 2)
        model.to(memory_format=torch.channels_last)
        xc = x[:1].contiguous(memory_format=torch.channels_last)
        rates["torch fp32, channels_last"] = rate(lambda: model(xc))
    return rates


def masks_of(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*_attribute_*.png"))}


def cli_path(
    model: Path, images: Path, one: Path, out: Path, options: list[str]
) -> tuple[float, float, float]:
    """``(images/s after start-up, t(N) s, t(1) s)`` of ``dermseg predict`` with ``options``."""
    n = len(collect_images([images]))
    base = ["predict", "--checkpoint", str(model), *options]
    t_one = dermseg([*base, str(one), "--out", str(out / "one")])
    t_all = dermseg([*base, str(images), "--out", str(out / "all")])
    return (n - 1) / (t_all - t_one), t_all, t_one


def guarded_rows(
    paths: dict[str, tuple[Path, list[str]]], images: Path, truth: Path, work: Path, label: str
) -> list[tuple[str, float, float, float, float, float, float]]:
    """Each path of ``paths`` (name -> model file, predict options) timed on ``images`` and guarded:
    ``(name, images/s, t(N), t(1), Jaccard, difference from the first path, share of masks
    identical to the first path's)``."""
    first = collect_images([images])[0]
    rows = []
    reference: dict[str, np.ndarray] | None = None
    base = 0.0
    for k, (name, (model, options)) in enumerate(paths.items()):
        out = work / str(k)
        rate, t_all, t_one = cli_path(model, images, first, out, options)
        jaccard = evaluate_folders(out / "all", truth).overall
        masks = masks_of(out / "all")
        if reference is None:
            reference, base = masks, jaccard
        same = sum(np.array_equal(masks[m], reference[m]) for m in reference) / len(reference)
        rows.append((name, rate, t_all, t_one, jaccard, jaccard - base, same))
        print(
            f"{label} {name}: {rate:.2f} img/s ({t_all:.1f} s / {t_one:.1f} s), "
            f"Jaccard {jaccard:.4f}, {same:.0%} identical"
        )
        shutil.rmtree(out)
    return rows


def main() -> None:
    """Measure, print, and write the BENCHMARKS.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="1024x768 test images")
    parser.add_argument("--large", type=int, default=6, help="4288x2848 images")
    parser.add_argument("--train-images", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    parser.add_argument(
        "--work", type=Path, help="work folder, kept: prepared data and models found there are reused"
    )
    parser.add_argument("--prepare-only", action="store_true", help="data, training and exports; no timing")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="predict-speed-"))
    try:
        run(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Path]:
    """Training data, the trained checkpoint and its exports (reused when ``work`` has them)."""
    ckpt = work / "run" / "checkpoints" / "best.safetensors"
    onnx_fp32, onnx_int8 = work / "model.onnx", work / "model_int8.onnx"
    if not onnx_int8.exists():
        started = time.perf_counter()
        train_images, _ = synthetic(work / "train", args.train_images, SMALL, seed=1, split="training")
        synthetic(work / "train", max(4, args.train_images // 6), SMALL, 1, "validation", args.train_images)
        train(work / "train", work / "run", args.epochs)
        export_onnx(ckpt, onnx_fp32)
        export_int8(ckpt, onnx_int8, train_images)
        print(f"trained and exported in {time.perf_counter() - started:.0f} s")
    return ckpt, onnx_fp32, onnx_int8


def run(args: argparse.Namespace, work: Path) -> None:
    ckpt, onnx_fp32, onnx_int8 = prepare(args, work)
    if not (work / "test").exists():
        synthetic(work / "test", args.images, SMALL, seed=0, split="test")
        synthetic(work / "large", args.large, LARGE, seed=2, split="test")
    test, truth = (
        next((work / "test").glob("*_Test_Input")),
        next((work / "test").glob("*_Test_GroundTruth*")),
    )
    large = next((work / "large").glob("*_Test_Input"))
    if args.prepare_only:
        return
    load = os.getloadavg()

    cli_paths: dict[str, tuple[Path, list[str]]] = {
        "torch, no pipeline, PNG level 6": (ckpt, ["--no-pipeline", "--png-level", "6"]),
        "torch, PNG level 1": (ckpt, ["--no-pipeline", "--png-level", "1"]),
        "torch, pipeline": (ckpt, ["--pipeline", "--png-level", "6"]),
        "torch, pipeline + PNG level 1": (ckpt, ["--pipeline", "--png-level", "1"]),
        "onnxruntime fp32 (.onnx)": (onnx_fp32, ["--no-pipeline", "--png-level", "6"]),
        "onnxruntime fp32, pipeline + PNG level 1": (onnx_fp32, ["--pipeline", "--png-level", "1"]),
        "onnxruntime fp32, pipeline + PNG level 1, 1 network thread": (
            onnx_fp32,
            ["--pipeline", "--png-level", "1", "--threads", "1"],
        ),
        "onnxruntime INT8, pipeline + PNG level 1": (onnx_int8, ["--pipeline", "--png-level", "1"]),
        "onnxruntime INT8, pipeline + PNG level 1, 1 network thread": (
            onnx_int8,
            ["--pipeline", "--png-level", "1", "--threads", "1"],
        ),
    }
    images = collect_images([test])
    rows = guarded_rows(cli_paths, test, truth, work / "cli", "1024x768")
    large_images = collect_images([large])
    large_truth = next((work / "large").glob("*_Test_GroundTruth*"))
    large_paths: dict[str, tuple[Path, list[str]]] = {
        "torch, full decode, no pipeline, PNG level 6": (ckpt, ["--no-pipeline", "--png-level", "6"]),
        "torch, JPEG draft decode, no pipeline, PNG level 6": (
            ckpt,
            ["--draft-decode", "--no-pipeline", "--png-level", "6"],
        ),
        "torch, JPEG draft decode, pipeline + PNG level 1": (
            ckpt,
            ["--draft-decode", "--pipeline", "--png-level", "1"],
        ),
        "onnxruntime fp32, full decode, pipeline + PNG level 1": (
            onnx_fp32,
            ["--pipeline", "--png-level", "1"],
        ),
        "onnxruntime fp32, JPEG draft decode, pipeline + PNG level 1": (
            onnx_fp32,
            ["--draft-decode", "--pipeline", "--png-level", "1"],
        ),
    }
    large_rows = guarded_rows(large_paths, large, large_truth, work / "large", "4288x2848")

    sweep = network_sweep(ckpt, onnx_fp32, onnx_int8)
    for name, r in sweep.items():
        print(f"network only, {name}: {r:.2f} img/s")
    (work / "stages").mkdir(exist_ok=True)
    seg_torch, seg_ort = Segmenter.from_path(ckpt), Segmenter.from_path(onnx_fp32)
    seg_draft = Segmenter.from_path(onnx_fp32)
    seg_draft.draft_decode = True
    for seg in (seg_torch, seg_ort):
        seg(images[0])  # warm-up: first calls allocate
    stages = {
        "torch, 1024x768": stage_times(seg_torch, images[1:6], work / "stages"),
        "onnxruntime, 1024x768": stage_times(seg_ort, images[1:6], work / "stages"),
        "onnxruntime, 4288x2848, --draft-decode": stage_times(seg_draft, large_images[1:4], work / "stages"),
    }
    for name, st in stages.items():
        print(name, {k: round(v * 1000, 1) for k, v in st.items()})
    load_end = os.getloadavg()
    record = {
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "load_average_start_end": [round(load[0], 2), round(load_end[0], 2)],
        "rows_1024x768": [
            {"path": p, "img_s": r, "jaccard": j, "vs_torch_fp32": d, "masks_identical": s}
            for p, r, _a, _o, j, d, s in rows
        ],
        "rows_4288x2848": [
            {"path": p, "img_s": r, "jaccard": j, "vs_torch_full_decode": d, "masks_identical": s}
            for p, r, _a, _o, j, d, s in large_rows
        ],
        "network_img_s": sweep,
    }
    results = ROOT / "benchmarks" / "results" / "predict_speed.json"
    tmp = results.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(results)
    if args.no_write:
        return
    n, n_large = len(images), len(large_images)
    trained = trained_description(work / "run" / "metrics.jsonl")
    stage_names = list(dict.fromkeys(k for st in stages.values() for k in st))
    lines = [
        f"<!-- {TAG} -->",
        "## `dermseg predict` end to end on the CPU (`benchmarks/predict_speed.py`)",
        "",
        f"{machine()}; {datetime.date.today().isoformat()}; load average (1/5/15 min) "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} when timing started, "
        f"{load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} at the end. "
        f"Model: the `demo` recipe (UNetASPP + `tf_efficientnet_lite0`, ImageNet weights) trained at a "
        f"512 px working size (crops of 256) on synthetic 1024x768 images, {trained}; INT8: "
        "`dermseg export --int8` calibrated on 32 of those training images. "
        f"Masks only, one fresh `python -m dermseg predict` per timing; images/s after start-up = "
        "(N - 1) / (t(N) - t(1)). Each path timed once: runs on this shared machine differ by "
        "up to about 25 %. The torch paths run the model channels-last (what `predict` does on "
        "the CPU); the network-only torch rows are the default memory format unless they say so.",
        "",
        f"{n} synthetic 1024x768 JPEGs, with the accuracy guard: official Task 2 Jaccard against "
        "the synthetic truth, its difference from fp32 torch, and the share of the masks "
        "pixel-identical to fp32 torch's:",
        "",
        "| path | images/s | t(N) s | t(1) s | Jaccard | vs torch fp32 | masks identical |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {p} | {r:.2f} | {a:.1f} | {o:.1f} | {j:.4f} | {d:+.4f} | {s:.0%} |"
            for p, r, a, o, j, d, s in rows
        ],
        "",
        f"{n_large} synthetic 4288x2848 JPEGs (same model) with the same guard, against the torch "
        "path that decodes at full scale (the default): `--draft-decode` decodes a JPEG whose short "
        "side is at least twice the working size at a reduced scale (1/2, 1/4, 1/8) keeping it >= "
        "the working size, as training decodes its images; it stays opt-in unless it passes the guard:",
        "",
        "| path | images/s | t(N) s | t(1) s | Jaccard | vs full decode | masks identical |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {p} | {r:.2f} | {a:.1f} | {o:.1f} | {j:.4f} | {d:+.4f} | {s:.0%} |"
            for p, r, a, o, j, d, s in large_rows
        ],
        "",
        "Network only (normalised 3 x 512 x 683 input, the field of a 1024x768 image; batch 1 "
        "unless said), median of 5:",
        "",
        "| network setting | images/s |",
        "|---|---:|",
        *[f"| {k} | {r:.2f} |" for k, r in sweep.items()],
        "",
        "One image's time by stage, median over 5 (1024x768) or 3 (4288x2848) images, ms (where "
        "predict decodes a JPEG draft (--draft-decode), the full-scale decode row is the alternative, not part of "
        "the sum):",
        "",
        "| stage | " + " | ".join(stages) + " |",
        "|---|" + "---:|" * len(stages),
        *[
            f"| {k} | "
            + " | ".join(f"{st[k] * 1000:.1f}" if k in st else "" for st in stages.values())
            + " |"
            for k in stage_names
        ],
        "",
        f"<!-- /{TAG} -->",
    ]
    replace_section(TAG, lines)


if __name__ == "__main__":
    main()
