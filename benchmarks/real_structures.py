"""Task 2 structures measured on real photographs: one table for a checkpoint.

Protocol (every number is measured by this run; nothing is tuned on these images):

a. **ISIC pigment network**: the official pooled Jaccard (ISIC 2018 Task 2: per image
   TP/FP/FN/TN divided by its pixel count, summed over images, ``TP / (TP + FP + FN)``) of
   ``pigment_network`` alone on the six images of ``../shared/data/isic2018_task2_sample``,
   predicted at their original size with the checkpoint's thresholds and post-processing. The
   other four attributes have no masks there and are not scored.
b. **PH2 presence AUC** on the 140 images of ``../shared/data/ph2_sample``: globules (dots/globules
   absent vs typical or atypical) and streaks (absent vs present), the criteria mapped by
   :data:`dermseg.data.weak_labels.CRITERIA_MAP`. PH2 grades the pigment network only typical or
   atypical: no image is labelled absent, so it gives no pigment-network AUC.
c. **Derm7pt presence AUC** (with ``--derm7pt FOLDER``): globules, streaks and pigment network.

Each image's presence score is stated in the table: the 99th percentile of the attribute's
probability inside the field of view, and the presence head's probability when the checkpoint
has one. AUC: Mann-Whitney, ties half.

    python benchmarks/real_structures.py runs/demo/best.safetensors --json out.json [--write-md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench_md import replace_section
from ph2_lesion import machine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PROTOCOL = (
    "Pigment network: official pooled Jaccard of that attribute alone on the six ISIC 2018 Task 2 "
    "images of the shared sample (the only masks they have; never trained or tuned on). Presence: "
    "image-level ROC AUC (Mann-Whitney, ties half) against the criteria mapped by "
    "`dermseg.data.weak_labels.CRITERIA_MAP`; PH2 gives no pigment-network AUC, as it grades the "
    "network typical/atypical only (no absent class)."
)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three measurements; the JSON record."""
    from dermseg.data.ph2 import read_ph2
    from dermseg.data.weak_labels import read_derm7pt_folder, read_ph2_weak_labels
    from dermseg.evaluation.real_structures import (
        attribute_mask_pairs,
        pooled_attribute_jaccard,
        presence_rows,
        presence_scores,
    )
    from dermseg.inference.segmenter import Segmenter, require_label_set
    from dermseg.labels import DEFAULT

    start = time.perf_counter()
    segmenter = Segmenter.from_checkpoint(args.checkpoint)
    require_label_set(segmenter.labels, DEFAULT, args.checkpoint, "the real-structure benchmark")
    # every folder and label file is read before the first prediction: a bad one fails at once
    pairs = attribute_mask_pairs(args.isic, "pigment_network")
    ph2 = read_ph2(args.ph2, require_masks=False, check_files=False)
    sources = [("PH2", read_ph2_weak_labels(ph2.criteria_file), {s.id: s.image_path for s in ph2})]
    if args.derm7pt is not None:
        sources.append(("Derm7pt", *read_derm7pt_folder(args.derm7pt)))
    rows = [pooled_attribute_jaccard(segmenter, pairs, "pigment_network")]
    per_image: dict[str, Any] = {}
    for name, weak, images in sources:
        scores = presence_scores(segmenter, images)
        rows += presence_rows(name, scores, weak)
        per_image[name] = {s: {k: v.round(6).tolist() for k, v in d.items()} for s, d in scores.items()}
    return {
        "checkpoint": str(args.checkpoint),
        "date": date.today().isoformat(),
        "machine": machine(),
        "wall_s": round(time.perf_counter() - start, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # > cores: the CPU was shared
        "note": args.note,
        "tta": segmenter.tta_description,
        "rows": [r.as_dict() for r in rows],
        "per_image_presence_scores": per_image,
    }


def table(record: dict[str, Any]) -> list[str]:
    """The record's rows as a Markdown table."""
    lines = [
        "| measurement | n images | n positive | value | 95 % bootstrap interval | presence score / mask |",
        "|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        value = "undefined" if r["value"] is None else f"{r['value']:.3f}"
        interval = r.get("interval")
        span = "" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"
        lines.append(
            f"| {r['measurement']} | {r['n_images']} | {r['n_positive']} | {value} | {span} | {r['score']} |"
        )
    return lines


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` atomically (a temporary file beside ``path``, then a rename)."""
    from dermseg.files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a Task 2 dermseg checkpoint (.safetensors)")
    p.add_argument("--derm7pt", type=Path, default=None, help="a Derm7pt folder (meta.csv, images/)")
    p.add_argument("--json", type=Path, default=None, help="write the record here")
    p.add_argument("--isic", type=Path, default=SHARED / "isic2018_task2_sample")
    p.add_argument("--ph2", type=Path, default=SHARED / "ph2_sample")
    p.add_argument(
        "--note", default="", help="a sentence on the checkpoint, kept in the JSON and BENCHMARKS.md"
    )
    p.add_argument(
        "--write-md", action="store_true", help="replace the real-structures section of BENCHMARKS.md"
    )
    args = p.parse_args()
    from dermseg.errors import DermsegError

    try:
        record = measure(args)
    except DermsegError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(table(record)))
    print(f"\n{PROTOCOL}")
    print(
        f"\nMachine: {record['machine']}; wall time {record['wall_s']:.0f} s (load average "
        f"{record['load_average_1min_at_end']} at the end); {record['tta']}"
    )
    if args.json is not None:
        write_json(args.json, record)
    if args.write_md:
        replace_section(
            "real-structures",
            [
                "<!-- real-structures -->",
                "### Task 2 structures on real photographs (`benchmarks/real_structures.py`)",
                "",
                f"`python benchmarks/real_structures.py {record['checkpoint']}` on {record['date']}; "
                f"{record['machine']}; wall time {record['wall_s']:.0f} s, 1-minute load average "
                f"{record['load_average_1min_at_end']} at the end; {record['tta']}.",
                "",
                PROTOCOL,
                "",
                *([record["note"], ""] if record["note"] else []),
                *table(record),
                "<!-- /real-structures -->",
            ],
        )


if __name__ == "__main__":
    main()
