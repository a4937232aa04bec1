"""The official ISIC 2018 Task 2 metric: known values, and parity with isic-challenge-scoring."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.evaluation.metrics import (
    IsicTask2Metric,
    batch_confusion_counts,
    binarise,
    confusion_counts,
    dice_from_counts,
    jaccard_from_counts,
    per_image_mean_jaccard,
    scores_from_counts,
)

G, M, N, P, S = range(5)


def _stack(h: int, w: int, **channels: list[list[int]]) -> np.ndarray:
    """A (5, h, w) bool stack, the named channels (g, m, n, p, s) from nested lists."""
    out = np.zeros((5, h, w), bool)
    for key, value in channels.items():
        out["gmnps".index(key)] = np.array(value, bool)
    return out


# --------------------------------------------------------------------------- pure functions

COUNT_TABLE = [
    # truth, pred (2x2 globules), expected normalised [tp, fp, fn, tn]
    ([[1, 0], [0, 0]], [[1, 1], [0, 0]], [0.25, 0.25, 0.0, 0.5]),
    ([[0, 0], [0, 0]], [[0, 0], [0, 0]], [0.0, 0.0, 0.0, 1.0]),  # empty truth, empty prediction
    ([[1, 1], [1, 0]], [[0, 0], [0, 0]], [0.0, 0.0, 0.75, 0.25]),  # empty prediction
    ([[0, 0], [0, 0]], [[0, 1], [1, 1]], [0.0, 0.75, 0.0, 0.25]),  # empty truth
    ([[1, 1], [1, 1]], [[1, 1], [1, 1]], [1.0, 0.0, 0.0, 0.0]),
]


@pytest.mark.parametrize(("truth", "pred", "expected"), COUNT_TABLE)
def test_confusion_counts_known_values(truth: list, pred: list, expected: list) -> None:
    counts = confusion_counts(_stack(2, 2, g=pred), _stack(2, 2, g=truth))
    assert counts.shape == (5, 4) and counts.dtype == np.float64
    assert counts[G].tolist() == expected
    assert np.all(counts[1:] == [0.0, 0.0, 0.0, 1.0])  # the four empty attributes: all TN
    assert np.allclose(counts.sum(axis=1), 1.0)


def test_confusion_counts_accepts_torch_uint8_and_probabilities() -> None:
    truth = _stack(2, 2, g=[[1, 0], [0, 0]])
    pred = _stack(2, 2, g=[[1, 1], [0, 0]])
    expected = confusion_counts(pred, truth)
    assert np.array_equal(confusion_counts(torch.from_numpy(pred), torch.from_numpy(truth)), expected)
    assert np.array_equal(confusion_counts(pred.astype(np.uint8) * 255, truth.astype(np.uint8)), expected)
    probs = np.where(pred, 0.9, 0.5).astype(np.float32)  # 0.5 is not > 0.5
    assert np.array_equal(confusion_counts(probs, truth), expected)


@pytest.mark.parametrize(
    ("counts", "jaccard", "dice"),
    [
        ([1, 1, 0, 2], 1 / 2, 2 / 3),  # J = 1 / (1 + 1), D = 2 / (2 + 1)
        ([0.25, 0.25, 0.25, 0.25], 1 / 3, 1 / 2),
        ([0, 0, 0, 1], 1.0, 1.0),  # nothing present, nothing predicted: the scorer's 1.0
        ([0, 0.5, 0, 0.5], 0.0, 0.0),  # only false positives
        ([0, 0, 0.5, 0.5], 0.0, 0.0),  # only false negatives
    ],
)
def test_jaccard_and_dice_from_counts(counts: list, jaccard: float, dice: float) -> None:
    assert jaccard_from_counts(np.array(counts)) == pytest.approx(jaccard, abs=1e-15)
    assert dice_from_counts(np.array(counts)) == pytest.approx(dice, abs=1e-15)
    assert isinstance(jaccard_from_counts(np.array(counts)), float)


def test_ratio_vectorised_and_shape_error() -> None:
    rows = np.array([[1, 1, 0, 2], [0, 0, 0, 1]])
    assert jaccard_from_counts(rows).tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        jaccard_from_counts(np.zeros((2, 3)))


def test_scores_from_counts_known_values() -> None:
    counts = np.zeros((5, 4))
    counts[G] = [0.25, 0.25, 0.25, 1.25]  # J = 1/3, D = 1/2
    counts[M] = [0.0, 0.5, 0.0, 1.5]  # J = D = 0
    counts[N] = [0.0, 0.0, 0.0, 2.0]  # never present, never predicted: 1.0
    counts[P] = [1.0, 0.0, 0.0, 1.0]  # J = D = 1
    counts[S] = [0.0, 0.0, 0.0, 2.0]
    scores = scores_from_counts(counts)
    assert list(scores) == [*ATTRIBUTES, "micro_average", "overall"]
    assert scores["globules"] == {"jaccard": pytest.approx(1 / 3), "dice": pytest.approx(0.5)}
    assert scores["milia_like_cyst"] == {"jaccard": 0.0, "dice": 0.0}
    assert scores["negative_network"] == {"jaccard": 1.0, "dice": 1.0}
    assert scores["pigment_network"] == {"jaccard": 1.0, "dice": 1.0}
    # micro: tp 1.25, fp 0.75, fn 0.25 -> J = 1.25 / 2.25, D = 2.5 / 3.5
    assert scores["micro_average"]["jaccard"] == pytest.approx(1.25 / 2.25, abs=1e-15)
    assert scores["micro_average"]["dice"] == pytest.approx(2.5 / 3.5, abs=1e-15)
    assert scores["overall"] == scores["micro_average"]["jaccard"]
    with pytest.raises(ValueError, match=r"\(5, 4\)"):
        scores_from_counts(np.zeros((4, 4)))


# --------------------------------------------------------------------------- streaming metric


def test_metric_images_of_different_sizes_weigh_the_same() -> None:
    metric = IsicTask2Metric()
    # image A, 2x2: globules tp 1, fp 1 -> tp .25, fp .25
    metric.update(_stack(2, 2, g=[[1, 1], [0, 0]])[None], _stack(2, 2, g=[[1, 0], [0, 0]])[None])
    # image B, 1x4: globules one missed pixel -> fn .25; pigment tp 2 of 4 -> tp .5
    metric.update(
        _stack(1, 4, p=[[1, 1, 0, 0]])[None],
        _stack(1, 4, g=[[0, 0, 0, 1]], p=[[1, 1, 0, 0]])[None],
    )
    assert metric.num_images == 2
    scores = metric.compute()
    assert scores["globules"]["jaccard"] == pytest.approx(1 / 3)  # .25 / (.25 + .25 + .25)
    assert scores["globules"]["dice"] == pytest.approx(1 / 2)  # .5 / (.5 + .25 + .25)
    assert scores["pigment_network"] == {"jaccard": 1.0, "dice": 1.0}
    assert scores["streaks"] == {"jaccard": 1.0, "dice": 1.0}  # never present, never predicted
    # micro: tp .75, fp .25, fn .25 -> J = .75 / 1.25 = 0.6, D = 1.5 / 2 = 0.75
    assert scores["overall"] == pytest.approx(0.6)
    assert scores["micro_average"]["dice"] == pytest.approx(0.75)
    assert metric.per_image_counts.shape == (2, 5, 4)
    metric.reset()
    assert metric.num_images == 0
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()


def test_metric_probabilities_and_per_attribute_thresholds() -> None:
    truth = torch.zeros(1, 5, 1, 2, dtype=torch.uint8)
    truth[0, :, 0, 0] = 1  # every attribute present on the left pixel
    probs = torch.tensor([0.6, 0.4]).expand(1, 5, 1, 2).clone()  # left 0.6, right 0.4
    # threshold 0.5: left only -> perfect; threshold 0.3 on streaks: right pixel is a false positive
    thresholds = [0.5, 0.5, 0.5, 0.5, 0.3]
    metric = IsicTask2Metric(thresholds)
    metric.update(probs, truth)
    scores = metric.compute()
    assert [scores[a]["jaccard"] for a in ATTRIBUTES] == [1.0, 1.0, 1.0, 1.0, 0.5]
    # threshold 0.6 is strict (> 0.6, like the scorer's > 128): the left pixel is missed
    metric = IsicTask2Metric(0.6)
    metric.update(probs, truth)
    assert metric.compute()["overall"] == 0.0


def test_metric_sizes_crop_padded_batches() -> None:
    # image 0 is 1x2 padded to 2x2; the padding holds a false positive that must not count
    pred = np.zeros((2, 5, 2, 2), bool)
    truth = np.zeros((2, 5, 2, 2), bool)
    pred[0, G, 0, 0] = truth[0, G, 0, 0] = True
    pred[0, G, 1, 1] = True  # in the padding
    truth[1, G, 0, 0] = True  # image 1 (2x2): one missed pixel, fn .25
    counts = batch_confusion_counts(pred, truth, sizes=[(1, 2), (2, 2)])
    assert counts[0, G].tolist() == [0.5, 0.0, 0.0, 0.5]
    assert counts[1, G].tolist() == [0.0, 0.0, 0.25, 0.75]
    with pytest.raises(ValueError, match="does not fit"):
        batch_confusion_counts(pred, truth, sizes=[(3, 2), (2, 2)])
    with pytest.raises(ValueError, match="2 images"):
        batch_confusion_counts(pred, truth, sizes=[(1, 2)])


@pytest.mark.parametrize(
    ("pred", "truth", "match"),
    [
        (np.zeros((1, 5, 2, 2), bool), np.zeros((1, 5, 2, 3), bool), "must both be"),
        (np.zeros((5, 2, 2), bool), np.zeros((5, 2, 2), bool), "must both be"),
        (np.full((1, 5, 2, 2), 3.0, np.float32), np.zeros((1, 5, 2, 2), bool), "logits"),
        (np.full((1, 5, 2, 2), 2, np.uint8), np.zeros((1, 5, 2, 2), bool), "binary"),
    ],
)
def test_metric_input_errors(pred: np.ndarray, truth: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IsicTask2Metric().update(pred, truth)


@pytest.mark.parametrize("thresholds", [1.5, [0.5] * 4, -0.1])
def test_metric_threshold_errors(thresholds) -> None:
    with pytest.raises(ValueError, match="thresholds"):
        IsicTask2Metric(thresholds)


def test_binarise_rules() -> None:
    assert binarise(np.array([0, 1, 255], np.uint8)).tolist() == [False, True, True]
    assert binarise(torch.tensor([0.2, 0.5, 0.51])).tolist() == [False, False, True]


def test_per_image_mean_jaccard_is_not_the_official_number() -> None:
    counts = np.zeros((2, 5, 4))
    counts[:, :, 3] = 1.0  # everything empty by default
    counts[0, G] = [0.25, 0.25, 0.0, 0.5]  # image 0 globules: J = 1/2
    counts[1, G] = [0.0, 0.0, 0.25, 0.75]  # image 1 globules: J = 0
    result = per_image_mean_jaccard(counts)  # empty pairs score 1.0
    assert result["globules"] == pytest.approx(0.25)  # (1/2 + 0) / 2
    assert result["streaks"] == 1.0
    assert result["mean"] == pytest.approx((0.25 + 4 * 1.0) / 5)
    skipped = per_image_mean_jaccard(counts, empty_score=None)
    assert skipped["globules"] == pytest.approx(0.25)
    assert math.isnan(skipped["streaks"]) and skipped["mean"] == pytest.approx(0.25)
    # the official number sums counts first: .25 / (.25 + .25 + .25) = 1/3, not 1/4
    assert scores_from_counts(counts.sum(axis=0))["globules"]["jaccard"] == pytest.approx(1 / 3)
    metric = IsicTask2Metric()
    metric.update(np.zeros((1, 5, 2, 2), bool), np.zeros((1, 5, 2, 2), bool))
    assert metric.per_image_mean_jaccard()["mean"] == 1.0


# --------------------------------------------------------------------------- parity with the scorer


def _write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)


def test_parity_with_official_scorer(tmp_path: Path) -> None:
    """Random 0/255 truth and grey-level predictions, images of different sizes, vs task2.score."""
    task2 = pytest.importorskip("isic_challenge_scoring.task2")
    rng = np.random.default_rng(2018)
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir()
    sizes = [(7, 5), (4, 9), (6, 6), (3, 11), (10, 2)]
    density = {"globules": 0.2, "milia_like_cyst": 0.05, "negative_network": 0.3, "pigment_network": 0.6}
    metric = IsicTask2Metric()
    for i, (h, w) in enumerate(sizes):
        image_id = f"ISIC_{i + 10:07d}"
        truth = np.zeros((1, 5, h, w), bool)
        pred = np.zeros((1, 5, h, w), bool)
        for k, name in enumerate(ATTRIBUTES):
            truth_png = np.where(rng.random((h, w)) < density.get(name, 0.0), 255, 0)
            # grey-level predictions exercise the scorer's > 128 rule (128 is negative, 129 positive)
            pred_png = rng.choice([0, 100, 128, 129, 200, 255], size=(h, w))
            if name == "streaks":  # never present and never predicted, in any image
                pred_png[:] = 0
            if name == "milia_like_cyst":  # present in truth but never predicted
                pred_png[:] = 128
            _write_png(truth_dir / f"{image_id}_attribute_{name}.png", truth_png)
            _write_png(pred_dir / f"{image_id}_attribute_{name}.png", pred_png)
            truth[0, k], pred[0, k] = truth_png > 128, pred_png > 128
        metric.update(pred, truth)

    official = task2.score(truth_dir, pred_dir)
    ours = metric.compute()
    assert set(official) == set(ours)
    for key, value in official.items():
        if isinstance(value, dict):
            for sub in ("jaccard", "dice"):
                assert abs(ours[key][sub] - float(value[sub])) < 1e-9, (key, sub)
        else:
            assert abs(ours[key] - float(value)) < 1e-9, key
    assert official["streaks"] == {"jaccard": 1.0, "dice": 1.0} == ours["streaks"]
    assert ours["milia_like_cyst"]["jaccard"] == 0.0
    assert 0.0 < ours["overall"] < 1.0


def test_parity_all_empty(tmp_path: Path) -> None:
    """No attribute present or predicted anywhere: the scorer gives 1.0 everywhere, so do we."""
    task2 = pytest.importorskip("isic_challenge_scoring.task2")
    for folder in ("truth", "pred"):
        (tmp_path / folder).mkdir()
        for name in ATTRIBUTES:
            _write_png(tmp_path / folder / f"ISIC_0000001_attribute_{name}.png", np.zeros((3, 4)))
    metric = IsicTask2Metric()
    metric.update(np.zeros((1, 5, 3, 4), np.uint8), np.zeros((1, 5, 3, 4), np.uint8))
    official = task2.score(tmp_path / "truth", tmp_path / "pred")
    perfect = {"jaccard": 1.0, "dice": 1.0}
    expected = {**{name: perfect for name in ATTRIBUTES}, "micro_average": perfect, "overall": 1.0}
    assert metric.compute() == official == expected
