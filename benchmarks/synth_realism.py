"""Colour and texture of skin and lesion: real PH2 photographs vs the synthetic generator's looks.

Measures :func:`dermseg.data.realism.image_stats` on every PH2 photograph of the shared sample
(lesion vs skin split by its expert lesion mask) and on ``--n`` images written by
``write_dataset`` (JPEG, as ``dermseg synth`` writes them, with the generator's lesion masks) in
the ``classic`` and ``real`` looks; prints one table and writes JSON. The six ISIC images are
not used: they are the real-structure benchmark's test set.

    python benchmarks/synth_realism.py --write-stats   # regenerate src/dermseg/data/real_stats.json
    python benchmarks/synth_realism.py --md            # and the synth-realism section of BENCHMARKS.md

``--write-stats`` must come first after a change of the measurement: the ``real`` look samples
its colours from that file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from dermseg.data.realism import MEASURE_WIDTH, STAT_NAMES, image_stats, summarise
from dermseg.data.synth_colour import REAL_STATS_PATH
from dermseg.data.synthetic import SynthConfig, split_folders, write_dataset

ROOT = Path(__file__).resolve().parents[1]
PH2 = ROOT.parent / "shared" / "data" / "ph2_sample"
RESULT = ROOT / "benchmarks" / "results" / "synth_realism.json"


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def measure_ph2(folder: Path) -> list[dict]:
    """Per-image statistics of every PH2 photograph with a lesion mask."""
    rows = []
    for path in sorted((folder / "images").glob("*.jpg")):
        mask = cv2.imread(str(folder / "masks" / f"{path.stem}_lesion.png"), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            continue
        stats = image_stats(_read_rgb(path), mask)
        if stats is not None:
            rows.append({"id": path.stem, **{k: round(v, 3) for k, v in stats.items()}})
    return rows


def measure_synthetic(config: SynthConfig, n: int, size: int, seed: int) -> list[dict]:
    """Per-image statistics of ``n`` images written by ``write_dataset`` (JPEG as written)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ids = write_dataset(Path(tmp), n, size=size, seed=seed, config=config, lesion_masks=True)
        images = Path(tmp) / split_folders("training")[0]
        lesions = Path(tmp) / "ISIC2018_Task1_Training_GroundTruth"
        for isic_id in ids:
            mask = cv2.imread(str(lesions / f"{isic_id}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
            stats = image_stats(_read_rgb(images / f"{isic_id}.jpg"), mask)
            if stats is not None:
                rows.append({"id": isic_id, **stats})
    return rows


def table(summaries: dict[str, dict]) -> list[str]:
    """Markdown rows: mean (std over images) per statistic and source, then the mean gap."""
    names = list(summaries)
    lines = ["| statistic | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for stat in STAT_NAMES:
        cells = [f"{s[stat]['mean']:.1f} ({s[stat]['std']:.1f})" for s in summaries.values()]
        lines.append(f"| {stat} | " + " | ".join(cells) + " |")
    real = summaries[names[0]]
    gaps = []
    for s in summaries.values():
        z = [abs(s[k]["mean"] - real[k]["mean"]) / max(real[k]["std"], 1e-6) for k in STAT_NAMES]
        gaps.append(f"{np.mean(z):.2f}")
    lines.append("| mean gap to real, in real SDs | " + " | ".join(gaps) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ph2", type=Path, default=PH2, help="PH2 folder (images/, masks/)")
    parser.add_argument("--n", type=int, default=60, help="synthetic images per look")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-stats", action="store_true", help=f"write {REAL_STATS_PATH.name} first")
    parser.add_argument("--md", action="store_true", help="write the synth-realism section of BENCHMARKS.md")
    args = parser.parse_args(argv)

    real = measure_ph2(args.ph2)
    if args.write_stats:
        payload = {
            "source": f"{len(real)} PH2 photographs of the shared sample, expert lesion masks; "
            f"dermseg.data.realism.image_stats at {MEASURE_WIDTH} px wide (benchmarks/synth_realism.py)",
            "summary": summarise(real),
            "images": real,
        }
        REAL_STATS_PATH.write_text(json.dumps(payload, indent=0, sort_keys=False) + "\n")
        print(f"wrote {REAL_STATS_PATH.relative_to(ROOT)} ({len(real)} images)")
    looks = {
        f"PH2 real ({len(real)})": real,
        f"synthetic classic ({args.n})": measure_synthetic(SynthConfig(), args.n, args.size, args.seed),
        f"synthetic real look ({args.n})": measure_synthetic(
            SynthConfig.real(), args.n, args.size, args.seed
        ),
    }
    summaries = {name: summarise(rows) for name, rows in looks.items()}
    lines = table(summaries)
    print("\n".join(lines))
    RESULT.write_text(
        json.dumps({"size": args.size, "seed": args.seed, "summaries": summaries}, indent=1) + "\n"
    )
    if args.md:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_md import replace_section

        replace_section(
            "synth-realism",
            [
                "<!-- synth-realism -->",
                "### Synthetic dermoscopy vs real photographs: colour and texture",
                "",
                f"Per-image statistics (`dermseg.data.realism.image_stats`, images resized to {MEASURE_WIDTH} px wide, "
                "CIELAB from sRGB): mean over images, standard deviation over images in brackets. Lesion and skin are "
                "split by the lesion mask (PH2: expert masks; synthetic: the generator's), leaving out 6 px either side "
                "of the border and the dark surround (L* < 20). `*_L_std`: spread of L* inside the region; `*_detail`: "
                "standard deviation of L* minus its Gaussian blur (sigma 2 px), the fine texture. Synthetic images: "
                f"`write_dataset` JPEGs, {args.size} px, seed {args.seed}, the `classic` look (the default) and "
                "`SynthConfig.real()`, whose skin and lesion colours are sampled from these PH2 statistics. PH2 "
                "photographs with too little skin or lesion to measure (500 px) are left out. All measured PH2 "
                "images are used, including those the weak-label benchmark holds out: only their colour and texture "
                "enter the generator, never their criteria. The six ISIC images were not used. The last row is the mean over the ten statistics of |synthetic - real| "
                "divided by the real spread. Whether this helps a model on real images is to be measured with "
                "`benchmarks/real_structures.py` after training; it was not measured here.",
                "",
                *lines,
                "",
                "Command: `python benchmarks/synth_realism.py --md` (`--write-stats` regenerates "
                "`src/dermseg/data/real_stats.json`).",
                "<!-- /synth-realism -->",
            ],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
