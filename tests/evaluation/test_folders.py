"""dermseg.evaluation.folders: parity with the official scorer, known values, every problem reported."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from dermseg.attributes import ATTRIBUTES
from dermseg.errors import DataError
from dermseg.evaluation.folders import (
    CSV_COLUMNS,
    EvaluationError,
    EvaluationResult,
    evaluate_folders,
    write_csv,
    write_json,
)
from tests.conftest import ISIC_SAMPLE, real_data


def _png(path: Path, array: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(array).astype(np.uint8), mode="L")
    (img.convert(mode, dither=Image.Dither.NONE) if mode != "L" else img).save(path)
    return path


def _official(truth_dir: Path, pred_dir: Path) -> dict[str, Any]:
    task2 = pytest.importorskip("isic_challenge_scoring.task2")
    return task2.score(truth_dir, pred_dir)


def _assert_parity(ours: EvaluationResult, official: dict[str, Any]) -> None:
    assert list(ours.scores) == list(official)
    for key, value in official.items():
        if isinstance(value, dict):
            assert set(ours.scores[key]) == set(value) == {"jaccard", "dice"}
            for sub in ("jaccard", "dice"):
                assert abs(ours.scores[key][sub] - float(value[sub])) < 1e-9, (key, sub)
        else:
            assert abs(ours.scores[key] - float(value)) < 1e-9, key


# --------------------------------------------------------------------------- parity


def test_parity_random_masks(tmp_path: Path) -> None:
    """Random masks of many sizes, grey values around the > 128 rule, empty attributes, 1-bit files."""
    rng = np.random.default_rng(2018)
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    sizes = [(7, 5), (31, 17), (64, 48), (3, 11), (120, 90), (1, 1), (50, 77), (9, 200), (13, 13), (40, 30)]
    density = {"globules": 0.2, "milia_like_cyst": 0.05, "negative_network": 0.3, "pigment_network": 0.6}
    for i, (h, w) in enumerate(sizes):
        image_id = f"ISIC_{i * 37 + 5:07d}"
        for name in ATTRIBUTES:
            truth = np.where(rng.random((h, w)) < density.get(name, 0.0), 255, 0)
            if i % 3 == 0:  # grey truth values as well: the scorer binarises truth at > 128 too
                truth = np.where(truth > 0, rng.choice([129, 200, 255], (h, w)), rng.choice([0, 128], (h, w)))
            pred = rng.choice([0, 100, 128, 129, 200, 255], size=(h, w))
            if name == "streaks":  # never present and never predicted, in any image
                pred[:] = 0
            if name == "milia_like_cyst":  # present in truth but never predicted (128 is negative)
                pred[:] = 128
            mode = "1" if (i + len(name)) % 4 == 0 and name != "milia_like_cyst" else "L"
            _png(truth_dir / f"{image_id}_attribute_{name}.png", truth)
            _png(pred_dir / f"{image_id}_attribute_{name}.png", pred, mode)

    official = _official(truth_dir, pred_dir)
    serial = evaluate_folders(pred_dir, truth_dir, workers=1)
    threaded = evaluate_folders(pred_dir, truth_dir, workers=3)
    _assert_parity(serial, official)
    assert threaded.scores == serial.scores
    assert official["streaks"] == {"jaccard": 1.0, "dice": 1.0} == serial.scores["streaks"]
    assert serial.scores["milia_like_cyst"]["jaccard"] == 0.0
    assert 0.0 < serial.overall < 1.0
    assert serial.images == len(sizes)
    assert serial.images_with_attribute["streaks"] == 0
    assert serial.per_image_counts.shape == (len(sizes), 5, 4)
    np.testing.assert_allclose(serial.per_image_counts.sum(axis=-1), 1.0)


def test_parity_all_empty(tmp_path: Path) -> None:
    """Nothing present or predicted anywhere: 1.0 everywhere, as the scorer says."""
    for folder in ("truth", "pred"):
        for name in ATTRIBUTES:
            _png(tmp_path / folder / f"ISIC_0000001_attribute_{name}.png", np.zeros((3, 4)))
    result = evaluate_folders(tmp_path / "pred", tmp_path / "truth")
    official = _official(tmp_path / "truth", tmp_path / "pred")
    perfect = {"jaccard": 1.0, "dice": 1.0}
    assert (
        result.scores
        == official
        == {**{a: perfect for a in ATTRIBUTES}, "micro_average": perfect, "overall": 1.0}
    )
    assert result.images_with_attribute == dict.fromkeys(ATTRIBUTES, 0)
    assert result.per_image_mean_jaccard["mean"] == 1.0


def test_only_attributes_with_truth_files_are_scored(tmp_path: Path) -> None:
    """Truth holding one attribute: only that key, like the scorer; extra predictions are ignored."""
    block = np.zeros((10, 12))
    block[2:6, 3:9] = 255
    for k in range(3):
        _png(tmp_path / "truth" / f"ISIC_000000{k}_attribute_streaks.png", np.roll(block, k, axis=1))
        for name in ATTRIBUTES:
            _png(tmp_path / "pred" / f"ISIC_000000{k}_attribute_{name}.png", block)
    _png(tmp_path / "pred" / "ISIC_0000009_attribute_streaks.png", block)  # no truth: ignored
    (tmp_path / "pred" / "notes.txt").write_text("ignored")
    result = evaluate_folders(tmp_path / "pred", tmp_path / "truth", workers=2)
    _assert_parity(result, _official(tmp_path / "truth", tmp_path / "pred"))
    assert list(result.scores) == ["streaks", "micro_average", "overall"]
    assert result.attributes == ("streaks",)
    assert result.mean_attribute_jaccard == result.scores["streaks"]["jaccard"]
    assert np.isnan(result.per_image_counts[:, 0]).all()


def _real_pairs(tmp_path: Path) -> tuple[Path, Path]:
    """The six real pigment-network masks as truth, and perturbed copies as predictions."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    files = sorted(ISIC_SAMPLE.glob("ISIC_*_attribute_pigment_network.png"))
    assert len(files) == 6
    for k, path in enumerate(files):
        shutil.copy(path, truth_dir / path.name)
        truth = np.asarray(Image.open(path)) > 128
        if k == 0:
            pred = ndimage.binary_dilation(truth, iterations=5)
        elif k == 1:
            pred = ndimage.binary_erosion(truth, iterations=3)
        elif k == 2:
            pred = np.roll(truth, (17, -23), axis=(0, 1))
        elif k == 3:
            pred = np.zeros_like(truth)  # the attribute missed entirely
        elif k == 4:
            pred = truth | (np.arange(truth.shape[1]) < 100)[None, :]  # a false-positive band
        else:
            pred = truth
        values = np.where(pred, 255, 0)
        if k == 5:  # identical shape, but grey values on both sides of the threshold
            values = np.where(pred, 129, 128)
        _png(pred_dir / path.name, values)
    return truth_dir, pred_dir


