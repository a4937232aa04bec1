"""Does a lesion model's box help the Task 2 structure model? Measured on synthetic data.

Protocol (every number it prints is measured by this run, on the machine it names):

1. a synthetic Task 2 dataset with Task 1 lesion masks (the generator draws the lesion, so it
   knows it): training, validation and test splits, images of ``--image-size`` pixels;
2. three models trained with the demo recipe (``--config demo``, working size 192) for the same
   number of epochs:
   * **structures, whole field**: the usual Task 2 model (``data.field: fov``);
   * **structures, lesion boxes**: trained on the ground-truth lesion's box with its margin
     resized to the working size (``data.field: lesion``), so that at prediction, where a lesion
     model gives the box, it sees the lesion at the scale it was trained on;
   * **lesion model**: the same recipe on the Task 1 masks (``data.labels: isic2018_task1``);
   each selects its epoch and tunes its thresholds on the validation split;
3. the official ISIC 2018 Task 2 Jaccard (pooled) of each structure model on the **test** split,
   with and without the lesion model's box as its field (``--lesion-checkpoint``), and with
   structures outside the predicted lesion emptied (``--outside-lesion empty``); plus the lesion
   model's own Task 1 scores on the test split.

    python benchmarks/lesion_field.py --epochs 12

Results: ``benchmarks/results/lesion_field.json`` and the ``lesion-field`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ph2_lesion import machine

ROOT = Path(__file__).resolve().parents[1]


def _train(data: Path, out: Path, epochs: int, *overrides: str) -> float:
    """Train with the demo recipe for ``epochs`` epochs; the wall time in seconds."""
    sets = [f"train.epochs={epochs}", "train.max_minutes=null", *overrides]
    args = ["train", "--config", "demo", "--data", str(data), "--out", str(out)]
    args += [a for s in sets for a in ("--set", s)]
    t = time.perf_counter()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, "-m", "dermseg", *args], check=True, env=env)
    return time.perf_counter() - t


def _score(checkpoint: Path, data: Path, lesion: Path | None = None, empty: bool = False) -> dict[str, Any]:
    """Official Task 2 scores of ``checkpoint`` on the test split, and the seconds per image."""
    from dermseg.evaluation.model import evaluate_checkpoint, select_samples
    from dermseg.inference.segmenter import Segmenter
    from dermseg.models.checkpoint import read_meta

    seg = Segmenter.from_checkpoint(checkpoint)
    if lesion is not None:
        seg.use_lesion_model(Segmenter.from_checkpoint(lesion), empty_outside=empty, name=lesion.name)
    samples = select_samples(data, "test", read_meta(checkpoint))
    t = time.perf_counter()
    scores = evaluate_checkpoint(seg, samples)
    from dermseg.attributes import ATTRIBUTES

    return {
        "field": seg.field_description,
        "jaccard": scores["overall"],
        "per_attribute": {a: scores[a]["jaccard"] for a in ATTRIBUTES},
        "images": scores["images"],
        "s_per_image": (time.perf_counter() - t) / len(samples),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dermseg.data.synthetic import write_dataset
    from dermseg.evaluation.lesion_model import evaluate_lesion_checkpoint
    from dermseg.evaluation.model import select_samples
    from dermseg.inference.segmenter import Segmenter
    from dermseg.models.checkpoint import read_meta

    record: dict[str, Any] = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "data": {"train": args.train, "val": args.val, "test": args.test, "image_size": args.image_size},
        "epochs": args.epochs,
        "margin": args.margin,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        data = work / "data"
        if not (data / "SYNTHETIC.txt").is_file():
            sizes = {"size": args.image_size, "seed": args.seed, "lesion_masks": True}
            write_dataset(data, args.train, split="training", **sizes)
            write_dataset(data, args.val, split="validation", start_id=args.train, **sizes)
            write_dataset(data, args.test, split="test", start_id=args.train + args.val, **sizes)
        runs = {
            "fov": [],
            "lesion_boxes": ["data.field=lesion", f"data.field_margin={args.margin}"],
            "lesion_model": [
                "data.labels=isic2018_task1",
                "postprocess.thresholds=[0.5]",
                "postprocess.opening=[0]",
            ],
        }
        record["train_s"] = {}
        for name, overrides in runs.items():
            out = work / name
            if not (out / "checkpoints" / "best.safetensors").is_file():
                record["train_s"][name] = _train(data, out, args.epochs, *overrides)
        best = {name: work / name / "checkpoints" / "best.safetensors" for name in runs}
        lesion = best["lesion_model"]
        seg = Segmenter.from_checkpoint(lesion)
        samples = select_samples(data, "test", read_meta(lesion))
        record["lesion_model_test"] = evaluate_lesion_checkpoint(seg, samples).scores
        record["rows"] = {
            "fov model, whole field": _score(best["fov"], data),
            "fov model, lesion box": _score(best["fov"], data, lesion),
            "lesion-box model, whole field": _score(best["lesion_boxes"], data),
            "lesion-box model, lesion box": _score(best["lesion_boxes"], data, lesion),
            "lesion-box model, lesion box, outside emptied": _score(best["lesion_boxes"], data, lesion, True),
        }
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train", type=int, default=240)
    parser.add_argument("--val", type=int, default=40)
    parser.add_argument("--test", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="keep data and runs here (reused when present)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "lesion_field.json")
    args = parser.parse_args()
    record = run(args)
    print(f"machine: {record['machine']}; {args.epochs} epochs each; test split: {args.test} images")
    task1 = record["lesion_model_test"]
    print(f"lesion model on the test split: Task 1 mean Jaccard {task1['macro_average']['jaccard']:.3f}")
    print(f"{'structure model, field':52s} {'Task 2 Jaccard':>14s} {'s/image':>8s}")
    for name, row in record["rows"].items():
        print(f"{name:52s} {row['jaccard']:14.4f} {row['s_per_image']:8.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(args.json)


if __name__ == "__main__":
    main()
