"""Structures on real photographs from synthetic training: which training data transfers best?

Protocol (issue 15, deliverable 4; every number is measured by this run, on the machine named):

1. PH2 (the 140 images of ``../shared/data/ph2_sample``) is split once, stratified on
   diagnosis x streaks, seed 0, into a **criteria** half (its image-level criteria may be trained
   on) and a **held-out** half (used for nothing but the presence AUC below);
2. three models, the ``demo`` recipe with a presence head, trained for the same number of epochs
   on 240 synthetic images (256 px; validation: 40 synthetic images):
   * ``classic``: today's generator look;
   * ``real look``: the generator's measured look (``SynthConfig.real()``);
   * ``real look + PH2 criteria``: the same plus the criteria half's image-level labels
     (``data.weak_labels``, presence head and top-k MIL);
3. each checkpoint measured by ``benchmarks/real_structures.py`` with ``--ph2`` on the held-out
   half: pigment-network official pooled Jaccard on the six ISIC images (never trained or tuned
   on), presence AUC of globules and streaks on the held-out PH2 images. The real look's colour
   statistics were measured on all PH2 photographs (the held-out half too): its arms have seen
   the held-out images' colours, never their criteria.

    python benchmarks/structure_combos.py --epochs 8

Results: ``benchmarks/results/structure_combos.json`` and the ``structure-combos`` section of
BENCHMARKS.md (``--write-md``; ``--from-json`` rewrites the section from a kept record, its AUCs
recomputed from the per-image scores with their 95 % stratified bootstrap intervals).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_md import replace_section
from ph2_lesion import DEFAULT_DATA, _link_subset, machine

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def _run(*args: str) -> float:
    """Run a command (``python ...``); its wall time in seconds."""
    t = time.perf_counter()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, *args], check=True, env=env)
    return time.perf_counter() - t


def _ph2_split(ph2: Path, seed: int) -> tuple[list[str], list[str]]:
    """``(criteria half, held-out half)`` of PH2's ids, stratified on diagnosis x streaks."""
    from dermseg.data.splits import stratified_split_by_label

    with open(ph2 / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = [r["image"] for r in rows]
    diagnosis = [
        next(d for d in ("common_nevus", "atypical_nevus", "melanoma") if r[d].strip()) for r in rows
    ]
    strata = [f"{d}|{r['streaks']}" for d, r in zip(diagnosis, rows, strict=True)]
    split = stratified_split_by_label(ids, strata, val_fraction=0.5, seed=seed)
    return split.train, split.val


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dermseg.data.synthetic import SynthConfig, write_dataset

    criteria, held_out = _ph2_split(args.ph2, args.seed)
    record: dict[str, Any] = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "epochs": args.epochs,
        "ph2_split": {"seed": args.seed, "criteria": criteria, "held_out": held_out},
        "arms": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        ph2_train, ph2_test = work / "ph2_criteria", work / "ph2_held_out"
        if not ph2_train.is_dir():
            _link_subset(args.ph2, ph2_train, criteria)
            _link_subset(args.ph2, ph2_test, held_out)
        looks = {"classic": SynthConfig(), "real": SynthConfig.real()}
        for look, config in looks.items():
            data = work / f"synth_{look}"
            if not (data / "SYNTHETIC.txt").is_file():
                write_dataset(data, 240, size=256, seed=0, split="training", config=config)
                write_dataset(data, 40, size=256, seed=0, split="validation", start_id=240, config=config)
        weak = [
            f"data.weak_labels={ph2_train / 'labels.csv'}",
            "data.weak_format=ph2",
            "loss.weak_mil=topk",
        ]
        arms = {
            "classic": ("classic", []),
            "real look": ("real", []),
            "real look + PH2 criteria": ("real", weak),
        }
        for name, (look, extra) in arms.items():
            out = work / name.replace(" ", "_").replace("+", "and")
            sets = [
                f"train.epochs={args.epochs}",
                "train.max_minutes=null",
                "model.presence_head=true",
                *extra,
            ]
            row: dict[str, Any] = {"look": look, "overrides": sets}
            best = out / "checkpoints" / "best.safetensors"
            if not best.is_file():
                cmd = ["-m", "dermseg", "train", "--config", "demo", "--data", str(work / f"synth_{look}")]
                cmd += ["--out", str(out), *[a for s in sets for a in ("--set", s)]]
                row["train_s"] = _run(*cmd)
            result = out / "real_structures.json"
            row["benchmark_s"] = _run(
                str(HERE / "real_structures.py"), str(best), "--ph2", str(ph2_test), "--json", str(result)
            )
            row["real_structures"] = json.loads(result.read_text())
            record["arms"][name] = row
    return record


def section(record: dict[str, Any], ph2: Path) -> list[str]:
    """The ``structure-combos`` section of BENCHMARKS.md from a run's record.

    Each AUC is recomputed from the record's per-image scores against PH2's criteria (so the
    table checks the stored value) and given its bootstrap interval.
    """
    from dermseg.attributes import ATTRIBUTES
    from dermseg.data.weak_labels import read_ph2_weak_labels
    from dermseg.evaluation.presence_auc import presence_auc

    held_out = set(record["ph2_split"]["held_out"])
    weak = read_ph2_weak_labels(ph2 / "labels.csv")
    names = list(record["arms"])
    lines = [
        "<!-- structure-combos -->",
        "### Which synthetic training transfers to real photographs (`benchmarks/structure_combos.py`)",
        "",
        f"`python benchmarks/structure_combos.py --epochs {record['epochs']}` on {record['date']}; "
        f"{record['machine']}. Each arm: the `demo` recipe with `model.presence_head=true`, "
        f"{record['epochs']} epochs on 240 synthetic 256 px images (192 px working size; validation "
        "and threshold tuning on 40 synthetic images). PH2 split once (seed 0, stratified on "
        f"diagnosis x streaks): {len(record['ph2_split']['criteria'])} images whose criteria the "
        f"third arm trains on, {len(held_out)} held out: their criteria are used for nothing but the "
        "AUCs below. The six ISIC images were never trained or tuned on. One caveat: the real look's "
        "colour statistics (`src/dermseg/data/real_stats.json`) were measured on 139 PH2 photographs, "
        "the held-out ones among them, and its optics were designed looking at PH2 and ISIC "
        "photographs, so the two real-look arms have seen the colour distribution of the held-out "
        "images (never their criteria or masks). Intervals: 95 % stratified bootstrap (2,000 resamples).",
        "",
        "| measurement | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    row = ["ISIC pigment_network pooled Jaccard (official; threshold tuned on synthetic)"]
    for name in names:
        isic = record["arms"][name]["real_structures"]["rows"][0]
        row.append(f"{isic['value']:.3f} (> {isic['score'].split('> ')[1].split(' ')[0]})")
    lines.append("| " + " | ".join(row) + " |")
    for attribute in ("globules", "streaks"):
        labels = {k: v for k, v in weak.of_attribute(attribute).items() if k in held_out}
        c = ATTRIBUTES.index(attribute)
        for score in ("p99", "head"):
            n_pos = sum(labels.values())
            row = [f"PH2 {attribute} presence AUC, {score} ({len(labels)} images, {n_pos} present)"]
            for name in names:
                per_image = record["arms"][name]["real_structures"]["per_image_presence_scores"]["PH2"]
                result = presence_auc({k: v[c] for k, v in per_image[score].items()}, labels)
                low, high = result.interval or (float("nan"), float("nan"))
                row.append(f"{result.auc:.3f} ({low:.2f}-{high:.2f})")
            lines.append("| " + " | ".join(row) + " |")
    times = [f"{record['arms'][n].get('train_s', float('nan')) / 60:.0f} min" for n in names]
    lines.append("| training wall time | " + " | ".join(times) + " |")
    lines += ["", "<!-- /structure-combos -->"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ph2", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", help="keep data and runs here (reused when present)")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "structure_combos.json"
    )
    parser.add_argument("--write-md", action="store_true", help="replace the section of BENCHMARKS.md")
    parser.add_argument("--from-json", action="store_true", help="no training: the section from --json")
    args = parser.parse_args()
    if args.from_json:
        try:
            record = json.loads(args.json.read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"error: {args.json}: cannot read the record ({err})", file=sys.stderr)
            sys.exit(2)
        lines = section(record, args.ph2)
        print("\n".join(lines))
        if args.write_md:
            replace_section("structure-combos", lines)
        return
    record = run(args)
    print(f"machine: {record['machine']}; {args.epochs} epochs each")
    for name, row in record["arms"].items():
        print(f"== {name} (train {row.get('train_s', 0):.0f} s)")
        for line in row["real_structures"].get("rows", []):
            print("  ", json.dumps(line))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(args.json)
    if args.write_md:
        replace_section("structure-combos", section(record, args.ph2))


if __name__ == "__main__":
    main()
