"""Accuracy guard of the faster ``dermseg predict`` paths on real lesions (PH2, ISIC 2018 Task 1 metric).

Issue 17's guard: each faster path may lose at most 0.005 official Task 2 Jaccard against fp32
torch on the synthetic test set (measured by ``benchmarks/predict_speed.py``) and at most 0.005
mean Jaccard on the PH2 validation images (measured here); a path that fails is not offered as
a default. The guard is about the *difference* between inference paths of one model, not about
its absolute accuracy, so a short training budget is enough.

Protocol (every number it prints is measured by this run):

1. the split of ``benchmarks/ph2_lesion.py`` (:func:`ph2_lesion.split_ph2`: the PH2 sample split
   once, stratified on the diagnosis, seed 0, 98 training / 42 validation images);
2. ``dermseg train --config lesion`` on the training images only, within ``--minutes``; the
   epoch is selected and the threshold tuned on an inner hold-out of the training images
   (``data.validation: holdout``), never on the validation images. ``--run-dir`` reuses a run of
   this script or of ``ph2_lesion.py`` on the same split; ``--checkpoint`` a given checkpoint;
3. ``dermseg export`` (ONNX fp32) and ``dermseg export --int8 --calibration`` calibrated on the
   training images only;
4. ``python -m dermseg predict`` on the validation images, once per path, each into its own
   folder;
5. each folder scored with the official Task 1 metric as ``dermseg evaluate`` scores the ph2
   label set (:func:`dermseg.evaluation.task1_folders.evaluate_task1_folders`): mean Jaccard (the
   guarded number), thresholded Jaccard, Dice; the difference from fp32 torch, the share of the
   masks pixel-identical to fp32 torch's, and PASS/FAIL against the guard.

Results: ``benchmarks/results/lesion_guard.json`` and the ``lesion-guard`` section of BENCHMARKS.md.

    python benchmarks/lesion_guard.py --minutes 8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_md import replace_section
from ph2_lesion import _link_subset, add_data_arguments, machine, split_ph2, train_once
from PIL import Image
from predict_speed import dermseg

ROOT = Path(__file__).resolve().parents[1]
TAG = "lesion-guard"
RESULTS = ROOT / "benchmarks" / "results" / "lesion_guard.json"
#: The most mean Jaccard a path may lose against fp32 torch and still be offered as a default.
GUARD = 0.005
FAST = ["--pipeline", "--png-level", "1"]
#: ``(path name, model file, predict options, the same path's row in predict_speed.json or None)``;
#: the first is the reference (fp32 torch, predict's default options).
PATHS: list[tuple[str, str, list[str], str | None]] = [
    ("torch fp32, default options", "checkpoint", [], "torch, PNG level 1"),
    ("torch fp32, --pipeline --png-level 1", "checkpoint", FAST, "torch, pipeline + PNG level 1"),
    (
        "onnxruntime fp32, checkpoint --backend onnxruntime, --pipeline --png-level 1",
        "checkpoint",
        ["--backend", "onnxruntime", *FAST],
        None,
    ),
    (
        "onnxruntime fp32, .onnx, --pipeline --png-level 1",
        "onnx",
        FAST,
        "onnxruntime fp32, pipeline + PNG level 1",
    ),
    (
        "onnxruntime fp32, .onnx, --pipeline --png-level 1 --threads 1",
        "onnx",
        [*FAST, "--threads", "1"],
        "onnxruntime fp32, pipeline + PNG level 1, 1 network thread",
    ),
    (
        "onnxruntime INT8, .onnx, --pipeline --png-level 1",
        "int8",
        FAST,
        "onnxruntime INT8, pipeline + PNG level 1",
    ),
    (
        "onnxruntime INT8, .onnx, --pipeline --png-level 1 --threads 1",
        "int8",
        [*FAST, "--threads", "1"],
        "onnxruntime INT8, pipeline + PNG level 1, 1 network thread",
    ),
]
SCORES = ("jaccard", "threshold_jaccard", "dice")


def checkpoint_provenance(checkpoint: Path, split: dict[str, Any]) -> str:
    """How we know ``checkpoint`` never saw the validation images; refuses one of another split."""
    marker = checkpoint.resolve().parents[1] / "ph2_benchmark_train.json"
    if not marker.is_file():
        return "not checked (no ph2_benchmark_train.json beside its run)"
    if json.loads(marker.read_text())["split"] != split:
        raise SystemExit(f"{checkpoint} was trained on another split (seed, fraction or data): refused")
    return "trained on this split's training images (its run's ph2_benchmark_train.json says)"


def training_summary(run_dir: Path) -> dict[str, Any]:
    """Epochs run, the selected epoch and its inner hold-out scores, from ``metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    epochs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    scored = [e for e in epochs if "jaccard" in e]
    best = max(scored, key=lambda e: e["jaccard"]) if scored else {}
    return {
        "epochs": len(epochs),
        "best_epoch": best.get("epoch"),
        "holdout_jaccard": best.get("jaccard"),
    }


