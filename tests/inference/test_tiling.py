"""Tiled prediction (inference/tiling.py): tile positions, Gaussian blending, and the geometry of
the probabilities a tiled segmenter maps back to the full-resolution frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dermseg.inference.lesion_field import LesionBox
from dermseg.inference.segmenter import Segmenter
from dermseg.inference.tiling import (
    Tiling,
    gaussian_weights,
    sliding_window,
    tile_boxes,
    tile_starts,
    training_crop_size,
)
from tests.inference.test_lesion_field import FixedLesion, Sure
from tests.inference.test_segmenter import Brightness

META = {
    "encoding": "multilabel",
    "input_size": 64,
    "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
    "thresholds": [0.5] * 5,
    "crop_background": False,
    "config": {"data": {"size": 64, "crop_size": 48}},
}


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "starts"),
    [
        (10, 4, 0.5, [0, 2, 4, 6]),  # steps of exactly half a tile
        (11, 4, 0.5, [0, 2, 4, 5, 7]),  # 7 spread over 4 gaps: 1.75, 3.5, 5.25 rounded
        (10, 4, 0.0, [0, 3, 6]),  # no overlap asked: 6 over 2 gaps of 3 (they overlap by 1)
        (4, 4, 0.5, [0]),
        (3, 4, 0.5, [0]),  # a tile longer than the axis is clipped to it
        (96, 48, 0.5, [0, 24, 48]),
        (100, 48, 0.5, [0, 17, 35, 52]),  # 52 / 24 = 2.2 steps: 3 gaps of 17.3
    ],
)
def test_tile_starts(length: int, tile: int, overlap: float, starts: list[int]) -> None:
    assert tile_starts(length, tile, overlap) == starts
    assert starts[-1] + min(tile, length) == length  # the last tile ends at the edge


@pytest.mark.parametrize(("height", "width", "tile"), [(10, 11, 4), (7, 30, 8), (5, 5, 8), (64, 85, 48)])
def test_tiles_cover_the_image_exactly_and_stay_inside_it(height: int, width: int, tile: int) -> None:
    covered = np.zeros((height, width), int)
    for top, left, bottom, right in tile_boxes(height, width, tile):
        assert 0 <= top < bottom <= height and 0 <= left < right <= width
        assert (bottom - top, right - left) == (min(tile, height), min(tile, width))
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1


def test_tile_boxes_of_a_small_case_by_hand() -> None:
    # 6 x 10 image, tiles of 4: rows start at 0 and 2, columns at 0, 2, 4, 6
    boxes = tile_boxes(6, 10, 4)
    assert boxes == [(t, c, t + 4, c + 4) for t in (0, 2) for c in (0, 2, 4, 6)]


def test_gaussian_weights_by_hand() -> None:
    w = gaussian_weights(8, 8)  # sigma 8 / 8 = 1, centre 3.5
    assert w.shape == (8, 8) and w.dtype == torch.float32
    assert w[3, 3].item() == pytest.approx(math.exp(-0.25))  # 0.5 off the centre each way
    assert w[0, 0].item() == pytest.approx(math.exp(-(3.5**2)))  # 3.5 sigma off each way
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.flip(1)) and torch.equal(w, w.T)
    odd = gaussian_weights(9, 9, sigma_fraction=1 / 3)  # sigma 3, centre 4
    assert odd[4, 4].item() == pytest.approx(1.0)
    assert odd[4, 7].item() == pytest.approx(math.exp(-0.5)) and odd[1, 1].item() == pytest.approx(
        math.exp(-1)
    )
    assert gaussian_weights(48, 48).min() > 0  # positive everywhere: every covered pixel has a weight


def test_overlapping_tiles_are_blended_by_their_gaussian_weights() -> None:
    # a 4 x 6 image, tiles of 4: two tiles, columns 0..3 and 2..5; the first says 0, the second 1
    calls: list[int] = []

    def forward(tiles: torch.Tensor) -> torch.Tensor:
        calls.append(len(calls))
        return torch.full((tiles.shape[0], 1, *tiles.shape[2:]), float(len(calls) - 1))

    out = sliding_window(torch.zeros(1, 3, 4, 6), forward, tile=4, batch=1)
    assert out.shape == (1, 1, 4, 6) and len(calls) == 2
    # column 2 is column 2 of the first tile (0.5 from its centre 1.5, sigma 0.5) and column 0 of
    # the second (1.5 from its centre): weights exp(-0.5) and exp(-4.5)
    expected = math.exp(-4.5) / (math.exp(-0.5) + math.exp(-4.5))
    assert out[0, 0, :, 2] == pytest.approx([expected] * 4, rel=1e-5)
    assert out[0, 0, :, 3] == pytest.approx([1 - expected] * 4, rel=1e-5)  # mirror image
    assert out[0, 0, :, :2].eq(0).all() and out[0, 0, :, 4:].eq(1).all()  # covered by one tile only


@pytest.mark.parametrize(("height", "width", "batch"), [(64, 85, 4), (50, 50, 3), (30, 200, 1)])
def test_a_constant_model_gives_a_constant_map(height: int, width: int, batch: int) -> None:
    out = sliding_window(
        torch.zeros(1, 3, height, width),
        lambda t: torch.full((t.shape[0], 2, *t.shape[2:]), 0.3),
        24,
        0.5,
        batch,
    )
    assert out.shape == (1, 2, height, width)
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-6)


def test_a_constant_model_gives_a_constant_full_resolution_map_inside_the_field() -> None:
    model = Sure()
    seg = Segmenter.from_model(model, {**META, "crop_background": True})
    seg.tiling = Tiling(batch=2)
    image = np.zeros((120, 200, 3), np.uint8)
    image[:, 40:160] = (150, 100, 80)  # the dermoscope's field: 120 x 120 between black bars
    probs = seg.probabilities(image)
    field = seg.field_of_view(image)
    inside = probs[:, field.top : field.bottom, field.left : field.right]
    np.testing.assert_allclose(inside, 1 / (1 + math.exp(-20.0)), atol=1e-6)
    assert probs[:, :, : field.left].max() == 0 and probs[:, :, field.right :].max() == 0
    # the 120 x 120 field at the training scale is 64 x 64 (a column more if the detected box is
    # one wider): tiles of 48 (the checkpoint's crop) at 0 and 16 (or 17) each way, 2 per batch
    assert model.seen == [(2, 3, 48, 48), (2, 3, 48, 48)]


def _bright_rectangle() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    image = np.full((128, 200, 3), 50, np.uint8)  # dark skin: mean 0.2, logit -6
    box = (37, 61, 93, 150)  # rows 37..92, columns 61..149: not aligned to the tiles or pixels
    image[box[0] : box[2], box[1] : box[3]] = 230  # bright: mean 0.9, logit +8
    return image, box


@pytest.mark.parametrize(("scale", "tolerance"), [(1.0, 2), (0.5, 1)])
def test_a_painted_rectangle_comes_back_where_it_was_drawn(scale: float, tolerance: int) -> None:
    # the image is 128 px high: at scale 1 the working image is 64 high (2 original pixels per
    # network pixel), at 0.5 it is 128 high (1 per pixel); the mask edge lies within a network pixel
    image, (top, left, bottom, right) = _bright_rectangle()
    seg = Segmenter.from_model(Brightness(), META)
    seg.tiling = Tiling(scale=scale)
    mask = seg.masks(image)[0]
    drawn = np.zeros(mask.shape, bool)
    drawn[top:bottom, left:right] = True
    t = tolerance
    assert mask[top + t : bottom - t, left + t : right - t].all()  # inside: found
    outside = np.ones(mask.shape, bool)
    outside[top - t : bottom + t, left - t : right + t] = False
    assert not mask[outside].any()  # outside: nothing
    assert np.abs(mask.astype(int) - drawn).sum() <= 2 * t * ((bottom - top) + (right - left))


def test_at_the_training_scale_a_pointwise_model_gives_the_one_resize_answer() -> None:
    image, _ = _bright_rectangle()
    seg = Segmenter.from_model(Brightness(), META)
    resized = seg.probabilities(image)
    seg.tiling = Tiling(overlap=0.25, batch=3)
    np.testing.assert_allclose(seg.probabilities(image), resized, atol=1e-5)


def test_flip_tta_keeps_the_tiled_geometry() -> None:
    image, _ = _bright_rectangle()
    seg = Segmenter.from_model(Brightness(), META)
    seg.tiling = Tiling(scale=0.5)
    plain = seg.probabilities(image)
    seg.tta = True
    np.testing.assert_allclose(seg.probabilities(image), plain, atol=1e-5)


def test_tiles_run_on_the_lesion_box_chosen_by_a_lesion_model() -> None:
    image, _ = _bright_rectangle()
    lesion = np.zeros(image.shape[:2], bool)
    lesion[40:90, 60:150] = True
    model = Sure()
    seg = Segmenter.from_model(model, META)
    seg.use_lesion_model(FixedLesion(lesion), margin=0.1, empty_outside=True)  # type: ignore[arg-type]
    seg.tiling = Tiling()
    field = seg.field_of_view(image)
    assert isinstance(field, LesionBox) and field.region is not None
    probs = seg.probabilities(image, field)
    # the box's short side at the working size 64: every tile is 48 px from it
    assert all(shape[2:] == (48, 48) for shape in model.seen)
    kept = np.zeros(image.shape[:2], bool)
    kept[field.top : field.bottom, field.left : field.right] = field.region[
        field.top : field.bottom, field.left : field.right
    ]
    np.testing.assert_allclose(probs[:, kept], 1 / (1 + math.exp(-20.0)), atol=1e-6)
    assert probs[:, ~kept].max() == 0


def test_the_tile_side_is_the_training_crop() -> None:
    assert training_crop_size(META) == 48
    assert training_crop_size({"input_size": 64}) == 64  # no config: the working size
    assert training_crop_size({"input_size": 64, "checkpoint_meta": META}) == 48  # an ONNX export's copy
    seg = Segmenter.from_model(Sure(), META)
    assert seg.crop_size == 48
    assert seg.tiling_description == "prediction: one resize of the field to 64 px (short side)"
    seg.tiling = Tiling(scale=0.5, batch=2)
    assert seg.tiling_description == (
        "prediction: tiles: 48 px, overlap 0.5, 2 per batch, short side 128 (scale 0.5 of the training scale)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0.0}, "tile scale"),
        ({"scale": 3}, "tile scale"),
        ({"scale": float("nan")}, "tile scale"),
        ({"overlap": 0.95}, "tile overlap"),
        ({"overlap": -0.1}, "tile overlap"),
        ({"batch": 0}, "tile batch"),
        ({"batch": True}, "tile batch"),
        ({"size": 0}, "tile size"),
    ],
)
def test_tiling_settings_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tiling(**kwargs)


def test_the_shape_limit_names_the_working_size_of_the_tiles() -> None:
    from dermseg.data.shape_limits import ImageShapeError, ShapeLimits

    seg = Segmenter.from_model(Sure(), META)
    seg.tiling = Tiling(scale=0.5)  # the working image's short side is 128, not 64
    seg.limits = ShapeLimits(max_aspect_ratio=20, max_side_factor=8)
    with pytest.raises(ImageShapeError, match=r"8 x the working size 128\)"):
        seg.probabilities(np.full((10, 100, 3), 120, np.uint8))  # 128 x 1280: past 8 x 128
