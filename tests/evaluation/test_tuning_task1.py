"""Threshold tuning for a lesion (label sets scored with the ISIC 2018 Task 1 metric): the mean
per-image Jaccard, on cases whose best threshold is known by hand, and parity with the scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dermseg.data.background import CropBox
from dermseg.data.layout import discover
from dermseg.evaluation.model import evaluate_checkpoint, select_samples, tune_and_store, tune_checkpoint
from dermseg.evaluation.tuning import DEFAULT_THRESHOLDS, Task1ThresholdTuner
from dermseg.inference.postprocess import PostprocessSettings, apply_postprocess
from dermseg.inference.segmenter import Segmenter
from dermseg.labels import PH2
from dermseg.models.checkpoint import read_meta
from tests.conftest import write_tiny_checkpoint
from tests.ph2_synth import HEADER

# Two images whose best threshold for the mean per-image Jaccard is known by hand:
# A, 10 x 10: all lesion; half the pixels at 0.9, half at 0.42.
# B, 4 x 4: the first row lesion (0.9), the other 12 pixels skin at 0.33.
#   t < 0.33:        A all positive -> 1;   B all positive -> 4 / 16 = 0.25   mean 0.625
#   0.33 <= t < 0.42: A -> 1;               B exact -> 1                     mean 1
#   0.42 <= t < 0.9:  A half -> 50 / 100;   B -> 1                           mean 0.75
#   t >= 0.9:         both empty predictions of a lesion -> 0                mean 0
# On the default grid 0.35 and 0.40 tie at 1; ties go to the one closest to 0.5: 0.40.


def _case_a() -> tuple[np.ndarray, np.ndarray]:
    prob = np.full((10, 10), 0.42, np.float32)
    prob[:5] = 0.9
    return prob, np.ones((10, 10), bool)


def _case_b() -> tuple[np.ndarray, np.ndarray]:
    prob = np.full((4, 4), 0.33, np.float32)
    prob[0] = 0.9
    truth = np.zeros((4, 4), bool)
    truth[0] = True
    return prob, truth


def test_the_mean_per_image_jaccard_picks_the_hand_known_threshold() -> None:
    tuner = Task1ThresholdTuner()
    for prob, truth in (_case_a(), _case_b()):
        tuner.update(prob, truth)
    expected = np.select(
        [DEFAULT_THRESHOLDS < 0.33, DEFAULT_THRESHOLDS < 0.42, DEFAULT_THRESHOLDS < 0.9],
        [0.625, 1.0, 0.75],
        0.0,
    )
    np.testing.assert_allclose(tuner.mean_jaccard(), expected, atol=1e-12)
    assert tuner.best() == pytest.approx(0.40)
    assert tuner.scores_at(tuner.best())["overall"] == 1.0
    # at 0.5, A's Jaccard 0.5 is below 0.65: thresholded 0; B's is 1
    assert tuner.scores_at(DEFAULT_THRESHOLDS[9])["overall"] == pytest.approx(0.5)


def test_per_image_and_pooled_choose_differently() -> None:
    # A: 10 lesion pixels, 5 at 0.9 and 5 at 0.4; B: 1 lesion pixel at 0.9 and 3 skin at 0.35.
    # t = 0.3: A 1, B 1/4: mean 0.625 (pooled 11 / 14 = 0.79); t = 0.5: A 0.5, B 1: mean 0.75
    # (pooled 6 / 11 = 0.55). The mean per-image Jaccard takes 0.5, a pooled count would take 0.3.
    tuner = Task1ThresholdTuner([0.3, 0.5])
    tuner.update(np.array([[0.9] * 5 + [0.4] * 5]), np.ones((1, 10), bool))
    tuner.update(np.array([[0.9, 0.35, 0.35, 0.35]]), np.array([[1, 0, 0, 0]], np.uint8))
    np.testing.assert_allclose(tuner.mean_jaccard(), [0.625, 0.75], atol=1e-12)
    assert tuner.best() == 0.5
    assert tuner.curve() == [(0.3, pytest.approx(0.625)), (0.5, pytest.approx(0.75))]


def test_an_empty_truth_predicted_empty_scores_one() -> None:
    tuner = Task1ThresholdTuner([0.2, 0.6])
    tuner.update(np.full((3, 3), 0.5), np.zeros((3, 3), np.uint8))  # the scorer's empty/empty convention
    np.testing.assert_allclose(tuner.mean_jaccard(), [0.0, 1.0])
    assert tuner.best() == 0.6


def _official(pairs: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    segmentation = pytest.importorskip("isic_challenge_scoring.segmentation")
    load_image = pytest.importorskip("isic_challenge_scoring.load_image")
    image_pairs = []
    for image_id, truth, pred in pairs:
        pair = load_image.ImagePair(truth_file=Path(f"{image_id}.png"))
        pair.image_id, pair.truth_image, pair.prediction_image = image_id, truth, pred
        image_pairs.append(pair)
    return segmentation.SegmentationScore(image_pairs).to_dict()


def test_scores_at_grid_thresholds_are_the_official_scorers() -> None:
    rng = np.random.default_rng(7)
    images = []
    for k, (h, w) in enumerate([(7, 9), (20, 13), (5, 5), (16, 30)]):
        truth = rng.random((h, w)) < 0.4
        prob = np.clip(0.35 * truth + rng.random((h, w)) * 0.7, 0, 1).astype(np.float32)
        if k == 2:
            truth[:] = False  # an image without lesion
        images.append((f"IMD{k:03d}", prob, truth))
    tuner = Task1ThresholdTuner()
    for k, (_, prob, truth) in enumerate(images):
        tuner.update(torch.from_numpy(prob) if k % 2 else prob, truth)  # torch and numpy alike
    for j in (3, 9, 14):
        t = DEFAULT_THRESHOLDS[j]
        pairs = [
            (
                i,
                np.where(truth, 255, 0).astype(np.uint8),
                np.where(prob > np.float32(t), 255, 0).astype(np.uint8),
            )
            for i, prob, truth in images
        ]
        official = _official(pairs)
        ours = tuner.scores_at(t)
        assert ours["overall"] == pytest.approx(official["overall"], abs=1e-12)
        for key, value in official["macro_average"].items():
            assert ours["macro_average"][key] == pytest.approx(value, abs=1e-12)


def test_update_checks_its_inputs() -> None:
    tuner = Task1ThresholdTuner()
    with pytest.raises(ValueError, match="differ in shape"):
        tuner.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="floats"):
        tuner.update(np.zeros((2, 2), np.uint8), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tuner.update(np.full((2, 2), 3.0), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no image"):
        tuner.best()


# -- tuning a checkpoint on a PH2 folder ---------------------------------------------------------

#: Red value of a pixel -> the probability the stand-in segmenter gives it.
_LEVELS = {200: 0.9, 120: 0.42, 60: 0.33}


def _write_cases(root: Path) -> Path:
    """A flat PH2 folder of the two hand cases: lossless PNG images whose red channel codes the
    probability (:data:`_LEVELS`) and the lesion masks."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = [HEADER]
    for k, (prob, truth) in enumerate((_case_a(), _case_b())):
        image_id = f"IMD00{k + 1}"
        image = np.zeros((*prob.shape, 3), np.uint8)
        for red, p in _LEVELS.items():
            image[prob == np.float32(p), 0] = red
        Image.fromarray(image).save(root / "images" / f"{image_id}.png")
        Image.fromarray(np.where(truth, 255, 0).astype(np.uint8)).save(
            root / "masks" / f"{image_id}_lesion.png"
        )
        rows.append([image_id, "", "X", "", "", "0", "T", "A", "A", "A", "A", "", "", "", "X", "", ""])
    (root / "labels.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    return root


class _StandIn(Segmenter):
    """The probabilities of :data:`_LEVELS`, read from the image itself (no network)."""

    def probabilities(
        self, image: np.ndarray, field: CropBox | None = None, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        assert size is None or tuple(size) == image.shape[:2]  # small PNGs: never decoded reduced
        prob = np.zeros(image.shape[:2], np.float32)
        for red, p in _LEVELS.items():
            prob[image[..., 0] == red] = p
        return prob[None]


def _stand_in(settings: dict[str, list]) -> _StandIn:
    return _StandIn(
        model=None,
        encoding="multilabel",
        input_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        postprocess=PostprocessSettings(**settings),
        postprocess_side=64,
        crop_background=False,
        labels=PH2,
    )


def test_tune_checkpoint_finds_the_hand_known_threshold(tmp_path: Path) -> None:
    data = _write_cases(tmp_path / "ph2")
    samples = select_samples(data, "all", {"labels": PH2.to_meta()})
    assert [s.isic_id for s in samples] == ["IMD001", "IMD002"]
    seg = _stand_in({"thresholds": [0.5], "opening": [0], "min_area": [0], "presence": [0.0]})
    report = tune_checkpoint(seg, samples)
    assert report["thresholds"] == [pytest.approx(0.40)]
    assert report["overall_at_default"] == pytest.approx(0.75)  # mean Jaccard at 0.5 (by hand above)
    assert report["overall_tuned"] == 1.0 and report["threshold_jaccard_tuned"] == 1.0
    assert report["threshold_jaccard_at_default"] == pytest.approx(0.5)
    assert report["settings"] == {"thresholds": [report["thresholds"][0]], "opening": [0], "min_area": [0],
                                  "presence": [0.0]}  # fmt: skip
    assert report["steps"] == [{"step": "thresholds only", "overall": 1.0}]
    # evaluation with the checkpoint's threshold (0.5): the official Task 1 numbers by hand
    scores = evaluate_checkpoint(seg, samples)
    assert scores["overall"] == pytest.approx(0.5) and scores["macro_average"]["jaccard"] == pytest.approx(
        0.75
    )
    assert scores["images"] == 2


def test_a_configured_step_is_measured_after_the_threshold(tmp_path: Path) -> None:
    data = _write_cases(tmp_path / "ph2")
    samples = select_samples(data, "all", {"labels": PH2.to_meta()})
    # min_area 20 px at side 64 scales with the field's short side squared: 20 * (10 / 64)^2 and
    # 20 * (4 / 64)^2 round to 0, kept at 1 px (on): nothing is removed, the score stays 1
    seg = _stand_in({"thresholds": [0.5], "opening": [0], "min_area": [20], "presence": [0.0]})
    steps = tune_checkpoint(seg, samples)["steps"]
    assert [s["step"] for s in steps] == ["thresholds only", "+ small-component removal"]
    assert steps[0]["overall"] == steps[1]["overall"] == 1.0


def test_one_label_postprocess_by_hand() -> None:
    probs = np.zeros((1, 9, 9), np.float32)
    probs[0, 1:6, 1:6] = 0.8  # a 5 x 5 lesion
    probs[0, 8, 8] = 0.7  # a one-pixel speck
    settings = {"thresholds": [0.5], "opening": [0], "min_area": [2], "presence": [0.0]}
    masks = apply_postprocess(probs, PostprocessSettings.from_dict(settings))
    assert masks.shape == (1, 9, 9) and masks.sum() == 25 and not masks[0, 8, 8]
    settings = {"thresholds": [0.5], "opening": [0], "min_area": [0], "presence": [0.9]}  # gated
    assert not apply_postprocess(probs, PostprocessSettings.from_dict(settings)).any()
    settings = {"thresholds": [0.5], "opening": [3], "min_area": [0], "presence": [0.0]}
    # a 3 px disk is a plus: erosion keeps the square's inner 3 x 3, dilation gives back the 5 x 5
    # without its 4 corners (21 px); the speck goes
    opened = apply_postprocess(probs, PostprocessSettings.from_dict(settings))
    expected = np.zeros((9, 9), bool)
    expected[1:6, 1:6] = True
    expected[[1, 1, 5, 5], [1, 5, 1, 5]] = False
    np.testing.assert_array_equal(opened[0], expected)
    with pytest.raises(ValueError, match="one value per label"):
        apply_postprocess(probs, PostprocessSettings.from_dict({**settings, "opening": [3, 3]}))


def test_a_lesion_checkpoint_gets_a_one_channel_segmenter(tmp_path: Path) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "lesion.safetensors", ["data.labels=ph2"])
    seg = Segmenter.from_checkpoint(ckpt)
    assert seg.labels.name == "ph2"
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), np.uint8)
    prediction = seg(image)
    assert prediction.probabilities.shape == (1, 50, 70) and prediction.masks.shape == (1, 50, 70)
    assert list(seg.postprocess.thresholds) == [0.5]
    task2 = write_tiny_checkpoint(tmp_path / "task2.safetensors")
    assert Segmenter.from_checkpoint(task2).labels.name == "isic2018_task2"  # no label set: Task 2


def test_tune_and_store_writes_one_threshold(tmp_path: Path) -> None:
    data = _write_cases(tmp_path / "ph2")
    ckpt = write_tiny_checkpoint(tmp_path / "lesion.safetensors", ["data.labels=ph2"])
    samples = select_samples(data, "all", read_meta(ckpt))  # the checkpoint's label set reads the folder
    seg = _stand_in({"thresholds": [0.5], "opening": [0], "min_area": [0], "presence": [0.0]})
    report, target = tune_and_store(seg, ckpt, samples)
    meta = read_meta(target)
    assert meta["thresholds"] == report["thresholds"] == [pytest.approx(0.40)]
    assert meta["postprocess"]["thresholds"] == [pytest.approx(0.40)] and meta["postprocess"]["opening"] == [
        0
    ]
    assert meta["tuning"]["objective"] == "mean per-image Jaccard (ISIC 2018 Task 1)"
    assert meta["tuning"]["threshold_jaccard_tuned"] == 1.0 and meta["tuning"]["images"] == 2
    assert discover(data, PH2).kind == "ph2"
