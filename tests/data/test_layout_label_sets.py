"""Discovery with a label set: Task 1 (official and flat), PH2 (distributed and flat), a user's set."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from dermseg.data.layout import detect_label_set, discover, label_set_for
from dermseg.errors import ConfigError, DataError
from dermseg.labels import DEFAULT, ISIC2018_TASK1, ISIC2018_TASK2, PH2, load_label_set
from tests.conftest import ISIC_SAMPLE, PH2_SAMPLE, real_data
from tests.data.label_set_data import (
    PH2_CASES,
    ph2_image_path,
    ph2_lesion_path,
    write_ph2_flat,
    write_ph2_tree,
    write_task1_case,
    write_task1_official,
    write_user_dataset,
    write_user_yaml,
)

# --------------------------------------------------------------------------- Task 1


def test_task1_official_layout(tmp_path: Path) -> None:
    root = write_task1_official(tmp_path / "official", with_task2=True)
    layout = discover(root, ISIC2018_TASK1)
    assert layout.kind == "official" and layout.labels is ISIC2018_TASK1 and layout.strata is None
    assert list(layout.splits) == ["training", "validation", "test"]
    assert layout.splits["training"].ids == ["ISIC_0000000", "ISIC_0000001"]
    assert layout.splits["validation"].ids == ["ISIC_0000010"]
    assert layout.splits["test"].ids == ["ISIC_0000020"] and layout.splits["test"].mask_dir is None
    assert layout.splits["test"].samples[0].mask_paths == (None,)
    gt = root / "ISIC2018_Task1_Training_GroundTruth"
    sample = layout.splits["training"].samples[1]
    assert sample.image_path == root / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000001.jpg"
    assert sample.mask_paths == (gt / "ISIC_0000001_segmentation.png",)
    assert sample.lesion_mask_path == gt / "ISIC_0000001_segmentation.png"  # the lesion is the label
    assert sample.has_masks and sample.missing_labels == ()
    assert layout.splits["training"].mask_dir == gt
    # the Task 2 folder is not read, LICENSE.txt and superpixels are no problems
    assert layout.problems == []


def test_detect_task1_official_only_without_task2_masks(tmp_path: Path) -> None:
    assert detect_label_set(write_task1_official(tmp_path / "both", with_task2=True)) is ISIC2018_TASK2
    assert detect_label_set(write_task1_official(tmp_path / "task1")) is ISIC2018_TASK1


def test_task2_reading_of_a_task1_official_layout_takes_the_lesions_as_before(tmp_path: Path) -> None:
    root = write_task1_official(tmp_path / "official", with_task2=True)
    sample = discover(root).splits["training"].samples[0]
    assert len(sample.mask_paths) == 5 and sample.missing_labels == (
        "milia_like_cyst",
        "negative_network",
        "pigment_network",
        "streaks",
    )
    assert (
        sample.lesion_mask_path
        == root / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000000_segmentation.png"
    )


def test_task1_flat_folder(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    write_task1_case(root, root, "ISIC_0000000")
    write_task1_case(root, root, "ISIC_0000001")
    write_task1_case(root, None, "ISIC_0000020")  # an image without its mask
    (root / "ISIC_0000000_superpixels.png").write_bytes(b"")
    assert detect_label_set(root) is ISIC2018_TASK1
    (root / "ISIC_0000000_attribute_globules.png").write_bytes(b"")  # Task 2 files are not Task 1's
    layout = discover(root, ISIC2018_TASK1)
    assert layout.kind == "flat" and layout.problems == []
    assert layout.splits["all"].ids == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000020"]
    samples = layout.splits["all"].samples
    assert samples[0].mask_paths == (root / "ISIC_0000000_segmentation.png",)
    assert samples[2].mask_paths == (None,) and samples[2].missing_labels == ("lesion",)
    assert samples[2].mask_name("lesion") == "ISIC_0000020_segmentation.png"


def test_task1_naming_problems_name_the_file(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    write_task1_case(root, root, "ISIC_0000000")
    (root / "ISIC_12_segmentation.png").write_bytes(b"x")
    (root / "ISIC_0000009_segmentation.png").write_bytes(b"x")
    (root / "holiday.png").write_bytes(b"x")
    problems = {p.path.name: p.message for p in discover(root, ISIC2018_TASK1).problems}
    assert problems == {
        "ISIC_12_segmentation.png": "name does not match ISIC_<7 digits>.jpg or "
        "ISIC_<7 digits>_segmentation.png",
        "ISIC_0000009_segmentation.png": "mask has no matching image ISIC_0000009",
        "holiday.png": "unknown file",
    }


@real_data
def test_real_isic_sample_read_as_task1() -> None:
    layout = discover(ISIC_SAMPLE, ISIC2018_TASK1)
    assert layout.problems == []  # the attribute masks are Task 2's files, not unknown ones
    assert layout.splits["all"].ids == [f"ISIC_000000{k}" for k in (0, 1, 6, 7, 8, 9)]
    for s in layout.samples:
        assert s.mask_paths == (ISIC_SAMPLE / f"{s.isic_id}_segmentation.png",)
    assert detect_label_set(ISIC_SAMPLE) is ISIC2018_TASK2  # it holds _attribute_ masks


# --------------------------------------------------------------------------- PH2


def test_ph2_distributed_tree(tmp_path: Path) -> None:
    root = write_ph2_tree(tmp_path)
    for given in (root, tmp_path):  # PH2Dataset/ or the folder that holds it
        assert detect_label_set(given) is PH2
        layout = discover(given, PH2)
        assert layout.kind == "ph2" and layout.labels is PH2 and list(layout.splits) == ["all"]
        split = layout.splits["all"]
        assert split.ids == ["IMD002", "IMD004", "IMD010", "IMD017", "IMD058"]
        assert split.image_dir == split.mask_dir == root / "PH2 Dataset images"
        sample = split.samples[4]
        assert sample.isic_id == "IMD058"
        assert sample.image_path == ph2_image_path(root, "IMD058")
        assert sample.mask_paths == (ph2_lesion_path(root, "IMD058"),)
        assert sample.lesion_mask_path == ph2_lesion_path(root, "IMD058")
        assert layout.strata == {
            "IMD002": "atypical_nevus",
            "IMD004": "common_nevus",
            "IMD010": "common_nevus",
            "IMD017": "atypical_nevus",
            "IMD058": "melanoma",
        }
        assert layout.strata_name == "diagnosis" and layout.problems == []
    assert set(PH2_CASES) == set(layout.strata)


def test_ph2_flat_form(tmp_path: Path) -> None:
    root = write_ph2_flat(tmp_path / "flat")
    assert detect_label_set(root) is PH2
    layout = discover(root, PH2)
    assert layout.kind == "ph2" and layout.problems == []
    split = layout.splits["all"]
    assert split.ids == ["IMD002", "IMD004", "IMD010", "IMD017", "IMD058"]
    assert (split.image_dir, split.mask_dir) == (root / "images", root / "masks")
    assert split.samples[1].image_path == root / "images" / "IMD004.jpg"
    assert split.samples[1].mask_paths == (root / "masks" / "IMD004_lesion.png",)
    assert layout.strata is not None and layout.strata["IMD058"] == "melanoma"
    assert Counter(layout.strata.values()) == {"common_nevus": 2, "atypical_nevus": 2, "melanoma": 1}


@real_data
def test_real_ph2_flat_sample() -> None:
    assert detect_label_set(PH2_SAMPLE) is PH2
    layout = discover(PH2_SAMPLE, PH2)
    assert layout.kind == "ph2" and len(layout.samples) == 140 and layout.problems == []
    assert layout.strata is not None
    assert Counter(layout.strata.values()) == {"common_nevus": 56, "atypical_nevus": 56, "melanoma": 28}
    first = layout.samples[0]
    assert first.isic_id == "IMD003"
    assert first.image_path == PH2_SAMPLE / "images" / "IMD003.jpg"
    assert first.mask_paths == (PH2_SAMPLE / "masks" / "IMD003_lesion.png",)
    assert layout.splits["all"].mask_dir == PH2_SAMPLE / "masks"
    assert layout.strata["IMD003"] == "common_nevus"  # labels.csv: IMD003,,X,,,...


def test_ph2_set_reads_a_folder_of_imd_files_without_criteria(tmp_path: Path) -> None:
    """Without PH2's criteria file the PH2 set still pairs IMDxxx images and masks (no strata)."""
    tree = write_ph2_tree(tmp_path / "tree")
    root = tmp_path / "plain"
    root.mkdir()
    for image_id in ("IMD002", "IMD004"):
        Image.open(ph2_image_path(tree, image_id)).save(root / f"{image_id}.jpg")
        Image.open(ph2_lesion_path(tree, image_id)).save(root / f"{image_id}_lesion.png")
    (root / "IMD9_lesion.bmp").write_bytes(b"x")
    layout = discover(root, PH2)
    assert layout.kind == "flat" and layout.strata is None
    assert [s.mask_paths for s in layout.samples] == [
        (root / "IMD002_lesion.png",),
        (root / "IMD004_lesion.png",),
    ]
    assert [(p.path.name, p.message) for p in layout.problems] == [
        ("IMD9_lesion.bmp", "name does not match IMDxxx.jpg (or .bmp, .png) or IMDxxx_lesion.png")
    ]