def masks_of(folder: Path) -> dict[str, np.ndarray]:
    """``{file name: mask}`` of the lesion masks a predict run wrote."""
    return {p.name: np.asarray(Image.open(p)) > 128 for p in sorted(folder.glob("IMD*_lesion.png"))}


def score(pred: Path, truth: Path) -> tuple[dict[str, float], dict[str, float]]:
    """``(mean scores, per-image Jaccard)`` of a prediction folder, official Task 1 metric."""
    from dermseg.evaluation.task1_folders import evaluate_task1_folders

    result = evaluate_task1_folders(pred, truth)
    mean = {k: float(result.scores["macro_average"][k]) for k in SCORES}
    per_image = result.per_image_scores()["jaccard"]
    return mean, {i: float(per_image[k]) for k, i in enumerate(result.image_ids)}


def predict_speed_rows() -> tuple[dict[str, dict[str, Any]], str | None]:
    """The synthetic Task 2 half of the guard: predict_speed.json's rows by path name, and its date."""
    path = ROOT / "benchmarks" / "results" / "predict_speed.json"
    if not path.is_file():
        return {}, None
    record = json.loads(path.read_text())
    return {r["path"]: r for r in record.get("rows_1024x768", [])}, record.get("date")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    split, diagnoses = split_ph2(args.data, args.val_fraction, args.seed)
    record: dict[str, Any] = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "data": str(args.data),
        "split": split,
        "split_sizes": {"train": len(split["train"]), "val": len(split["val"])},
        "diagnoses": diagnoses,
        "guard": GUARD,
    }
    train_dir, val_dir = work / "train", work / "val"
    for folder, ids in ((train_dir, split["train"]), (val_dir, split["val"])):
        shutil.rmtree(folder, ignore_errors=True)
        _link_subset(Path(args.data), folder, ids)

    started = time.perf_counter()
    if args.checkpoint is not None:
        ckpt = args.checkpoint
        record["model"] = {
            "checkpoint": str(ckpt),
            "provenance": checkpoint_provenance(ckpt, split),
            **training_summary(ckpt.resolve().parents[1]),
        }
    else:
        run_dir = args.run_dir or work / "run"
        train_s, reused = train_once(run_dir, train_dir, split, args.config, args.minutes, args.set)
        ckpt = run_dir / "checkpoints" / "best.safetensors"
        # a reused run's budget as its marker recorded it (ph2_lesion.py's older markers did not)
        marker = json.loads((run_dir / "ph2_benchmark_train.json").read_text())
        record["model"] = {
            "config": marker.get("config", args.config),
            "overrides": marker.get("overrides", args.set),
            "budget_minutes": marker.get("minutes") if reused else args.minutes,
            "train_s": train_s,
            "reused_run": str(run_dir) if reused else None,
            "provenance": "trained on this split's training images"
            + (" (an earlier run, reused)" if reused else " (by this run)"),
            **training_summary(run_dir),
        }
    print(f"model: {ckpt} ({record['model']})", flush=True)

    models = {"checkpoint": ckpt, "onnx": work / "model.onnx", "int8": work / "model_int8.onnx"}
    t = time.perf_counter()
    dermseg(["export", "--checkpoint", str(ckpt), "--out", str(models["onnx"])])
    record["export_fp32_s"] = time.perf_counter() - t
    t = time.perf_counter()
    dermseg(
        [
            "export",
            "--int8",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(models["int8"]),
            "--calibration",
            str(train_dir / "images"),
        ]
    )
    record["export_int8_s"] = time.perf_counter() - t
    record["int8_calibration"] = (
        f"{min(32, len(split['train']))} of the {len(split['train'])} training images (export's default)"
    )

    load = os.getloadavg()
    task2, task2_date = predict_speed_rows()
    rows: list[dict[str, Any]] = []
    reference: dict[str, np.ndarray] = {}
    previous: dict[str, np.ndarray] = {}
    ref_scores: dict[str, float] = {}
    ref_per_image: dict[str, float] = {}
    for k, (name, model, options, task2_name) in enumerate(PATHS):
        out = work / f"pred_{k}"
        shutil.rmtree(out, ignore_errors=True)
        seconds = dermseg(
            [
                "predict",
                "--checkpoint",
                str(models[model]),
                *options,
                str(val_dir / "images"),
                "--out",
                str(out),
            ]
        )
        mean, per_image = score(out, val_dir / "masks")
        masks = masks_of(out)
        if len(masks) != len(split["val"]):
            raise SystemExit(f"{name}: {len(masks)} masks written for {len(split['val'])} images")
        if not reference:
            reference, ref_scores, ref_per_image = masks, mean, per_image
        differing = sum(int(np.count_nonzero(masks[m] != reference[m])) for m in reference)
        pixels = sum(m.size for m in reference.values())
        loss = ref_scores["jaccard"] - mean["jaccard"]
        synthetic = task2.get(task2_name) if task2_name else None
        task2_verdict = (
            None if synthetic is None else ("PASS" if -synthetic["vs_torch_fp32"] <= GUARD else "FAIL")
        )
        ph2_guard = "PASS" if loss <= GUARD else "FAIL"
        row = {
            "path": name,
            "model": model,
            "options": options,
            **mean,
            **{f"{s}_vs_torch_fp32": mean[s] - ref_scores[s] for s in SCORES},
            "masks_identical": sum(np.array_equal(masks[m], reference[m]) for m in reference)
            / len(reference),
            "pixels_differing": differing,
            "pixels_differing_share": differing / pixels,
            "max_image_jaccard_change": max(abs(per_image[i] - ref_per_image[i]) for i in ref_per_image),
            "image_jaccard_changes": {
                i: per_image[i] - ref_per_image[i] for i in ref_per_image if per_image[i] != ref_per_image[i]
            },
            "masks_identical_to_previous_row": sum(np.array_equal(masks[m], previous[m]) for m in reference)
            / len(reference)
            if previous
            else None,
            "ph2_guard": ph2_guard,
            "task2_synthetic_vs_torch_fp32": None if synthetic is None else synthetic["vs_torch_fp32"],
            "task2_guard": task2_verdict,
            # both halves: a path fails when either fails; unknown (None) when the Task 2 half was not measured
            "guard": "FAIL"
            if "FAIL" in (ph2_guard, task2_verdict)
            else None
            if task2_verdict is None
            else "PASS",
            "predict_s": seconds,
        }
        rows.append(row)
        previous = masks
        print(
            f"{name}: Jaccard {mean['jaccard']:.4f} ({row['jaccard_vs_torch_fp32']:+.4f}), "
            f"{row['masks_identical']:.0%} identical, {differing} pixels differ, PH2 guard {ph2_guard}",
            flush=True,
        )
    record["load_average_start_end"] = [round(load[0], 2), round(os.getloadavg()[0], 2)]
    record["task2_synthetic_source"] = (
        f"benchmarks/results/predict_speed.json ({task2_date})" if task2 else None
    )
    record["total_s"] = time.perf_counter() - started
    record["rows"] = rows
    return record


