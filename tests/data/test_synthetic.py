"""Tests of the synthetic dermoscopy generator (dermseg.data.synthetic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from dermseg.attributes import ATTRIBUTES
from dermseg.data.synthetic import (
    SYNTHETIC_MARKER,
    SynthConfig,
    render_sample,
    sample_presence,
    synthesize_sample,
    write_dataset,
)

#: ISIC 2018 Task 2 training frequencies, written out here independently of the code.
TARGETS = {
    "pigment_network": 0.59,
    "milia_like_cyst": 0.26,
    "globules": 0.23,
    "negative_network": 0.07,
    "streaks": 0.04,
}

FOLDERS = {
    "training": ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task2_Training_GroundTruth_v3"),
    "validation": ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task2_Validation_GroundTruth"),
    "test": ("ISIC2018_Task1-2_Test_Input", "ISIC2018_Task2_Test_GroundTruth"),
}

QUIET: dict[str, float] = {"hair_probability": 0.0, "veil_probability": 0.0}  # no distractors


def _files(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every image and mask under ``root`` (not the SYNTHETIC.txt marker)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != SYNTHETIC_MARKER
    }


def _luma(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float luminance of an ``(H, W, 3)`` uint8 image."""
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _only(name: str, size: int) -> SynthConfig:
    """A config that draws exactly the attribute ``name`` in every image, without distractors."""
    return SynthConfig(size=size, presence={name: 1.0}, none_fraction=0.0, **QUIET)