@real_data
def test_parity_real_sample(tmp_path: Path) -> None:
    truth_dir, pred_dir = _real_pairs(tmp_path)
    official = _official(truth_dir, pred_dir)
    result = evaluate_folders(pred_dir, truth_dir)
    _assert_parity(result, official)
    assert list(result.scores) == ["pigment_network", "micro_average", "overall"]
    assert result.images == 6 and result.images_with_attribute == {"pigment_network": 6}
    assert 0.3 < result.overall < 0.95


@real_data
def test_flat_sample_folder_as_ground_truth(tmp_path: Path) -> None:
    """The flat sample folder (images, lesion masks, ATTRIBUTION.txt) scores like its masks alone."""
    truth_dir, pred_dir = _real_pairs(tmp_path)
    assert evaluate_folders(pred_dir, ISIC_SAMPLE).scores == evaluate_folders(pred_dir, truth_dir).scores


# --------------------------------------------------------------------------- known values


def _tiny(tmp_path: Path) -> tuple[Path, Path]:
    """Two images (2x2 and 1x4) with hand-checkable counts; the other attributes empty."""
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    masks = {
        # (image id, attribute): (truth, prediction)
        ("ISIC_0000001", "globules"): ([[255, 255], [0, 0]], [[255, 0], [255, 0]]),  # tp fp fn = 1 1 1
        ("ISIC_0000002", "globules"): ([[255, 0, 0, 0]], [[255, 0, 0, 0]]),  # tp 1
        ("ISIC_0000001", "pigment_network"): ([[255, 255], [255, 255]], [[255, 255], [255, 255]]),  # tp 4
        ("ISIC_0000002", "pigment_network"): ([[0, 0, 0, 0]], [[255, 255, 0, 0]]),  # fp 2
    }
    for image_id, shape in (("ISIC_0000001", (2, 2)), ("ISIC_0000002", (1, 4))):
        for name in ATTRIBUTES:
            t, p = masks.get((image_id, name), (np.zeros(shape), np.zeros(shape)))
            _png(truth / f"{image_id}_attribute_{name}.png", np.array(t))
            _png(pred / f"{image_id}_attribute_{name}.png", np.array(p))
    return truth, pred


