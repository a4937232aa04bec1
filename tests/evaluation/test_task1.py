"""dermseg.evaluation.task1: hand-computed cases and parity with the official ISIC scorer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from dermseg.evaluation.task1 import (
    SCORE_NAMES,
    IsicTask1Metric,
    binarise_mask,
    confusion_counts,
    per_image_scores,
    scores_from_counts,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"  # ../shared/data beside the checkout
PH2_MASKS = DATA / "ph2_sample" / "masks"

#: The keys of ``SegmentationScore.to_dict()["macro_average"]``, written out by hand.
# the scorer (5.6.0) calls Series.rename(inplace=True), which recent pandas deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in Series.rename")

OFFICIAL_KEYS = ["accuracy", "sensitivity", "specificity", "jaccard", "threshold_jaccard", "dice"]


def _mask(rows: list[str]) -> np.ndarray:
    """A bool mask drawn as text: ``#`` is positive, ``.`` negative."""
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


def _one(pred: list[str], truth: list[str]) -> dict[str, float]:
    metric = IsicTask1Metric()
    metric.update(_mask(pred), _mask(truth))
    return metric.compute()["macro_average"]


# --------------------------------------------------------------------------- hand-computed


def test_perfect() -> None:
    scores = _one(["#.", ".."], ["#.", ".."])
    assert scores == dict.fromkeys(OFFICIAL_KEYS, 1.0)


def test_disjoint() -> None:
    # TP 0, FP 1, FN 1, TN 2
    scores = _one([".#", ".."], ["#.", ".."])
    assert scores == {
        "accuracy": 0.5,
        "sensitivity": 0.0,
        "specificity": 2 / 3,
        "jaccard": 0.0,
        "threshold_jaccard": 0.0,
        "dice": 0.0,
    }


def test_both_empty_scores_one_everywhere() -> None:
    assert _one(["..", ".."], ["..", ".."]) == dict.fromkeys(OFFICIAL_KEYS, 1.0)


def test_truth_empty_prediction_not() -> None:
    # TP 0, FP 2, FN 0, TN 2: sensitivity is the scorer's "freebie" 1.0 (no positive in truth)
    scores = _one(["##", ".."], ["..", ".."])
    assert scores == {
        "accuracy": 0.5,
        "sensitivity": 1.0,
        "specificity": 0.5,
        "jaccard": 0.0,
        "threshold_jaccard": 0.0,
        "dice": 0.0,
    }


def test_prediction_empty_truth_not() -> None:
    # TP 0, FP 0, FN 3, TN 6
    scores = _one(["...", "...", "..."], ["###", "...", "..."])
    assert scores == {
        "accuracy": 6 / 9,
        "sensitivity": 0.0,
        "specificity": 1.0,
        "jaccard": 0.0,
        "threshold_jaccard": 0.0,
        "dice": 0.0,
    }


def test_lesion_everywhere_specificity_is_one() -> None:
    # TP 3, FP 0, FN 1, TN 0: TN + FP == 0 gives specificity 1.0
    scores = _one(["##", "#."], ["##", "##"])
    assert scores["specificity"] == 1.0
    assert scores["jaccard"] == 0.75 and scores["threshold_jaccard"] == 0.75
    assert scores["dice"] == 6 / 7 and scores["sensitivity"] == 0.75 and scores["accuracy"] == 0.75


def test_jaccard_just_above_threshold_kept() -> None:
    # truth 3 pixels, 2 of them predicted: J = 2/3 >= 0.65
    scores = _one(["##.", "...", "..."], ["###", "...", "..."])
    assert scores["jaccard"] == 2 / 3 == scores["threshold_jaccard"]
    assert scores["dice"] == 4 / 5


def test_jaccard_just_below_threshold_is_zero() -> None:
    # truth 4 pixels, 3 of them predicted and 1 outside: J = 3 / 5 = 0.6 < 0.65
    scores = _one(["###", "#..", "..."], ["###", ".#.", "..."])
    assert scores["jaccard"] == 0.6
    assert scores["threshold_jaccard"] == 0.0
    assert scores["dice"] == 6 / 8


def test_jaccard_exactly_at_threshold_kept() -> None:
    # truth 20 pixels of a 5x5 image, 13 of them predicted: J = 13 / 20 = 0.65, kept (>=)
    truth = np.zeros((5, 5), bool)
    truth.flat[:20] = True
    pred = np.zeros((5, 5), bool)
    pred.flat[:13] = True
    metric = IsicTask1Metric()
    metric.update(pred, truth)
    assert metric.compute()["macro_average"]["threshold_jaccard"] == 0.65