def table(record: dict[str, Any]) -> list[str]:
    """The guard table, Markdown."""
    lines = [
        "| path | mean Jaccard | vs torch fp32 | thresholded Jaccard | vs torch | Dice | vs torch "
        "| masks identical to torch fp32's | to the row above's | pixels differing from torch fp32 "
        "| largest change of one image's Jaccard | PH2 guard | Task 2 synthetic vs torch (predict-speed) "
        "| guard, both halves |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|:---:|",
    ]
    for r in record["rows"]:
        t2 = r["task2_synthetic_vs_torch_fp32"]
        t2_text = "not measured" if t2 is None else f"{t2:+.4f} ({r['task2_guard']})"
        above = r["masks_identical_to_previous_row"]
        lines.append(
            f"| {r['path']} | {r['jaccard']:.4f} | {r['jaccard_vs_torch_fp32']:+.4f} "
            f"| {r['threshold_jaccard']:.4f} | {r['threshold_jaccard_vs_torch_fp32']:+.4f} "
            f"| {r['dice']:.4f} | {r['dice_vs_torch_fp32']:+.4f} | {r['masks_identical']:.0%} "
            f"| {'' if above is None else f'{above:.0%}'} "
            f"| {r['pixels_differing']} ({r['pixels_differing_share']:.1e}) "
            f"| {r['max_image_jaccard_change']:.4f} | {r['ph2_guard']} | {t2_text} "
            f"| **{r['guard'] or 'PH2 only: ' + r['ph2_guard']}** |"
        )
    return lines