def test_known_values(tmp_path: Path) -> None:
    truth, pred = _tiny(tmp_path)
    result = evaluate_folders(pred, truth)
    # normalised sums: globules tp .25+.25, fp .25, fn .25; pigment tp 1, fp .5; micro tp 1.5 fp .75 fn .25
    expected = {
        "globules": {"jaccard": 0.5, "dice": 2 / 3},
        "milia_like_cyst": {"jaccard": 1.0, "dice": 1.0},
        "negative_network": {"jaccard": 1.0, "dice": 1.0},
        "pigment_network": {"jaccard": 2 / 3, "dice": 0.8},
        "streaks": {"jaccard": 1.0, "dice": 1.0},
        "micro_average": {"jaccard": 0.6, "dice": 0.75},
    }
    for key, value in expected.items():
        for sub in ("jaccard", "dice"):
            assert result.scores[key][sub] == pytest.approx(value[sub], abs=1e-12), (key, sub)
    assert result.overall == pytest.approx(0.6, abs=1e-12)
    assert result.mean_attribute_jaccard == pytest.approx((0.5 + 1 + 1 + 2 / 3 + 1) / 5, abs=1e-12)
    # per image: globules 1/3 and 1; pigment network 1 and 0; the empty pairs 1
    assert result.per_image_mean_jaccard["globules"] == pytest.approx(2 / 3, abs=1e-12)
    assert result.per_image_mean_jaccard["pigment_network"] == pytest.approx(0.5, abs=1e-12)
    assert result.per_image_mean_jaccard["mean"] == pytest.approx((2 / 3 + 1 + 1 + 0.5 + 1) / 5, abs=1e-12)
    assert result.images == 2
    assert result.images_with_attribute == {
        "globules": 2,
        "milia_like_cyst": 0,
        "negative_network": 0,
        "pigment_network": 1,
        "streaks": 0,
    }
    assert result.image_ids == ("ISIC_0000001", "ISIC_0000002")
    np.testing.assert_allclose(result.per_image_counts[0, 0], [0.25, 0.25, 0.25, 0.25])
    _assert_parity(result, _official(truth, pred))


def test_writers_and_progress(tmp_path: Path) -> None:
    truth, pred = _tiny(tmp_path)
    calls: list[tuple[int, int]] = []
    result = evaluate_folders(
        pred, truth, workers=2, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(k, 10) for k in range(1, 11)]

    write_json(tmp_path / "out" / "scores.json", result)
    loaded = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert loaded == result.to_dict()
    assert loaded["overall"] == result.overall and loaded["images"] == 2
    assert {"mean_attribute_jaccard", "per_image_mean_jaccard", "images_with_attribute"} <= set(loaded)

    write_csv(tmp_path / "out" / "scores.csv", result)
    with open(tmp_path / "out" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["attribute"] for r in rows] == [*ATTRIBUTES, "micro_average"]
    assert float(rows[0]["jaccard"]) == result.scores["globules"]["jaccard"]  # full precision
    assert float(rows[-1]["dice"]) == result.scores["micro_average"]["dice"]
    assert rows[3]["images_with_attribute"] == "1" and rows[-1]["images_with_attribute"] == ""
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


# --------------------------------------------------------------------------- problems


def test_missing_prediction_names_the_file(tmp_path: Path) -> None:
    truth, pred = _tiny(tmp_path)
    (pred / "ISIC_0000001_attribute_globules.png").unlink()
    with pytest.raises(EvaluationError) as info:
        evaluate_folders(pred, truth)
    err = info.value
    assert isinstance(err, DataError)
    assert err.path == pred / "ISIC_0000001_attribute_globules.png"
    assert err.message == "missing prediction for ISIC_0000001 globules"
    assert str(err).startswith(str(pred / "ISIC_0000001_attribute_globules.png"))


