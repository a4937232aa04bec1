from __future__ import annotations

from pathlib import Path

import pytest

from dermseg.cli import main
from dermseg.data.check import check_dataset
from tests.conftest import ISIC_SAMPLE, break_flat_dataset, real_data


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


def test_every_problem_found_in_one_pass(flat_dataset: Path) -> None:
    expected = break_flat_dataset(flat_dataset)
    report = check_dataset(flat_dataset)
    found = [(p.path.name, p.message) for p in report.problems]
    for name, part in expected.items():
        assert any(n == name and part in m for n, m in found), (name, part, found)
    assert len(found) == len(expected)


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