def _dark_detail(luma: np.ndarray, size: int) -> np.ndarray:
    """Black top-hat: how much darker each pixel is than its surroundings at scale ``size`` pixels."""
    return ndimage.grey_closing(luma, size=(size, size)) - luma


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of ``mask`` but outside it."""
    return ndimage.binary_dilation(mask, iterations=width) & ~mask


# --- determinism and independence -------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    ids_a = write_dataset(tmp_path / "a", 4, size=96, seed=3)
    ids_b = write_dataset(tmp_path / "b", 4, size=96, seed=3)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert ids_a == ids_b
    assert len(files_a) == 4 * 6
    assert files_a == files_b


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a", 3, size=96, seed=3)
    write_dataset(tmp_path / "b", 3, size=96, seed=4)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert files_a.keys() == files_b.keys()
    jpgs = [k for k in files_a if k.endswith(".jpg")]
    assert len(jpgs) == 3
    assert all(files_a[k] != files_b[k] for k in jpgs)


def test_sample_does_not_depend_on_n_or_start(tmp_path: Path) -> None:
    write_dataset(tmp_path / "three", 3, size=80, seed=1)
    write_dataset(tmp_path / "five", 5, size=80, seed=1)
    write_dataset(tmp_path / "tail", 2, size=80, seed=1, start_id=1)
    three, five, tail = _files(tmp_path / "three"), _files(tmp_path / "five"), _files(tmp_path / "tail")
    assert three == {k: v for k, v in five.items() if k in three}
    assert len(five) == 5 * 6 and len(three) == 3 * 6
    assert tail == {k: v for k, v in five.items() if k in tail}
    assert sorted(k for k in tail if k.endswith(".jpg")) == [
        f"{FOLDERS['training'][0]}/ISIC_0000001.jpg",
        f"{FOLDERS['training'][0]}/ISIC_0000002.jpg",
    ]


def test_splits_are_different_samples(tmp_path: Path) -> None:
    write_dataset(tmp_path / "t", 1, size=80, split="training")
    write_dataset(tmp_path / "v", 1, size=80, split="validation")
    a = (tmp_path / "t" / FOLDERS["training"][0] / "ISIC_0000000.jpg").read_bytes()
    b = (tmp_path / "v" / FOLDERS["validation"][0] / "ISIC_0000000.jpg").read_bytes()
    assert a != b


def test_synthesize_sample_is_a_function_of_the_rng_state() -> None:
    config = SynthConfig(size=96)
    image_a, masks_a = synthesize_sample(np.random.default_rng(11), config)
    image_b, masks_b = synthesize_sample(np.random.default_rng(11), config)
    image_c, _ = synthesize_sample(np.random.default_rng(12), config)
    assert np.array_equal(image_a, image_b) and np.array_equal(masks_a, masks_b)
    assert not np.array_equal(image_a, image_c)


# --- layout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["training", "validation", "test"])
def test_official_layout_and_naming(tmp_path: Path, split: str) -> None:
    ids = write_dataset(tmp_path, 3, size=72, seed=0, split=split, start_id=41)
    assert ids == ["ISIC_0000041", "ISIC_0000042", "ISIC_0000043"]
    images_dir, truth_dir = FOLDERS[split]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([images_dir, truth_dir, SYNTHETIC_MARKER])
    assert "not" in (tmp_path / SYNTHETIC_MARKER).read_text()  # says what the data is not
    assert sorted(p.name for p in (tmp_path / images_dir).iterdir()) == [f"{i}.jpg" for i in ids]
    expected_masks = sorted(f"{i}_attribute_{a}.png" for i in ids for a in ATTRIBUTES)
    assert sorted(p.name for p in (tmp_path / truth_dir).iterdir()) == expected_masks
    for isic_id in ids:
        with Image.open(tmp_path / images_dir / f"{isic_id}.jpg") as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            size = img.size
        assert size == (72, 72)
        for name in ATTRIBUTES:
            with Image.open(tmp_path / truth_dir / f"{isic_id}_attribute_{name}.png") as mask:
                assert mask.format == "PNG" and mask.mode == "L" and mask.size == size
                values = set(np.unique(np.asarray(mask)).tolist())
            assert values <= {0, 255}


def test_non_square_images_and_masks_share_their_size(tmp_path: Path) -> None:
    write_dataset(tmp_path, 2, size=90, config=SynthConfig(height=60))
    images_dir, truth_dir = FOLDERS["training"]
    for path in (tmp_path / images_dir).iterdir():
        with Image.open(path) as img:
            assert img.size == (90, 60)
    for path in (tmp_path / truth_dir).iterdir():
        with Image.open(path) as mask:
            assert mask.size == (90, 60)


def test_unknown_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="training.*validation.*test"):
        write_dataset(tmp_path, 1, size=64, split="train")
    assert not any(tmp_path.iterdir())


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[int] = []
    write_dataset(tmp_path, 3, size=64, progress=seen.append)
    assert seen == [1, 2, 3]


@pytest.mark.parametrize(("size", "height"), [(64, None), (100, 70), (70, 100)])
def test_sample_shapes_and_dtypes(size: int, height: int | None) -> None:
    image, masks = synthesize_sample(np.random.default_rng(5), SynthConfig(size=size, height=height))
    h = height if height is not None else size
    assert image.shape == (h, size, 3) and image.dtype == np.uint8
    assert masks.shape == (len(ATTRIBUTES), h, size) and masks.dtype == np.uint8
    assert set(np.unique(masks).tolist()) <= {0, 1}


def test_config_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="presence"):
        SynthConfig(presence={"streaks": 0.9}, none_fraction=0.2)
    with pytest.raises(ValueError, match="unknown attributes"):
        SynthConfig(presence={"dots": 0.5})
    with pytest.raises(ValueError):
        SynthConfig(size=8)


# --- masks agree with the picture -------------------------------------------------------------


def test_mask_is_non_empty_iff_structure_drawn() -> None:
    config = SynthConfig(size=96)
    seen_drawn = seen_empty = 0
    for i in range(40):
        sample = render_sample(np.random.default_rng([21, i]), config)
        non_empty = sample.masks.reshape(len(ATTRIBUTES), -1).any(axis=1)
        assert np.array_equal(non_empty, sample.presence), i
        seen_drawn += int(non_empty.sum())
        seen_empty += int((~non_empty).sum())
    assert seen_drawn > 10 and seen_empty > 10


def test_image_without_attributes_has_empty_masks() -> None:
    config = SynthConfig(size=96)
    found = 0
    for i in range(60):
        sample = render_sample(np.random.default_rng([22, i]), config)
        if not sample.presence.any():
            found += 1
            assert not sample.masks.any()
            assert sample.lesion.any()  # still a lesion, just no structure
    assert found >= 4  # about 20 % of images show no attribute


def test_pigment_network_is_darker_than_skin_and_reticular() -> None:
    config = _only("pigment_network", size=192)
    for i in range(4):
        sample = render_sample(np.random.default_rng([23, i]), config)
        luma = _luma(sample.image)
        network = sample.masks[ATTRIBUTES.index("pigment_network")].astype(bool)
        skin = sample.field & ~ndimage.binary_dilation(sample.lesion, iterations=8)
        assert network.sum() > 100 and skin.sum() > 100
        assert luma[network].mean() < luma[skin].mean() - 15
        # dark lines thinner than the holes: a strong black top-hat, unlike the plain lesion
        lines = _dark_detail(luma, 7)
        core = ndimage.binary_erosion(network, iterations=3)
        plain = ndimage.binary_erosion(sample.lesion, iterations=4) & ~ndimage.binary_dilation(
            network, iterations=4
        )
        assert lines[core].mean() > 4
        if plain.sum() > 200:
            assert lines[core].mean() > 1.5 * lines[plain].mean()


def test_masks_are_regions_not_lines() -> None:
    for name in ("pigment_network", "globules", "streaks"):
        sample = render_sample(np.random.default_rng([24, 0]), _only(name, size=256))
        mask = sample.masks[ATTRIBUTES.index(name)].astype(bool)
        opened = ndimage.binary_opening(mask, iterations=2)
        assert opened.sum() > 0.6 * mask.sum(), name


def test_milia_are_bright_spots_brighter_than_the_lesion_around_them() -> None:
    config = _only("milia_like_cyst", size=192)
    for i in range(4):
        sample = render_sample(np.random.default_rng([25, i]), config)
        luma = _luma(sample.image)
        milia = sample.masks[ATTRIBUTES.index("milia_like_cyst")].astype(bool)
        around = _ring(milia, 6) & sample.lesion
        assert milia.any() and around.sum() > 20
        assert luma[milia].mean() > luma[around].mean() + 5
        assert luma[milia].max() > np.percentile(luma[around], 99) + 20
        spots = _dark_detail(-luma, 9)  # white top-hat: bright spots smaller than 9 px
        assert spots[milia].max() > 30
        assert spots[sample.lesion & ~ndimage.binary_dilation(milia, iterations=2)].max() < spots[milia].max()


def test_globules_are_dark_dots_inside_their_region() -> None:
    config = _only("globules", size=192)
    for i in range(4):
        sample = render_sample(np.random.default_rng([26, i]), config)
        luma = _luma(sample.image)
        globules = sample.masks[ATTRIBUTES.index("globules")].astype(bool)
        assert globules.any()
        dots = _dark_detail(luma, 9)  # black top-hat: dark spots smaller than 9 px
        elsewhere = sample.lesion & ~ndimage.binary_dilation(globules, iterations=2)
        assert dots[globules].max() > 30
        assert np.percentile(dots[globules], 95) > 2 * np.percentile(dots[elsewhere], 95)
        assert (globules & ~ndimage.binary_dilation(sample.lesion, iterations=10)).sum() == 0


def test_streaks_cross_the_lesion_border() -> None:
    config = _only("streaks", size=192)
    for i in range(4):
        sample = render_sample(np.random.default_rng([27, i]), config)
        streaks = sample.masks[ATTRIBUTES.index("streaks")].astype(bool)
        assert (streaks & sample.lesion).sum() > 10
        assert (streaks & ~sample.lesion & sample.field).sum() > 10
        # a band at the rim, not the whole lesion
        assert (streaks & sample.lesion).sum() < 0.6 * sample.lesion.sum()


def test_masks_are_zero_under_the_dermoscope_border() -> None:
    config = SynthConfig(
        size=128,
        presence=dict.fromkeys(ATTRIBUTES, 1.0),
        none_fraction=0.0,
        vignette_probability=1.0,
        **QUIET,
    )
    for i in range(5):
        sample = render_sample(np.random.default_rng([28, i]), config)
        assert sample.presence.all()
        hidden = ~sample.field
        assert hidden.sum() > 100
        assert _luma(sample.image)[hidden].mean() < 25
        assert not sample.masks[:, hidden].any()
        for corner in (np.s_[:3, :3], np.s_[:3, -3:], np.s_[-3:, :3], np.s_[-3:, -3:]):
            assert sample.image[corner].max() < 60
            assert not sample.masks[(slice(None), *corner)].any()


def test_negative_network_lines_are_lighter_than_its_holes() -> None:
    config = _only("negative_network", size=256)
    for i in range(3):
        sample = render_sample(np.random.default_rng([29, i]), config)
        luma = _luma(sample.image)
        region = sample.masks[ATTRIBUTES.index("negative_network")].astype(bool)
        core = ndimage.binary_erosion(region, iterations=4)
        if core.sum() < 200:
            continue
        values = luma[core]
        # a reticular light/dark pattern: a wide spread of brightness inside the region
        assert np.percentile(values, 90) - np.percentile(values, 10) > 15


# --- frequencies --------------------------------------------------------------------------------


def test_presence_frequencies_match_isic_2018() -> None:
    rng = np.random.default_rng(2018)
    config = SynthConfig()
    draws = np.array([sample_presence(rng, config) for _ in range(3000)])
    assert draws.shape == (3000, len(ATTRIBUTES)) and draws.dtype == bool
    for name, target in TARGETS.items():
        assert abs(draws[:, ATTRIBUTES.index(name)].mean() - target) < 0.03, name
    assert abs((~draws.any(axis=1)).mean() - 0.20) < 0.03
    assert (draws.sum(axis=1) >= 2).mean() > 0.1  # attributes overlap
    network, milia = ATTRIBUTES.index("pigment_network"), ATTRIBUTES.index("milia_like_cyst")
    assert (draws[:, network] & draws[:, milia]).any()


def test_presence_follows_a_custom_config() -> None:
    rng = np.random.default_rng(1)
    config = SynthConfig(presence={"streaks": 0.5}, none_fraction=0.5)
    draws = np.array([sample_presence(rng, config) for _ in range(2000)])
    assert not np.delete(draws, ATTRIBUTES.index("streaks"), axis=1).any()
    assert abs(draws[:, ATTRIBUTES.index("streaks")].mean() - 0.5) < 0.04


def test_low_total_presence_still_draws_one_attribute_per_image() -> None:
    rng = np.random.default_rng(2)
    config = SynthConfig(presence={"globules": 0.1, "streaks": 0.1}, none_fraction=0.5)
    draws = np.array([sample_presence(rng, config) for _ in range(1000)])
    some = draws.any(axis=1)
    assert abs(some.mean() - 0.5) < 0.05
    assert (draws[some].sum(axis=1) == 1).all()
