"""Shared fixtures: tests never touch the network and build their own data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dermseg.attributes import ATTRIBUTES  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ISIC_SAMPLE = SHARED_DATA / "isic2018_task2_sample"
PH2_SAMPLE = SHARED_DATA / "ph2_sample"

#: Tests on the real samples of ../shared/data (present in the project's CI, absent in a bare clone).
real_data = pytest.mark.skipif(
    not (ISIC_SAMPLE.is_dir() and PH2_SAMPLE.is_dir()),
    reason=f"real samples not found at {SHARED_DATA}",
)


def write_sample(
    folder: Path,
    isic_id: str,
    size: tuple[int, int] = (40, 30),
    masks: dict[str, np.ndarray] | None = None,
    mask_dir: Path | None = None,
    seed: int = 0,
) -> None:
    """Write a small JPEG image and all five masks (empty unless given) for one id."""
    w, h = size
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(folder / f"{isic_id}.jpg", quality=90)
    mask_dir = mask_dir or folder
    mask_dir.mkdir(parents=True, exist_ok=True)
    for name in ATTRIBUTES:
        m = np.zeros((h, w), np.uint8)
        if masks and name in masks:
            m = np.where(masks[name], 255, 0).astype(np.uint8)
        Image.fromarray(m).save(mask_dir / f"{isic_id}_attribute_{name}.png")


@pytest.fixture
def flat_dataset(tmp_path: Path) -> Path:
    """A clean flat folder of three samples; ISIC_0000001 has globules + pigment network."""
    root = tmp_path / "flat"
    block = np.zeros((30, 40), bool)
    block[5:15, 10:30] = True
    write_sample(root, "ISIC_0000000")
    write_sample(root, "ISIC_0000001", masks={"globules": block, "pigment_network": block}, seed=1)
    write_sample(
        root, "ISIC_0000002", size=(50, 20), masks={"pigment_network": np.ones((20, 50), bool)}, seed=2
    )
    return root


def break_flat_dataset(root: Path) -> dict[str, str]:
    """Apply one of each problem to a clean ``flat_dataset``; return file name -> expected message part."""
    # missing mask
    (root / "ISIC_0000000_attribute_streaks.png").unlink()
    # mask of the wrong size
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "ISIC_0000001_attribute_globules.png")
    # non-binary mask
    Image.fromarray(np.full((30, 40), 1, np.uint8)).save(root / "ISIC_0000001_attribute_milia_like_cyst.png")
    # truncated JPEG
    data = (root / "ISIC_0000002.jpg").read_bytes()
    (root / "ISIC_0000002.jpg").write_bytes(data[: len(data) // 2])
    # unreadable (zero-byte) mask
    (root / "ISIC_0000000_attribute_globules.png").write_bytes(b"")
    # unknown file and duplicate id
    (root / "notes.docx").write_bytes(b"x")
    (root / "ISIC_0000001.png").write_bytes(b"x")
    # 16-bit mask
    Image.fromarray(np.zeros((30, 40), np.uint16)).save(root / "ISIC_0000001_attribute_streaks.png")
    return {
        "ISIC_0000000.jpg": "missing mask ISIC_0000000_attribute_streaks.png",
        "ISIC_0000001_attribute_globules.png": "mask is 10x10 but its image is 40x30",
        "ISIC_0000001_attribute_milia_like_cyst.png": "not binary 0/255 (also holds 1)",
        "ISIC_0000002.jpg": "truncated",
        "ISIC_0000000_attribute_globules.png": "empty file",
        "notes.docx": "unknown file",
        "ISIC_0000001.png": "duplicate id",
        "ISIC_0000001_attribute_streaks.png": "16/32-bit",
    }


@pytest.fixture
def official_dataset(tmp_path: Path) -> Path:
    """The official layout with training (4) and validation (2) splits and a test split without masks."""
    root = tmp_path / "official"
    for k in range(4):
        write_sample(
            root / "ISIC2018_Task1-2_Training_Input",
            f"ISIC_{k:07d}",
            mask_dir=root / "ISIC2018_Task2_Training_GroundTruth_v3",
            seed=k,
        )
    for k in range(10, 12):
        write_sample(
            root / "ISIC2018_Task1-2_Validation_Input",
            f"ISIC_{k:07d}",
            mask_dir=root / "ISIC2018_Task2_Validation_GroundTruth",
            seed=k,
        )
    test_dir = root / "ISIC2018_Task1-2_Test_Input"
    test_dir.mkdir(parents=True)
    Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(test_dir / "ISIC_0000020.jpg")
    (root / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").write_text("licence")
    (root / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000000_superpixels.png").write_bytes(b"")
    return root


#: Overrides that make training fast enough for tests on 2 CPU cores.
TINY_TRAIN = [
    "data.size=96",
    "data.crop_size=96",
    "data.workers=0",
    "model.encoder_name=resnet18",
    "model.encoder_weights=none",
    "model.decoder_channels=[32,16,16,8,8]",
    "model.aspp_rates=[1,2]",
    "train.epochs=1",
    "train.batch_size=4",
    "train.lr=0.003",
]

#: TINY_TRAIN without threshold tuning at the end of training (it reads the validation images again).
QUICK_TRAIN = [*TINY_TRAIN, "train.tune_thresholds=false"]


def write_tiny_checkpoint(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """Save an untrained TINY_TRAIN model (plus ``overrides``) as a dermseg checkpoint at ``path``.

    Prediction, export and serving need no trained weights; seeded, so the file is always the same.
    """
    import torch

    from dermseg.config import load_config
    from dermseg.models.checkpoint import save_checkpoint
    from dermseg.training.setup import build_model, checkpoint_meta

    cfg = load_config(None, [*TINY_TRAIN, *overrides])
    torch.manual_seed(0)
    model = build_model(cfg)
    save_checkpoint(path, model, checkpoint_meta(cfg))
    return path


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset in the official layout: 12 training and 4 validation images of 128 px."""
    from dermseg.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, 12, size=128, seed=1, split="training")
    write_dataset(root, 4, size=128, seed=1, split="validation", start_id=12)
    return root
