"""dermseg.evaluation.task1_folders: parity with the official scorer on folders, hand-computed values,
every problem reported, the PH2 forms."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from dermseg.errors import DataError
from dermseg.evaluation.folders import EvaluationError
from dermseg.evaluation.task1_folders import (
    CSV_COLUMNS,
    PER_IMAGE_COLUMNS,
    Task1EvaluationResult,
    evaluate_task1_folders,
    write_csv,
    write_json,
)
from tests.conftest import ISIC_SAMPLE, PH2_SAMPLE

# the scorer (5.6.0) calls Series.rename(inplace=True), which recent pandas deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in Series.rename")

#: The keys of ``SegmentationScore.to_dict()["macro_average"]``, written out by hand.
OFFICIAL_KEYS = ["accuracy", "sensitivity", "specificity", "jaccard", "threshold_jaccard", "dice"]

PH2_MASKS = PH2_SAMPLE / "masks"
needs_ph2 = pytest.mark.skipif(not PH2_MASKS.is_dir(), reason=f"real PH2 masks not found at {PH2_MASKS}")
needs_isic = pytest.mark.skipif(
    not ISIC_SAMPLE.is_dir(), reason=f"real ISIC sample not found at {ISIC_SAMPLE}"
)


def _png(path: Path, array: Any, mode: str = "L", **save: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(array).astype(np.uint8), mode="L")
    (img.convert(mode, dither=Image.Dither.NONE) if mode != "L" else img).save(path, **save)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _with_chunk(png: bytes, kind: bytes, data: bytes) -> bytes:
    """``png`` with an extra chunk right after IHDR (8 signature bytes + 25 of IHDR)."""
    return png[:33] + _chunk(kind, data) + png[33:]


def _bad_idat_crc(png: bytes) -> bytes:
    """``png`` with one bit of its first IDAT CRC flipped (Pillow, so the scorer, reads it all the same)."""
    at = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[at - 4 : at])
    crc = at + 4 + length
    return png[:crc] + bytes([png[crc] ^ 1]) + png[crc + 1 :]


def _official(truth_dir: Path, pred_dir: Path) -> dict[str, Any]:
    segmentation = pytest.importorskip("isic_challenge_scoring.segmentation")
    return segmentation.SegmentationScore.from_dir(truth_dir, pred_dir).to_dict()


def _assert_parity(ours: Task1EvaluationResult, official: dict[str, Any]) -> None:
    assert list(ours.scores) == list(official) == ["overall", "validation", "macro_average"]
    assert list(ours.scores["macro_average"]) == list(official["macro_average"]) == OFFICIAL_KEYS
    for key in ("overall", "validation"):
        assert abs(ours.scores[key] - float(official[key])) < 1e-12, key
    for key, value in official["macro_average"].items():
        assert abs(ours.scores["macro_average"][key] - float(value)) < 1e-12, key


def _assert_rows_official(result: Task1EvaluationResult, truth_dir: Path, pred_dir: Path, tmp: Path) -> None:
    """Each per-image row against the scorer run on a folder pair holding that image alone."""
    rows = {row["id"]: row for row in result.per_image_rows()}
    for truth in sorted(truth_dir.iterdir()):
        image_id = truth.name.removesuffix("_segmentation.png")
        one_truth, one_pred = tmp / f"{image_id}_t", tmp / f"{image_id}_p"
        one_truth.mkdir(parents=True)
        one_pred.mkdir(parents=True)
        shutil.copy(truth, one_truth / truth.name)
        shutil.copy(pred_dir / truth.name, one_pred / truth.name)
        official = _official(one_truth, one_pred)["macro_average"]
        for key in OFFICIAL_KEYS:
            assert abs(rows[image_id][key] - float(official[key])) < 1e-15, (image_id, key)


# --------------------------------------------------------------------------- parity


def test_parity_random_folders(tmp_path: Path) -> None:
    """Many sizes, grey values around the > 128 rule, empty/full cases, 1-bit and odd PNG files."""
    rng = np.random.default_rng(2018)
    sizes = [
        (7, 5),
        (31, 17),
        (64, 48),
        (3, 11),
        (1, 1),
        (50, 77),
        (9, 200),
        (13, 13),
        (40, 30),
        (6, 6),
        (90, 120),
    ]
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    for i, (h, w) in enumerate(sizes):
        image_id = f"ISIC_{i * 41 + 3:07d}"
        truth = np.where(rng.random((h, w)) < rng.uniform(0.1, 0.9), 255, 0)
        pred = rng.choice([0, 100, 128, 129, 200, 255], size=(h, w))
        if i == 1:  # both empty (128 is negative)
            truth[:] = 0
            pred[:] = 128
        elif i == 2:  # truth empty, prediction not
            truth[:] = 0
        elif i == 3:  # prediction empty, truth not
            pred[:] = 0
        elif i == 5:  # lesion everywhere
            truth[:] = 255
        elif i in (7, 10):  # close predictions: Jaccard above 0.65
            pred = np.where(rng.random((h, w)) < 0.97, truth, 255 - truth)
        if i % 3 == 0:  # grey truth as well: the scorer binarises truth at > 128 too
            truth = np.where(truth > 0, rng.choice([129, 255], (h, w)), rng.choice([0, 128], (h, w)))
        name = f"{image_id}_segmentation.png"
        _png(truth_dir / name, truth)
        if i == 8:  # a 1-bit prediction file
            _png(pred_dir / name, pred, "1")
        elif i == 9:  # transparency chunk, no compression
            _png(pred_dir / name, pred, transparency=0, compress_level=0)
        elif i == 10:  # a gamma chunk and a damaged IDAT checksum (which Pillow ignores)
            buffer = io.BytesIO()
            Image.fromarray(pred.astype(np.uint8)).save(buffer, format="PNG", optimize=True)
            data = _with_chunk(buffer.getvalue(), b"gAMA", struct.pack(">I", 45455))
            (pred_dir / name).write_bytes(_bad_idat_crc(data))
        else:
            _png(pred_dir / name, pred)
    (pred_dir / "ISIC_0009999_segmentation.png").write_bytes(b"no truth: never read")
    (pred_dir / "notes.txt").write_text("ignored")

    official = _official(truth_dir, pred_dir)
    serial = evaluate_task1_folders(pred_dir, truth_dir, workers=1)
    threaded = evaluate_task1_folders(pred_dir, truth_dir, workers=3)
    _assert_parity(serial, official)
    assert threaded.scores == serial.scores
    np.testing.assert_array_equal(threaded.per_image_counts, serial.per_image_counts)
    assert serial.image_ids == tuple(f"ISIC_{i * 41 + 3:07d}" for i in range(len(sizes)))
    _assert_rows_official(serial, truth_dir, pred_dir, tmp_path / "one")
    thr = serial.per_image_scores()["threshold_jaccard"]
    assert thr[1] == 1.0 and thr[7] >= 0.65 and thr[10] >= 0.65 and (thr == 0).sum() >= 4


def _perturb(truth: np.ndarray, k: int) -> np.ndarray:
    """A plausible imperfect 8-bit prediction of a 0/255 truth mask, chosen by ``k``."""
    m = truth > 128
    kind = k % 10
    if kind == 0:
        out = ndimage.binary_erosion(m, iterations=4 + k % 7)
    elif kind == 1:
        out = ndimage.binary_dilation(m, iterations=3 + k % 11)
    elif kind == 2:
        out = np.roll(m, (k % 29, -(k % 31)), axis=(0, 1))
    elif kind == 3:  # a poor one
        out = np.roll(ndimage.binary_erosion(m, iterations=40), (60, 60), axis=(0, 1))
    elif kind == 4:  # a grey "probability" map: the > 128 rule decides the border
        return np.clip(ndimage.gaussian_filter(m.astype(np.float64) * 255, 4 + k % 9), 0, 255).astype(
            np.uint8
        )
    elif kind == 5:
        out = m[::-1]
    elif kind == 6:
        out = np.zeros_like(m)
    elif kind == 7:
        out = np.ones_like(m)
    elif kind == 8:  # holes punched in
        out = m & (np.random.default_rng(k).random(m.shape) > 0.2)
    else:
        out = m.copy()
    return np.where(out, 255, 0).astype(np.uint8)


@needs_ph2
def test_parity_ph2_real_masks(tmp_path: Path) -> None:
    """The 140 real PH2 masks against perturbed predictions, as folders.

    The scorer wants ISIC ids, so it scores copies renamed ``IMD003 -> ISIC_0000003``; ours scores
    those, the PH2 mask folder and the PH2 flat root, with the predictions named either way.
    """
    files = sorted(PH2_MASKS.glob("IMD*_lesion.png"))
    assert len(files) == 140
    isic_truth, isic_pred, ph2_pred = tmp_path / "isic_truth", tmp_path / "isic_pred", tmp_path / "ph2_pred"
    isic_truth.mkdir()
    for k, path in enumerate(files):
        isic_name = f"ISIC_{int(path.stem[3:6]):07d}_segmentation.png"
        shutil.copy(path, isic_truth / isic_name)
        with Image.open(path) as img:
            pred = _perturb(np.asarray(img), k)
        _png(isic_pred / isic_name, pred)
        _png(ph2_pred / path.name, pred)

    start = time.perf_counter()
    official = _official(isic_truth, isic_pred)
    official_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = evaluate_task1_folders(isic_pred, isic_truth)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    serial = evaluate_task1_folders(isic_pred, isic_truth, workers=1)
    serial_s = time.perf_counter() - start

    _assert_parity(ours, official)
    assert serial.scores == ours.scores
    for gt in (PH2_MASKS, PH2_SAMPLE):
        ph2 = evaluate_task1_folders(ph2_pred, gt)
        assert ph2.scores == ours.scores
        assert ph2.image_ids == tuple(p.stem.removesuffix("_lesion") for p in files)
        np.testing.assert_array_equal(ph2.per_image_counts, ours.per_image_counts)
    thr = ours.per_image_scores()["threshold_jaccard"]
    assert 0 < (thr == 0).sum() < len(files)  # both sides of the 0.65 threshold
    assert ours.images == 140 and ours.images_with_lesion == 140

    # every per-image row of a dozen images against the scorer on that image alone
    some = tmp_path / "some_truth"
    some.mkdir()
    for path in sorted(isic_truth.iterdir())[::12]:
        shutil.copy(path, some / path.name)
    _assert_rows_official(evaluate_task1_folders(isic_pred, some), some, isic_pred, tmp_path / "one")
    print(
        f"\nTask 1 scoring of the 140 PH2 masks as folders: official SegmentationScore.from_dir "
        f"{official_s:.2f} s; evaluate_task1_folders {ours_s:.2f} s ({official_s / ours_s:.1f}x), "
        f"one worker {serial_s:.2f} s ({official_s / serial_s:.1f}x)"
    )


@needs_isic
def test_isic_sample_folder_as_ground_truth(tmp_path: Path) -> None:
    """The flat ISIC sample (images, attribute masks, ATTRIBUTION.txt) scores like its lesion masks alone."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    files = sorted(ISIC_SAMPLE.glob("ISIC_*_segmentation.png"))
    assert len(files) == 6
    for k, path in enumerate(files):
        shutil.copy(path, truth_dir / path.name)
        with Image.open(path) as img:
            _png(pred_dir / path.name, _perturb(np.asarray(img), k + 3))
    result = evaluate_task1_folders(pred_dir, ISIC_SAMPLE)
    _assert_parity(result, _official(truth_dir, pred_dir))
    assert result.scores == evaluate_task1_folders(pred_dir, truth_dir).scores
    assert result.image_ids == tuple(p.name.removesuffix("_segmentation.png") for p in files)


