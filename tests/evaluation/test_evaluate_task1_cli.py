"""``dermseg evaluate`` of a lesion label set: the official ISIC 2018 Task 1 numbers, from a prediction
folder or from a checkpoint on data, checked against hand-computed values and the official scorer;
a checkpoint of another label set is one line, exit 2."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from dermseg.cli import main
from dermseg.evaluation.lesion_model import evaluate_lesion_checkpoint
from dermseg.evaluation.model import select_samples
from dermseg.inference.segmenter import Segmenter
from dermseg.labels import PH2
from tests.conftest import write_tiny_checkpoint
from tests.label_set_models import LESION_CASES, lesion_area, write_lesion_checkpoint, write_lesion_folder

# the scorer (5.6.0) calls Series.rename(inplace=True), which recent pandas deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in Series.rename")

KEYS = ("accuracy", "sensitivity", "specificity", "jaccard", "threshold_jaccard", "dice")


def _everything_scores(image_id: str) -> dict[str, float]:
    """The six Task 1 scores of a mask covering the whole image, by hand: TP = lesion, FP = the rest."""
    lesion, pixels = lesion_area(image_id)
    tp, fp, fn, tn = lesion, pixels - lesion, 0, 0
    jaccard = tp / (tp + fp + fn)
    return {
        "accuracy": (tp + tn) / pixels,
        "sensitivity": 1.0 if tp + fn == 0 else tp / (tp + fn),
        "specificity": 0.0,  # TN = 0 and FP > 0 in every case
        "jaccard": jaccard,
        "threshold_jaccard": jaccard if jaccard >= 0.65 else 0.0,
        "dice": 2 * tp / (2 * tp + fp + fn),
    }


def _nothing_scores(image_id: str) -> dict[str, float]:
    """The scores of an empty mask: the empty truth scores 1 everywhere, the others 0 but for
    accuracy (TN / all) and specificity (1)."""
    lesion, pixels = lesion_area(image_id)
    if lesion == 0:
        return dict.fromkeys(KEYS, 1.0)
    return {
        "accuracy": (pixels - lesion) / pixels,
        "sensitivity": 0.0,
        "specificity": 1.0,
        "jaccard": 0.0,
        "threshold_jaccard": 0.0,
        "dice": 0.0,
    }


def _means(per_image: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: sum(s[k] for s in per_image.values()) / len(per_image) for k in KEYS}


@pytest.fixture(scope="module")
def lesion_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lesion_folder(tmp_path_factory.mktemp("data") / "ph2")


@pytest.fixture(scope="module")
def everything_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lesion_checkpoint(tmp_path_factory.mktemp("ckpt") / "everything.safetensors", constant=10.0)


@pytest.fixture(scope="module")
def predictions(tmp_path_factory: pytest.TempPathFactory, lesion_data: Path, everything_ckpt: Path) -> Path:
    out = tmp_path_factory.mktemp("pred") / "pred"
    args = ["predict", str(lesion_data / "images"), "--checkpoint", str(everything_ckpt), "--out", str(out)]
    assert main(args) == 0
    return out


def _assert_scores(got: dict, expected: dict[str, float]) -> None:
    assert list(got["macro_average"]) == list(KEYS)
    for key in KEYS:
        assert got["macro_average"][key] == pytest.approx(expected[key], abs=1e-12), key
    assert got["overall"] == got["validation"] == pytest.approx(expected["threshold_jaccard"], abs=1e-12)


@pytest.mark.parametrize("gt", ["masks", "."], ids=["mask_folder", "ph2_root"])
def test_pred_folder_gives_the_hand_computed_scores(
    tmp_path: Path, lesion_data: Path, predictions: Path, gt: str, capsys
) -> None:
    json_out, csv_out = tmp_path / "s.json", tmp_path / "s.csv"
    args = ["evaluate", "--pred", str(predictions), "--gt", str(lesion_data / gt)]
    assert main([*args, "--json", str(json_out), "--csv", str(csv_out)]) == 0
    expected = {i: _everything_scores(i) for i in LESION_CASES}
    scores = json.loads(json_out.read_text())
    _assert_scores(scores, _means(expected))
    assert scores["images"] == 3 and scores["images_with_lesion"] == 2
    for row in scores["per_image"]:
        for key in KEYS:
            assert row[key] == pytest.approx(expected[row["id"]][key], abs=1e-15)
    with open(csv_out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [*sorted(LESION_CASES), "macro_average"]
    printed = " ".join(capsys.readouterr().out.split())
    assert "ISIC 2018 Task 1" in printed and "thresholded Jaccard (official)" in printed
    assert "attribute" not in printed.lower()


def test_pred_folder_matches_the_official_scorer(
    tmp_path: Path, lesion_data: Path, predictions: Path
) -> None:
    """The scorer needs ISIC ids: the same masks under ISIC names give the same numbers."""
    segmentation = pytest.importorskip("isic_challenge_scoring.segmentation")
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    pred.mkdir()
    for image_id in LESION_CASES:
        isic = f"ISIC_{int(image_id[3:]):07d}_segmentation.png"
        shutil.copy(lesion_data / "masks" / f"{image_id}_lesion.png", truth / isic)
        shutil.copy(predictions / f"{image_id}_lesion.png", pred / isic)
    official = segmentation.SegmentationScore.from_dir(truth, pred).to_dict()
    json_out = tmp_path / "s.json"
    assert (
        main(["evaluate", "--pred", str(predictions), "--gt", str(lesion_data), "--json", str(json_out)]) == 0
    )
    ours = json.loads(json_out.read_text())
    assert ours["overall"] == pytest.approx(float(official["overall"]), abs=1e-12)
    for key in KEYS:
        assert ours["macro_average"][key] == pytest.approx(float(official["macro_average"][key]), abs=1e-12)


@pytest.mark.parametrize("constant", [10.0, -10.0], ids=["everything", "nothing"])
def test_checkpoint_on_data_gives_the_hand_computed_scores(
    tmp_path: Path, lesion_data: Path, constant: float, capsys
) -> None:
    ckpt = write_lesion_checkpoint(tmp_path / "c.safetensors", constant=constant)
    json_out, csv_out = tmp_path / "s.json", tmp_path / "s.csv"
    args = ["evaluate", "--checkpoint", str(ckpt), "--data", str(lesion_data), "--json", str(json_out)]
    assert main([*args, "--csv", str(csv_out)]) == 0
    by_hand = _everything_scores if constant > 0 else _nothing_scores
    expected = {i: by_hand(i) for i in LESION_CASES}
    scores = json.loads(json_out.read_text())
    _assert_scores(scores, _means(expected))
    assert scores["tta"] is False and scores["images"] == 3
    assert {r["id"] for r in scores["per_image"]} == set(LESION_CASES)
    assert csv_out.read_text().splitlines()[-1].startswith("macro_average,")
    assert "all: 3 images" in " ".join(capsys.readouterr().out.split())


def test_checkpoint_on_its_holdout(tmp_path: Path, lesion_data: Path) -> None:
    ckpt = write_lesion_checkpoint(tmp_path / "c.safetensors", constant=10.0)
    seg = Segmenter.from_checkpoint(ckpt)
    meta = {"config": {"data": {"labels": "ph2", "val_fraction": 0.34, "split_seed": 0}}}
    samples = select_samples(lesion_data, "val", {**meta, "labels": PH2.to_meta()})
    assert 1 <= len(samples) < 3 and all(s.isic_id in LESION_CASES for s in samples)
    result = evaluate_lesion_checkpoint(seg, samples)
    expected = _means({s.isic_id: _everything_scores(s.isic_id) for s in samples})
    _assert_scores(result.scores, expected)


def test_task2_checkpoint_on_ph2_is_one_line(tmp_path: Path, lesion_data: Path, capsys) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "task2.safetensors")
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(lesion_data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("dermseg: error: ")
    assert ckpt.name in err and "label set isic2018_task2" in err and "label set ph2" in err


def test_lesion_checkpoint_on_task2_data_is_one_line(tmp_path: Path, flat_dataset: Path, capsys) -> None:
    ckpt = write_lesion_checkpoint(tmp_path / "ph2.safetensors")
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(flat_dataset)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "segments label set ph2" in err


def test_labels_option_names_the_metric(tmp_path: Path, predictions: Path, capsys) -> None:
    """--labels chooses the metric; without it the truth folder's names tell (PH2 lesion masks)."""
    truth = tmp_path / "truth"
    truth.mkdir()
    for image_id in LESION_CASES:
        shutil.copy(predictions / f"{image_id}_lesion.png", truth / f"{image_id}_lesion.png")
    json_out = tmp_path / "s.json"
    args = ["evaluate", "--pred", str(predictions), "--gt", str(truth), "--json", str(json_out)]
    for given in ([], ["--labels", "ph2"]):
        assert main([*args, *given]) == 0
        assert json.loads(json_out.read_text())["overall"] == 1.0  # the predictions against themselves
    assert main([*args, "--labels", "isic2018_task2"]) == 2  # the Task 2 scorer finds no attribute mask
    assert "dermseg: error:" in capsys.readouterr().err
