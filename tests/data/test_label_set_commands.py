"""``dermseg check``, ``split`` and ``prepare`` with label sets, and PH2's split by diagnosis."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from dermseg.cli import main
from dermseg.data.splits import split_layout
from dermseg.labels import PH2
from tests.conftest import PH2_SAMPLE, real_data
from tests.data.label_set_data import (
    write_ph2_tree,
    write_task1_case,
    write_user_dataset,
    write_user_yaml,
)

#: The diagnosis of each image of write_ph2_tree.
TREE_DIAGNOSES = {
    "IMD002": "atypical_nevus",
    "IMD004": "common_nevus",
    "IMD010": "common_nevus",
    "IMD017": "atypical_nevus",
    "IMD058": "melanoma",
}


def _sample_diagnoses() -> dict[str, str]:
    """The diagnosis of each image of the real PH2 sample, read from its labels.csv here."""
    with (PH2_SAMPLE / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    names = ("common_nevus", "atypical_nevus", "melanoma")
    return {r["image"]: next(n for n in names if r[n] == "X") for r in rows}


def _counts(ids: list[str], diagnoses: dict[str, str]) -> dict[str, int]:
    return dict(Counter(diagnoses[i] for i in ids))


# --------------------------------------------------------------------------- split by diagnosis


@real_data
@pytest.mark.parametrize(
    ("fraction", "val"),
    [
        # 56/56/28 images: shares 14, 14, 7
        (0.25, {"common_nevus": 14, "atypical_nevus": 14, "melanoma": 7}),
        # shares 11.2, 11.2, 5.6: 27 whole, the 28th to the largest fraction (melanoma)
        (0.2, {"common_nevus": 11, "atypical_nevus": 11, "melanoma": 6}),
        # shares 5.6, 5.6, 2.8: 12 whole, two more: melanoma (.8), then one of the two nevus classes
        # (.6 each; the tie is broken by the seed)
        (0.1, {"common_nevus": (5, 6), "atypical_nevus": (5, 6), "melanoma": 3}),
    ],
)
def test_real_ph2_split_keeps_each_diagnosis_in_proportion(fraction: float, val: dict[str, int]) -> None:
    diagnoses = _sample_diagnoses()
    split = split_layout(PH2_SAMPLE, val_fraction=fraction, seed=0, labels=PH2)
    assert split.source == "stratified on diagnosis"
    counts = _counts(split.val, diagnoses)
    assert sum(counts.values()) == round(140 * fraction)
    assert all(counts[k] in (v if isinstance(v, tuple) else (v,)) for k, v in val.items()), counts
    totals = {"common_nevus": 56, "atypical_nevus": 56, "melanoma": 28}
    assert _counts(split.train, diagnoses) == {k: totals[k] - counts[k] for k in totals}
    assert not set(split.train) & set(split.val) and set(split.train) | set(split.val) == set(diagnoses)
    assert split.val == sorted(split.val) and split.train == sorted(split.train)
    again = split_layout(PH2_SAMPLE, val_fraction=fraction, seed=0, labels=PH2)
    assert again == split
    other = split_layout(PH2_SAMPLE, val_fraction=fraction, seed=1, labels=PH2)
    assert other.val != split.val and sum(_counts(other.val, diagnoses).values()) == sum(counts.values())


@real_data
def test_real_ph2_folds_by_diagnosis() -> None:
    diagnoses = _sample_diagnoses()
    seen: list[str] = []
    for fold in range(4):
        split = split_layout(PH2_SAMPLE, folds=4, fold=fold, labels=PH2)
        assert split.source == f"fold {fold} of 4, stratified on diagnosis"
        # a quarter of 56/56/28, fold after fold
        assert _counts(split.val, diagnoses) == {"common_nevus": 14, "atypical_nevus": 14, "melanoma": 7}
        assert len(split.train) == 105
        seen += split.val
    assert sorted(seen) == sorted(diagnoses)  # disjoint folds covering every image


def test_tree_split_by_diagnosis(tmp_path: Path) -> None:
    root = write_ph2_tree(tmp_path)
    split = split_layout(root, val_fraction=0.5, labels=PH2)
    # 2 atypical, 2 common, 1 melanoma; round(2.5) = 2 held out: one atypical, one common
    assert _counts(split.val, TREE_DIAGNOSES) == {"atypical_nevus": 1, "common_nevus": 1}
    assert len(split.train) == 3


# --------------------------------------------------------------------------- check


def test_check_ph2_tree_detected(tmp_path: Path, capsys) -> None:
    root = write_ph2_tree(tmp_path / "data")
    summary = tmp_path / "summary.json"
    assert main(["check", str(root), "--json", str(summary), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "label set ph2; diagnosis: atypical_nevus 2, common_nevus 2, melanoma 1" in out
    assert "Lesion" in out and "no problems found" in out
    data = json.loads(summary.read_text())
    assert data["label_set"] == "ph2" and data["layout"] == "ph2"
    assert data["strata"] == {
        "name": "diagnosis",
        "counts": {"atypical_nevus": 2, "common_nevus": 2, "melanoma": 1},
    }
    lesion = data["splits"]["all"]["attributes"]["lesion"]
    assert list(data["splits"]["all"]["attributes"]) == ["lesion"]
    assert lesion["labelled"] == 5 and lesion["present"] == 5
    # lesion areas 24, 36, 24, 1 and 32 pixels of 12 x 9 = 108
    assert lesion["mean_area"] == pytest.approx((24 + 36 + 24 + 1 + 32) / 5 / 108)


def test_check_task1_flat_detected_and_missing_mask(tmp_path: Path, capsys) -> None:
    root = tmp_path / "flat"
    write_task1_case(root, root, "ISIC_0000000")
    write_task1_case(root, root, "ISIC_0000001")
    summary = tmp_path / "summary.json"
    assert main(["check", str(root), "--json", str(summary)]) == 0
    data = json.loads(summary.read_text())
    assert data["label_set"] == "isic2018_task1" and list(data["splits"]["all"]["attributes"]) == ["lesion"]
    write_task1_case(root, None, "ISIC_0000020")
    capsys.readouterr()
    assert main(["check", str(root), "--labels", "isic2018_task1"]) == 2
    err = capsys.readouterr().err
    assert f"dermseg: error: {root / 'ISIC_0000020.jpg'}: missing mask ISIC_0000020_segmentation.png" in err


def test_check_user_set_uses_its_display_names(tmp_path: Path, capsys) -> None:
    yaml = write_user_yaml(tmp_path / "sets")
    root = write_user_dataset(tmp_path / "data")
    summary = tmp_path / "summary.json"
    assert main(["check", str(root), "--labels", str(yaml), "--json", str(summary)]) == 2  # b2: no regression
    cap = capsys.readouterr()
    assert "Blue-whitish" in cap.out and "structures" in cap.out  # display names (wrapped in the table)
    assert "label set veil_and_regression" in cap.out
    lines = [line for line in cap.err.splitlines() if line.startswith("dermseg: error: ")]
    assert lines == [f"dermseg: error: {root / 'b2.png'}: missing mask b2_regression.png"]
    labels = json.loads(summary.read_text())["splits"]["all"]["attributes"]
    # veil: 4 x 5 and 1 x 6 pixels of 10 x 8; regression: 4 x 5 on lesion_a only
    assert labels["veil"]["mean_area"] == pytest.approx((20 / 80 + 6 / 80) / 2)
    assert labels["regression"]["labelled"] == 1 and labels["regression"]["mean_area"] == pytest.approx(0.25)


# --------------------------------------------------------------------------- split and prepare


@real_data
def test_cli_split_of_the_real_ph2_sample(tmp_path: Path, capsys) -> None:
    out = tmp_path / "split.json"
    assert main(["split", str(PH2_SAMPLE), "--out", str(out)]) == 0  # ph2 told from the folder
    result = json.loads(out.read_text())
    assert result["source"] == "stratified on diagnosis"
    diagnoses = _sample_diagnoses()
    counts = _counts(result["val"], diagnoses)  # shares 5.6, 5.6, 2.8 of 14; one .6 tie broken by the seed
    assert counts["melanoma"] == 3 and {counts["common_nevus"], counts["atypical_nevus"]} == {5, 6}
    assert len(result["train"]) == 126
    assert "stratified on diagnosis split: 126 train, 14 val" in capsys.readouterr().out


def test_cli_prepare_ph2_tree_and_user_set(tmp_path: Path) -> None:
    root = write_ph2_tree(tmp_path / "ph2")
    cache = tmp_path / "cache_ph2"
    assert main(["prepare", str(root), "--out", str(cache), "--size", "32", "--workers", "1"]) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["label_set"]["name"] == "ph2"
    assert sorted(s["id"] for s in manifest["splits"]["all"]["samples"]) == sorted(TREE_DIAGNOSES)

    yaml = write_user_yaml(tmp_path / "sets")
    data = write_user_dataset(tmp_path / "user", subfolders=True)
    cache = tmp_path / "cache_user"
    assert main(["prepare", str(data), "--out", str(cache), "--size", "32", "--labels", str(yaml)]) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["label_set"]["name"] == "veil_and_regression"
    assert [len(s["masks"]) for s in manifest["splits"]["all"]["samples"]] == [2, 2]


def test_cli_prepare_task2_by_name_writes_a_task2_manifest(flat_dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["prepare", str(flat_dataset), "--out", str(cache), "--size", "32", "--workers", "1"]
    assert main([*args, "--labels", "isic2018_task2"]) == 0
    assert "label_set" not in json.loads((cache / "manifest.json").read_text())
