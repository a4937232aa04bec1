"""``augment.rotate`` and ``augment.scale``: one affine warp, the same on the image and its masks."""

from __future__ import annotations

import numpy as np
import pytest

from dermseg.data.transforms import TransformConfig, apply, build_train_transform
from dermseg.errors import ConfigError

RED, GREEN = (220, 30, 30), (30, 200, 30)


def _crafted(h: int = 80, w: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """A green image with a red off-centre L shape (not symmetric under any rotation); the mask
    is exactly where the image is red."""
    mask = np.zeros((h, w), bool)
    mask[15:60, 20:32] = True
    mask[48:60, 20:70] = True
    image = np.empty((h, w, 3), np.uint8)
    image[:] = GREEN
    image[mask] = RED
    return image, mask


def _geometry_only(**kwargs: float) -> TransformConfig:
    return TransformConfig(
        size=80, crop_size=80, hflip=False, vflip=False, rotate90=False, color_jitter=0.0, **kwargs
    )


def _near(mask: np.ndarray) -> np.ndarray:
    """Pixels within one pixel (8-neighbourhood) of the mask's boundary."""
    padded = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    shifted = [padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return np.any([s != mask for s in shifted], axis=0)


@pytest.mark.parametrize("seed", range(8))
def test_image_and_mask_stay_aligned(seed: int) -> None:
    image, mask = _crafted()
    transform = build_train_transform(_geometry_only(rotate=45.0, scale=0.3), seed=seed)
    out_image, out_masks = apply(transform, image, mask[None])
    assert out_image.shape == (80, 80, 3) and out_masks.shape == (1, 80, 80)
    red = out_image[..., 0].astype(int) > out_image[..., 1].astype(int)  # where the image is red
    warped = out_masks[0].astype(bool)
    disagree = red != warped
    # bilinear (image) and nearest (mask) differ only on the boundary, never inside or outside it
    assert not (disagree & ~_near(warped)).any()
    assert disagree.sum() <= 0.5 * _near(warped).sum()


def test_the_warp_rotates_by_any_angle_and_zooms() -> None:
    image, mask = _crafted()
    areas, tilted = [], 0
    for seed in range(12):
        transform = build_train_transform(_geometry_only(rotate=40.0, scale=0.2), seed=seed)
        _, out = apply(transform, image, mask[None])
        warped = out[0].astype(bool)
        rows, cols = np.nonzero(warped)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        # an L of two axis-aligned bars fills 44 % of its bounding box (996 of 45 x 50); tilted, less
        tilted += warped.sum() / box < 0.38
        areas.append(warped.sum())
    area = mask.sum()
    # the mask keeps its area up to the zoom squared (x0.8 to x1.2), plus reflected copies at
    # the border (none here: the L stays inside the frame), and the zoom varies between seeds
    assert all(0.8**2 * area * 0.9 <= a <= 1.2**2 * area * 1.1 for a in areas)
    assert max(areas) - min(areas) > 0.1 * area
    assert tilted >= 6


def test_off_by_default() -> None:
    cfg = TransformConfig()
    assert cfg.rotate == 0.0 and cfg.scale == 0.0
    names = [type(t).__name__ for t in build_train_transform(cfg, seed=0).compose.transforms]
    assert "Affine" not in names
    names = [type(t).__name__ for t in build_train_transform(_geometry_only(rotate=10.0), seed=0).compose]
    assert names[:3] == ["SmallestMaxSize", "Affine", "RandomCrop"]  # rotated before the crop


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rotate": -5.0}, r"rotate must be in \[0, 180\]"),
        ({"rotate": 200.0}, r"rotate must be in \[0, 180\]"),
        ({"scale": 1.0}, r"scale must be in \[0, 1\)"),
        ({"scale": float("nan")}, r"scale must be in \[0, 1\)"),
        ({"rotate": True}, "rotate must be a number"),
    ],
)
def test_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TransformConfig(**kwargs)
