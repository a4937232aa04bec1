"""Tests of dermseg.data.transforms: image/mask alignment, shapes, padding, seeding, config."""

from __future__ import annotations

import math

import albumentations as A
import numpy as np
import pytest
import torch

from dermseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmentationTransform,
    TransformConfig,
    apply,
    build_eval_transform,
    build_train_transform,
    resized_shape,
    to_tensor,
)
from dermseg.errors import ConfigError

# --------------------------------------------------------------------------- a position-coded sample
#
# The image is a grid of uniform blocks; block (i, j) has colour (R, G, B) = (10 + 15 i, 10 + 14 j, 128),
# so every block interior tells where it came from. Mask k is a pseudo-random function of (i, j, k),
# hence a function of the colour. After any correct geometric transform, every pixel inside a block
# (its 3x3 neighbourhood one colour) must carry the mask bits of the block its colour names.

BLOCK = 25
N_MASKS = 5


def mask_bits(i: np.ndarray, j: np.ndarray, k: int) -> np.ndarray:
    """Deterministic pseudo-random 0/1 of block (i, j) for mask k."""
    return (((i * 7 + j * 13 + k * 5 + 3) * 2654435761) >> 9) & 1


def coded_sample(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``(h, w, 3)`` uint8 block-coded image and its ``(5, h, w)`` uint8 masks."""
    assert h // BLOCK < 16 and w // BLOCK < 16
    i = np.repeat(np.arange(h) // BLOCK, w).reshape(h, w)
    j = np.tile(np.arange(w) // BLOCK, h).reshape(h, w)
    image = np.stack([10 + 15 * i, 10 + 14 * j, np.full_like(i, 128)], axis=-1).astype(np.uint8)
    masks = np.stack([mask_bits(i, j, k) for k in range(N_MASKS)]).astype(np.uint8)
    return image, masks


def check_alignment(image: np.ndarray, masks: np.ndarray) -> tuple[int, int]:
    """Compare masks with the function of the (transformed) image at every block-interior pixel.

    Returns:
        ``(checked, wrong)``: pixels checked, and pixels where a mask disagrees.
    """
    h, w = image.shape[:2]
    code = image.astype(np.int64) @ np.array([1, 256, 65536])
    padded = np.pad(code, 1, mode="edge")
    interior = np.ones((h, w), bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            interior &= padded[dy : dy + h, dx : dx + w] == code
    r, g, b = (image[..., c].astype(np.int64) for c in range(3))
    valid = interior & (b == 128) & ((r - 10) % 15 == 0) & ((g - 10) % 14 == 0)
    i, j = (r - 10) // 15, (g - 10) // 14
    wrong = np.zeros((h, w), bool)
    for k in range(N_MASKS):
        wrong |= valid & (masks[k] != mask_bits(i, j, k))
    return int(valid.sum()), int(wrong.sum())


def no_jitter(**kwargs: object) -> TransformConfig:
    return TransformConfig(color_jitter=0.0, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- alignment


@pytest.mark.parametrize(
    "cfg",
    [
        no_jitter(size=256, crop_size=192),
        no_jitter(size=256, crop_size=160, scale_jitter=(0.6, 1.6)),
        no_jitter(size=400, crop_size=128),  # upscaling
    ],
)
def test_masks_follow_the_image_through_training_transforms(cfg: TransformConfig) -> None:
    image, masks = coded_sample(300, 375)
    assert check_alignment(image, masks) == (check_alignment(image, masks)[0], 0)
    transform = build_train_transform(cfg, seed=123)
    for _ in range(40):
        out_image, out_masks = transform(image, masks)
        assert out_image.shape == (cfg.crop_size, cfg.crop_size, 3) and out_image.dtype == np.uint8
        assert out_masks is not None
        assert out_masks.shape == (N_MASKS, cfg.crop_size, cfg.crop_size) and out_masks.dtype == np.uint8
        assert set(np.unique(out_masks)) <= {0, 1}
        checked, wrong = check_alignment(out_image, out_masks)
        assert checked > 0.5 * cfg.crop_size**2
        assert wrong == 0


def test_alignment_check_detects_misaligned_masks() -> None:
    """The check above can fail: masks shifted by a few pixels or flipped alone are caught."""
    image, masks = coded_sample(300, 375)
    assert check_alignment(image, np.roll(masks, 3, axis=2))[1] > 0
    assert check_alignment(image, masks[:, ::-1])[1] > 0
    transform = build_train_transform(no_jitter(size=256, crop_size=192), seed=5)
    out_image, _ = transform(image, masks)
    _, other_masks = transform(image, masks)  # masks of another random draw
    assert check_alignment(out_image, other_masks)[1] > 0


def test_eval_transform_keeps_alignment_and_is_deterministic() -> None:
    image, masks = coded_sample(300, 375)
    cfg = TransformConfig(size=256, crop_size=128)
    first = build_eval_transform(cfg)
    out1, m1 = first(image, masks)
    out2, m2 = first(image, masks)
    out3, m3 = build_eval_transform(cfg)(image, masks)
    assert out1.shape == (*resized_shape(300, 375, 256), 3) == (256, 320, 3)
    assert m1 is not None and m1.shape == (N_MASKS, 256, 320)
    assert np.array_equal(out1, out2) and np.array_equal(out1, out3)
    assert np.array_equal(m1, m2) and np.array_equal(m1, m3)
    checked, wrong = check_alignment(out1, m1)
    assert checked > 0.5 * out1.shape[0] * out1.shape[1] and wrong == 0


def test_masks_are_resized_nearest_neighbour_on_the_pixel_grid() -> None:
    """Exact factor-2 resizes: upscaling replicates pixels, downscaling takes pixel (2y+1, 2x+1)."""
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 2, (5, 64, 80), dtype=np.uint8)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    _, up = build_eval_transform(TransformConfig(size=128, crop_size=64))(image, masks)
    assert np.array_equal(up, masks.repeat(2, axis=1).repeat(2, axis=2))
    _, down = build_eval_transform(TransformConfig(size=32, crop_size=32))(image, masks)
    assert np.array_equal(down, masks[:, 1::2, 1::2])


def test_colour_jitter_changes_the_image_only() -> None:
    image, masks = coded_sample(300, 375)
    plain = build_train_transform(no_jitter(size=256, crop_size=192))
    jitter = build_train_transform(TransformConfig(size=256, crop_size=192, color_jitter=0.4))
    for seed in range(10):
        plain.reseed(seed)
        jitter.reseed(seed)
        img_a, masks_a = plain(image, masks)
        img_b, masks_b = jitter(image, masks)
        assert np.array_equal(masks_a, masks_b)  # same geometry: the jitter draws come last
        assert not np.array_equal(img_a, img_b)
        # jitter is a per-pixel colour map: the jittered image has the plain one's block layout
        for axis in (0, 1):
            edges_a = (np.diff(img_a.astype(int), axis=axis) != 0).any(axis=2)
            edges_b = (np.diff(img_b.astype(int), axis=axis) != 0).any(axis=2)
            assert not (edges_b & ~edges_a).any()  # equal colours stay equal
            assert edges_b.sum() >= 0.9 * edges_a.sum()  # different ones (nearly always) stay different


# --------------------------------------------------------------------------- random behaviour


def _dihedral(x: np.ndarray) -> list[np.ndarray]:
    rotations = [np.rot90(x, k) for k in range(4)]
    return rotations + [r[:, ::-1] for r in rotations]


def test_flips_and_rotations_are_independent() -> None:
    """All 8 symmetries of the square occur (albumentations' Compose(seed=...) gives only 4)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    candidates = _dihedral(image)
    transform = build_train_transform(no_jitter(size=64, crop_size=64), seed=1)
    seen = set()
    for _ in range(80):
        out, _ = transform(image)
        matches = [k for k, c in enumerate(candidates) if np.array_equal(out, c)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))


def test_disabled_flips_leave_the_orientation() -> None:
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cfg = no_jitter(size=64, crop_size=64, hflip=False, vflip=False, rotate90=False)
    transform = build_train_transform(cfg, seed=1)
    for _ in range(10):
        assert np.array_equal(transform(image)[0], image)


def test_seeding_is_reproducible_and_crops_vary() -> None:
    image, masks = coded_sample(300, 375)
    cfg = TransformConfig(size=256, crop_size=128)
    a = build_train_transform(cfg, seed=42)
    b = build_train_transform(cfg, seed=42)
    outs = []
    for _ in range(5):
        (ia, ma), (ib, mb) = a(image, masks), b(image, masks)
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
        outs.append(ia)
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
    a.reseed(42)
    assert np.array_equal(a(image, masks)[0], outs[0])
    assert not np.array_equal(build_train_transform(cfg, seed=43)(image, masks)[0], outs[0])


class _Repeat(torch.utils.data.Dataset):
    def __init__(self, transform: SegmentationTransform) -> None:
        self.transform = transform
        self.image = np.random.default_rng(0).integers(0, 256, (128, 160, 3), dtype=np.uint8)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.transform(self.image)[0])


