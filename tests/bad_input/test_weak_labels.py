"""Bad weak-label files: each is one one-line DataError naming the file and the row."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermseg.data.weak_labels import read_derm7pt_folder, read_weak_labels
from dermseg.errors import DataError, display_path
from tests.data.label_set_data import PH2_CSV_HEADER

PH2_OK = "IMD003,,X,,,0,T,A,A,A,A,,,,X,,"
DERM_HEADER = "case_num,derm,pigment_network,streaks,dots_and_globules"
DERM_OK = "1,NEL/Nel001.jpg,typical,absent,absent"
PLAIN_HEADER = "image,attribute,present"

#: name -> (file name, lines, words the message must hold)
CASES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "ph2_unknown_value": (
        "labels.csv",
        (PH2_CSV_HEADER, PH2_OK.replace(",A,A,A,A,", ",X,A,A,A,")),
        ("line 2", "IMD003", "dots_globules", "'X'"),
    ),
    "ph2_duplicate_image": (
        "labels.csv",
        (PH2_CSV_HEADER, PH2_OK, PH2_OK),
        ("line 3", "IMD003", "twice", "line 2"),
    ),
    "ph2_missing_column": (
        "labels.csv",
        (PH2_CSV_HEADER.replace(",streaks", ""), PH2_OK[:-2]),
        ("missing column", "streaks"),
    ),
    "derm7pt_unknown_value": (
        "meta.csv",
        (DERM_HEADER, "1,a.jpg,typical,wavy,absent"),
        ("line 2", "a.jpg", "streaks", "'wavy'", "regular"),
    ),
    "derm7pt_duplicate_image": (
        "meta.csv",
        (DERM_HEADER, DERM_OK, DERM_OK),
        ("line 3", "NEL/Nel001.jpg", "twice", "line 2"),
    ),
    "derm7pt_missing_column": (
        "meta.csv",
        ("case_num,derm,pigment_network,streaks", "1,a.jpg,absent,absent"),
        ("line 1", "missing column", "dots_and_globules"),
    ),
    "derm7pt_empty_image": ("meta.csv", (DERM_HEADER, "1,,typical,absent,absent"), ("line 2", "empty derm")),
    "derm7pt_short_row": ("meta.csv", (DERM_HEADER, DERM_OK, "2,b.jpg,typical"), ("line 3", "3 cells", "5")),
    "plain_unknown_attribute": (
        "weak.csv",
        (PLAIN_HEADER, "ISIC_1,globules,1", "ISIC_1,vessels,1"),
        ("line 3", "ISIC_1", "unknown attribute 'vessels'"),
    ),
    "plain_unknown_value": (
        "weak.csv",
        (PLAIN_HEADER, "ISIC_1,streaks,yes"),
        ("line 2", "ISIC_1", "'yes'", "0 or 1"),
    ),
    "plain_duplicate": (
        "weak.csv",
        (PLAIN_HEADER, "ISIC_1,streaks,1", "ISIC_2,streaks,0", "ISIC_1,streaks,0"),
        ("line 4", "ISIC_1 (streaks)", "twice", "line 2"),
    ),
    "plain_missing_column": (
        "weak.csv",
        ("image,attribute", "ISIC_1,streaks"),
        ("line 1", "missing column", "present"),
    ),
    "plain_no_rows": ("weak.csv", (PLAIN_HEADER,), ("no rows",)),
    "plain_empty_image": ("weak.csv", (PLAIN_HEADER, ",streaks,1"), ("line 2", "empty image")),
}
SOURCES = {"labels.csv": "ph2", "meta.csv": "derm7pt", "weak.csv": "csv"}


def assert_one_line(err: DataError, path: Path, words: tuple[str, ...]) -> None:
    text = str(err)
    assert "\n" not in text
    assert text.startswith(display_path(path) + ": "), text
    for word in words:
        assert word in text, (word, text)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_row(name: str, tmp_path: Path) -> None:
    file_name, lines, words = CASES[name]
    path = tmp_path / file_name
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as caught:
        read_weak_labels(path, source=SOURCES[file_name])  # type: ignore[arg-type]
    assert_one_line(caught.value, path, words)
    with pytest.raises(DataError):  # the detected reader says the same
        read_weak_labels(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        read_weak_labels(tmp_path / "weak.csv", source="csv")
    assert_one_line(caught.value, tmp_path / "weak.csv", ("not found",))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "weak.csv"
    path.write_bytes(b"image,attribute,present\n\xff\xfe,streaks,1\n")
    with pytest.raises(DataError) as caught:
        read_weak_labels(path, source="csv")
    assert_one_line(caught.value, path, ("not UTF-8",))


def test_derm7pt_folder_without_meta_or_images(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        read_derm7pt_folder(tmp_path)
    assert_one_line(caught.value, tmp_path, ("no meta.csv",))
    (tmp_path / "meta.csv").write_text(f"{DERM_HEADER}\n{DERM_OK}\n2,b.jpg,absent,absent,absent\n")
    with pytest.raises(DataError) as caught:
        read_derm7pt_folder(tmp_path)
    assert_one_line(caught.value, tmp_path / "meta.csv", ("NEL/Nel001.jpg", "and 1 more", "images"))
