from __future__ import annotations

from pathlib import Path

import pytest

from dermseg.attributes import ATTRIBUTES
from dermseg.data.layout import discover
from dermseg.errors import DataError
from tests.conftest import ISIC_SAMPLE, real_data, write_sample


def test_official_layout_pairs_by_id(official_dataset: Path) -> None:
    layout = discover(official_dataset)
    assert layout.kind == "official"
    assert list(layout.splits) == ["training", "validation", "test"]
    assert layout.splits["training"].ids == [f"ISIC_{k:07d}" for k in range(4)]
    assert layout.splits["validation"].ids == ["ISIC_0000010", "ISIC_0000011"]
    assert layout.splits["test"].mask_dir is None
    sample = layout.splits["training"].samples[2]
    assert sample.has_masks
    assert [p.name for p in sample.mask_paths] == [f"ISIC_0000002_attribute_{a}.png" for a in ATTRIBUTES]
    assert all(p.parent.name == "ISIC2018_Task2_Training_GroundTruth_v3" for p in sample.mask_paths)
    # LICENSE.txt and superpixel files of the official archive are not problems
    assert layout.problems == []


def test_flat_and_images_only(flat_dataset: Path, tmp_path: Path) -> None:
    layout = discover(flat_dataset)
    assert layout.kind == "flat"
    assert layout.splits["all"].ids == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    images = tmp_path / "images"
    images.mkdir()
    (images / "ISIC_0000005.jpg").write_bytes((flat_dataset / "ISIC_0000000.jpg").read_bytes())
    only = discover(images)
    assert only.kind == "images"
    assert only.splits["all"].samples[0].missing_attributes == ATTRIBUTES


@real_data
def test_real_sample_pairs_pigment_network_and_lesion_masks() -> None:
    layout = discover(ISIC_SAMPLE)
    samples = layout.splits["all"].samples
    assert [s.isic_id for s in samples] == [
        "ISIC_0000000",
        "ISIC_0000001",
        "ISIC_0000006",
        "ISIC_0000007",
        "ISIC_0000008",
        "ISIC_0000009",
    ]
    for s in samples:
        # only pigment network is there; the others are missing, not empty
        assert s.missing_attributes == ("globules", "milia_like_cyst", "negative_network", "streaks")
        assert s.lesion_mask_path is not None and s.lesion_mask_path.name == f"{s.isic_id}_segmentation.png"
    assert layout.problems == []  # ATTRIBUTION.txt is known


def test_naming_problems_each_name_the_file(flat_dataset: Path) -> None:
    (flat_dataset / "ISIC_123.jpg").write_bytes(b"x")
    (flat_dataset / "holiday.png").write_bytes(b"x")
    (flat_dataset / "ISIC_0000001_attribute_network.png").write_bytes(b"x")
    (flat_dataset / "ISIC_0000009_attribute_globules.png").write_bytes(b"x")
    (flat_dataset / "ISIC_0000001.png").write_bytes(b"x")  # duplicate id
    (flat_dataset / "ISIC_0000004.jpg").mkdir()
    (flat_dataset / "loop").symlink_to(flat_dataset / "loop")
    problems = {p.path.name: p.message for p in discover(flat_dataset).problems}
    assert "ISIC_<7 digits>" in problems["ISIC_123.jpg"]
    assert problems["holiday.png"] == "unknown file"
    assert "unknown attribute 'network'" in problems["ISIC_0000001_attribute_network.png"]
    assert "no matching image ISIC_0000009" in problems["ISIC_0000009_attribute_globules.png"]
    dup = [k for k in problems if k.startswith("ISIC_0000001.")]
    assert len(dup) == 1 and "duplicate id ISIC_0000001" in problems[dup[0]]
    assert "is a folder" in problems["ISIC_0000004.jpg"]
    assert "broken link" in problems["loop"]


@pytest.mark.parametrize("case", ["missing", "file", "empty", "no_isic"])
def test_unusable_root_raises_data_error(tmp_path: Path, case: str) -> None:
    root = tmp_path / "root"
    if case == "file":
        root.write_text("x")
    elif case == "empty":
        root.mkdir()
    elif case == "no_isic":
        write_sample(root, "ISIC_0000000")
        (root / "ISIC_0000000.jpg").rename(root / "photo.jpg")
        for p in root.glob("*.png"):
            p.unlink()
    with pytest.raises(DataError) as info:
        discover(root)
    assert str(root) in str(info.value)
