"""Tiny models and data of a lesion label set for the tests of everything downstream of a checkpoint.

A lesion checkpoint here is a real dermseg checkpoint (a tiny ``unet_aspp`` with one output
channel, :func:`dermseg.models.checkpoint.save_checkpoint` with ``meta["labels"]``). With
``constant`` its segmentation head is zeroed and its bias set, so every pixel gets the same logit:
``constant=10`` segments the whole image, ``constant=-10`` nothing, and scores are known by hand.

The PH2-like folder holds :data:`LESION_CASES`: images of different sizes, each with a rectangle
lesion whose area is written here, so tests compute the expected scores from these numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dermseg.labels import PH2, LabelSet
from dermseg.models.checkpoint import save_checkpoint
from dermseg.models.factory import create_model
from tests.data.label_set_data import PH2_CSV_HEADER, ph2_csv_row

#: id -> (clinical code, (width, height), lesion rows, lesion cols).
LESION_CASES: dict[str, tuple[int, tuple[int, int], tuple[int, int], tuple[int, int]]] = {
    "IMD003": (0, (120, 90), (10, 40), (20, 80)),  # 30 x 60 = 1800 of 10800 px
    "IMD008": (1, (97, 131), (0, 131), (0, 80)),  # 131 x 80 = 10480 of 12707 px (> 0.65)
    "IMD017": (2, (100, 100), (0, 0), (0, 0)),  # no lesion
}


def lesion_area(image_id: str) -> tuple[int, int]:
    """``(lesion pixels, image pixels)`` of a case, from the numbers of :data:`LESION_CASES`."""
    _, (w, h), rows, cols = LESION_CASES[image_id]
    return (rows[1] - rows[0]) * (cols[1] - cols[0]), w * h


def lesion_mask(image_id: str) -> np.ndarray:
    """``(H, W)`` bool lesion mask of a case."""
    _, (w, h), rows, cols = LESION_CASES[image_id]
    mask = np.zeros((h, w), bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def write_lesion_folder(root: Path, ids: tuple[str, ...] | None = None) -> Path:
    """PH2 in the flat form (``images/``, ``masks/IMDxxx_lesion.png``, ``labels.csv``) with the cases."""
    ids = tuple(LESION_CASES) if ids is None else ids
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for k, image_id in enumerate(ids):
        clinical, (w, h), _, _ = LESION_CASES[image_id]
        image = np.random.default_rng(k).integers(0, 256, (h, w, 3), np.uint8)
        Image.fromarray(image).save(root / "images" / f"{image_id}.jpg", quality=92)
        mask = np.where(lesion_mask(image_id), 255, 0).astype(np.uint8)
        Image.fromarray(mask).save(root / "masks" / f"{image_id}_lesion.png")
    rows = [ph2_csv_row(i, LESION_CASES[i][0]) for i in ids]
    (root / "labels.csv").write_text("\n".join([PH2_CSV_HEADER, *rows]) + "\n", encoding="utf-8")
    return root


def lesion_meta(labels: LabelSet = PH2, threshold: float = 0.5) -> dict:
    """The description of a lesion checkpoint (what a training run of the lesion recipe stores)."""
    return {
        "encoding": "multilabel",
        "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "input_size": 96,
        "labels": labels.to_meta(),
        "thresholds": [threshold],
        "postprocess": {"thresholds": [threshold], "opening": [0], "min_area": [0], "presence": [0.0]},
        "postprocess_side": 96,
        "crop_background": False,
        "config": {"data": {"labels": labels.name, "val_fraction": 0.34, "split_seed": 0}},
    }


def write_lesion_checkpoint(
    path: Path, labels: LabelSet = PH2, constant: float | None = None, threshold: float = 0.5
) -> Path:
    """A one-channel checkpoint of ``labels`` (seeded; with ``constant``, the same logit everywhere)."""
    torch.manual_seed(0)
    model = create_model(
        "unet_aspp",
        encoder_name="resnet18",
        encoder_weights="none",
        decoder_channels=[32, 16, 16, 8, 8],
        aspp_rates=[1, 2],
        classes=1,
    )
    if constant is not None:
        with torch.no_grad():
            model.segmentation_head.conv.weight.zero_()
            model.segmentation_head.conv.bias.fill_(constant)
    save_checkpoint(path, model, lesion_meta(labels, threshold))
    return path
