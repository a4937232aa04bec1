from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.cli import main
from dermseg.data.check import check_dataset
from tests.conftest import ISIC_SAMPLE, real_data


def test_clean_dataset_statistics(flat_dataset: Path) -> None:
    report = check_dataset(flat_dataset)
    assert report.ok, report.problems
    s = report.summary()["splits"]["all"]
    assert s["images"] == 3
    assert s["attributes"]["globules"]["present"] == 1
    assert s["attributes"]["pigment_network"]["present"] == 2
    assert s["attributes"]["streaks"]["present"] == 0
    # globules: a 10x20 block in a 40x30 image on one of three images
    assert s["attributes"]["globules"]["mean_area"] == pytest.approx((200 / 1200) / 3)
    assert s["attributes"]["globules"]["mean_area_when_present"] == pytest.approx(200 / 1200)
    assert s["attributes"]["pigment_network"]["mean_area_when_present"] == pytest.approx((200 / 1200 + 1) / 2)
    assert s["images_without_attribute"] == 1
    assert s["sizes"]["width"] == {"min": 40, "median": 40.0, "max": 50}
    assert s["sizes"]["most_common"][0] == {"size": "40x30", "count": 2}


def _break(root: Path) -> dict[str, str]:
    """Apply one of each problem to a clean flat dataset; return file name -> expected message part."""
    # missing mask
    (root / "ISIC_0000000_attribute_streaks.png").unlink()
    # mask of the wrong size
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "ISIC_0000001_attribute_globules.png")
    # non-binary mask
    Image.fromarray(np.full((30, 40), 1, np.uint8)).save(root / "ISIC_0000001_attribute_milia_like_cyst.png")
    # truncated JPEG
    data = (root / "ISIC_0000002.jpg").read_bytes()
    (root / "ISIC_0000002.jpg").write_bytes(data[: len(data) // 2])
    # unreadable (zero-byte) mask
    (root / "ISIC_0000000_attribute_globules.png").write_bytes(b"")
    # unknown file and duplicate id
    (root / "notes.docx").write_bytes(b"x")
    (root / "ISIC_0000001.png").write_bytes(b"x")
    # 16-bit mask
    Image.fromarray(np.zeros((30, 40), np.uint16)).save(root / "ISIC_0000001_attribute_streaks.png")
    return {
        "ISIC_0000000.jpg": "missing mask ISIC_0000000_attribute_streaks.png",
        "ISIC_0000001_attribute_globules.png": "mask is 10x10 but its image is 40x30",
        "ISIC_0000001_attribute_milia_like_cyst.png": "not binary 0/255 (also holds 1)",
        "ISIC_0000002.jpg": "truncated",
        "ISIC_0000000_attribute_globules.png": "empty file",
        "notes.docx": "unknown file",
        "ISIC_0000001.png": "duplicate id",
        "ISIC_0000001_attribute_streaks.png": "16/32-bit",
    }


def test_every_problem_found_in_one_pass(flat_dataset: Path) -> None:
    expected = _break(flat_dataset)
    report = check_dataset(flat_dataset)
    found = [(p.path.name, p.message) for p in report.problems]
    for name, part in expected.items():
        assert any(n == name and part in m for n, m in found), (name, part, found)
    assert len(found) == len(expected)


def test_cli_check_exit_codes_and_json(flat_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "summary.json"
    assert main(["check", str(flat_dataset), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["splits"]["all"]["images"] == 3
    _break(flat_dataset)
    assert main(["check", str(flat_dataset)]) == 2
    err = capsys.readouterr().err
    assert "8 problem(s) found" in err
    assert f"{flat_dataset / 'ISIC_0000002.jpg'}:" in err


@real_data
def test_real_sample_reports_missing_masks_not_empty(capsys) -> None:
    report = check_dataset(ISIC_SAMPLE)
    s = report.summary()["splits"]["all"]
    pn = s["attributes"]["pigment_network"]
    assert pn["labelled"] == 6
    # real pigment-network masks of the six sample images are non-empty and a few % of the image
    assert pn["present"] == 6 and 0.005 < pn["mean_area"] < 0.5
    assert s["attributes"]["streaks"]["labelled"] == 0
    assert s["attributes"]["streaks"]["mean_area"] is None
    missing = [p for p in report.problems if "missing mask" in p.message]
    assert len(missing) == len(report.problems) == 6 * 4
    assert s["sizes"]["most_common"] == [{"size": "1022x767", "count": 6}]
    assert main(["check", str(ISIC_SAMPLE)]) == 2


def test_cli_user_errors_are_one_line(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope"
    assert main(["check", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dermseg: error: {missing}: folder not found"]


def test_synth_into_a_file_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    assert main(["synth", str(target), "--n", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dermseg: error: {target}: is a file, expected a folder to write the dataset into"]
