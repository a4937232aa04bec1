"""Lesion segmentation on real dermoscopy: PH2, trained on the CPU, scored with the ISIC 2018 Task 1 metric.

Protocol (every number it prints is measured by this run):

1. the PH2 images given (default: the 140 of ``../shared/data/ph2_sample``) are split once,
   stratified on the diagnosis (common nevus / atypical nevus / melanoma), with a fixed seed,
   into *training* and *validation* images; the split is written to the results;
2. ``dermseg train --config lesion`` runs on the training images only, within a wall-time
   budget; the epoch is selected and the threshold tuned on an inner hold-out of the training
   images (``data.validation: holdout``), so the validation images are never seen;
3. ``dermseg predict`` writes the validation images' lesion masks at their original size;
4. the masks are scored with the official ISIC 2018 Task 1 metric
   (:func:`dermseg.evaluation.task1_folders.evaluate_task1_folders`, identical to
   ``isic_challenge_scoring``): mean Jaccard, Dice, thresholded Jaccard, accuracy,
   sensitivity, specificity.

Results: ``benchmarks/results/ph2_lesion.json`` and the ``ph2-lesion`` section of BENCHMARKS.md.

    python benchmarks/ph2_lesion.py --minutes 25
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ph2_sample"


def _link_subset(src: Path, dest: Path, ids: list[str]) -> None:
    """A flat PH2 folder (``images/``, ``masks/``, ``labels.csv``) holding only ``ids`` (symlinks)."""
    (dest / "images").mkdir(parents=True)
    (dest / "masks").mkdir()
    keep = set(ids)
    for i in ids:
        (dest / "images" / f"{i}.jpg").symlink_to((src / "images" / f"{i}.jpg").resolve())
        (dest / "masks" / f"{i}_lesion.png").symlink_to((src / "masks" / f"{i}_lesion.png").resolve())
    with open(src / "labels.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    with open(dest / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([rows[0], *[r for r in rows[1:] if r and r[0] in keep]])


def _dermseg(*args: str) -> float:
    """Run a dermseg command; its wall time in seconds."""
    t = time.perf_counter()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, "-m", "dermseg", *args], check=True, env=env)
    return time.perf_counter() - t


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {len(os.sched_getaffinity(0))} usable cores, no GPU used (torch {torch.__version__})"


def split_ph2(data: Path, val_fraction: float, seed: int) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """The benchmark's PH2 split, stratified on the diagnosis.

    Returns:
        ``({seed, val_fraction, train: ids, val: ids}, {side: {diagnosis: count}})``.
    """
    from dermseg.data.ph2 import read_ph2
    from dermseg.data.splits import stratified_split_by_label

    ph2 = read_ph2(data)
    ids = [s.id for s in ph2.samples]
    diagnoses = [s.diagnosis for s in ph2.samples]
    split = stratified_split_by_label(ids, diagnoses, val_fraction=val_fraction, seed=seed)
    record = {"seed": seed, "val_fraction": val_fraction, "train": split.train, "val": split.val}
    counts = {
        side: {d: sum(diagnoses[ids.index(i)] == d for i in part) for d in sorted(set(diagnoses))}
        for side, part in (("train", split.train), ("val", split.val))
    }
    return record, counts


def train_once(
    run_dir: Path, train_dir: Path, split: dict[str, Any], config: str, minutes: float, overrides: list[str]
) -> tuple[float, bool]:
    """Train ``config`` on ``train_dir`` into ``run_dir``, unless an earlier call did on ``split``.

    Returns:
        ``(training wall seconds, reused)``; a run of another split is refused (its training
        images could be this split's validation images).
    """
    done = run_dir / "ph2_benchmark_train.json"
    if done.is_file():  # trained by an earlier call (--run-dir): score it again
        earlier = json.loads(done.read_text())
        if earlier["split"] != split:
            raise SystemExit(f"{run_dir} was trained on another split (seed, fraction or data): refused")
        return earlier["train_s"], True
    sets = [a for s in [f"train.max_minutes={minutes}", *overrides] for a in ("--set", s)]
    train_s = _dermseg("train", "--config", config, "--data", str(train_dir), "--out", str(run_dir), *sets)
    marker = {
        "train_s": train_s,
        "split": split,
        "config": config,
        "minutes": minutes,
        "overrides": overrides,
    }
    done.write_text(json.dumps(marker) + "\n")
    return train_s, False


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dermseg.evaluation.task1_folders import evaluate_task1_folders

    split, diagnoses = split_ph2(args.data, args.val_fraction, args.seed)
    record: dict[str, Any] = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "data": str(args.data),
        "split": split,
        "diagnoses": diagnoses,
        "budget_minutes": args.minutes,
        "config": args.config,
        "overrides": args.set,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_dir, val_dir = work / "train", work / "val"
        _link_subset(Path(args.data), train_dir, split["train"])
        _link_subset(Path(args.data), val_dir, split["val"])
        run_dir = Path(args.run_dir or work / "run")
        record["train_s"], reused = train_once(run_dir, train_dir, split, args.config, args.minutes, args.set)
        if reused:
            record["reused_run"] = str(run_dir)
        if args.train_only:
            return record
        records = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if x]
        record["epochs"] = len(records)
        best = Path(run_dir) / "checkpoints" / "best.safetensors"
        pred = work / "pred"
        record["predict_s"] = _dermseg(
            "predict", "--checkpoint", str(best), str(val_dir / "images"), "--out", str(pred)
        )
        t = time.perf_counter()
        result = evaluate_task1_folders(pred, val_dir / "masks")
        record["score_s"] = time.perf_counter() - t
        record["scores"] = result.scores
        per_image = result.per_image_scores()
        record["per_image"] = {
            image_id: {name: float(values[k]) for name, values in per_image.items()}
            for k, image_id in enumerate(result.image_ids)
        }
    return record


def write_section(record: dict[str, Any]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_md import replace_section

    s = record["scores"]["macro_average"]
    d = record["diagnoses"]
    lines = [
        "<!-- ph2-lesion -->",
        "### Lesion segmentation on real PH2 images (ISIC 2018 Task 1 metric)",
        "",
        f"Machine: {record['machine']}; {record['date']}. Data: {len(record['split']['train'])} training and "
        f"{len(record['split']['val'])} validation images of the shared PH2 sample, split once stratified on "
        f"the diagnosis (seed {record['split']['seed']}; training {d['train']}, validation {d['val']}; the ids "
        "are in `benchmarks/results/ph2_lesion.json`). `dermseg train --config "
        f"{record['config']}` within {record['budget_minutes']:g} minutes on the CPU "
        f"({record['epochs']} epochs), epoch selection and threshold tuning on an inner hold-out of the "
        "training images; the validation images were used only for the scores below, masks predicted at "
        "the images' own size and scored with the official Task 1 metric.",
        "",
        "| images | mean Jaccard | Dice | thresholded Jaccard (official) | accuracy | sensitivity | specificity "
        "| train wall time | predict wall time | scoring |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(record['split']['val'])} validation | {s['jaccard']:.3f} | {s['dice']:.3f} "
        f"| {s['threshold_jaccard']:.3f} | {s['accuracy']:.3f} | {s['sensitivity']:.3f} | {s['specificity']:.3f} "
        f"| {record['train_s'] / 60:.1f} min | {record['predict_s']:.0f} s | {record['score_s']:.2f} s |",
        "",
        f"Command: `python benchmarks/ph2_lesion.py --minutes {record['budget_minutes']:g}`",
        "<!-- /ph2-lesion -->",
    ]
    replace_section("ph2-lesion", lines)


def add_data_arguments(p: argparse.ArgumentParser, minutes: float, minutes_help: str) -> None:
    """The data, split and training options this script shares with ``lesion_guard.py``."""
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a PH2 folder (flat form)")
    p.add_argument("--minutes", type=float, default=minutes, help=minutes_help)
    p.add_argument("--val-fraction", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="lesion")
    p.add_argument("--set", action="append", default=[], help="config overrides, as for dermseg train")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(p, minutes=25.0, minutes_help="training wall-time budget (at most 30)")
    p.add_argument("--run-dir", type=Path, default=None, help="keep the training run here")
    p.add_argument("--train-only", action="store_true", help="train into --run-dir and stop (score later)")
    p.add_argument(
        "--no-write", action="store_true", help="print only; leave results and BENCHMARKS.md alone"
    )
    args = p.parse_args()
    if args.train_only and not args.run_dir:
        p.error("--train-only needs --run-dir")
    record = run(args)
    if args.train_only:
        print(f"trained in {record['train_s'] / 60:.1f} min into {args.run_dir}")
        return
    print(json.dumps(record["scores"], indent=1))
    if not args.no_write:
        out = ROOT / "benchmarks" / "results" / "ph2_lesion.json"
        out.write_text(json.dumps(record, indent=1) + "\n")
        write_section(record)


if __name__ == "__main__":
    main()
