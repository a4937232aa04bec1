"""The generator's "real" look (dermseg.data.synthetic with dermseg.data.synth_optics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from dermseg.attributes import ATTRIBUTES
from dermseg.data import synth_optics as optics
from dermseg.data.synthetic import SYNTHETIC_MARKER, SynthConfig, _absorption, render_sample, write_dataset


def _files(root: Path) -> dict[str, bytes]:
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and p.name != SYNTHETIC_MARKER)
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    config = SynthConfig.real()
    write_dataset(tmp_path / "a", 4, size=96, seed=3, config=config, lesion_masks=True)
    write_dataset(tmp_path / "b", 4, size=96, seed=3, config=config, lesion_masks=True)
    write_dataset(tmp_path / "c", 4, size=96, seed=4, config=config, lesion_masks=True)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 4 * 7 and a == b
    assert all(a[k] != c[k] for k in a if k.endswith(".jpg"))


def test_real_look_differs_from_classic_and_keeps_the_classic_default() -> None:
    assert SynthConfig().look == "classic"
    real, classic = SynthConfig.real(size=96), SynthConfig(size=96)
    assert real.look == "real" and real.jpeg_quality == (60, 98)
    assert SynthConfig.real(jpeg_quality=(90, 90)).jpeg_quality == (90, 90)  # overrides win
    a = render_sample(np.random.default_rng(1), real).image
    b = render_sample(np.random.default_rng(1), classic).image
    assert a.shape == b.shape and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="look must be one of classic, real"):
        SynthConfig(look="photo")


def test_masks_agree_with_presence_and_stay_in_the_field() -> None:
    config = SynthConfig.real(size=128, vignette_probability=1.0)
    drawn = 0
    for i in range(12):
        sample = render_sample(np.random.default_rng([31, i]), config)
        non_empty = sample.masks.reshape(len(ATTRIBUTES), -1).any(axis=1)
        assert np.array_equal(non_empty, sample.presence), i
        assert not sample.masks[:, ~sample.field].any() and not sample.lesion[~sample.field].any()
        drawn += int(non_empty.sum())
    assert drawn > 5


def test_lesion_is_darker_than_skin() -> None:
    config = SynthConfig.real(size=128, hair_probability=0.0, vignette_probability=0.0)
    for i in range(6):
        sample = render_sample(np.random.default_rng([32, i]), config)
        luma = sample.image.astype(float).mean(axis=2)
        assert luma[sample.lesion].mean() < luma[~sample.lesion].mean() - 5, i


@pytest.mark.parametrize(
    ("density", "ratio"),
    [(1.0, (0.5, 0.4, 0.3)), (2.0, (0.9, 0.5, 0.2)), (0.5, (0.97, 0.97, 0.97))],
)
def test_absorption_of_a_uniform_density_is_minus_log_ratio_over_density(
    density: float, ratio: tuple
) -> None:
    k = _absorption(np.full(50, density, np.float32), np.array(ratio))
    assert k == pytest.approx(-np.log(ratio) / density, rel=1e-4)


def test_absorption_matches_the_mean_brightness_of_an_uneven_lesion() -> None:
    d = np.random.default_rng(0).uniform(0.2, 3.0, 1000).astype(np.float32)
    ratio = np.array([0.6, 0.45, 0.35])
    k = _absorption(d, ratio)
    assert np.exp(-k[:, None] * d[None]).mean(axis=1) == pytest.approx(ratio, abs=1e-4)


def test_view_without_vignette_is_fully_visible_and_vignettes_darken_corners() -> None:
    flat = optics.sample_view(np.random.default_rng(0), (64, 80), 0.125, 0.0)
    assert (flat.visibility == 1).all() and flat.field.all()
    for i in range(10):
        view = optics.sample_view(np.random.default_rng(i), (128, 160), 0.25, 1.0)
        assert view.visibility[64, 80] > 0.9 and view.visibility[0, 0] < view.visibility[64, 80]
        assert 0.0 <= view.floor <= 0.12


def test_polarised_pictures_get_no_bubbles_nor_sheen() -> None:
    view = optics.View(True, np.ones((64, 64), np.float32), 0.0)
    planes = [np.full((64, 64), 0.5, np.float32) for _ in range(3)]
    for seed in range(5):
        optics.bubbles(np.random.default_rng(seed), planes, view, 0.125)
        optics.surface_reflection(np.random.default_rng(seed), planes, view)
    assert all((p == 0.5).all() for p in planes)


def test_effects_are_deterministic_and_stay_in_range() -> None:
    view = optics.View(False, np.ones((96, 96), np.float32), 0.05)

    def run(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        planes = [np.full((96, 96), v, np.float32) for v in (0.8, 0.6, 0.5)]
        optics.surface_reflection(rng, planes, view)
        optics.glints(rng, planes, view, 0.1875)
        optics.bubbles(rng, planes, view, 0.1875)
        optics.ruler(rng, planes, 0.1875)
        optics.ink(rng, planes, 0.1875)
        optics.fine_texture(rng, planes, 0.1875)
        return optics.finish(rng, planes, view, (0.2, 1.0), (0.003, 0.02), 0.1875)

    a, b = run(7), run(7)
    assert a.dtype == np.uint8 and a.shape == (96, 96, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, run(8))


@pytest.mark.parametrize(
    ("name", "size", "ratio"), [("pigment_network", 7, 1.2), ("globules", 9, 1.5), ("streaks", 7, 1.5)]
)
def test_dark_structures_stand_out_of_the_lesion_under_the_camera_effects(
    name: str, size: int, ratio: float
) -> None:
    config = SynthConfig.real(
        size=256, presence={name: 1.0}, none_fraction=0.0, hair_probability=0.0, veil_probability=0.0
    )
    inside, elsewhere = [], []
    for i in range(8):
        sample = render_sample(np.random.default_rng([40, i]), config)
        luma = sample.image.astype(float) @ np.array([0.299, 0.587, 0.114])
        dark = ndimage.grey_closing(luma, size=(size, size)) - luma  # black top-hat: dark detail
        region = sample.masks[ATTRIBUTES.index(name)].astype(bool)
        rest = sample.lesion & ~ndimage.binary_dilation(region, iterations=4)
        inside.append(np.percentile(dark[region], 90))
        if rest.sum() > 50:
            elsewhere.append(np.percentile(dark[rest], 90))
    assert np.mean(inside) > ratio * np.mean(elsewhere)
