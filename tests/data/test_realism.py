"""Colour and texture statistics of skin and lesion (dermseg.data.realism)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dermseg.data.realism import STAT_NAMES, image_stats, lab_to_rgb, summarise, to_lab
from dermseg.data.synth_colour import REAL_STATS_PATH

PH2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "ph2_sample"  # beside the checkout


@pytest.mark.parametrize(
    "rgb", [(255, 255, 255), (0, 0, 0), (128, 128, 128), (226, 180, 166), (96, 60, 44), (40, 60, 120)]
)
def test_lab_to_rgb_inverts_to_lab(rgb: tuple[int, int, int]) -> None:
    image = np.array([[rgb]], np.uint8)
    back = lab_to_rgb(to_lab(image))
    assert np.abs(back * 255 - image).max() < 1.0


def test_white_and_black_have_their_textbook_lightness() -> None:
    lab = to_lab(np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8))[0]
    assert lab[0] == pytest.approx([100, 0, 0], abs=0.05)
    assert lab[1] == pytest.approx([0, 0, 0], abs=0.05)


def _two_tone(h: int = 300, w: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """A flat skin (200, 150, 130) with a flat disc lesion (100, 60, 40) of radius 80."""
    image = np.empty((h, w, 3), np.uint8)
    image[:] = (200, 150, 130)
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (w // 2, h // 2), 80, 255, -1)
    image[mask > 0] = (100, 60, 40)
    return image, mask


def test_flat_colours_give_their_lab_and_no_texture() -> None:
    image, mask = _two_tone()
    stats = image_stats(image, mask)
    assert stats is not None and list(stats) == list(STAT_NAMES)
    skin = to_lab(np.array([[[200, 150, 130]]], np.uint8))[0, 0]
    lesion = to_lab(np.array([[[100, 60, 40]]], np.uint8))[0, 0]
    for c, name in enumerate("Lab"):
        assert stats[f"skin_{name}"] == pytest.approx(float(skin[c]), abs=0.05)
        assert stats[f"lesion_{name}"] == pytest.approx(float(lesion[c]), abs=0.05)
    for name in ("skin_L_std", "lesion_L_std", "skin_detail", "lesion_detail"):
        assert stats[name] == pytest.approx(0.0, abs=0.05), name  # the border band is left out


def test_fine_texture_raises_detail_but_not_a_smooth_gradient() -> None:
    image, mask = _two_tone()
    rng = np.random.default_rng(0)
    noisy = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    ramp = np.clip(image * np.linspace(0.8, 1.1, image.shape[1])[None, :, None], 0, 255).astype(np.uint8)
    noisy_stats, ramp_stats = image_stats(noisy, mask), image_stats(ramp, mask)
    assert noisy_stats is not None and ramp_stats is not None
    assert noisy_stats["skin_detail"] > 1.0 and noisy_stats["lesion_detail"] > 1.0
    assert ramp_stats["skin_detail"] < 0.2 and ramp_stats["skin_L_std"] > 2.0


def test_too_small_a_lesion_or_skin_is_not_measured() -> None:
    image, _ = _two_tone()
    tiny = np.zeros(image.shape[:2], np.uint8)
    tiny[150:155, 200:205] = 255
    assert image_stats(image, tiny) is None
    assert image_stats(image, np.full(image.shape[:2], 255, np.uint8)) is None
    dark = np.zeros_like(image)  # all under the dermoscope's black surround: no skin
    assert image_stats(dark, _two_tone()[1]) is None


def test_summarise_known_values_and_empty_input() -> None:
    rows = [dict.fromkeys(STAT_NAMES, v) for v in (1.0, 2.0, 3.0, 4.0, 5.0)]
    summary = summarise(rows)
    assert summary["skin_L"] == {
        "mean": 3.0,
        "std": pytest.approx(2**0.5),
        "p25": 2.0,
        "p50": 3.0,
        "p75": 4.0,
    }
    with pytest.raises(ValueError, match="no images"):
        summarise([])


@pytest.mark.skipif(not PH2.is_dir(), reason="the shared PH2 sample is not beside this checkout")
def test_packaged_statistics_are_what_the_measurement_gives_on_ph2() -> None:
    data = json.loads(REAL_STATS_PATH.read_text())
    assert "PH2" in data["source"] and len(data["images"]) >= 100
    for row in data["images"][:3]:
        image = cv2.cvtColor(cv2.imread(str(PH2 / "images" / f"{row['id']}.jpg")), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(PH2 / "masks" / f"{row['id']}_lesion.png"), cv2.IMREAD_GRAYSCALE)
        stats = image_stats(image, mask)
        assert stats is not None
        for name in STAT_NAMES:
            assert row[name] == pytest.approx(stats[name], abs=2e-3), (row["id"], name)
