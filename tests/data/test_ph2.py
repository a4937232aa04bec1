"""Tests of dermseg.data.ph2: both PH2 forms, and one DataError naming the file for each bad input."""

from __future__ import annotations

import csv
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dermseg.data.ph2 import Ph2Dataset, is_ph2, read_criteria, read_ph2
from dermseg.errors import DataError

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"  # ../shared/data beside the checkout
PH2_SAMPLE = DATA / "ph2_sample"

HEADER = (
    "||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry | Pigment Network | "
    "Dots/Globules | Streaks | Regression Areas | Blue-Whitish Veil ||           Colors ||"
)
LEGEND = """
Legend:
Clinical Diagnosis: 0 - Common Nevus; 1 - Atypical Nevus; 2 - Melanoma
Asymmetry: 0 - Fully Symmetric; 1 - Symmetric in 1 axis; 2 - Fully Asymmetric
Pigment Network, Dots/Globules: A - Absent; T - Typical; AT - Atypical
Streaks, Regression Areas, Blue-Whitish Veil: A - Absent; P - Present
Colors: 1 - White; 2 - Red; 3 - Light-Brown; 4 - Dark-Brown; 5 - Blue-Gray; 6 - Black
"""

#: (name, histological, clinical code, asymmetry, network, dots, streaks, regression, veil, colour codes)
CASES: list[tuple[Any, ...]] = [
    ("IMD002", "", 1, 0, "AT", "T", "A", "P", "A", "3  4"),
    ("IMD010", "", 0, 0, "T", "A", "A", "A", "A", "4"),
    ("IMD058", "Melanoma", 2, 2, "AT", "AT", "P", "P", "P", "1  4  5  6"),
]

#: What reading CASES must give, written out by hand.
EXPECTED = {
    "IMD002": (
        "atypical_nevus",
        None,
        {
            "asymmetry": 0,
            "pigment_network": "atypical",
            "dots_globules": "typical",
            "streaks": "absent",
            "regression_areas": "present",
            "blue_whitish_veil": "absent",
            "colours": ("light_brown", "dark_brown"),
        },
    ),
    "IMD010": (
        "common_nevus",
        None,
        {
            "asymmetry": 0,
            "pigment_network": "typical",
            "dots_globules": "absent",
            "streaks": "absent",
            "regression_areas": "absent",
            "blue_whitish_veil": "absent",
            "colours": ("dark_brown",),
        },
    ),
    "IMD058": (
        "melanoma",
        "Melanoma",
        {
            "asymmetry": 2,
            "pigment_network": "atypical",
            "dots_globules": "atypical",
            "streaks": "present",
            "regression_areas": "present",
            "blue_whitish_veil": "present",
            "colours": ("white", "dark_brown", "blue_gray", "black"),
        },
    ),
}


def _txt_row(case: tuple[Any, ...]) -> str:
    name, hist, clinical, *criteria, colours = case
    middle = " | ".join(f"{v:>9}" for v in criteria)
    return f"|| {name} || {hist:>22} || {clinical:>18} || {middle} || {colours:>16} ||"


def _write_txt(path: Path, cases: list[tuple[Any, ...]]) -> Path:
    path.write_text("\n".join([HEADER, *(_txt_row(c) for c in cases)]) + "\n" + LEGEND, encoding="utf-8")
    return path


def _bmp(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="BMP")
    return path


def _write_case(images: Path, name: str, size: tuple[int, int] = (12, 9), mask: bool = True) -> None:
    w, h = size
    rng = np.random.default_rng(int(name[3:]))
    _bmp(
        images / name / f"{name}_Dermoscopic_Image" / f"{name}.bmp", rng.integers(0, 256, (h, w, 3), np.uint8)
    )
    if mask:
        lesion = np.zeros((h, w), np.uint8)
        lesion[2:6, 3:9] = 255
        _bmp(images / name / f"{name}_lesion" / f"{name}_lesion.bmp", lesion)


@pytest.fixture
def ph2_tree(tmp_path: Path) -> Path:
    """A tiny PH2 tree in the distributed form: three cases, BMPs and PH2_dataset.txt."""
    root = tmp_path / "PH2Dataset"
    for case in CASES:
        _write_case(root / "PH2 Dataset images", case[0])
    # the distributed folders also hold per-colour region masks, which the reader ignores
    _bmp(
        root / "PH2 Dataset images" / "IMD002" / "IMD002_roi" / "IMD002_R1_Label4.bmp",
        np.zeros((9, 12), np.uint8),
    )
    _write_txt(root / "PH2_dataset.txt", CASES)
    return root


