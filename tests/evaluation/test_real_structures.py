"""The real-structure measurements on tiny hand-made images whose scores are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.data.weak_labels import WeakLabels
from dermseg.errors import DataError
from dermseg.evaluation.real_structures import (
    attribute_mask_pairs,
    pooled_attribute_jaccard,
    presence_rows,
    presence_scores,
)
from dermseg.inference.segmenter import Segmenter
from tests.inference.test_segmenter import META as SEGMENTER_META
from tests.inference.test_segmenter import Brightness

#: test_segmenter's stand-in model: logits 20 * (mean RGB - 0.5) on globules, negative network and
#: streaks, the opposite on milia-like cysts and pigment network (present on dark pixels).
META = SEGMENTER_META | {"crop_background": False}


def _write(folder: Path, isic_id: str, value: int, mask: np.ndarray) -> None:
    h, w = mask.shape
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(folder / f"{isic_id}.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{isic_id}_attribute_pigment_network.png")


def test_pooled_jaccard_sums_normalised_counts(tmp_path: Path) -> None:
    # image 1, 20x20, all predicted; truth: the left half      -> TP 0.5, FP 0.5, FN 0
    # image 2, 10x20, nothing predicted; truth: a quarter of it -> TP 0, FP 0, FN 0.25
    # pooled: 0.5 / (0.5 + 0.5 + 0.25) = 0.4 (the mean of per-image Jaccards would be 0.25)
    left = np.zeros((20, 20), bool)
    left[:, :10] = True
    quarter = np.zeros((10, 20), bool)
    quarter[:5, :10] = True
    _write(tmp_path, "ISIC_0000001", 40, left)  # dark: the stand-in's pigment network everywhere
    _write(tmp_path, "ISIC_0000002", 230, quarter)  # bright: nowhere
    (tmp_path / "ISIC_0000002_attribute_globules.png").write_bytes(b"not looked at")
    pairs = attribute_mask_pairs(tmp_path, "pigment_network")
    assert [p[0].name for p in pairs] == ["ISIC_0000001.png", "ISIC_0000002.png"]
    row = pooled_attribute_jaccard(Segmenter.from_model(Brightness(), META), pairs, "pigment_network")
    assert row.value == pytest.approx(0.4)
    assert (row.n_images, row.n_positive) == (2, 2)
    assert "0.5" in row.score and "pooled" in row.measurement


def test_mask_pairs_need_images_and_masks(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no ISIC_<id>_attribute_streaks.png"):
        attribute_mask_pairs(tmp_path, "streaks")
    (tmp_path / "ISIC_0000003_attribute_streaks.png").write_bytes(b"")
    with pytest.raises(DataError, match="no image ISIC_0000003.jpg"):
        attribute_mask_pairs(tmp_path, "streaks")
    with pytest.raises(ValueError, match="unknown attribute"):
        attribute_mask_pairs(tmp_path, "vessels")


def test_presence_rows_rank_images_by_their_scores(tmp_path: Path) -> None:
    images = {}
    for key, value in (("bright", 230), ("dark", 30), ("mid", 200)):
        images[key] = tmp_path / f"{key}.png"
        Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(images[key])
    scores = presence_scores(Segmenter.from_model(Brightness(), META), images)
    assert list(scores) == ["p99"]  # no presence head
    assert scores["p99"]["bright"][0] > 0.99 and scores["p99"]["dark"][0] < 0.01
    weak = WeakLabels(
        "csv",
        tmp_path / "weak.csv",
        {
            "bright": {"streaks": True},
            "dark": {"streaks": False, "globules": True},
            "mid": {"streaks": False},
        },
    )
    rows = presence_rows("Test", scores, weak)
    # globules: one image, one class -> undefined; streaks (logit 20 * (mean - 0.5)): the positive
    # bright image (logit 8.0) outranks both negatives, mid (5.7) and dark (-7.6) -> 1.0
    assert [(r.measurement, r.n_images, r.n_positive) for r in rows] == [
        ("Test globules presence AUC", 1, 1),
        ("Test streaks presence AUC", 3, 1),
    ]
    assert rows[0].value is None
    assert rows[1].value == pytest.approx(1.0)
    assert rows[1].score.startswith("p99: 99th percentile")
