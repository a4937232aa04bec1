from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.data.imageio import check_mask_header, image_size, read_image, read_mask, write_image, write_mask
from dermseg.errors import DataError
from tests.conftest import ISIC_SAMPLE, real_data


def _rgb(h: int = 30, w: int = 40) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], -1).astype(np.uint8)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_read_image_converts_modes_to_rgb(tmp_path: Path, mode: str) -> None:
    img = Image.fromarray(_rgb())
    ext = "tif" if mode in ("CMYK",) else "png"
    path = tmp_path / f"x.{ext}"
    if mode == "I;16":
        Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257).save(path)
    else:
        img.convert(mode).save(path)
    arr = read_image(path)
    assert arr.shape == (30, 40, 3) and arr.dtype == np.uint8
    gray = np.asarray(img.convert("L"), dtype=float)
    # same picture, whatever the storage mode (colour modes are compared on luminance)
    assert np.abs(arr.astype(float).mean(-1) - gray).mean() < 25


def test_exif_rotation_applied(tmp_path: Path) -> None:
    img = Image.fromarray(_rgb(30, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    arr = read_image(tmp_path / "r.jpg")
    assert arr.shape == (40, 30, 3)
    assert image_size(tmp_path / "r.jpg") == (30, 40)


@real_data
def test_draft_decoding_keeps_min_side() -> None:
    path = ISIC_SAMPLE / "ISIC_0000000.jpg"
    full = read_image(path)
    small = read_image(path, min_side=300)
    assert full.shape == (767, 1022, 3)
    assert min(small.shape[:2]) >= 300 and small.shape[0] < 767


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "empty file"),
        ("garbage", "not a readable image"),
        ("missing", "file not found"),
        ("folder", "is a folder"),
        ("truncated", "truncated"),
        ("bomb", "image too large"),
    ],
)
@real_data
def test_bad_images_raise_one_line_error(tmp_path: Path, case: str, message: str) -> None:
    path = tmp_path / "bad.jpg"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(os.urandom(200))
    elif case == "folder":
        path.mkdir()
    elif case == "truncated":
        data = (ISIC_SAMPLE / "ISIC_0000000.jpg").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif case == "bomb":
        path = tmp_path / "bomb.png"
        # a valid PNG header announcing 30000x30000 pixels with almost no data
        ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
        chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    with pytest.raises(DataError) as info:
        read_image(path)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def _png_header(path: Path, width: int, height: int) -> Path:
    """A valid PNG header announcing ``width`` x ``height`` pixels, with no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_one_pixel_limit_with_one_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 99,990,000 pixels: under dermseg's limit of 100,000,000, over Pillow's own default (89,478,485)
    check_mask_header(_png_header(tmp_path / "under.png", 10000, 9999))  # the header is accepted
    with pytest.raises(DataError) as info:
        image_size(_png_header(tmp_path / "over.png", 10001, 10000))
    assert str(info.value) == (
        f"{tmp_path / 'over.png'}: image too large: 100010000 pixels exceeds the limit of 100000000 pixels"
    )
    with pytest.raises(DataError) as info:  # far over: Pillow's error, stated against the same limit
        image_size(_png_header(tmp_path / "bomb.png", 30000, 30000))
    assert "900000000 pixels exceeds the limit of 100000000 pixels" in str(info.value)
    # a lowered limit is the one applied, whatever Pillow's own is
    monkeypatch.setattr("dermseg.data.imageio.MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    Image.fromarray(_rgb(30, 30)).save(tmp_path / "small.png")
    assert read_image(tmp_path / "small.png").shape == (30, 30, 3)
    Image.fromarray(_rgb(30, 40)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match="too large: 1200 pixels exceeds the limit of 1000 pixels"):
        read_image(tmp_path / "big.png")


def test_read_mask_binarises_like_the_official_scorer(tmp_path: Path) -> None:
    values = np.array([[0, 128, 129, 255]], np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[False, False, True, True]]


def test_read_mask_modes(tmp_path: Path) -> None:
    m = np.zeros((4, 6), np.uint8)
    m[1:3, 2:5] = 255
    Image.fromarray(m).convert("1").save(tmp_path / "one.png")
    Image.fromarray(m).convert("P").save(tmp_path / "pal.png")
    Image.fromarray(m).convert("RGB").save(tmp_path / "rgb.png")
    for name in ("one.png", "pal.png", "rgb.png"):
        assert np.array_equal(read_mask(tmp_path / name), m > 0), name
    colour = np.zeros((4, 6, 3), np.uint8)
    colour[..., 0] = 255
    Image.fromarray(colour).save(tmp_path / "red.png")
    with pytest.raises(DataError, match="colour"):
        read_mask(tmp_path / "red.png")
    with pytest.raises(DataError, match="mask is 6x4 but its image is 7x4"):
        read_mask(tmp_path / "one.png", expected_size=(7, 4))


def test_writers_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    write_mask(tmp_path / "a" / "m.png", np.eye(5, dtype=bool))
    write_image(tmp_path / "a" / "i.jpg", _rgb())
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["i.jpg", "m.png"]
    assert np.array_equal(read_mask(tmp_path / "a" / "m.png"), np.eye(5, dtype=bool))
    with pytest.raises(TypeError):
        write_mask(tmp_path / "a" / "m.png", object())  # fails mid-way: old file kept, no temp left
    assert np.array_equal(read_mask(tmp_path / "a" / "m.png"), np.eye(5, dtype=bool))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["i.jpg", "m.png"]
