"""An image far more elongated than any dermoscope's (issue 16, finding 1): refused, named, exit 2.

Before the shape limits its short side was scaled up to the working size, and the working
image grew without bound (a 2x20000 PNG took more than 6 GB).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.bad_input.corpus.base import IMAGES, MASKS, TARGET, image_path
from tests.bad_input.harness import assert_failed, run


def _elongated(base_dataset: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the dataset whose target image (and its masks) is 4x400 (aspect ratio 100:1)."""
    data = tmp_path / "data"
    shutil.copytree(base_dataset, data)
    image_path(data).unlink()
    target = data / IMAGES / f"{TARGET}.png"
    Image.fromarray(np.full((4, 400, 3), 200, np.uint8)).save(target)
    for mask in (data / MASKS).glob(f"{TARGET}_*.png"):
        Image.fromarray(np.zeros((4, 400), np.uint8)).save(mask)
    return data, target


def test_predict_names_the_elongated_image(base_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, capsys):
    data, target = _elongated(base_dataset, tmp_path)
    result = run(capsys, "predict", data / IMAGES, "--checkpoint", tiny_checkpoint, "--out", tmp_path / "m")
    assert_failed(result, target, ("aspect ratio 100:1", "--max-aspect-ratio"), one_line=False)
    # raising the limit lets it through (the working image is then 64x6400)
    more = run(
        capsys,
        "predict",
        target,
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        tmp_path / "m2",
        "--max-aspect-ratio",
        100,
        "--max-side-factor",
        100,
    )
    assert more.code == 0, more


def test_evaluate_names_the_elongated_image(
    base_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
):
    data, target = _elongated(base_dataset, tmp_path)
    result = run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--data", data, "--subset", "all")
    assert_failed(result, target, ("aspect ratio", "--max-aspect-ratio"), one_line=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_names_the_elongated_image(base_dataset: Path, tmp_path: Path, capsys, workers: int) -> None:
    data, target = _elongated(base_dataset, tmp_path)
    cache = tmp_path / "cache"
    result = run(capsys, "prepare", data, "--size", 64, "--out", cache, "--workers", workers)
    assert_failed(result, target, ("aspect ratio 100:1", "--max-aspect-ratio"), one_line=True)
    assert not cache.exists()
    assert run(capsys, "prepare", data, "--size", 64, "--out", cache, "--max-aspect-ratio", 100).code == 0


def test_train_names_the_elongated_image(base_dataset: Path, tmp_path: Path, capsys) -> None:
    from tests.bad_input.test_train import FAST

    data, target = _elongated(base_dataset, tmp_path)
    result = run(capsys, "train", "--data", data, "--out", tmp_path / "run", *FAST)
    assert_failed(result, target, ("aspect ratio 100:1", "data.max_aspect_ratio"), one_line=True)