def test_every_problem_in_one_pass(tmp_path: Path) -> None:
    truth, pred = _tiny(tmp_path)
    (pred / "ISIC_0000001_attribute_globules.png").unlink()  # missing
    _png(pred / "ISIC_0000001_attribute_milia_like_cyst.png", np.zeros((90, 120)))  # mis-sized
    rgb = pred / "ISIC_0000001_attribute_streaks.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(rgb)  # colour
    corrupt = pred / "ISIC_0000002_attribute_globules.png"
    corrupt.write_bytes(corrupt.read_bytes()[:30])  # truncated PNG
    garbage = pred / "ISIC_0000002_attribute_streaks.png"
    garbage.write_bytes(b"this is not a png")
    bad_truth = truth / "ISIC_0000002_attribute_negative_network.png"
    bad_truth.write_bytes(b"")

    with pytest.raises(EvaluationError) as info:
        evaluate_folders(pred, truth, workers=2)
    err = info.value
    by_path = {p.path.name: p.message for p in err.problems}
    assert len(err.problems) == 6, err.problems
    assert by_path["ISIC_0000001_attribute_globules.png"] == "missing prediction for ISIC_0000001 globules"
    assert (
        by_path["ISIC_0000001_attribute_milia_like_cyst.png"]
        == "prediction is 120x90 but ground truth is 2x2"
    )
    assert "mode RGB" in by_path["ISIC_0000001_attribute_streaks.png"]
    assert "single-channel" in by_path["ISIC_0000001_attribute_streaks.png"]
    assert (
        "cannot decode" in by_path["ISIC_0000002_attribute_globules.png"]
        or "not a readable" in by_path["ISIC_0000002_attribute_globules.png"]
    )
    assert "not a readable image" in by_path["ISIC_0000002_attribute_streaks.png"]
    assert [p.path for p in err.problems if p.path.parent == truth] == [bad_truth]
    # in truth-file order; the message says how many and names the first
    assert err.path == pred / "ISIC_0000001_attribute_globules.png"
    assert err.message == "missing prediction for ISIC_0000001 globules (first of 6 problems)"


def test_mis_sized_prediction_alone(tmp_path: Path) -> None:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    _png(truth / "ISIC_0000001_attribute_globules.png", np.zeros((90, 120)))
    _png(pred / "ISIC_0000001_attribute_globules.png", np.zeros((80, 100)))
    with pytest.raises(DataError, match="prediction is 100x80 but ground truth is 120x90") as info:
        evaluate_folders(pred, truth)
    assert info.value.path == pred / "ISIC_0000001_attribute_globules.png"


def test_size_checked_for_empty_masks_seen_before(tmp_path: Path) -> None:
    """An empty prediction with the same bytes as an empty mask decoded earlier is still size-checked."""
    truth, pred = _tiny(tmp_path)
    shutil.copy(truth / "ISIC_0000001_attribute_streaks.png", pred / "ISIC_0000002_attribute_streaks.png")
    with pytest.raises(EvaluationError, match="prediction is 2x2 but ground truth is 4x1") as info:
        evaluate_folders(pred, truth, workers=1)
    assert info.value.path == pred / "ISIC_0000002_attribute_streaks.png"
    assert len(info.value.problems) == 1


@pytest.mark.parametrize(
    ("gt", "pred", "bad", "message"),
    [
        ("missing", "pred", "gt", "ground-truth folder not found"),
        ("empty", "pred", "gt", "no ground-truth masks found"),
        ("truth", "missing", "pred", "prediction folder not found"),
        ("truth", "empty", "pred", "no prediction masks found"),
        ("file", "pred", "gt", "is a file"),
    ],
)
def test_folder_errors(tmp_path: Path, gt: str, pred: str, bad: str, message: str) -> None:
    truth_dir, pred_dir = _tiny(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "LICENSE.txt").write_text("licence")
    (tmp_path / "file").write_text("x")
    folders = {"truth": truth_dir, "pred": pred_dir, "empty": empty, "missing": tmp_path / "nope"}
    folders["file"] = tmp_path / "file"
    gt_path, pred_path = folders[gt], folders[pred]
    with pytest.raises(DataError, match=message) as info:
        evaluate_folders(pred_path, gt_path)
    assert info.value.path == (gt_path if bad == "gt" else pred_path)


def test_unknown_truth_attribute_and_bad_workers(tmp_path: Path) -> None:
    truth, pred = _tiny(tmp_path)
    _png(truth / "ISIC_0000001_attribute_dots.png", np.zeros((2, 2)))
    with pytest.raises(EvaluationError, match="unknown attribute 'dots'") as info:
        evaluate_folders(pred, truth)
    assert info.value.path == truth / "ISIC_0000001_attribute_dots.png"
    with pytest.raises(ValueError, match="workers"):
        evaluate_folders(pred, truth, workers=0)
