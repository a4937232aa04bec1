"""A tiny PH2 folder in the flat form (``images/``, ``masks/IMDxxx_lesion.png``, ``labels.csv``),
written in a tmp folder for the lesion (label set ``ph2``) training and tuning tests.

Each image is skin-coloured with a dark ellipse, the lesion; its mask is that ellipse, computed
here by hand, so a test knows where the lesion is without reading it back through dermseg.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

#: The header of the shared PH2 sample's ``labels.csv``.
HEADER = [
    "image",
    "histological_diagnosis",
    *("common_nevus", "atypical_nevus", "melanoma"),
    *("asymmetry", "pigment_network", "dots_globules", "streaks", "regression_areas", "blue_whitish_veil"),
    *("white", "red", "light_brown", "dark_brown", "blue_gray", "black"),
]
DIAGNOSES = ("common_nevus", "atypical_nevus", "melanoma")


def ellipse(size: tuple[int, int], centre: tuple[int, int], radii: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool, True inside the ellipse; ``size`` is (width, height), ``centre`` (row, col)."""
    w, h = size
    yy, xx = np.mgrid[:h, :w]
    return ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 <= 1.0


def write_ph2_flat(root: Path, n: int = 12, size: tuple[int, int] = (96, 72), seed: int = 0) -> Path:
    """Write ``n`` images ``IMD001..`` (diagnoses in turn: common, atypical, melanoma) with their
    lesion masks and ``labels.csv`` under ``root``; returns ``root``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    rows = [HEADER]
    for k in range(n):
        image_id = f"IMD{k + 1:03d}"
        centre = (int(rng.integers(h // 3, 2 * h // 3)), int(rng.integers(w // 3, 2 * w // 3)))
        radii = (int(rng.integers(h // 8, h // 4)), int(rng.integers(w // 8, w // 4)))
        lesion = ellipse(size, centre, radii)
        image = np.empty((h, w, 3), np.float64)
        image[:] = (200, 150, 130)
        image[lesion] = (90, 50, 40)
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{image_id}.jpg", quality=95)
        Image.fromarray(np.where(lesion, 255, 0).astype(np.uint8)).save(
            root / "masks" / f"{image_id}_lesion.png"
        )
        flags = ["X" if k % 3 == d else "" for d in range(3)]
        rows.append([image_id, "", *flags, "0", "T", "A", "A", "A", "A", "", "", "", "X", "", ""])
    with open(root / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root