def verdict(record: dict[str, Any]) -> list[str]:
    """What the table means for each path that fails a half of the guard or passes it narrowly."""
    lines = []
    for r in record["rows"]:
        loss, t2 = -r["jaccard_vs_torch_fp32"], r["task2_synthetic_vs_torch_fp32"]
        changes = r["image_jaccard_changes"]
        worst = min(changes, key=lambda i: changes[i]) if changes else None
        why = []
        if r["ph2_guard"] == "FAIL":
            why.append(f"loses {loss:.4f} mean Jaccard on PH2 (more than {GUARD})")
        elif loss > 0.5 * GUARD:
            why.append(f"passes the PH2 half only narrowly (loses {loss:.4f} of the {GUARD} allowed)")
        if r["task2_guard"] == "FAIL":
            why.append(f"fails the synthetic Task 2 half ({t2:+.4f} in predict-speed)")
        if not why:
            continue
        lines.append(
            f"* {r['path']}: "
            + "; ".join(why)
            + f"; {r['masks_identical']:.0%} of its masks equal torch's"
            + (f", the worst image {worst} by {changes[worst]:+.3f} Jaccard" if worst else "")
            + (
                ". **It fails the guard and is not to be offered as a default.**"
                if r["guard"] == "FAIL"
                else "."
            )
        )
    passing = [r["path"] for r in record["rows"][1:] if r["guard"] == "PASS"]
    if passing:
        lines[:0] = ["Passing both halves of the guard: " + "; ".join(passing) + ".", ""]
    return lines