def _check_expected(dataset: Ph2Dataset) -> None:
    assert dataset.ids == ["IMD002", "IMD010", "IMD058"]
    for sample in dataset:
        diagnosis, histological, criteria = EXPECTED[sample.id]
        assert sample.diagnosis == diagnosis
        assert sample.histological_diagnosis == histological
        assert dict(sample.criteria) == criteria
    assert dataset.diagnosis_counts() == {"common_nevus": 1, "atypical_nevus": 1, "melanoma": 1}


# --------------------------------------------------------------------------- the distributed form


def test_distributed_form(ph2_tree: Path) -> None:
    assert is_ph2(ph2_tree)
    dataset = read_ph2(ph2_tree)
    assert dataset.form == "distributed" and dataset.root == ph2_tree
    assert dataset.criteria_file == ph2_tree / "PH2_dataset.txt"
    _check_expected(dataset)
    sample = dataset.get("IMD058")
    images = ph2_tree / "PH2 Dataset images"
    assert sample.image_path == images / "IMD058" / "IMD058_Dermoscopic_Image" / "IMD058.bmp"
    assert sample.mask_path == images / "IMD058" / "IMD058_lesion" / "IMD058_lesion.bmp"
    assert len(dataset) == 3 and dataset[0].id == "IMD002"
    with pytest.raises(KeyError):
        dataset.get("IMD999")


def test_distributed_form_from_the_folder_above(ph2_tree: Path) -> None:
    assert is_ph2(ph2_tree.parent)
    dataset = read_ph2(ph2_tree.parent)
    assert dataset.root == ph2_tree
    _check_expected(dataset)


def test_not_ph2(tmp_path: Path) -> None:
    assert not is_ph2(tmp_path)
    assert not is_ph2(tmp_path / "missing")
    with pytest.raises(DataError, match="not a PH2 folder") as err:
        read_ph2(tmp_path)
    assert err.value.path == tmp_path
    with pytest.raises(DataError, match="not found"):
        read_ph2(tmp_path / "missing")


def test_missing_mask(ph2_tree: Path) -> None:
    mask = ph2_tree / "PH2 Dataset images" / "IMD010" / "IMD010_lesion" / "IMD010_lesion.bmp"
    mask.unlink()
    with pytest.raises(DataError, match="lesion mask not found") as err:
        read_ph2(ph2_tree)
    assert err.value.path == mask and str(mask) in str(err.value)
    dataset = read_ph2(ph2_tree, require_masks=False)
    assert dataset.get("IMD010").mask_path is None
    assert dataset.get("IMD002").mask_path is not None


def test_bad_bmp_header(ph2_tree: Path) -> None:
    image = ph2_tree / "PH2 Dataset images" / "IMD002" / "IMD002_Dermoscopic_Image" / "IMD002.bmp"
    image.write_bytes(b"BM" + b"\x00" * 10 + b"not a bitmap header" * 4)
    with pytest.raises(DataError, match="image") as err:
        read_ph2(ph2_tree)
    assert err.value.path == image and str(image) in str(err.value)
    assert "\n" not in str(err.value)
    read_ph2(ph2_tree, check_files=False)  # headers are not opened then


def test_truncated_bmp(ph2_tree: Path) -> None:
    mask = ph2_tree / "PH2 Dataset images" / "IMD058" / "IMD058_lesion" / "IMD058_lesion.bmp"
    data = mask.read_bytes()
    mask.write_bytes(data[: len(data) - 20])  # the header is intact, the last rows are gone
    with pytest.raises(DataError, match="truncated lesion mask") as err:
        read_ph2(ph2_tree)
    assert err.value.path == mask


def test_mask_of_another_size(ph2_tree: Path) -> None:
    mask = ph2_tree / "PH2 Dataset images" / "IMD010" / "IMD010_lesion" / "IMD010_lesion.bmp"
    _bmp(mask, np.zeros((9, 11), np.uint8))
    with pytest.raises(DataError, match="11x9 but its image is 12x9") as err:
        read_ph2(ph2_tree)
    assert err.value.path == mask


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (4, "Q", r"line 3: IMD010: unknown pigment_network value 'Q' \(expected T or AT\)"),
        (5, "P", r"line 3: IMD010: unknown dots_globules value 'P'"),
        (6, "X", r"line 3: IMD010: unknown streaks value 'X' \(expected A or P\)"),
        (3, "3", r"line 3: IMD010: unknown asymmetry value '3'"),
        (2, "7", r"line 3: IMD010: unknown clinical diagnosis value '7'"),
        (9, "4 9", r"line 3: IMD010: unknown colour value '9'"),
    ],
)
def test_unknown_criteria_value(ph2_tree: Path, column: int, value: str, message: str) -> None:
    cases = [list(c) for c in CASES]
    cases[1][column] = value
    txt = _write_txt(ph2_tree / "PH2_dataset.txt", [tuple(c) for c in cases])
    with pytest.raises(DataError, match=message) as err:
        read_ph2(ph2_tree)
    assert err.value.path == txt and str(txt) in str(err.value)