def test_macro_average_over_images() -> None:
    metric = IsicTask1Metric()
    metric.update(_mask(["#.", ".."]), _mask(["#.", ".."]), image_id="a")  # J = 1
    metric.update(_mask(["###", "#..", "..."]), _mask(["###", ".#.", "..."]), image_id="b")  # J = 0.6
    result = metric.compute()
    assert result["macro_average"]["jaccard"] == pytest.approx(0.8, abs=1e-15)
    assert result["macro_average"]["threshold_jaccard"] == 0.5
    assert result["overall"] == result["validation"] == 0.5
    assert list(result) == ["overall", "validation", "macro_average"]
    assert list(result["macro_average"]) == OFFICIAL_KEYS
    assert metric.image_ids == ["a", "b"]
    assert metric.per_image_counts.tolist() == [[1, 0, 0, 3], [3, 1, 1, 4]]
    per_image = metric.per_image_scores()
    assert per_image["jaccard"].tolist() == [1.0, 0.6]
    assert per_image["threshold_jaccard"].tolist() == [1.0, 0.0]
    metric.reset()
    assert metric.num_images == 0
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()


def test_pure_functions_of_counts() -> None:
    # [tp, fp, fn, tn]
    counts = np.array([[2, 0, 1, 6], [0, 0, 0, 4], [0, 2, 0, 2]])
    scores = per_image_scores(counts)
    assert scores["jaccard"].tolist() == [2 / 3, 1.0, 0.0]
    assert scores["sensitivity"].tolist() == [2 / 3, 1.0, 1.0]
    assert scores["specificity"].tolist() == [1.0, 1.0, 0.5]
    assert scores["accuracy"].tolist() == [8 / 9, 1.0, 0.5]
    assert scores_from_counts(counts)["overall"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3, abs=1e-15)
    assert tuple(SCORE_NAMES) == tuple(OFFICIAL_KEYS)
    with pytest.raises(ValueError, match="zero images"):
        scores_from_counts(np.zeros((0, 4), int))
    with pytest.raises(ValueError, match="at least one pixel"):
        per_image_scores(np.zeros((1, 4), int))
    with pytest.raises(ValueError, match="shape"):
        per_image_scores(np.zeros((2, 3), int))


def test_input_kinds_agree() -> None:
    """bool, 0/1, 0/255, grey 0..255 (> 128), probabilities, torch: the same counts by hand."""
    grey = np.array([[0, 128], [129, 255]], np.uint8)  # positive: 129 and 255
    truth = np.array([[0, 1], [1, 0]], np.uint8)  # a 0/1 mask
    expected = [1, 1, 1, 1]  # TP at (1,0); FP at (1,1); FN at (0,1); TN at (0,0)
    assert confusion_counts(grey, truth).tolist() == expected
    assert confusion_counts(grey.astype(np.int64), truth * 255).tolist() == expected
    assert confusion_counts(grey > 128, truth.astype(bool)).tolist() == expected
    prob = np.array([[0.1, 0.5], [0.51, 1.0]], np.float32)  # 0.5 is not > 0.5
    assert confusion_counts(prob, truth).tolist() == expected
    assert confusion_counts(torch.from_numpy(grey), torch.from_numpy(truth)).tolist() == expected
    assert confusion_counts(torch.from_numpy(prob), truth).tolist() == expected
    assert confusion_counts(prob, truth, threshold=0.05).tolist() == [2, 2, 0, 0]
    assert binarise_mask(torch.tensor([[0, 1]])).tolist() == [[False, True]]


def test_torch_counting_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The branch that counts on the tensor's own device (taken for accelerator tensors)."""
    from dermseg.evaluation import task1

    monkeypatch.setattr(task1, "_numpy_if_cpu", lambda x: x)  # keep CPU tensors in torch
    grey = torch.tensor([[0, 128], [129, 255]], dtype=torch.uint8)
    truth = torch.tensor([[0, 1], [1, 0]], dtype=torch.int64)
    assert confusion_counts(grey, truth).tolist() == [1, 1, 1, 1]
    assert confusion_counts(grey, truth.numpy()).tolist() == [1, 1, 1, 1]
    assert confusion_counts(torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.bool)).tolist() == [0, 0, 0, 12]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors() -> None:
    grey = torch.tensor([[0, 128], [129, 255]], dtype=torch.uint8, device="cuda")
    prob = torch.tensor([[0.0, 1.0], [1.0, 0.0]], device="cuda")
    assert confusion_counts(grey, prob).tolist() == [1, 1, 1, 1]


