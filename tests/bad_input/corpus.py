"""The malformed-input corpus: each case breaks one thing in a copy of a small valid dataset.

The base dataset (official layout) holds three 64 px training images ``ISIC_0000000`` to
``ISIC_0000002`` and one validation image ``ISIC_0000003``, each with its five masks. A case's
``build(root)`` gets a fresh copy of it, breaks (or changes) one thing, and returns the offending
path. ``expect`` says, per command, what must happen:

* :class:`Ok`: exit code 0 and the right result (see :mod:`tests.bad_input.harness` for what
  is checked for every command, and ``verify`` for what a case adds);
* :class:`Err`: exit code 2, no traceback, no partial output, and one line
  ``dermseg: error: <path>: <problem>`` that names the offending file and holds ``words``.

Commands: ``check``, ``prepare``, ``predict`` (the image folder), ``evaluate_pred`` (the case's
mask folder scored as predictions against the clean truth), ``evaluate_gt`` (the case's mask
folder as truth, against clean predictions) and ``train`` (only a few cases: it is slow).

What is right where the issue is silent (``note``) follows two rules: ``check``, ``prepare`` and
``train`` read a dataset the way :mod:`dermseg.data.imageio` does (any image mode converted to
RGB, EXIF orientation applied, masks read through their palette), and refuse what would silently
lose data; ``evaluate`` scores exactly as the official ISIC scorer does (single-channel ``L`` or
``1`` masks only, binarised at ``> 128``), so that its numbers stay the leaderboard's.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dermseg.attributes import ATTRIBUTES

IMAGES = "ISIC2018_Task1-2_Training_Input"
MASKS = "ISIC2018_Task2_Training_GroundTruth_v3"
#: The training image every image or mask case breaks.
TARGET = "ISIC_0000001"
TARGET_MASK = f"{TARGET}_attribute_globules.png"
#: Training images no case touches: their outputs must be written whatever happens to TARGET.
GOOD = ("ISIC_0000000", "ISIC_0000002")
COMMANDS = ("check", "prepare", "predict", "evaluate_pred", "evaluate_gt", "train")


@dataclass(frozen=True)
class Ok:
    """The command succeeds; ``verify(ctx)`` checks what this case adds to the generic checks."""

    verify: Callable[..., None] | None = None


@dataclass(frozen=True)
class Err:
    """The command fails with exit code 2 and a one-line error naming the file.

    Attributes:
        words: what the line must say besides the path.
        in_pred: for ``evaluate``: the file named is this file of the prediction folder
            (a truth mask without a prediction is reported at the prediction's path).
        xfail: why the command does not do this yet (a fix outside this test's reach).
    """

    words: tuple[str, ...]
    in_pred: str | None = None
    xfail: str | None = None


@dataclass(frozen=True)
class Case:
    """One malformed (or merely unusual) input.

    Attributes:
        name: the test id.
        build: breaks one thing in a copy of the base dataset; returns the offending path.
        expect: command -> outcome; commands not listed are not run.
        whole: the offending path replaces the dataset folder (for folder-level cases).
        needs_user: meaningless as root (root reads a ``chmod 000`` file).
        note: why this outcome, where the issue does not say.
    """

    name: str
    build: Callable[[Path], Path]
    expect: dict[str, Ok | Err]
    whole: bool = False
    needs_user: bool = False
    note: str = ""


OK = Ok()


def err(*words: str, in_pred: str | None = None, xfail: str | None = None) -> Err:
    return Err(tuple(words), in_pred=in_pred, xfail=xfail)


#: train.py lists the data with discover() but does not refuse its naming problems yet.


# --------------------------------------------------------------------------- building blocks


def image_path(root: Path) -> Path:
    return root / IMAGES / f"{TARGET}.jpg"


def mask_path(root: Path, attribute: str = "globules") -> Path:
    return root / MASKS / f"{TARGET}_attribute_{attribute}.png"


def pixels(root: Path) -> np.ndarray:
    """The target image as displayed, ``(64, 64, 3)`` uint8."""
    with Image.open(image_path(root)) as img:
        return np.asarray(img.convert("RGB"))


def block() -> np.ndarray:
    """A ``(64, 64)`` bool mask with one rectangle."""
    m = np.zeros((64, 64), bool)
    m[16:40, 20:44] = True
    return m


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A small PNG whose header announces ``width x height`` 8-bit gray pixels.

    Its data is a few zlib-compressed rows of zeros: decoding it would first allocate
    ``width * height`` bytes (900 MB by default), so it must be refused from the header.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes((width + 1) * 8), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _replace(path: Path, new_name: str) -> Path:
    """Remove ``path``; return its sibling ``new_name`` (to be written by the caller)."""
    path.unlink()
    return path.with_name(new_name)


def _loop(path: Path, partner: str) -> Path:
    """Replace ``path`` with a symlink to ``partner``, which links back to it."""
    path.unlink()
    other = path.with_name(partner)
    path.symlink_to(other.name)
    other.symlink_to(path.name)
    return path


def _unreadable(path: Path) -> Path:
    path.chmod(0)
    return path


def _save_mask(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(path)
    return path


# --------------------------------------------------------------------------- image cases


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
    path = _replace(image_path(root), f"{TARGET}.png")
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
    path = _replace(image_path(root), f"{TARGET}.png")
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def image_cmyk(root: Path) -> Path:
    Image.fromarray(pixels(root)).convert("CMYK").save(image_path(root), quality=95)
    return image_path(root)


def image_16bit(root: Path) -> Path:
    gray = np.asarray(Image.fromarray(pixels(root)).convert("L")).astype(np.uint16) * 257
    path = _replace(image_path(root), f"{TARGET}.png")
    Image.fromarray(gray).save(path)  # mode I;16
    return path


def image_palette(root: Path) -> Path:
    img = Image.fromarray(pixels(root)).convert("P")
    path = _replace(image_path(root), f"{TARGET}.png")
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
    path = _replace(image_path(root), f"{TARGET}.png")
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
    return _loop(image_path(root), "ISIC_0000009.jpg")


def image_unreadable(root: Path) -> Path:
    return _unreadable(image_path(root))


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


def mask_without_image(root: Path) -> Path:
    path = root / MASKS / "ISIC_0000099_attribute_globules.png"
    shutil.copyfile(mask_path(root), path)
    return path


# --------------------------------------------------------------------------- mask cases


def mask_zero_bytes(root: Path) -> Path:
    mask_path(root).write_bytes(b"")
    return mask_path(root)


def mask_truncated_png(root: Path) -> Path:
    noise = np.random.default_rng(0).random((64, 64)) > 0.5
    _save_mask(mask_path(root), np.where(noise, 255, 0).astype(np.uint8))
    data = mask_path(root).read_bytes()
    mask_path(root).write_bytes(data[: len(data) // 2])
    return mask_path(root)


def mask_wrong_size(root: Path) -> Path:
    return _save_mask(mask_path(root), np.zeros((10, 10), np.uint8))


def mask_rgb_colour(root: Path) -> Path:
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[block()] = (255, 0, 0)
    return _save_mask(mask_path(root), rgb)


def mask_rgb_grey(root: Path) -> Path:
    return _save_mask(mask_path(root), np.where(block(), 255, 0).astype(np.uint8), "RGB")


def mask_16bit(root: Path) -> Path:
    return _save_mask(mask_path(root), np.where(block(), 65535, 0).astype(np.uint16))


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
    return _save_mask(mask_path(root), block().astype(np.uint8))


def mask_grey_levels(root: Path) -> Path:
    m = np.zeros((64, 64), np.uint8)
    m[16:40, 20:30], m[16:40, 30:38], m[16:40, 38:44] = 100, 200, 255
    return _save_mask(mask_path(root), m)


def mask_is_folder(root: Path) -> Path:
    mask_path(root).unlink()
    mask_path(root).mkdir()
    return mask_path(root)


def mask_symlink_loop(root: Path) -> Path:
    return _loop(mask_path(root), "loop_partner.png")


def mask_unreadable(root: Path) -> Path:
    return _unreadable(mask_path(root))


def mask_bomb(root: Path) -> Path:
    mask_path(root).write_bytes(bomb_png())
    return mask_path(root)


def mask_unknown_attribute(root: Path) -> Path:
    path = mask_path(root, "globule")  # a typo of globules
    shutil.copyfile(mask_path(root), path)
    return path


# --------------------------------------------------------------------------- folder cases


def folder_empty(root: Path) -> Path:
    path = root.parent / "empty"
    path.mkdir()
    return path


def folder_missing(root: Path) -> Path:
    return root.parent / "no_such_folder"


def folder_is_file(root: Path) -> Path:
    """The archive given instead of the folder it unpacks to."""
    path = root.parent / "ISIC2018_Task1-2_Training_Input.zip"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    return path


def folder_odd_name(root: Path) -> Path:
    """The dataset moved to ``ward [/x] caf\xe9``: rich markup in the path, and a Latin-1 byte."""
    ward = root.parent / "ward ["
    ward.mkdir()
    target = os.path.join(os.fsencode(ward), b"x] caf\xe9")
    os.rename(os.fsencode(root), target)
    return Path(os.fsdecode(target))


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

_NAMING = "name does not match ISIC_<7 digits>"
_SCORER = "evaluate accepts only what the official scorer accepts: single-channel L or 1-bit masks"

CASES: tuple[Case, ...] = (
    # ---- images
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
    # ---- masks
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
    # ---- folders
    Case(
        "folder_empty",
        folder_empty,
        {
            "check": err("no ISIC images found"),
            "prepare": err("no ISIC images found"),
            "predict": err("no images found"),
            "evaluate_pred": err("no prediction masks found"),
            "evaluate_gt": err("no ground-truth masks found"),
            "train": err("no ISIC images found"),
        },
        whole=True,
    ),
    Case(
        "folder_missing",
        folder_missing,
        {
            "check": err("folder not found"),
            "prepare": err("folder not found"),
            "predict": err("file not found"),
            "evaluate_pred": err("folder not found"),
            "evaluate_gt": err("folder not found"),
            "train": err("folder not found"),
        },
        whole=True,
    ),
    Case(
        "folder_is_file",
        folder_is_file,
        {
            "check": err("is a file"),
            "prepare": err("is a file"),
            "predict": err("not a readable image"),
            "evaluate_pred": err("is a file"),
            "evaluate_gt": err("is a file"),
            "train": err("is a file"),
        },
        whole=True,
        note="predict takes a file argument as an image to segment",
    ),
    Case(
        "folder_odd_name",
        folder_odd_name,
        dict.fromkeys(("check", "prepare", "predict", "evaluate_pred", "evaluate_gt"), OK),
        whole=True,
        note="a path is shown with its odd bytes escaped and its brackets as text (Latin-1 names "
        "from old Windows shares; '[/x]' is rich markup)",
    ),
)


def case_named(name: str) -> Case:
    """The corpus case called ``name``."""
    return next(c for c in CASES if c.name == name)
