"""The report's parts on hand-checkable data: curves from histograms, thinning, the gallery keeper."""

from __future__ import annotations

import numpy as np
import pytest

from dermseg.evaluation.ranking import StreamingRanking, auc_ap_from_histograms, curves_from_histograms
from dermseg.report.collect import is_synthetic
from dermseg.report.evaluation import thin, threshold_grid
from dermseg.report.gallery import GalleryKeeper, shrink, thumbnails

# (positives per score value, negatives per score value), ascending scores
HISTOGRAMS = [
    ([0, 1, 0, 2], [3, 0, 1, 0]),
    ([1, 1, 1, 1], [1, 1, 1, 1]),  # ties everywhere: AUC 0.5
    ([0, 0, 5], [4, 0, 0]),  # perfect ranking
    ([2, 0, 0], [0, 0, 3]),  # reversed ranking
]


def _area(y: np.ndarray, x: np.ndarray) -> float:
    """The trapezoid rule (``np.trapezoid`` needs numpy 2)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


@pytest.mark.parametrize(("pos", "neg"), HISTOGRAMS)
def test_curves_integrate_to_the_auc_and_ap(pos: list[int], neg: list[int]) -> None:
    values = np.linspace(0, 1, len(pos))
    curves = curves_from_histograms(np.array(pos), np.array(neg), values)
    auc, ap = auc_ap_from_histograms(np.array(pos), np.array(neg))
    assert _area(curves["tpr"], curves["fpr"]) == pytest.approx(auc)
    assert np.sum(np.diff(curves["recall"], prepend=0.0) * curves["precision"]) == pytest.approx(ap)
    assert curves["fpr"][0] == 0 and curves["tpr"][-1] == 1 and curves["fpr"][-1] == 1
    assert np.all(np.diff(curves["roc_thresholds"]) < 0)  # descending thresholds


def test_curves_by_hand_and_undefined_cases() -> None:
    c = curves_from_histograms(
        np.array([0, 1, 0, 2]), np.array([3, 0, 1, 0]), np.array([0.0, 0.25, 0.5, 1.0])
    )
    # thresholds 1.0 (2 pos), 0.5 (1 neg), 0.25 (1 pos), 0.0 (3 neg)
    assert c["tpr"].tolist() == pytest.approx([0, 2 / 3, 2 / 3, 1, 1])
    assert c["fpr"].tolist() == pytest.approx([0, 0, 1 / 4, 1 / 4, 1])
    assert c["precision"].tolist() == pytest.approx([1, 2 / 3, 3 / 4, 3 / 7])
    no_pos = curves_from_histograms(np.zeros(3), np.ones(3), np.arange(3.0))
    assert no_pos["fpr"].size == 0 and no_pos["recall"].size == 0
    no_neg = curves_from_histograms(np.ones(3), np.zeros(3), np.arange(3.0))
    assert no_neg["fpr"].size == 0 and no_neg["precision"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="same length"):
        curves_from_histograms(np.ones(3), np.ones(2), np.arange(3.0))


def test_streaming_ranking_curves_match_its_scores() -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((2, 5, 16, 16)).astype(np.float32)
    truth = rng.random((2, 5, 16, 16)) < probs  # informative scores
    truth[:, 4] = False  # an attribute without positives
    ranking = StreamingRanking(bins=64)
    ranking.update(probs, truth)
    scores, curves = ranking.compute(), ranking.curves()
    for name in ("globules", "pigment_network"):
        c = curves[name]
        assert _area(c["tpr"], c["fpr"]) == pytest.approx(scores[name]["auc"])
    assert curves["streaks"]["fpr"].size == 0 and scores["streaks"]["auc"] is None


def test_thin_keeps_the_ends_and_at_most_the_points_asked() -> None:
    x = np.concatenate([np.zeros(500), np.linspace(0, 1, 500)])  # a vertical then a diagonal run
    y = np.concatenate([np.linspace(0, 1, 500), np.ones(500)])
    tx, ty = thin(x, y, points=50)
    assert len(tx) <= 50 and (tx[0], ty[0]) == (0.0, 0.0) and (tx[-1], ty[-1]) == (1.0, 1.0)
    assert sum(v == 0.0 for v in tx) > 10  # the steep part keeps its share of points
    assert thin(np.arange(3.0), np.arange(3.0), points=50) == ([0.0, 1.0, 2.0], [0.0, 1.0, 2.0])


def test_threshold_grid_holds_the_checkpoint_thresholds() -> None:
    grid = threshold_grid([0.5, 0.37, 0.5, 0.5, 1.0])
    assert 0.37 in grid and 1.0 in grid and 0.01 in grid and len(grid) == 100
    assert np.all(np.diff(grid) > 0)


@pytest.mark.parametrize(
    ("scores", "best", "worst"),
    [
        ([0.5, 0.9, 0.1, 0.7, 0.3, 0.2, 0.8, 0.6, 0.4, 0.0], [0.9, 0.8], [0.0, 0.1]),
        ([0.5, 0.2, 0.9], [0.9, 0.5], [0.2]),  # three images: the better two, then the last
        ([0.4], [0.4], []),
        ([0.5, 0.5, 0.5], [0.5, 0.5], [0.5]),  # ties: by id
    ],
)
def test_gallery_keeper_keeps_the_extremes(
    scores: list[float], best: list[float], worst: list[float]
) -> None:
    keeper = GalleryKeeper(size=2)
    made = []
    for k, s in enumerate(scores):
        keeper.offer(
            s, f"ISIC_{k:07d}", lambda s=s, k=k: made.append(k) or {"jaccard": s, "id": f"ISIC_{k:07d}"}
        )
    result = keeper.result()
    assert [e["jaccard"] for e in result["best"]] == best
    assert [e["jaccard"] for e in result["worst"]] == worst
    assert len(made) <= len(scores)  # thumbnails only for images that entered a row
    if scores == [0.5, 0.5, 0.5]:
        assert [e["id"] for e in result["best"] + result["worst"]] == [
            "ISIC_0000000",
            "ISIC_0000001",
            "ISIC_0000002",
        ]
    with pytest.raises(ValueError):
        GalleryKeeper(size=0)


def test_thumbnails_are_small_and_masks_survive_the_shrink() -> None:
    image = np.zeros((600, 900, 3), np.uint8)
    image[:, 450:] = 200
    masks = np.zeros((10, 600, 900), bool)
    masks[3, 100:300, 100:400] = True
    small, small_masks = shrink(image, masks, 256)
    assert small.shape == (171, 256, 3) and small_masks.shape == (10, 171, 256)
    assert small_masks[3].sum() == pytest.approx(200 * 300 * (256 / 900) ** 2, rel=0.05)
    panels = thumbnails(image, masks[:5], masks[5:], side=256)
    assert (panels["width"], panels["height"]) == (256, 171)
    assert panels["image"] != panels["truth"]  # the truth is drawn over the image


def test_synthetic_marker(tmp_path) -> None:
    assert not is_synthetic(tmp_path)
    (tmp_path / "SYNTHETIC.txt").write_text("")
    assert is_synthetic(tmp_path)