def test_dataloader_workers_draw_different_augmentations() -> None:
    transform = build_train_transform(TransformConfig(size=128, crop_size=64), seed=7)
    loader = torch.utils.data.DataLoader(_Repeat(transform), batch_size=1, num_workers=2)
    items = [batch[0].numpy() for batch in loader]
    # items 0 and 1 are the first draws of workers 0 and 1
    assert not np.array_equal(items[0], items[1])


# --------------------------------------------------------------------------- shapes and padding


def test_images_smaller_than_the_crop_are_zero_padded() -> None:
    image, masks = coded_sample(100, 125)
    cfg = no_jitter(size=64, crop_size=64, scale_jitter=(0.5, 0.5))  # short side 32 < crop 64
    transform = build_train_transform(cfg, seed=0)
    for _ in range(10):
        out, out_masks = transform(image, masks)
        assert out.shape == (64, 64, 3) and out_masks is not None and out_masks.shape == (5, 64, 64)
        pad = (out == 0).all(axis=2)
        assert pad.sum() == 64 * 64 - 32 * 40  # resized 32x40 content inside a 64x64 zero canvas
        assert not out_masks[:, pad].any()
        assert check_alignment(out, out_masks)[1] == 0


@pytest.mark.parametrize("shape", [(5, 7), (40, 30), (64, 64), (700, 90)])
def test_output_shapes_for_any_input_size(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    masks = rng.integers(0, 2, (5, *shape), dtype=np.uint8)
    cfg = TransformConfig(size=64, crop_size=48, scale_jitter=(0.5, 1.5))
    out, out_masks = build_train_transform(cfg, seed=0)(image, masks)
    assert out.shape == (48, 48, 3) and out_masks is not None and out_masks.shape == (5, 48, 48)
    out, out_masks = build_eval_transform(cfg)(image, masks)
    assert out.shape[:2] == resized_shape(*shape, 64) and min(out.shape[:2]) == 64
    assert out_masks is not None and out_masks.shape == (5, *out.shape[:2])


def test_apply_accepts_lists_bools_and_255_masks() -> None:
    image, masks = coded_sample(150, 200)
    cfg = no_jitter(size=96, crop_size=64)
    transform = build_train_transform(cfg, seed=3)
    ref_img, ref_masks = apply(transform, image, masks)
    for variant in (list(masks), masks.astype(bool), masks * 255, [m * 255 for m in masks]):
        transform.reseed(3)
        out_img, out_masks = apply(transform, image, variant)
        assert np.array_equal(out_img, ref_img) and np.array_equal(out_masks, ref_masks)
        assert out_masks is not None and out_masks.dtype == np.uint8 and out_masks.max() <= 1
    out_img, none = apply(transform, image, None)
    assert none is None and out_img.shape == (64, 64, 3)
    # a plain albumentations pipeline works too
    out_img, out_masks = apply(A.Compose([A.HorizontalFlip(p=1.0)]), image, masks * 255)
    assert np.array_equal(out_img, image[:, ::-1]) and np.array_equal(out_masks, masks[:, :, ::-1])


def test_bad_inputs_raise_value_error() -> None:
    image, masks = coded_sample(60, 80)
    transform = build_eval_transform(TransformConfig(size=32, crop_size=32))
    with pytest.raises(ValueError, match="masks are"):
        transform(image, masks[:, :50])
    with pytest.raises(ValueError, match="uint8"):
        transform(image.astype(np.float32), masks)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        transform(image, masks[0])


# --------------------------------------------------------------------------- to_tensor


def test_to_tensor_normalises_and_keeps_masks() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[0, 0] = (255, 255, 255)
    masks = np.zeros((5, 4, 6), np.uint8)
    masks[2, 1, 1] = 1
    x, y = to_tensor(image, masks)
    assert x.shape == (3, 4, 6) and x.dtype == torch.float32
    assert y is not None and y.shape == (5, 4, 6) and y.dtype == torch.uint8 and int(y.sum()) == 1
    for c in range(3):
        assert math.isclose(float(x[c, 0, 0]), (1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], rel_tol=1e-5)
        assert math.isclose(float(x[c, 1, 1]), -IMAGENET_MEAN[c] / IMAGENET_STD[c], rel_tol=1e-5)
    x, none = to_tensor(image, None, mean=(0, 0, 0), std=(1, 1, 1))
    assert none is None and float(x.max()) == 1.0 and float(x.min()) == 0.0
    with pytest.raises(ValueError):
        to_tensor(image, masks, mean=(0.5, 0.5))
    with pytest.raises(ValueError):
        to_tensor(image, masks[:, :3])


# --------------------------------------------------------------------------- config


def test_config_defaults_and_round_trip() -> None:
    cfg = TransformConfig()
    assert (cfg.size, cfg.crop_size, cfg.hflip, cfg.vflip, cfg.rotate90) == (512, 512, True, True, True)
    assert cfg.color_jitter == 0.2 and cfg.scale_jitter is None
    other = TransformConfig.from_dict({"size": 384, "crop_size": 256, "scale_jitter": [0.8, 1.2]})
    assert other.scale_jitter == (0.8, 1.2)
    assert TransformConfig.from_dict(other.to_dict()) == other


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 256, "crop_size": 512}, "crop_size"),
        ({"size": 0}, "size"),
        ({"size": 256.0}, "integer"),
        ({"crop_size": True}, "integer"),
        ({"color_jitter": -0.1}, "color_jitter"),
        ({"color_jitter": 1.5}, "color_jitter"),
        ({"color_jitter": float("nan")}, "color_jitter"),
        ({"color_jitter": "0.2"}, "color_jitter"),
        ({"scale_jitter": (1.2, 0.8)}, "scale_jitter"),
        ({"scale_jitter": (0.0, 1.0)}, "scale_jitter"),
        ({"scale_jitter": (0.5,)}, "scale_jitter"),
        ({"scale_jitter": "0.5,1.5"}, "scale_jitter"),
        ({"hflip": "yes"}, "hflip"),
    ],
)
def test_bad_config_raises_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TransformConfig(**kwargs)  # type: ignore[arg-type]


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown transform setting.*crop"):
        TransformConfig.from_dict({"crop": 128})
    with pytest.raises(ConfigError, match="mapping"):
        TransformConfig.from_dict([("size", 5)])  # type: ignore[arg-type]
