"""Training with lesion-centred crops reads the Task 1 lesion masks, and refuses a broken one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.cli import main
from dermseg.config import load_config
from dermseg.data.layout import discover
from dermseg.data.synthetic import write_dataset
from dermseg.training.loop import train
from tests.conftest import QUICK_TRAIN


@pytest.fixture(scope="module")
def lesion_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 training + 4 validation synthetic images with Task 1 lesion masks."""
    root = tmp_path_factory.mktemp("lesions")
    write_dataset(root, 12, size=128, seed=2, split="training", lesion_masks=True)
    write_dataset(root, 4, size=128, seed=2, split="validation", start_id=12, lesion_masks=True)
    return root


def test_training_with_lesion_crops_reads_the_lesion_masks(lesion_dataset: Path, tmp_path: Path) -> None:
    assert all(s.lesion_mask_path is not None for s in discover(lesion_dataset).samples)
    result = train(
        load_config(None, [*QUICK_TRAIN, "augment.lesion_crop=1.0", "data.crop_size=64"]),
        lesion_dataset,
        tmp_path / "r",
    )
    assert result["step"] == 3 and np.isfinite(result["train_loss"])
    # from a prepared cache, which holds the lesion masks too
    cache = tmp_path / "cache"
    assert main(["prepare", str(lesion_dataset), "--size", "96", "--out", str(cache)]) == 0
    cfg = load_config(
        None, [*QUICK_TRAIN, "augment.lesion_crop=1.0", "data.crop_size=64", f"data.cache={cache}"]
    )
    assert train(cfg, lesion_dataset, tmp_path / "r2")["step"] == 3


def test_a_broken_lesion_mask_stops_lesion_crop_training_before_it_starts(
    lesion_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "data"
    shutil.copytree(lesion_dataset, data)
    broken = sorted((data / "ISIC2018_Task1_Training_GroundTruth").glob("*.png"))[0]
    Image.new("L", (7, 7)).save(broken)  # a readable mask of the wrong size
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--set", "augment.lesion_crop=1.0"]
    for item in [*QUICK_TRAIN, "data.crop_size=64"]:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and broken.name in err[0] and "7x7" in err[0]
    assert not (tmp_path / "run").exists()  # nothing written
    # without lesion crops the lesion masks are not read, so they do not stop training
    args[args.index("augment.lesion_crop=1.0")] = "augment.lesion_crop=0.0"
    assert main(args) == 0
