"""The lesion's box, checked against boxes worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dermseg.data.background import CropBox
from dermseg.data.lesion_box import lesion_box


def _lesion() -> np.ndarray:
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 30:70] = 255  # 20 rows x 40 columns
    return mask


def test_the_box_grows_by_the_margin_times_the_longer_side() -> None:
    # longer side 40, margin 0.25 -> 10 pixels on every side
    assert lesion_box(_lesion(), 0.25) == CropBox(30, 20, 70, 80)


def test_specks_do_not_stretch_the_box_but_a_second_lobe_does() -> None:
    mask = _lesion()
    mask[0:2, 0:2] = 1  # 4 pixels: under a tenth of the lesion's 800
    assert lesion_box(mask, 0.25) == CropBox(30, 20, 70, 80)
    mask[80:90, 30:40] = 1  # 100 pixels: a second lobe that counts
    # rows 40..90, cols 30..70: longer side 50, grown by 12.5 -> rows 27.5..102.5, cols 17.5..82.5
    assert lesion_box(mask, 0.25) == CropBox(27, 17, 100, 83)


def test_a_tiny_lesion_gets_at_least_a_quarter_of_the_field() -> None:
    mask = np.zeros((100, 100), bool)
    mask[50, 50] = True
    # 1 pixel grown about its centre to 25: 50 - 12 .. 51 + 12
    assert lesion_box(mask, 0.0) == CropBox(38, 38, 63, 63)


def test_a_lesion_in_a_corner_still_gets_the_minimum_side() -> None:
    mask = np.zeros((100, 100), bool)
    mask[0:4, 96:100] = True  # 4 x 4 in the top-right corner
    # margin 0.5 -> 2 pixels: rows -2..6 clipped to 0..6, widened to 25 and shifted inside: 0..25;
    # columns 94..102 clipped to 94..100, widened to 25 and shifted inside: 75..100
    assert lesion_box(mask, 0.5) == CropBox(0, 75, 25, 100)


def test_the_box_stays_in_the_field_and_only_the_lesion_inside_it_counts() -> None:
    field = CropBox(10, 10, 90, 90)
    assert lesion_box(_lesion(), 1.0, within=field) == field
    outside = np.zeros((100, 100), bool)
    outside[0:5, 0:5] = True
    assert lesion_box(outside, 0.2, within=field) is None
    assert lesion_box(np.zeros((50, 50), bool)) is None


@pytest.mark.parametrize("margin", [-0.1, 2.5, float("nan"), True, "0.2"])
def test_a_margin_out_of_range_is_refused(margin: object) -> None:
    with pytest.raises(ValueError, match="margin"):
        lesion_box(_lesion(), margin)  # type: ignore[arg-type]
