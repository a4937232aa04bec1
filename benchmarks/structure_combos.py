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
   on), presence AUC of globules and streaks on the held-out PH2 images.

    python benchmarks/structure_combos.py --epochs 8

Results: ``benchmarks/results/structure_combos.json`` and the ``structure-combos`` section of
BENCHMARKS.md.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ph2", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", help="keep data and runs here (reused when present)")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "structure_combos.json"
    )
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