def test_ph2_missing_mask_is_one_error_naming_it(tmp_path: Path) -> None:
    root = write_ph2_tree(tmp_path)
    mask = ph2_lesion_path(root, "IMD010")
    mask.unlink()
    with pytest.raises(DataError) as info:
        discover(root, PH2)
    assert info.value.path == mask and "lesion mask not found" in str(info.value)


def test_ph2_folder_read_as_task2_is_refused_as_before(tmp_path: Path) -> None:
    root = write_ph2_tree(tmp_path)
    with pytest.raises(DataError, match="no ISIC images found"):
        discover(root)


# --------------------------------------------------------------------------- a user's set


@pytest.mark.parametrize("subfolders", [False, True], ids=["flat", "images_and_masks"])
def test_user_set(tmp_path: Path, subfolders: bool) -> None:
    labels = load_label_set(write_user_yaml(tmp_path / "sets"))
    root = write_user_dataset(tmp_path / "data", subfolders=subfolders)
    assert detect_label_set(root) is None
    layout = discover(root, labels)
    image_dir = root / "images" if subfolders else root
    mask_dir = root / "masks" if subfolders else root
    assert layout.kind == "flat" and layout.labels == labels and layout.problems == []
    assert layout.splits["all"].ids == ["b2", "lesion_a"]
    assert layout.splits["all"].mask_dir == mask_dir
    b2, a = layout.samples
    assert a.image_path == image_dir / "lesion_a.jpg"
    assert a.mask_paths == (mask_dir / "lesion_a_veil.png", mask_dir / "lesion_a_regression.png")
    assert b2.image_path == image_dir / "b2.png"
    assert b2.mask_paths == (mask_dir / "b2_veil.png", None)
    assert b2.missing_labels == ("regression",) and b2.lesion_mask_path is None


