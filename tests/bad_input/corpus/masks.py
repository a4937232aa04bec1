"""Corpus cases that break (or change) a mask: its bytes, size, mode, values, name, or the file
system entry itself; and a mask without its image."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from tests.bad_input.corpus.base import (
    MASKS,
    OK,
    TARGET,
    TARGET_MASK,
    Case,
    Ok,
    block,
    bomb_png,
    err,
    make_unreadable,
    mask_path,
    save_mask,
    symlink_loop,
)


def mask_without_image(root: Path) -> Path:
    path = root / MASKS / "ISIC_0000099_attribute_globules.png"
    shutil.copyfile(mask_path(root), path)
    return path


def mask_zero_bytes(root: Path) -> Path:
    mask_path(root).write_bytes(b"")
    return mask_path(root)


def mask_truncated_png(root: Path) -> Path:
    noise = np.random.default_rng(0).random((64, 64)) > 0.5
    save_mask(mask_path(root), np.where(noise, 255, 0).astype(np.uint8))
    data = mask_path(root).read_bytes()
    mask_path(root).write_bytes(data[: len(data) // 2])
    return mask_path(root)


def mask_wrong_size(root: Path) -> Path:
    return save_mask(mask_path(root), np.zeros((10, 10), np.uint8))


def mask_rgb_colour(root: Path) -> Path:
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[block()] = (255, 0, 0)
    return save_mask(mask_path(root), rgb)


def mask_rgb_grey(root: Path) -> Path:
    return save_mask(mask_path(root), np.where(block(), 255, 0).astype(np.uint8), "RGB")


def mask_16bit(root: Path) -> Path:
    return save_mask(mask_path(root), np.where(block(), 65535, 0).astype(np.uint16))


def _palette_mask(root: Path, white: tuple[int, int, int]) -> Path:
    img = Image.fromarray(block().astype(np.uint8), "L").convert("P")  # indices 0 and 1
    img.putpalette([0, 0, 0, *white] + [0, 0, 0] * 254)
    img.save(mask_path(root))
    return mask_path(root)


def mask_palette(root: Path) -> Path:
    return _palette_mask(root, (255, 255, 255))


def mask_palette_coloured(root: Path) -> Path:
    return _palette_mask(root, (255, 0, 0))


def mask_zero_one(root: Path) -> Path:
    return save_mask(mask_path(root), block().astype(np.uint8))


def mask_grey_levels(root: Path) -> Path:
    m = np.zeros((64, 64), np.uint8)
    m[16:40, 20:30], m[16:40, 30:38], m[16:40, 38:44] = 100, 200, 255
    return save_mask(mask_path(root), m)


def mask_is_folder(root: Path) -> Path:
    mask_path(root).unlink()
    mask_path(root).mkdir()
    return mask_path(root)


def mask_symlink_loop(root: Path) -> Path:
    return symlink_loop(mask_path(root), "loop_partner.png")


def mask_unreadable(root: Path) -> Path:
    return make_unreadable(mask_path(root))


def mask_bomb(root: Path) -> Path:
    mask_path(root).write_bytes(bomb_png())
    return mask_path(root)


def mask_unknown_attribute(root: Path) -> Path:
    path = mask_path(root, "globule")  # a typo of globules
    shutil.copyfile(mask_path(root), path)
    return path


# --------------------------------------------------------------------------- verifications


def _cached_globules_match(ctx, drawn: np.ndarray) -> None:
    """The target's cached globules mask is ``drawn`` (cropped and resized as the cache does)."""
    sample = ctx.cached_sample(TARGET)
    cached = ctx.cached_masks(TARGET)[ATTRIBUTES.index("globules")].astype(bool)
    c = sample.crop
    field = Image.fromarray(drawn[c.top : c.bottom, c.left : c.right].astype(np.uint8) * 255)
    h, w = cached.shape
    expected = np.asarray(field.resize((w, h), Image.Resampling.NEAREST)) > 0
    iou = (cached & expected).sum() / max(1, (cached | expected).sum())
    assert iou > 0.9, iou  # an empty read (the old palette bug) gives 0


def _verify_block_mask(ctx) -> None:
    """The palette / RGB-gray mask was read as the rectangle it draws, not as empty."""
    _cached_globules_match(ctx, block())


def _verify_grey_levels(ctx) -> None:
    """Binarised at > 128 like the official scorer: the 200 and 255 columns only."""
    m = np.zeros((64, 64), bool)
    m[16:40, 30:44] = True
    _cached_globules_match(ctx, m)


# --------------------------------------------------------------------------- the table

_SCORER = "evaluate accepts only what the official scorer accepts: single-channel L or 1-bit masks"

