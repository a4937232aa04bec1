"""A real | synthetic image grid: PH2 photographs beside the generator's classic and real looks.

Writes ``docs/images/synth_grid.png``: the first row holds ``--n`` PH2 photographs of the shared
sample (evenly spaced ids, not chosen by hand), the second the ``classic`` look (before issue 15)
and the third the ``real`` look (``SynthConfig.real()``), both as ``write_dataset`` writes them
(JPEG), 512 x 384 px, seed ``--seed``. The six ISIC images are not used (they are a test set).

    python benchmarks/synth_grid.py
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dermseg.data.synthetic import SynthConfig, split_folders, write_dataset

ROOT = Path(__file__).resolve().parents[1]
PH2 = ROOT.parent / "shared" / "data" / "ph2_sample" / "images"
OUT = ROOT / "docs" / "images" / "synth_grid.png"
TILE = (256, 192)  # width, height of one picture in the grid


def _tile(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.resize(image, TILE, interpolation=cv2.INTER_AREA)


def _row(label: str, tiles: list[np.ndarray]) -> np.ndarray:
    """Pictures side by side under a one-line caption (BGR)."""
    caption = np.full((26, TILE[0] * len(tiles), 3), 255, np.uint8)
    cv2.putText(caption, label, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([caption, np.hstack(tiles)])


def synthetic_tiles(config: SynthConfig, n: int, seed: int) -> list[np.ndarray]:
    """``n`` images as ``write_dataset`` writes them, resized to a tile."""
    with tempfile.TemporaryDirectory() as tmp:
        ids = write_dataset(Path(tmp), n, size=512, seed=seed, config=config)
        return [_tile(Path(tmp) / split_folders("training")[0] / f"{i}.jpg") for i in ids]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=4, help="pictures per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    photos = sorted(PH2.glob("*.jpg"))
    if len(photos) < args.n:
        raise SystemExit(f"need {args.n} PH2 images in {PH2}")
    step = len(photos) // args.n
    real = [_tile(photos[i * step]) for i in range(args.n)]
    rows = [
        _row(f"real: PH2 {', '.join(photos[i * step].stem for i in range(args.n))}", real),
        _row("synthetic, classic look (before)", synthetic_tiles(SynthConfig(height=384), args.n, args.seed)),
        _row(
            "synthetic, real look: SynthConfig.real() / dermseg synth --look real (after)",
            synthetic_tiles(SynthConfig.real(height=384), args.n, args.seed),
        ),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid = Image.fromarray(cv2.cvtColor(np.vstack(rows), cv2.COLOR_BGR2RGB))
    grid.quantize(256).save(args.out, optimize=True)  # a 256-colour palette: a third of the bytes
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