def test_diagnosis_in_words(ph2_tree: Path) -> None:
    cases = [list(c) for c in CASES]
    cases[1][2], cases[2][2] = "Common Nevus", "melanoma"
    _write_txt(ph2_tree / "PH2_dataset.txt", [tuple(c) for c in cases])
    _check_expected(read_ph2(ph2_tree))


def test_image_without_row(ph2_tree: Path) -> None:
    _write_case(ph2_tree / "PH2 Dataset images", "IMD099")
    with pytest.raises(DataError, match="no row for image IMD099") as err:
        read_ph2(ph2_tree)
    assert err.value.path == ph2_tree / "PH2_dataset.txt"


def test_row_without_image(ph2_tree: Path) -> None:
    _write_txt(ph2_tree / "PH2_dataset.txt", [*CASES, ("IMD100", "", 0, 0, "T", "A", "A", "A", "A", "4")])
    with pytest.raises(DataError, match="no image for IMD100, listed here") as err:
        read_ph2(ph2_tree)
    assert err.value.path == ph2_tree / "PH2_dataset.txt"


def test_bad_tables(ph2_tree: Path) -> None:
    txt = ph2_tree / "PH2_dataset.txt"
    _write_txt(txt, [CASES[0], CASES[1], CASES[0]])
    with pytest.raises(DataError, match=r"line 4: IMD002 is listed twice \(also on line 2\)"):
        read_criteria(txt)
    txt.write_text(HEADER + "\n|| IMD002 || || 1 || 0 | AT | T ||\n")
    with pytest.raises(DataError, match="line 2: 6 cells where the header has 10"):
        read_criteria(txt)
    txt.write_text(HEADER.replace("Streaks |", "") + "\n")
    with pytest.raises(DataError, match="missing column.*streaks"):
        read_criteria(txt)
    txt.write_text("no table here\n")
    with pytest.raises(DataError, match="no header row"):
        read_criteria(txt)
    txt.unlink()
    with pytest.raises(DataError, match="no criteria file") as err:
        read_ph2(ph2_tree)
    assert err.value.path == ph2_tree


# --------------------------------------------------------------------------- the spreadsheet

XLSX_HEADER = [
    "Image Name",
    "Histological Diagnosis",
    "Common Nevus",
    "Atypical Nevus",
    "Melanoma",
    "Asymmetry\n(0/1/2)",
    "Pigment Network\n(AT/T)",
    "Dots/Globules\n(A/AT/T)",
    "Streaks\n(A/P)",
    "Regression Areas\n(A/P)",
    "Blue-Whitish Veil\n(A/P)",
    "White",
    "Red",
    "Light-Brown",
    "Dark-Brown",
    "Blue-Gray",
    "Black",
]


def _sheet_rows() -> list[list[Any]]:
    """CASES as the spreadsheet lays them out: a legend, a group row, the header, X marks."""
    rows: list[list[Any]] = [["PH2 database", *[None] * 16], [None] * 17]
    rows.append([None, None, "Clinical Diagnosis", None, None, *[None] * 6, "Colors", *[None] * 5])
    rows.append(XLSX_HEADER)
    for name, hist, clinical, asym, *letters, colours in CASES:
        marks = ["X" if clinical == k else None for k in range(3)]
        codes = {int(c) for c in colours.split()}
        colour_marks = ["X" if k in codes else None for k in range(1, 7)]
        rows.append([name, hist or None, *marks, float(asym), *letters, *colour_marks])
    return [[*row, None] for row in rows]  # a sheet's rows often end in empty cells