def test_bad_inputs() -> None:
    metric = IsicTask1Metric()
    with pytest.raises(ValueError, match="one shape"):
        metric.update(np.zeros((2, 3), bool), np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="one shape"):
        metric.update(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), bool))
    with pytest.raises(ValueError, match="empty image"):
        metric.update(np.zeros((0, 3), bool), np.zeros((0, 3), bool))
    with pytest.raises(ValueError, match="logits"):
        metric.update(np.full((2, 2), 3.0), np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match=r"0\.\.255"):
        metric.update(np.full((2, 2), 300), np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="threshold"):
        IsicTask1Metric(threshold=1.5)
    assert metric.num_images == 0


# --------------------------------------------------------------------------- parity with the scorer


def _official_in_memory(pairs: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """``SegmentationScore(...).to_dict()`` of (image id, 8-bit truth, 8-bit prediction) arrays.

    The scorer's loader only reads the files into ``ImagePair.truth_image`` and
    ``prediction_image``; the scoring itself (``> 128`` and all that follows) runs on these.
    """
    segmentation = pytest.importorskip("isic_challenge_scoring.segmentation")
    load_image = pytest.importorskip("isic_challenge_scoring.load_image")
    image_pairs = []
    for image_id, truth, pred in pairs:
        pair = load_image.ImagePair(truth_file=Path(f"{image_id}.png"))
        pair.image_id, pair.truth_image, pair.prediction_image = image_id, truth, pred
        image_pairs.append(pair)
    return segmentation.SegmentationScore(image_pairs).to_dict()


def _assert_parity(ours: dict[str, Any], official: dict[str, Any]) -> None:
    assert list(ours) == list(official) == ["overall", "validation", "macro_average"]
    assert list(ours["macro_average"]) == list(official["macro_average"]) == OFFICIAL_KEYS
    for key in ("overall", "validation"):
        assert abs(ours[key] - float(official[key])) < 1e-9, key
    for key, value in official["macro_average"].items():
        assert abs(ours["macro_average"][key] - float(value)) < 1e-9, key


def _png(path: Path, array: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array.astype(np.uint8), mode="L")
    (img.convert(mode, dither=Image.Dither.NONE) if mode != "L" else img).save(path)


def test_parity_random_folders(tmp_path: Path) -> None:
    """The official scorer on PNG folders vs the metric on the same arrays, many sizes and edge cases."""
    segmentation = pytest.importorskip("isic_challenge_scoring.segmentation")
    rng = np.random.default_rng(2018)
    sizes = [(7, 5), (31, 17), (64, 48), (3, 11), (1, 1), (50, 77), (9, 200), (13, 13), (40, 30), (6, 6)]
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    metric = IsicTask1Metric()
    for i, (h, w) in enumerate(sizes):
        image_id = f"ISIC_{i * 41 + 3:07d}"
        truth = np.where(rng.random((h, w)) < rng.uniform(0.1, 0.9), 255, 0)
        # grey predictions exercise the > 128 rule (128 is negative, 129 positive)
        pred = rng.choice([0, 100, 128, 129, 200, 255], size=(h, w))
        if i == 1:  # both empty
            truth[:] = 0
            pred[:] = 128
        elif i == 2:  # truth empty, prediction not
            truth[:] = 0
        elif i == 3:  # prediction empty, truth not
            pred[:] = 0
        elif i == 5:  # lesion everywhere
            truth[:] = 255
        elif i == 7:  # a close prediction: Jaccard above 0.65
            pred = np.where(rng.random((h, w)) < 0.97, truth, 255 - truth)
        if i % 3 == 0:  # grey truth as well: the scorer binarises truth at > 128 too
            truth = np.where(truth > 0, rng.choice([129, 255], (h, w)), rng.choice([0, 128], (h, w)))
        mode = "1" if i == 8 else "L"  # a 1-bit prediction file
        _png(truth_dir / f"{image_id}_segmentation.png", truth)
        _png(pred_dir / f"{image_id}_segmentation.png", pred, mode)
        pred_read = np.asarray(Image.open(pred_dir / f"{image_id}_segmentation.png").convert("L"))
        kind = i % 3  # numpy 8-bit, bool, torch
        if kind == 0:
            metric.update(pred_read, truth.astype(np.uint8), image_id)
        elif kind == 1:
            metric.update(pred_read > 128, truth > 128, image_id)
        else:
            pred_t, truth_t = torch.from_numpy(pred_read.copy()), torch.from_numpy(truth.astype(np.uint8))
            metric.update(pred_t, truth_t, image_id)

    official = segmentation.SegmentationScore.from_dir(truth_dir, pred_dir).to_dict()
    ours = metric.compute()
    _assert_parity(ours, official)
    per_image = metric.per_image_scores()
    assert per_image["jaccard"][1] == 1.0 and per_image["threshold_jaccard"][1] == 1.0  # both empty
    assert per_image["jaccard"][2] == 0.0 and per_image["sensitivity"][2] == 1.0  # truth empty
    assert per_image["specificity"][5] == 1.0  # lesion everywhere
    assert per_image["threshold_jaccard"][7] >= 0.65  # above the threshold
    assert (per_image["threshold_jaccard"] == 0).sum() >= 4  # and several below


def test_parity_per_image_random() -> None:
    """Each image scored alone by the scorer (its macro average of one image) vs ours, in memory."""
    rng = np.random.default_rng(7)
    metric = IsicTask1Metric()
    pairs = []
    for i in range(25):
        h, w = rng.integers(1, 40, size=2)
        truth = np.where(rng.random((h, w)) < rng.uniform(0, 1), 255, 0).astype(np.uint8)
        flip = rng.random((h, w)) < rng.uniform(0, 0.6)
        pred = np.where(flip, 255 - truth, truth).astype(np.uint8)
        if i % 5 == 0:
            truth[:] = 0
        if i % 7 == 0:
            pred[:] = 0
        pairs.append((f"ISIC_{i:07d}", truth, pred))
        metric.update(pred, truth)
    per_image = metric.per_image_scores()
    for n, pair in enumerate(pairs):
        official = _official_in_memory([pair])["macro_average"]
        for key in OFFICIAL_KEYS:
            assert abs(per_image[key][n] - float(official[key])) < 1e-9, (n, key)
    _assert_parity(metric.compute(), _official_in_memory(pairs))


def _perturb(mask: np.ndarray, k: int) -> np.ndarray:
    """A plausible imperfect 8-bit prediction of a 0/255 truth mask, chosen by ``k``."""
    m = mask > 128
    kind = k % 9
    if kind == 0:
        out = ndimage.binary_erosion(m, iterations=6)
    elif kind == 1:
        out = ndimage.binary_dilation(m, iterations=9)
    elif kind == 2:
        out = np.roll(m, (17, -23), axis=(0, 1))
    elif kind == 3:
        out = np.roll(ndimage.binary_erosion(m, iterations=40), (60, 60), axis=(0, 1))  # a poor one
    elif kind == 4:  # a grey "probability" map: the > 128 rule decides the border
        return np.clip(ndimage.gaussian_filter(m.astype(np.float64) * 255, 8), 0, 255).astype(np.uint8)
    elif kind == 5:
        out = m[::-1]  # flipped
    elif kind == 6:
        out = np.zeros_like(m)  # nothing predicted
    elif kind == 7:
        out = np.ones_like(m)  # everything predicted
    else:
        out = m.copy()  # perfect
    return np.where(out, 255, 0).astype(np.uint8)


@pytest.mark.skipif(not PH2_MASKS.is_dir(), reason=f"real PH2 masks not found at {PH2_MASKS}")
def test_parity_ph2_real_masks() -> None:
    """The 140 real PH2 expert masks against eroded, dilated, shifted, blurred, ... predictions."""
    files = sorted(PH2_MASKS.glob("IMD*_lesion.png"))
    assert len(files) >= 100
    pairs = []
    for k, path in enumerate(files):
        with Image.open(path) as img:
            truth = np.array(img.convert("L"))  # writable, for torch.from_numpy below
        pairs.append((path.stem.removesuffix("_lesion"), truth, _perturb(truth, k)))

    start = time.perf_counter()
    official = _official_in_memory(pairs)
    official_s = time.perf_counter() - start

    start = time.perf_counter()
    metric = IsicTask1Metric()
    for image_id, truth, pred in pairs:
        metric.update(pred, truth, image_id)
    ours = metric.compute()
    ours_s = time.perf_counter() - start

    start = time.perf_counter()
    on_torch = IsicTask1Metric()
    for image_id, truth, pred in pairs:
        on_torch.update(torch.from_numpy(pred), torch.from_numpy(truth), image_id)
    torch_result = on_torch.compute()
    torch_s = time.perf_counter() - start

    _assert_parity(ours, official)
    _assert_parity(torch_result, official)
    thr = metric.per_image_scores()["threshold_jaccard"]
    assert 0 < (thr == 0).sum() < len(files)  # both sides of the 0.65 threshold
    pixels = sum(t.size for _, t, _ in pairs)
    print(
        f"\nTask 1 scoring of {len(pairs)} PH2 masks ({pixels / 1e6:.1f} Mpx), arrays in memory: "
        f"official SegmentationScore {official_s:.3f} s; IsicTask1Metric numpy {ours_s:.3f} s "
        f"({official_s / ours_s:.1f}x), torch CPU {torch_s:.3f} s ({official_s / torch_s:.1f}x)"
    )
