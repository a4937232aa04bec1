"""Corpus cases that break (or change) the target training image: its bytes, format, mode,
orientation, size, name, or the file system entry itself."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from tests.bad_input.corpus.base import (
    IMAGES,
    OK,
    TARGET,
    Case,
    Ok,
    bomb_png,
    err,
    image_path,
    make_unreadable,
    mask_path,
    pixels,
    replace_with,
    symlink_loop,
)


def image_zero_bytes(root: Path) -> Path:
    image_path(root).write_bytes(b"")
    return image_path(root)


def image_truncated_jpeg(root: Path) -> Path:
    data = image_path(root).read_bytes()
    image_path(root).write_bytes(data[: len(data) // 2])
    return image_path(root)


def image_garbage(root: Path) -> Path:
    image_path(root).write_bytes(np.random.default_rng(0).bytes(600))
    return image_path(root)


def image_jpeg_named_png(root: Path) -> Path:
    data = image_path(root).read_bytes()
    path = replace_with(image_path(root), f"{TARGET}.png")
    path.write_bytes(data)
    return path


def image_png_named_jpg(root: Path) -> Path:
    Image.fromarray(pixels(root)).save(image_path(root), format="PNG")
    return image_path(root)


def image_uppercase_extension(root: Path) -> Path:
    return image_path(root).rename(image_path(root).with_name(f"{TARGET}.JPG"))


def image_grayscale(root: Path) -> Path:
    Image.fromarray(pixels(root)).convert("L").save(image_path(root), quality=95)
    return image_path(root)


def image_rgba(root: Path) -> Path:
    rgba = np.dstack([pixels(root), np.full((64, 64), 255, np.uint8)])
    rgba[:8, :8, 3] = 0  # a transparent corner: composited on black
    path = replace_with(image_path(root), f"{TARGET}.png")
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def image_cmyk(root: Path) -> Path:
    Image.fromarray(pixels(root)).convert("CMYK").save(image_path(root), quality=95)
    return image_path(root)


def image_16bit(root: Path) -> Path:
    gray = np.asarray(Image.fromarray(pixels(root)).convert("L")).astype(np.uint16) * 257
    path = replace_with(image_path(root), f"{TARGET}.png")
    Image.fromarray(gray).save(path)  # mode I;16
    return path


def image_palette(root: Path) -> Path:
    img = Image.fromarray(pixels(root)).convert("P")
    path = replace_with(image_path(root), f"{TARGET}.png")
    img.save(path)
    return path


def _exif_rotated(root: Path, masks_rotated: bool) -> Path:
    """The target as a JPEG stored 64 wide x 48 high with EXIF orientation 6 (displayed 48 x 64)."""
    display = pixels(root)[:, :48]
    stored = np.ascontiguousarray(np.rot90(display))  # orientation 6 turns it 90 degrees clockwise back
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(image_path(root), exif=exif.tobytes(), quality=95)
    for attribute in ATTRIBUTES:
        path = mask_path(root, attribute)
        with Image.open(path) as img:
            m = np.asarray(img)
        Image.fromarray(np.ascontiguousarray(m[:, :48] if masks_rotated else m[:48, :])).save(path)
    return image_path(root) if masks_rotated else mask_path(root)


def image_exif_rotated(root: Path) -> Path:
    return _exif_rotated(root, masks_rotated=True)


def image_exif_masks_unrotated(root: Path) -> Path:
    return _exif_rotated(root, masks_rotated=False)


def image_bomb(root: Path) -> Path:
    path = replace_with(image_path(root), f"{TARGET}.png")
    path.write_bytes(bomb_png())
    return path


def image_symlinked(root: Path) -> Path:
    """The image is a link to a file stored elsewhere under another name (an archive's blob)."""
    blobs = root.parent / "blobs"
    blobs.mkdir()
    blob = image_path(root).rename(blobs / "3f9a0c.bin")
    image_path(root).symlink_to(blob)
    return image_path(root)


def image_is_folder(root: Path) -> Path:
    path = image_path(root)
    path.unlink()
    path.mkdir()
    return path


def image_symlink_loop(root: Path) -> Path:
    return symlink_loop(image_path(root), "ISIC_0000009.jpg")


def image_unreadable(root: Path) -> Path:
    return make_unreadable(image_path(root))


def image_non_utf8_name(root: Path) -> Path:
    """A valid JPEG beside the others, named with the byte 0xff (not UTF-8)."""
    name = os.path.join(os.fsencode(root / IMAGES), b"ISIC_0000009\xff.jpg")
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, image_path(root).read_bytes())
    finally:
        os.close(fd)
    return Path(os.fsdecode(name))


def image_bad_id(root: Path) -> Path:
    return image_path(root).rename(image_path(root).with_name("ISIC_000001.jpg"))  # 6 digits


def image_appledouble(root: Path) -> Path:
    """The ``._name`` resource-fork file macOS leaves beside each file on a shared drive."""
    path = root / IMAGES / f"._{TARGET}.jpg"
    path.write_bytes(b"\x00\x05\x16\x07" + bytes(80))
    return path


def image_missing_masks(root: Path) -> Path:
    mask_path(root, "streaks").unlink()
    return image_path(root)


# --------------------------------------------------------------------------- verifications


def _verify_exif_check(ctx) -> None:
    sizes = ctx.json()["splits"]["training"]["sizes"]
    assert sizes["width"]["min"] == 48 and sizes["height"]["max"] == 64, sizes