# --------------------------------------------------------------------------- hand-computed values


def _tiny(tmp_path: Path) -> tuple[Path, Path]:
    """Four images with hand-countable pixels (see test_known_values)."""
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    pairs = {
        # 3x3, tp 2 fp 0 fn 1 tn 6
        "ISIC_0000001": ([[255, 255, 255], [0, 0, 0], [0, 0, 0]], [[255, 255, 0], [0, 0, 0], [0, 0, 0]]),
        # 1x4, both empty: the prediction's 128 is negative
        "ISIC_0000002": ([[0, 0, 0, 0]], [[0, 128, 0, 128]]),
        # 2x2, truth empty, tp 0 fp 2 fn 0 tn 2 (129 is positive)
        "ISIC_0000003": ([[0, 0], [0, 0]], [[129, 0], [0, 255]]),
        # 1x5, tp 2 fp 1 fn 1 tn 1
        "ISIC_0000004": ([[255, 255, 255, 0, 0]], [[0, 255, 255, 255, 0]]),
    }
    for image_id, (t, p) in pairs.items():
        _png(truth / f"{image_id}_segmentation.png", np.array(t))
        _png(pred / f"{image_id}_segmentation.png", np.array(p))
    return truth, pred


def test_known_values(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    truth, pred = _tiny(tmp_path)
    with caplog.at_level(logging.WARNING, logger="dermseg.evaluation.task1_folders"):
        result = evaluate_task1_folders(pred, truth)
    np.testing.assert_array_equal(
        result.per_image_counts, [[2, 0, 1, 6], [0, 0, 0, 4], [0, 2, 0, 2], [2, 1, 1, 1]]
    )
    # per image: jaccard 2/3 (kept: >= 0.65), 1 (both empty), 0, 2/4 (dropped by the threshold)
    expected_rows = [
        {"id": "ISIC_0000001", "jaccard": 2 / 3, "dice": 4 / 5, "threshold_jaccard": 2 / 3},
        {"id": "ISIC_0000002", "jaccard": 1.0, "dice": 1.0, "threshold_jaccard": 1.0},
        {"id": "ISIC_0000003", "jaccard": 0.0, "dice": 0.0, "threshold_jaccard": 0.0},
        {"id": "ISIC_0000004", "jaccard": 0.5, "dice": 2 / 3, "threshold_jaccard": 0.0},
    ]
    extra = [(8 / 9, 2 / 3, 1.0), (1.0, 1.0, 1.0), (0.5, 1.0, 0.5), (3 / 5, 2 / 3, 0.5)]
    for row, (acc, sens, spec) in zip(expected_rows, extra, strict=True):
        row.update(accuracy=acc, sensitivity=sens, specificity=spec)
    rows = result.per_image_rows()
    assert [list(r) for r in rows] == [list(PER_IMAGE_COLUMNS)] * 4
    for got, want in zip(rows, expected_rows, strict=True):
        assert got["id"] == want["id"]
        for key in PER_IMAGE_COLUMNS[1:]:
            assert got[key] == pytest.approx(want[key], abs=1e-15), (want["id"], key)
    macro = {
        "accuracy": 269 / 360,  # (8/9 + 1 + 1/2 + 3/5) / 4
        "sensitivity": 5 / 6,  # (2/3 + 1 + 1 + 2/3) / 4
        "specificity": 3 / 4,  # (1 + 1 + 1/2 + 1/2) / 4
        "jaccard": 13 / 24,  # (2/3 + 1 + 0 + 1/2) / 4
        "threshold_jaccard": 5 / 12,  # (2/3 + 1 + 0 + 0) / 4
        "dice": 37 / 60,  # (4/5 + 1 + 0 + 2/3) / 4
    }
    assert list(result.scores["macro_average"]) == OFFICIAL_KEYS
    for key, value in macro.items():
        assert result.scores["macro_average"][key] == pytest.approx(value, abs=1e-15), key
    assert result.overall == result.scores["validation"] == pytest.approx(5 / 12, abs=1e-15)
    assert result.images == 4 and result.images_with_lesion == 2
    # ISIC_0000002's prediction holds only 0 and 128: scored empty as the scorer does, with a warning
    assert "1 prediction(s) hold only values in 1..128" in caplog.text
    assert "ISIC_0000002_segmentation.png" in caplog.text
    _assert_parity(result, _official(truth, pred))


def test_writers_and_progress(tmp_path: Path) -> None:
    truth, pred = _tiny(tmp_path)
    calls: list[tuple[int, int]] = []
    result = evaluate_task1_folders(pred, truth, workers=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]

    write_json(tmp_path / "out" / "scores.json", result)
    loaded = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert loaded == result.to_dict()
    assert list(loaded) == [
        "overall",
        "validation",
        "macro_average",
        "images",
        "images_with_lesion",
        "per_image",
    ]
    assert loaded["overall"] == result.overall and loaded["images"] == 4 and loaded["images_with_lesion"] == 2
    assert loaded["per_image"][3]["id"] == "ISIC_0000004" and loaded["per_image"][3]["dice"] == 2 / 3

    write_csv(tmp_path / "out" / "scores.csv", result)
    with open(tmp_path / "out" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS == PER_IMAGE_COLUMNS
    assert [r["id"] for r in rows] == [
        "ISIC_0000001",
        "ISIC_0000002",
        "ISIC_0000003",
        "ISIC_0000004",
        "macro_average",
    ]
    assert float(rows[0]["jaccard"]) == 2 / 3  # full precision
    assert float(rows[-1]["threshold_jaccard"]) == result.overall
    assert float(rows[-1]["accuracy"]) == result.scores["macro_average"]["accuracy"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


# --------------------------------------------------------------------------- the PH2 forms


def _bmp(path: Path, array: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array.astype(np.uint8), mode="L")
    (img.convert(mode, dither=Image.Dither.NONE) if mode != "L" else img).save(path, format="BMP")


def _lesion(h: int, w: int, top: int, left: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[top : top + 3, left : left + 4] = 255  # 12 pixels
    return m


def test_ph2_distributed_tree(tmp_path: Path) -> None:
    """Distributed PH2: lesion BMPs (8-bit grey, 1-bit, RGB) as truth, ``IMDxxx_lesion.png`` predictions."""
    base = tmp_path / "PH2Dataset"
    images = base / "PH2 Dataset images"
    truths = {"IMD002": ("L", (0, 0)), "IMD010": ("1", (2, 3)), "IMD058": ("RGB", (4, 1))}
    pred = tmp_path / "pred"
    for image_id, (mode, (top, left)) in truths.items():
        _bmp(
            images / image_id / f"{image_id}_Dermoscopic_Image" / f"{image_id}.bmp", np.zeros((8, 10)), "RGB"
        )
        _bmp(
            images / image_id / f"{image_id}_lesion" / f"{image_id}_lesion.bmp",
            _lesion(8, 10, top, left),
            mode,
        )
        _png(pred / f"{image_id}_lesion.png", _lesion(8, 10, top, left + 1))  # shifted by one column
    _bmp(images / "IMD002" / "IMD002_roi" / "IMD002_R1_Label4.bmp", np.zeros((8, 10)))  # ignored
    (base / "PH2_dataset.txt").write_text("|| Name || ...\n")

    # each: 12 truth pixels, the prediction one column to the right: tp 9, fp 3, fn 3, tn 65
    for root in (base, tmp_path):  # PH2Dataset/ or the folder holding it
        result = evaluate_task1_folders(pred, root)
        assert result.image_ids == ("IMD002", "IMD010", "IMD058")
        np.testing.assert_array_equal(result.per_image_counts, [[9, 3, 3, 65]] * 3)
        assert result.scores["macro_average"]["jaccard"] == pytest.approx(9 / 15, abs=1e-15)
        assert result.overall == 0.0  # 0.6 < 0.65
        assert result.scores["macro_average"]["dice"] == pytest.approx(18 / 24, abs=1e-15)

    # a case folder without its lesion mask, and a subset of ids
    (images / "IMD010" / "IMD010_lesion" / "IMD010_lesion.bmp").unlink()
    with pytest.raises(EvaluationError, match="ground-truth lesion mask not found") as info:
        evaluate_task1_folders(pred, base)
    assert info.value.path == images / "IMD010" / "IMD010_lesion" / "IMD010_lesion.bmp"
    subset = evaluate_task1_folders(pred, base, ids=["IMD058", "IMD002"])
    assert subset.image_ids == ("IMD002", "IMD058")
    with pytest.raises(EvaluationError, match="no ground-truth mask for IMD999") as info:
        evaluate_task1_folders(pred, base, ids=["IMD002", "IMD999"])
    assert info.value.path == images / "IMD999" / "IMD999_lesion" / "IMD999_lesion.bmp"
    assert len(info.value.problems) == 1


def test_ph2_flat_root_and_mask_folder(tmp_path: Path) -> None:
    """Flat PH2: ``masks/IMDxxx_lesion.png`` (or .bmp) under the root, or the mask folder itself."""
    root, pred = tmp_path / "ph2", tmp_path / "pred"
    (root / "images").mkdir(parents=True)
    (root / "labels.csv").write_text("image,pigment_network,dots_globules\n")
    _png(root / "masks" / "IMD003_lesion.png", _lesion(6, 7, 1, 1))
    _bmp(root / "masks" / "IMD004_lesion.bmp", _lesion(6, 7, 3, 3))
    _png(pred / "IMD003_lesion.png", _lesion(6, 7, 1, 1))  # perfect
    _png(pred / "IMD004_segmentation.png", np.zeros((6, 7)))  # missed; the ISIC-style name works too
    for gt in (root, root / "masks"):
        result = evaluate_task1_folders(pred, gt)
        assert result.image_ids == ("IMD003", "IMD004")
        np.testing.assert_array_equal(result.per_image_counts, [[12, 0, 0, 30], [0, 0, 12, 30]])
        assert result.overall == 0.5 and result.scores["macro_average"]["sensitivity"] == 0.5
        assert result.scores["macro_average"]["accuracy"] == pytest.approx((1 + 30 / 42) / 2, abs=1e-15)
    _png(root / "masks" / "IMD004_lesion.png", _lesion(6, 7, 3, 3))  # beside IMD004_lesion.bmp
    with pytest.raises(EvaluationError, match="two ground-truth masks for IMD004") as info:
        evaluate_task1_folders(pred, root)
    assert info.value.path == root / "masks" / "IMD004_lesion.png"
    assert len(info.value.problems) == 1


# --------------------------------------------------------------------------- problems


def test_missing_prediction_names_the_file(tmp_path: Path) -> None:
    truth, pred = _tiny(tmp_path)
    (pred / "ISIC_0000003_segmentation.png").unlink()
    with pytest.raises(EvaluationError) as info:
        evaluate_task1_folders(pred, truth)
    err = info.value
    assert isinstance(err, DataError)
    assert err.path == pred / "ISIC_0000003_segmentation.png"
    assert err.message == "missing prediction for ISIC_0000003"
    assert str(err).startswith(str(pred / "ISIC_0000003_segmentation.png"))


def test_every_problem_in_one_pass(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    truth, pred = _tiny(tmp_path)
    for k in range(5, 9):
        _png(truth / f"ISIC_000000{k}_segmentation.png", np.zeros((2, 3)))
        _png(pred / f"ISIC_000000{k}_segmentation.png", np.zeros((2, 3)))
    (pred / "ISIC_0000001_segmentation.png").unlink()  # missing
    _png(pred / "ISIC_0000002_segmentation.png", np.zeros((90, 120)))  # mis-sized
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(pred / "ISIC_0000003_segmentation.png")  # colour
    corrupt = pred / "ISIC_0000004_segmentation.png"
    corrupt.write_bytes(corrupt.read_bytes()[:-30])  # truncated PNG: IDAT cut short
    (pred / "ISIC_0000005_segmentation.png").write_bytes(b"this is not a png")
    Image.fromarray(np.zeros((2, 3), np.uint16)).save(pred / "ISIC_0000006_segmentation.png")  # 16-bit
    _png(pred / "ISIC_0000007_lesion.png", np.zeros((2, 3)))  # a second prediction for 7
    (pred / "ISIC_0000008_segmentation.png").rename(pred / "ISIC_0000008_segmentation.bmp")  # not a PNG
    bad_truth = truth / "ISIC_0000006_segmentation.png"
    bad_truth.write_bytes(b"")

    with pytest.raises(EvaluationError) as info:
        evaluate_task1_folders(pred, truth, workers=2)
    err = info.value
    by_path = {p.path.name: p.message for p in err.problems}
    assert len(err.problems) == 9, err.problems
    assert by_path["ISIC_0000001_segmentation.png"] == "missing prediction for ISIC_0000001"
    assert by_path["ISIC_0000002_segmentation.png"] == "prediction is 120x90 but ground truth is 4x1"
    assert "mode RGB" in by_path["ISIC_0000003_segmentation.png"]
    assert "single-channel" in by_path["ISIC_0000003_segmentation.png"]
    assert "cannot decode" in by_path["ISIC_0000004_segmentation.png"]
    assert "not a readable image" in by_path["ISIC_0000005_segmentation.png"]
    assert "mode I;16" in by_path["ISIC_0000006_segmentation.png"]
    assert [p.message for p in err.problems if p.path == bad_truth] == ["empty file (0 bytes)"]
    assert by_path["ISIC_0000007_lesion.png"] == (
        "several predictions for ISIC_0000007: ISIC_0000007_lesion.png, ISIC_0000007_segmentation.png"
    )
    assert by_path["ISIC_0000008_segmentation.png"] == (
        "missing prediction for ISIC_0000008 (ISIC_0000008_segmentation.bmp is not a PNG file; "
        "predictions must be PNGs)"
    )
    # in truth-file order; the message says how many and names the first
    assert err.path == pred / "ISIC_0000001_segmentation.png"
    assert err.message == "missing prediction for ISIC_0000001 (first of 9 problems)"
    assert "libpng" not in capfd.readouterr().err  # a damaged file goes to Pillow, which says nothing


def test_mis_sized_prediction_alone(tmp_path: Path) -> None:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    _png(truth / "IMD010_lesion.png", np.zeros((90, 120)))
    _png(pred / "IMD010_lesion.png", np.zeros((80, 100)))
    with pytest.raises(DataError, match="prediction is 100x80 but ground truth is 120x90") as info:
        evaluate_task1_folders(pred, truth)
    assert info.value.path == pred / "IMD010_lesion.png"


def test_truth_masks_read_like_the_mask_reader(tmp_path: Path) -> None:
    """Grey RGB and palette truth masks are read; colour and 0/1 truth masks are problems."""
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    lesion = _lesion(5, 6, 1, 1)
    truth.mkdir()
    Image.fromarray(np.stack([lesion] * 3, axis=-1)).save(truth / "ISIC_0000001_segmentation.png")
    Image.fromarray(lesion).convert("P").save(truth / "ISIC_0000002_segmentation.png")
    colour = np.stack([lesion, lesion, np.zeros_like(lesion)], axis=-1)
    Image.fromarray(colour).save(truth / "ISIC_0000003_segmentation.png")
    _png(truth / "ISIC_0000004_segmentation.png", lesion // 255)  # a 0/1 mask
    for k in range(1, 5):
        _png(pred / f"ISIC_000000{k}_segmentation.png", lesion)
    with pytest.raises(EvaluationError) as info:
        evaluate_task1_folders(pred, truth)
    by_path = {p.path.name: p.message for p in info.value.problems}
    assert set(by_path) == {"ISIC_0000003_segmentation.png", "ISIC_0000004_segmentation.png"}
    assert "colour" in by_path["ISIC_0000003_segmentation.png"]
    assert "only values in 1..1" in by_path["ISIC_0000004_segmentation.png"]
    result = evaluate_task1_folders(pred, truth, ids=["ISIC_0000001", "ISIC_0000002"])
    np.testing.assert_array_equal(result.per_image_counts, [[12, 0, 0, 18]] * 2)


@pytest.mark.parametrize(
    ("gt", "pred", "bad", "message"),
    [
        ("missing", "pred", "gt", "ground-truth folder not found"),
        ("empty", "pred", "gt", "no ground-truth lesion masks found"),
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
        evaluate_task1_folders(pred_path, gt_path)
    assert info.value.path == (gt_path if bad == "gt" else pred_path)


def test_bad_workers_and_skipped_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    truth, pred = _tiny(tmp_path)
    with pytest.raises(ValueError, match="workers"):
        evaluate_task1_folders(pred, truth, workers=0)
    for ids in ("ISIC_0000001", []):
        with pytest.raises(ValueError, match="ids must be a non-empty collection"):
            evaluate_task1_folders(pred, truth, ids=ids)
    (truth / "ISIC_0000001.jpg").write_bytes(b"an image, skipped")
    (truth / "ISIC_0000001_attribute_globules.png").write_bytes(b"a Task 2 mask, skipped")
    (truth / "ATTRIBUTION.txt").write_text("skipped")
    (truth / "stray.png").write_bytes(b"skipped with a warning")
    with caplog.at_level(logging.WARNING, logger="dermseg.evaluation.task1_folders"):
        assert evaluate_task1_folders(pred, truth).images == 4
    assert "skipped 1 file(s)" in caplog.text and "stray.png" in caplog.text