def test_user_set_problems(tmp_path: Path) -> None:
    labels = load_label_set(write_user_yaml(tmp_path / "sets"))
    root = write_user_dataset(tmp_path / "data")
    (root / "gone_veil.png").write_bytes(b"x")
    (root / "notes.docx").write_bytes(b"x")
    (root / "c3_regression.png").mkdir()
    problems = {p.path.name: p.message for p in discover(root, labels).problems}
    assert problems == {
        "c3_regression.png": "is a folder, expected a file",
        "gone_veil.png": "mask has no matching image gone",
        "notes.docx": "unknown file",
    }


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (ISIC2018_TASK1, "no ISIC images found"),
        (PH2, "no PH2 images found"),
        ("user", "no images found for label set veil_and_regression"),
    ],
)
def test_empty_folder_names_what_the_set_expects(tmp_path: Path, labels, words: str) -> None:
    if labels == "user":
        labels = load_label_set(write_user_yaml(tmp_path / "sets"))
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataError, match=words) as info:
        discover(root, labels)
    assert info.value.path == root


# --------------------------------------------------------------------------- Task 2 and choosing


def test_task2_is_the_default_and_unchanged(flat_dataset: Path, official_dataset: Path) -> None:
    for root in (flat_dataset, official_dataset):
        assert discover(root) == discover(root, ISIC2018_TASK2)
        assert discover(root).labels is DEFAULT and discover(root).strata is None
        assert detect_label_set(root) is ISIC2018_TASK2
    sample = discover(flat_dataset).samples[0]
    assert sample.missing_attributes == sample.missing_labels == ()


def test_detect_label_set_without_masks(tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_task1_case(images, None, "ISIC_0000000")
    assert detect_label_set(images) is None
    assert detect_label_set(tmp_path / "missing") is None
    assert label_set_for(images) is DEFAULT
    assert label_set_for(images, "ph2") is PH2


def test_label_set_for_names_a_bad_file(tmp_path: Path) -> None:
    bad = write_user_yaml(tmp_path, "name: x\nlabels: [a, a]\n", "bad.yaml")
    with pytest.raises(ConfigError) as info:
        label_set_for(tmp_path, bad)
    assert info.value.path == bad and "appears twice" in str(info.value)