def _verify_exif_prepare(ctx) -> None:
    sample = ctx.cached_sample(TARGET)
    assert sample.original == (64, 48), sample.original  # (H, W) as displayed


def _verify_unlabelled_streaks(ctx) -> None:
    sample = ctx.cached_sample(TARGET)
    assert sample.labelled == (True, True, True, True, False), sample.labelled


# --------------------------------------------------------------------------- the table

_NAMING = "name does not match ISIC_<7 digits>"

CASES: tuple[Case, ...] = (
    Case(
        "image_zero_bytes",
        image_zero_bytes,
        dict.fromkeys(("check", "prepare", "predict", "train"), err("empty file (0 bytes)")),
    ),
    Case(
        "image_truncated_jpeg",
        image_truncated_jpeg,
        dict.fromkeys(("check", "prepare", "predict"), err("truncated")),
    ),
    Case(
        "image_garbage",
        image_garbage,
        dict.fromkeys(("check", "prepare", "predict"), err("not a readable image")),
    ),
    Case(
        "image_jpeg_named_png",
        image_jpeg_named_png,
        dict.fromkeys(("check", "prepare", "predict"), OK),
        note="read by content, not by extension",
    ),
    Case("image_png_named_jpg", image_png_named_jpg, dict.fromkeys(("check", "prepare", "predict"), OK)),
    Case(
        "image_uppercase_extension",
        image_uppercase_extension,
        dict.fromkeys(("check", "prepare", "predict"), OK),
    ),
    Case(
        "image_grayscale",
        image_grayscale,
        dict.fromkeys(("check", "prepare", "predict"), OK),
        note="converted to RGB (gray in all three channels)",
    ),
    Case(
        "image_rgba",
        image_rgba,
        dict.fromkeys(("check", "prepare", "predict"), OK),
        note="composited on black, as a dermoscope's border is",
    ),
    Case("image_cmyk", image_cmyk, dict.fromkeys(("check", "prepare", "predict"), OK)),
    Case(
        "image_16bit",
        image_16bit,
        dict.fromkeys(("check", "prepare", "predict"), OK),
        note="scaled to 8 bits",
    ),
    Case("image_palette", image_palette, dict.fromkeys(("check", "prepare", "predict"), OK)),
    Case(
        "image_exif_rotated",
        image_exif_rotated,
        {
            "check": Ok(_verify_exif_check),
            "prepare": Ok(_verify_exif_prepare),
            "predict": OK,  # masks of the displayed size, 48 x 64 (checked for every image)
            "train": OK,
        },
        note="EXIF orientation applied: the image is what a viewer shows; masks are drawn on that",
    ),
    Case(
        "image_exif_masks_unrotated",
        image_exif_masks_unrotated,
        {
            "check": err("mask is 64x48 but its image is 48x64"),
            "prepare": err("mask is 64x48 but its image is 48x64"),
            "predict": OK,
        },
        note="masks drawn on the stored pixels, not on the displayed image: refused, never guessed",
    ),
    Case(
        "image_bomb",
        image_bomb,
        dict.fromkeys(("check", "prepare", "predict", "train"), err("image too large", "900000000 pixels")),
        note="refused from the header: decoding would allocate 900 MB",
    ),
    Case(
        "image_symlinked",
        image_symlinked,
        dict.fromkeys(("check", "prepare", "predict"), OK),
        note="read through the link; predict names the masks after the link, not the blob",
    ),
    Case(
        "image_is_folder",
        image_is_folder,
        {
            "check": err("is a folder"),
            "prepare": err("is a folder"),
            "predict": err("is a folder"),
        },
        note="predict reports it like an unreadable image instead of skipping it in silence",
    ),
    Case(
        "image_symlink_loop",
        image_symlink_loop,
        dict.fromkeys(("check", "prepare", "predict"), err("broken link")),
    ),
    Case(
        "image_unreadable",
        image_unreadable,
        dict.fromkeys(("check", "prepare", "predict"), err("permission denied")),
        needs_user=True,
    ),
    Case(
        "image_non_utf8_name",
        image_non_utf8_name,
        {"check": err(_NAMING), "prepare": err(_NAMING), "predict": OK},
        note="shown with a \\xff escape; predict writes its masks under the same byte name",
    ),
    Case(
        "image_bad_id",
        image_bad_id,
        {
            "check": err(_NAMING),
            "prepare": err(_NAMING),
            "predict": OK,
        },
        note="predict takes any image name (submission masks are named after it); a dataset needs ISIC ids",
    ),
    Case(
        "image_appledouble",
        image_appledouble,
        dict.fromkeys(("check", "prepare", "predict"), OK),
        note="hidden files are not data: ignored by every command",
    ),
    Case(
        "image_missing_masks",
        image_missing_masks,
        {
            "check": err("missing mask ISIC_0000001_attribute_streaks.png"),
            "prepare": Ok(_verify_unlabelled_streaks),
            "evaluate_pred": err(
                "missing prediction for ISIC_0000001 streaks", in_pred="ISIC_0000001_attribute_streaks.png"
            ),
            "evaluate_gt": OK,
            "train": err("missing mask ISIC_0000001_attribute_streaks.png"),
        },
        note="prepare caches it as not annotated (the real ISIC data lacks some masks); "
        "train refuses it; evaluate scores the truth files there are, as the official scorer",
    ),
)