CASES: tuple[Case, ...] = (
    Case(
        "mask_without_image",
        mask_without_image,
        {
            "check": err("mask has no matching image ISIC_0000099"),
            "prepare": err("mask has no matching image ISIC_0000099"),
            "evaluate_pred": OK,
            "evaluate_gt": err(
                "missing prediction for ISIC_0000099 globules", in_pred="ISIC_0000099_attribute_globules.png"
            ),
            "train": err("mask has no matching image"),
        },
        note="an extra prediction is ignored by the official scorer",
    ),
    Case(
        "mask_zero_bytes",
        mask_zero_bytes,
        dict.fromkeys(("check", "prepare", "evaluate_pred", "evaluate_gt", "train"), err("empty file")),
    ),
    Case(
        "mask_truncated_png",
        mask_truncated_png,
        dict.fromkeys(("check", "prepare", "evaluate_pred", "evaluate_gt"), err("cannot decode")),
    ),
    Case(
        "mask_wrong_size",
        mask_wrong_size,
        {
            "check": err("mask is 10x10 but its image is 64x64"),
            "prepare": err("mask is 10x10 but its image is 64x64"),
            "evaluate_pred": err("prediction is 10x10 but ground truth is 64x64"),
            "evaluate_gt": err("prediction is 64x64 but ground truth is 10x10", in_pred=TARGET_MASK),
            "train": err("mask is 10x10 but its image is 64x64"),
        },
    ),
    Case(
        "mask_rgb_colour",
        mask_rgb_colour,
        {
            "check": err("mask has colour"),
            "prepare": err("mask has colour"),
            "evaluate_pred": err("is mode RGB"),
            "evaluate_gt": err("is mode RGB"),
        },
    ),
    Case(
        "mask_rgb_grey",
        mask_rgb_grey,
        {
            "check": OK,
            "prepare": Ok(_verify_block_mask),
            "evaluate_pred": err("is mode RGB"),
            "evaluate_gt": err("is mode RGB"),
        },
        note=f"an RGB mask with equal channels is a gray mask; {_SCORER}",
    ),
    Case(
        "mask_16bit",
        mask_16bit,
        {
            "check": err("16/32-bit"),
            "prepare": err("16/32-bit"),
            "evaluate_pred": err("is mode I;16"),
            "evaluate_gt": err("is mode I;16"),
        },
    ),
    Case(
        "mask_palette",
        mask_palette,
        {
            "check": OK,
            "prepare": Ok(_verify_block_mask),
            "evaluate_pred": err("is mode P"),
            "evaluate_gt": err("is mode P"),
        },
        note="indices 0/1 with a black/white palette read as 0/255 through the palette; " + _SCORER,
    ),
    Case(
        "mask_palette_coloured",
        mask_palette_coloured,
        {
            "check": err("mask has colour (palette colours differ)"),
            "prepare": err("mask has colour (palette colours differ)"),
            "evaluate_pred": err("is mode P"),
            "evaluate_gt": err("is mode P"),
        },
        note="a red-on-black palette mask is not guessed at (it used to read as empty)",
    ),
    Case(
        "mask_zero_one",
        mask_zero_one,
        {
            "check": err("not binary 0/255 (also holds 1)"),
            "prepare": err("not binary 0/255 (also holds 1)", "would read as empty"),
            "evaluate_pred": OK,
            "evaluate_gt": OK,
            "train": err("not binary 0/255 (also holds 1)"),
        },
        note="a 0/1 mask would silently train on empty masks; evaluate scores it as the official "
        "scorer does (empty)",
    ),
    Case(
        "mask_grey_levels",
        mask_grey_levels,
        {
            "check": err("not binary 0/255 (also holds 100, 200)"),
            "prepare": Ok(_verify_grey_levels),
            "evaluate_pred": OK,
            "evaluate_gt": OK,
        },
        note="check reports it; the others binarise at > 128 like the official scorer",
    ),
    Case(
        "mask_is_folder",
        mask_is_folder,
        dict.fromkeys(("check", "prepare", "evaluate_pred", "evaluate_gt"), err("is a folder")),
    ),
    Case(
        "mask_symlink_loop",
        mask_symlink_loop,
        dict.fromkeys(("check", "prepare", "evaluate_pred", "evaluate_gt"), err("broken link")),
    ),
    Case(
        "mask_unreadable",
        mask_unreadable,
        dict.fromkeys(("check", "prepare", "evaluate_pred", "evaluate_gt"), err("permission denied")),
        needs_user=True,
    ),
    Case(
        "mask_bomb",
        mask_bomb,
        dict.fromkeys(("check", "prepare", "evaluate_pred", "evaluate_gt"), err("image too large")),
    ),
    Case(
        "mask_unknown_attribute",
        mask_unknown_attribute,
        {
            "check": err("unknown attribute 'globule'"),
            "prepare": err("unknown attribute 'globule'"),
            "evaluate_pred": OK,
            "evaluate_gt": err("unknown attribute 'globule'"),
        },
    ),
)
