"""Tiled prediction vs one resize, same checkpoint, on synthetic images drawn at high resolution.

Protocol (every number it prints is measured by this run, on the machine it names):

1. synthetic Task 2 test images drawn at ``--image-size`` pixels (1024 by default: the generator's
   lengths scale with the frame, so the structures are drawn with four times the detail of a
   256 px image, and hairlines of the pigment network are finer than a working-size pixel);
2. one checkpoint (``--checkpoint``; without it one is trained with the demo recipe on
   ``--train`` synthetic images of ``--train-size`` px for ``--epochs`` epochs);
3. the official ISIC 2018 Task 2 Jaccard (pooled, :func:`dermseg.evaluation.model.evaluate_checkpoint`)
   and the seconds per image (read, field of view, network, upsampling, scoring) of
   * one resize of the field to the model's working size (the default path);
   * tiles at the training scale (``--tiles``): the same pixels, in tiles of the training crop;
   * tiles at finer scales (``--tiles --tile-scale 0.5``, ...): more network pixels per image.

    python benchmarks/tiles.py --checkpoint run/checkpoints/best.safetensors --test 16

Results: ``benchmarks/results/tiles.json`` and the ``tiles`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_md import replace_section
from lesion_field import _train
from ph2_lesion import machine

ROOT = Path(__file__).resolve().parents[1]


def _score(checkpoint: Path, samples: list, tile_scale: float | None, overlap: float, batch: int) -> dict:
    """Official Task 2 scores of ``checkpoint`` on ``samples``, one resize (``tile_scale=None``) or tiles."""
    from dermseg.attributes import ATTRIBUTES
    from dermseg.evaluation.model import evaluate_checkpoint
    from dermseg.inference.segmenter import Segmenter
    from dermseg.inference.tiling import Tiling

    seg = Segmenter.from_checkpoint(checkpoint)
    if tile_scale is not None:
        seg.tiling = Tiling(scale=tile_scale, overlap=overlap, batch=batch)
    seg.probabilities(np.zeros((64, 64, 3), np.uint8))  # warm-up: allocator and kernels
    predicting = [0.0]
    probabilities = seg.probabilities

    def timed(image: np.ndarray, field: Any = None) -> np.ndarray:
        t = time.perf_counter()
        out = probabilities(image, field)
        predicting[0] += time.perf_counter() - t
        return out

    seg.probabilities = timed  # type: ignore[method-assign]
    t = time.perf_counter()
    scores = evaluate_checkpoint(seg, samples)
    return {
        "prediction": seg.tiling_description,
        "tta": seg.tta,
        "jaccard": scores["overall"],
        "per_attribute": {a: scores[a]["jaccard"] for a in ATTRIBUTES},
        "images": scores["images"],
        "s_per_image": (time.perf_counter() - t) / len(samples),
        "predict_s_per_image": predicting[0] / len(samples),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dermseg.data.synthetic import write_dataset
    from dermseg.evaluation.model import select_samples
    from dermseg.models.checkpoint import read_meta

    record: dict[str, Any] = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "test_images": args.test,
        "image_size": args.image_size,
        "overlap": args.overlap,
        "batch": args.batch,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        data = work / "data"
        if not (data / "ISIC2018_Task1-2_Test_Input").is_dir():
            write_dataset(data, args.test, size=args.image_size, seed=args.seed, split="test", start_id=10**6)
        checkpoint = args.checkpoint
        if checkpoint is None:
            train = work / "train"
            if not (train / "SYNTHETIC.txt").is_file():
                write_dataset(train, args.train, size=args.train_size, seed=args.seed, split="training")
            record["train_s"] = _train(train, work / "run", args.epochs)
            checkpoint = work / "run" / "checkpoints" / "best.safetensors"
        meta = read_meta(checkpoint)
        record["checkpoint"] = {
            "file": str(checkpoint),
            "input_size": meta["input_size"],
            "crop_size": (meta.get("config") or {}).get("data", {}).get("crop_size"),
            "trained_on": (meta.get("config") or {}).get("data", {}).get("root"),
        }
        samples = select_samples(data, "test", meta)
        record["rows"] = {"one resize": _score(checkpoint, samples, None, args.overlap, args.batch)}
        for scale in args.scales:
            row = _score(checkpoint, samples, scale, args.overlap, args.batch)
            record["rows"][f"tiles, scale {scale:g}"] = row
    return record


def _section(record: dict[str, Any]) -> list[str]:
    ckpt = record["checkpoint"]
    lines = [
        "<!-- tiles -->",
        f"### Tiled prediction vs one resize ({record['image_size']} px synthetic images)",
        "",
        f"Machine: {record['machine']}; {record['date']}. The 2 CPU cores were shared with other jobs "
        "(benchmarks and test runs), so the seconds are noisy; all rows ran in the same process, one "
        f"after the other. {record['test_images']} synthetic test images drawn at "
        f"{record['image_size']} px; one checkpoint (working size {ckpt['input_size']}, training crops "
        f"{ckpt['crop_size']}; {record.get('note') or 'trained on ' + str(ckpt['trained_on'])}). Official ISIC 2018 "
        f"Task 2 Jaccard (pooled); seconds per image: `probabilities` (resize, network, blending, "
        f"upsampling to the full frame) and the whole evaluation (plus reading, field of view, "
        f"thresholds, scoring); tiles overlap {record['overlap']:g}, {record['batch']} per batch, "
        "Gaussian blending (sigma 1/8 tile).",
        "",
        "| prediction | Task 2 Jaccard | pigment network | streaks | globules | predict s/image "
        "| evaluate s/image |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["rows"].values():
        att = row["per_attribute"]
        lines.append(
            f"| {row['prediction'].removeprefix('prediction: ')} | {row['jaccard']:.4f} "
            f"| {att['pigment_network']:.4f} | {att['streaks']:.4f} | {att['globules']:.4f} "
            f"| {row['predict_s_per_image']:.2f} | {row['s_per_image']:.2f} |"
        )
    lines += ["", "Command: `python benchmarks/tiles.py --checkpoint CKPT`", "<!-- /tiles -->"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="the model (default: train one, see --train)")
    parser.add_argument("--test", type=int, default=16, help="test images")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--train", type=int, default=80, help="training images without --checkpoint")
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="keep data and runs here (reused when present)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "tiles.json")
    parser.add_argument("--note", help="what the checkpoint is, for BENCHMARKS.md")
    parser.add_argument("--no-markdown", action="store_true", help="do not rewrite BENCHMARKS.md")
    parser.add_argument(
        "--markdown-only", action="store_true", help="rewrite BENCHMARKS.md from --json, measure nothing"
    )
    args = parser.parse_args()
    if args.markdown_only:
        record = json.loads(args.json.read_text())
        record["note"] = args.note or record.get("note")
        args.json.write_text(json.dumps(record, indent=1) + "\n")
        replace_section("tiles", _section(record))
        return
    record = {**run(args), "note": args.note}
    print(f"machine: {record['machine']}; {args.test} test images of {args.image_size} px")
    print(f"{'prediction':24s} {'Task 2 Jaccard':>14s} {'predict s/img':>13s} {'evaluate s/img':>14s}")
    for name, row in record["rows"].items():
        print(
            f"{name:24s} {row['jaccard']:14.4f} {row['predict_s_per_image']:13.2f} {row['s_per_image']:14.2f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(args.json)
    if not args.no_markdown:
        replace_section("tiles", _section(record))


if __name__ == "__main__":
    main()