def write_section(record: dict[str, Any]) -> None:
    m, d = record["model"], record["diagnoses"]
    if m.get("budget_minutes") is not None:
        trained = (
            f"`dermseg train --config {m['config']}` on the {record['split_sizes']['train']} training "
            f"images within a budget of {m['budget_minutes']:g} minutes on the CPU ({m['train_s'] / 60:.1f} min "
            f"wall with start-up and threshold tuning, {m.get('epochs')} epochs"
            + (", a reused run" if m.get("reused_run") else "")
            + ")"
        )
    elif m.get("reused_run"):
        trained = (
            f"a reused `dermseg train --config {m['config']}` run on the training images "
            f"({m.get('epochs')} epochs)"
        )
    else:
        trained = f"the given checkpoint {m['checkpoint']} ({m['provenance']})"
    holdout = m.get("holdout_jaccard")
    lines = [
        f"<!-- {TAG} -->",
        "### Accuracy guard of the faster predict paths on real lesions (PH2, ISIC 2018 Task 1 metric)",
        "",
        f"Machine: {record['machine']}; {record['date']}; load average "
        f"{record['load_average_start_end'][0]:.2f} when predicting started, "
        f"{record['load_average_start_end'][1]:.2f} at the end (accuracy only: load does not change "
        f"it). Data: the split of `ph2-lesion` ({record['split_sizes']['train']} training / "
        f"{record['split_sizes']['val']} validation images of the shared PH2 sample, stratified on the "
        f"diagnosis, seed {record['split']['seed']}; training {d['train']}, validation {d['val']}). "
        f"Model: {trained}; epoch {m.get('best_epoch')} selected and the threshold tuned on an inner "
        "hold-out of the training images"
        + (f" (mean Jaccard {holdout:.3f} there)" if holdout is not None else "")
        + "; the validation images were used only for the scores below. Exports: `dermseg export` "
        f"(fp32) and `dermseg export --int8 --calibration` on {record['int8_calibration']}. Each path "
        "is one fresh `python -m dermseg predict` of the validation images (masks at the images' "
        "size), scored with the official Task 1 metric as `dermseg evaluate` scores the ph2 label "
        f"set. The guarded number is the mean Jaccard: a path may lose at most {GUARD} against fp32 "
        "torch with predict's default options (first row: no pipeline, PNG level 1). Masks identical: "
        "the share of the validation masks pixel-identical to the first row's, and to the row "
        "above's; pixels differing: summed over all validation masks (and their share of all "
        "pixels). The other half of the guard, the official Task 2 Jaccard on synthetic images "
        "against fp32 torch, is copied from "
        f"{record['task2_synthetic_source'] or 'predict_speed.json (absent)'} (another model, another "
        "run; its reference row is torch with no pipeline and PNG level 6, the same masks as PNG "
        "level 1); a path fails the guard when either half fails.",
        "",
        *table(record),
        "",
        *verdict(record),
        "",
        "The guard measures the difference between inference paths of one briefly trained model, not "
        "its accuracy (for that see `ph2-lesion`); 42 images are few, one image segmented differently "
        "moves the mean Jaccard by about 0.01-0.02, and INT8 rounding moves probabilities near the "
        "threshold by amounts that depend on the model, so another training run may put its loss on "
        "either side of the guard.",
        "",
        f"Command: `{record['command']}`"
        + (
            " (an earlier call with the same run folder trained the model; this one reused it)"
            if m.get("reused_run")
            else ""
        ),
        f"<!-- /{TAG} -->",
    ]
    replace_section(TAG, lines, after="ph2-lesion")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(p, minutes=8.0, minutes_help="training wall-time budget")
    model = p.add_mutually_exclusive_group()
    model.add_argument(
        "--run-dir", type=Path, default=None, help="keep the training run here (reused if there)"
    )
    model.add_argument("--checkpoint", type=Path, default=None, help="a trained lesion checkpoint to guard")
    p.add_argument("--work", type=Path, default=None, help="work folder, kept (default: a temporary one)")
    p.add_argument(
        "--no-write", action="store_true", help="print only; leave results and BENCHMARKS.md alone"
    )
    p.add_argument(
        "--section-only",
        action="store_true",
        help=f"rewrite the section from {RESULTS.name}, measure nothing",
    )
    args = p.parse_args()
    if args.section_only:
        record = json.loads(RESULTS.read_text())
        print("\n".join(table(record)))
        write_section(record)
        return
    if args.checkpoint is not None and not args.checkpoint.is_file():
        p.error(f"{args.checkpoint}: not found")
    work = args.work or Path(tempfile.mkdtemp(prefix="lesion-guard-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        record = run(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    record["command"] = " ".join(["python benchmarks/lesion_guard.py", *sys.argv[1:]])
    print("\n".join(table(record)))
    if not args.no_write:
        RESULTS.write_text(json.dumps(record, indent=1) + "\n")
        write_section(record)


if __name__ == "__main__":
    main()
