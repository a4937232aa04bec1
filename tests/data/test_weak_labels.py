"""Image-level weak labels from PH2, Derm7pt and plain CSV files, checked against hand-made files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermseg.attributes import ATTRIBUTES
from dermseg.data.weak_labels import (
    CRITERIA_MAP,
    UNLABELLED_ATTRIBUTES,
    detect_weak_source,
    mappings,
    read_derm7pt_folder,
    read_derm7pt_weak_labels,
    read_ph2_weak_labels,
    read_plain_weak_labels,
    read_weak_labels,
)
from tests.conftest import PH2_SAMPLE, real_data
from tests.data.label_set_data import PH2_CSV_HEADER

#: three images: globules absent / typical / atypical, streaks absent / absent / present
PH2_ROWS = (
    "IMD003,,X,,,0,T,A,A,A,A,,,,X,,",
    "IMD016,,X,,,0,AT,T,A,A,A,,,X,X,,",
    "IMD058,Melanoma,,,X,2,AT,AT,P,P,P,,,X,X,X,X",
)
DERM7PT_HEADER = "case_num,diagnosis,derm,pigment_network,streaks,dots_and_globules,blue_whitish_veil"
DERM7PT_ROWS = (
    "1,clark nevus,NEL/Nel001.jpg,typical,absent,absent,absent",
    "2,melanoma,Aal/Aal002.jpg,atypical,irregular,regular,present",
    "3,seborrheic keratosis,Fbl/Fbl003.jpg,absent,regular,irregular,absent",
)


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_mapping_table_is_the_documented_one() -> None:
    table = {(m.source, m.column): m.attribute for m in CRITERIA_MAP}
    assert table == {
        ("ph2", "dots_globules"): "globules",
        ("ph2", "streaks"): "streaks",
        ("ph2", "pigment_network"): None,  # PH2 has no "absent" pigment network
        ("derm7pt", "dots_and_globules"): "globules",
        ("derm7pt", "streaks"): "streaks",
        ("derm7pt", "pigment_network"): "pigment_network",
    }
    assert UNLABELLED_ATTRIBUTES == ("milia_like_cyst", "negative_network")
    assert [m.attribute for m in mappings("ph2")] == ["globules", "streaks"]
    assert all(m.attribute in ATTRIBUTES for m in CRITERIA_MAP if m.attribute is not None)


def test_ph2_criteria_become_globules_and_streaks(tmp_path: Path) -> None:
    weak = read_ph2_weak_labels(write(tmp_path / "labels.csv", PH2_CSV_HEADER, *PH2_ROWS))
    assert weak.source == "ph2" and len(weak) == 3
    assert weak.labels == {
        "IMD003": {"globules": False, "streaks": False},
        "IMD016": {"globules": True, "streaks": False},
        "IMD058": {"globules": True, "streaks": True},
    }
    assert weak.attributes == ("globules", "streaks")
    assert weak.of_attribute("pigment_network") == {}


def test_derm7pt_meta_becomes_three_attributes(tmp_path: Path) -> None:
    weak = read_derm7pt_weak_labels(write(tmp_path / "meta.csv", DERM7PT_HEADER, *DERM7PT_ROWS))
    assert weak.labels == {
        "NEL/Nel001.jpg": {"globules": False, "streaks": False, "pigment_network": True},
        "Aal/Aal002.jpg": {"globules": True, "streaks": True, "pigment_network": True},
        "Fbl/Fbl003.jpg": {"globules": True, "streaks": True, "pigment_network": False},
    }
    assert weak.attributes == ("globules", "pigment_network", "streaks")


def test_derm7pt_values_are_read_whatever_their_case(tmp_path: Path) -> None:
    meta = write(tmp_path / "meta.csv", DERM7PT_HEADER, "1,x,a.jpg, Absent ,REGULAR,absent,absent")
    assert read_derm7pt_weak_labels(meta).labels["a.jpg"] == {
        "globules": False,
        "streaks": True,
        "pigment_network": False,
    }


def test_derm7pt_folder_finds_meta_and_images(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    write(tmp_path / "meta" / "meta.csv", DERM7PT_HEADER, *DERM7PT_ROWS)
    for row in DERM7PT_ROWS:
        image = tmp_path / "images" / row.split(",")[2]
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(b"")
    weak, images = read_derm7pt_folder(tmp_path)
    assert len(weak) == 3
    assert images["Aal/Aal002.jpg"] == tmp_path / "images" / "Aal" / "Aal002.jpg"


def test_plain_csv_labels_only_the_rows_given(tmp_path: Path) -> None:
    path = write(
        tmp_path / "weak.csv",
        "image,attribute,present",
        "ISIC_1,streaks,1",
        "ISIC_1,milia_like_cyst,0",
        "ISIC_2,streaks,0",
    )
    weak = read_plain_weak_labels(path)
    assert weak.labels == {
        "ISIC_1": {"streaks": True, "milia_like_cyst": False},
        "ISIC_2": {"streaks": False},
    }
    assert weak.of_attribute("streaks") == {"ISIC_1": True, "ISIC_2": False}
    assert weak.attributes == ("milia_like_cyst", "streaks")


def test_the_source_is_detected_from_the_header(tmp_path: Path) -> None:
    ph2 = write(tmp_path / "labels.csv", PH2_CSV_HEADER, *PH2_ROWS)
    derm = write(tmp_path / "meta.csv", DERM7PT_HEADER, *DERM7PT_ROWS)
    plain = write(tmp_path / "weak.csv", "image,attribute,present", "a,globules,1")
    assert [detect_weak_source(p) for p in (ph2, derm, plain)] == ["ph2", "derm7pt", "csv"]
    assert read_weak_labels(derm).source == "derm7pt"
    assert read_weak_labels(plain, source="csv").labels == {"a": {"globules": True}}
    with pytest.raises(ValueError, match="unknown weak-label source"):
        read_weak_labels(plain, source="isic")  # type: ignore[arg-type]


@real_data
def test_the_shared_ph2_sample() -> None:
    weak = read_ph2_weak_labels(PH2_SAMPLE / "labels.csv")
    globules, streaks = weak.of_attribute("globules"), weak.of_attribute("streaks")
    assert len(weak) == len(globules) == len(streaks) == 140
    # counted with grep in labels.csv: 55 images with dots/globules A, 115 with streaks A
    assert sum(globules.values()) == 85 and sum(streaks.values()) == 25