def test_xlsx_without_openpyxl(ph2_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (ph2_tree / "PH2_dataset.txt").unlink()
    xlsx = ph2_tree / "PH2_dataset.xlsx"
    xlsx.write_bytes(b"PK\x03\x04 not read")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # import openpyxl fails
    with pytest.raises(
        DataError, match="needs the openpyxl package.*export the sheet as PH2_dataset.txt"
    ) as err:
        read_ph2(ph2_tree)
    assert err.value.path == xlsx and "\n" not in str(err.value)


def test_xlsx_with_openpyxl(ph2_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spreadsheet's layout, through a stand-in for openpyxl that returns its cell values."""
    (ph2_tree / "PH2_dataset.txt").unlink()
    xlsx = ph2_tree / "PH2_dataset.xlsx"
    xlsx.write_bytes(b"PK\x03\x04 not read")
    opened: list[Path] = []

    class Sheet:
        def iter_rows(self, values_only: bool) -> Any:
            assert values_only
            return iter(_sheet_rows())

    class Book:
        worksheets = [Sheet()]

        def close(self) -> None:
            pass

    def load_workbook(path: Path, read_only: bool, data_only: bool) -> Book:
        opened.append(Path(path))
        return Book()

    monkeypatch.setitem(sys.modules, "openpyxl", types.SimpleNamespace(load_workbook=load_workbook))
    dataset = read_ph2(ph2_tree)
    assert opened == [xlsx] and dataset.criteria_file == xlsx
    _check_expected(dataset)


# --------------------------------------------------------------------------- the flat form

FLAT_COLUMNS = (
    "image,histological_diagnosis,common_nevus,atypical_nevus,melanoma,asymmetry,pigment_network,"
    "dots_globules,streaks,regression_areas,blue_whitish_veil,white,red,light_brown,dark_brown,blue_gray,black"
)


def _flat(root: Path) -> Path:
    lines = [FLAT_COLUMNS]
    for name, hist, clinical, asym, *letters, colours in CASES:
        marks = ["X" if clinical == k else "" for k in range(3)]
        codes = {int(c) for c in colours.split()}
        lines.append(
            ",".join(
                [name, hist, *marks, str(asym), *letters, *["X" if k in codes else "" for k in range(1, 7)]]
            )
        )
        rng = np.random.default_rng(1)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (9, 12, 3), np.uint8)).save(root / "images" / f"{name}.jpg")
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((9, 12), np.uint8)).save(root / "masks" / f"{name}_lesion.png")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_flat_form(tmp_path: Path) -> None:
    root = _flat(tmp_path / "flat")
    assert is_ph2(root)
    dataset = read_ph2(root)
    assert dataset.form == "flat" and dataset.criteria_file == root / "labels.csv"
    _check_expected(dataset)
    assert dataset.get("IMD010").image_path == root / "images" / "IMD010.jpg"
    assert dataset.get("IMD010").mask_path == root / "masks" / "IMD010_lesion.png"


def test_flat_form_errors(tmp_path: Path) -> None:
    root = _flat(tmp_path / "flat")
    labels = root / "labels.csv"
    text = labels.read_text()
    labels.write_text(text.replace("IMD010,,X,,,", "IMD010,,X,X,,"))
    with pytest.raises(DataError, match="line 3: IMD010: 2 diagnoses marked") as err:
        read_ph2(root)
    assert err.value.path == labels
    labels.write_text(text.replace("IMD010,,X,,,0,T", "IMD010,,X,,,0,maybe"))
    with pytest.raises(DataError, match="unknown pigment_network value 'maybe'"):
        read_ph2(root)
    labels.write_text(text)
    (root / "masks" / "IMD058_lesion.png").unlink()
    with pytest.raises(DataError, match="lesion mask not found") as err:
        read_ph2(root)
    assert err.value.path == root / "masks" / "IMD058_lesion.png"


@pytest.mark.skipif(not PH2_SAMPLE.is_dir(), reason=f"real PH2 sample not found at {PH2_SAMPLE}")
def test_real_flat_sample() -> None:
    """The 140 images of ../shared/data/ph2_sample: 56 common nevi, 56 atypical nevi, 28 melanomas."""
    assert is_ph2(PH2_SAMPLE)
    dataset = read_ph2(PH2_SAMPLE)
    assert dataset.form == "flat" and len(dataset) == 140
    assert dataset.diagnosis_counts() == {"common_nevus": 56, "atypical_nevus": 56, "melanoma": 28}
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in dataset)
    # the criteria against the CSV read here with the csv module and the PH2 legend
    with (PH2_SAMPLE / "labels.csv").open(newline="") as f:
        rows = {row["image"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == dataset.ids
    legend = {"A": "absent", "P": "present", "T": "typical", "AT": "atypical"}
    for sample in dataset:
        row = rows[sample.id]
        for column in (
            "pigment_network",
            "dots_globules",
            "streaks",
            "regression_areas",
            "blue_whitish_veil",
        ):
            assert dict(sample.criteria)[column] == legend[row[column]], (sample.id, column)
        assert sample.criteria["asymmetry"] == int(row["asymmetry"])
        assert set(sample.criteria["colours"]) == {
            c for c in ("white", "red", "light_brown", "dark_brown", "blue_gray", "black") if row[c] == "X"
        }
        assert sample.histological_diagnosis == (row["histological_diagnosis"] or None)
    counts = Counter(s.criteria["pigment_network"] for s in dataset)
    assert counts == Counter(legend[r["pigment_network"]] for r in rows.values())
