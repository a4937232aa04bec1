"""Reading and writing images and masks safely.

Every reader turns a malformed file into a :class:`~dermseg.errors.DataError`
naming the file; every writer writes to a temporary file in the target folder
and renames it into place, so an interrupted write never leaves half a file.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dermseg.errors import DataError
from dermseg.files import atomic_path

#: Largest image accepted, in pixels (ISIC images reach ~6000x4000 = 24 MP). The one limit:
#: Pillow's own (``Image.MAX_IMAGE_PIXELS``, 89478485 by default, which would refuse images
#: below this one with a message naming this one) is set to it whenever dermseg opens a file.
MAX_IMAGE_PIXELS: int = 100_000_000

#: The official scorer binarises masks at ``value > 128``.
MASK_THRESHOLD: int = 128

#: What is wrong with a link that leads nowhere.
BROKEN_LINK = "broken link (missing target or a link loop)"

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def too_large(err: Exception | int) -> str:
    """The one message of an image over :data:`MAX_IMAGE_PIXELS`: for its pixel count, or for
    Pillow's decompression-bomb error or warning (which give the count)."""
    m = None if isinstance(err, int) else re.search(r"\((\d+) pixels\)", str(err))
    pixels = (
        f"{err} pixels" if isinstance(err, int) else f"{int(m.group(1))} pixels" if m else "its pixel count"
    )
    return f"image too large: {pixels} exceeds the limit of {MAX_IMAGE_PIXELS} pixels"


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image extension dermseg reads (case-insensitive)."""
    return path.suffix.lower() in _IMAGE_EXTENSIONS


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """Open ``path`` with Pillow, turning every failure into a one-line DataError."""
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, expected an image file", path)
    if not path.exists():
        raise DataError(BROKEN_LINK if path.is_symlink() else "file not found", path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DataError(f"cannot read ({err.strerror})", path) from None
    if size == 0:
        raise DataError("empty file (0 bytes)", path)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # one limit: ours (read now, so a patched value counts)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise DataError(too_large(w * h), path)
                yield img
        except DataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise DataError(too_large(err), path) from None
        except UnidentifiedImageError:
            raise DataError("not a readable image (unknown or corrupt format)", path) from None
        except PermissionError:
            raise DataError("permission denied", path) from None
        except OSError as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DataError(f"cannot decode image ({msg})", path) from None
        except (ValueError, SyntaxError, IndexError, EOFError) as err:
            raise DataError(f"cannot decode image ({err})", path) from None


def image_size(path: str | Path) -> tuple[int, int]:
    """Size ``(width, height)`` of an image as displayed (EXIF rotation applied), header only.

    Raises:
        DataError: the file is missing or not an image.
    """
    with _open(Path(path)) as img:
        w, h = img.size
        orientation = img.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


@dataclass(frozen=True, eq=False)
class Decoded:
    """An image file decoded for a network: its pixels, perhaps at a reduced scale, and its full size.

    Attributes:
        pixels: ``(h, w, 3)`` uint8 RGB, EXIF orientation applied; ``h <= H``, ``w <= W``.
        size: ``(H, W)`` of the image as displayed at full scale (what its masks are sized to).
    """

    pixels: np.ndarray
    size: tuple[int, int]

    @property
    def reduced(self) -> bool:
        """Whether :attr:`pixels` are smaller than the full image (JPEG draft decoding)."""
        return tuple(self.pixels.shape[:2]) != tuple(self.size)


def read_image(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """Read an image as RGB, applying its EXIF orientation.

    Grayscale, RGBA, palette, CMYK and 16-bit images are converted to 8-bit RGB.

    Args:
        path: image file (JPEG, PNG, ...).
        min_side: when given, a JPEG may be decoded at a reduced scale (Pillow's
            draft mode, a power-of-two reduction in the decoder) as long as both
            sides stay >= ``min_side``. Callers that resize afterwards get the
            same picture several times faster.

    Returns:
        ``(H, W, 3)`` uint8 array.

    Raises:
        DataError: missing, empty, truncated, oversized or undecodable file.
    """
    return decode_image(path, min_side).pixels


def decode_image(path: str | Path, min_side: int | None = None) -> Decoded:
    """:func:`read_image`, also giving the full size of the image when it was decoded reduced.

    Args:
        path: image file.
        min_side: as for :func:`read_image`: a JPEG is decoded at the smallest power-of-two
            reduction (1/2, 1/4, 1/8) that keeps both sides >= ``min_side``; ``None``: full scale.

    Returns:
        The pixels (``(h, w, 3)`` uint8 RGB) and the full displayed size ``(H, W)``.

    Raises:
        DataError: missing, empty, truncated, oversized or undecodable file.
    """
    path = Path(path)
    with _open(path) as img:
        w, h = img.size
        if min_side is not None and img.format == "JPEG":
            scale = max(1, min(w, h) // max(1, min_side))
            img.draft("RGB", (w // scale, h // scale)) if scale > 1 else None
        try:
            img.load()
            orientation = img.getexif().get(0x0112, 1)
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                arr = arr / 257.0 if arr.max() > 255 else arr
                img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
            if img.mode != "RGB":
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    img = img.convert("RGBA")
                    background = Image.new("RGBA", img.size, (0, 0, 0, 255))
                    img = Image.alpha_composite(background, img)
                img = img.convert("RGB")
            arr = np.array(img, dtype=np.uint8)  # a writable copy
        except OSError as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DataError(f"cannot decode image ({msg})", path) from None
    size = (w, h) if orientation in (5, 6, 7, 8) else (h, w)  # (H, W) as displayed
    return Decoded(arr, size)


def full_pixels(decoded: Decoded, path: str | Path) -> np.ndarray:
    """The full-scale ``(H, W, 3)`` pixels of ``path``: ``decoded``'s own, or the file decoded again
    at full scale when ``decoded`` is reduced (for drawing on; the network's copy stays small)."""
    return read_image(path) if decoded.reduced else decoded.pixels


def read_mask(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary attribute mask, binarised at ``> 128`` as the official scorer does.

    Accepts 8-bit grayscale, 1-bit and palette PNGs (read through their palette: a
    palette mapping indices 0/1 to black/white is a 0/255 mask), and RGB masks whose
    three channels are equal.

    Args:
        path: mask PNG.
        expected_size: ``(width, height)`` the mask must have (its image's size).

    Returns:
        ``(H, W)`` bool array.

    Raises:
        DataError: unreadable file, 16-bit or colour mask, a mask whose values are all
            at most 128 but not all 0 (a 0/1 mask, which would read as empty), or a size
            that differs from ``expected_size``.
    """
    path = Path(path)
    with _open(path) as img:
        _check_mask_header(img, path, expected_size)
        try:
            img.load()
        except OSError as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DataError(f"cannot decode mask ({msg})", path) from None
        mode = img.mode
        if mode == "1":
            return np.asarray(img, dtype=bool).copy()
        if mode in ("P", "PA", "RGB", "RGBA"):
            # a palette is read through its colours, which must be grays like an RGB mask's
            rgb = np.asarray(img.convert("RGB"))
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                what = "palette colours" if mode in ("P", "PA") else "RGB channels"
                raise DataError(f"mask has colour ({what} differ); expected grayscale 0/255", path)
            values = rgb[..., 0]
        else:  # L, LA
            values = np.asarray(img.convert("L"))
        top = int(values.max(initial=0))
        if 0 < top <= MASK_THRESHOLD:
            # A 0/1 (or 0/100 ...) mask: binarised like the official scorer it would be empty.
            held = np.unique(values)
            shown = ", ".join(str(v) for v in held[held > 0][:5]) + (", ..." if (held > 0).sum() > 5 else "")
            raise DataError(
                f"mask is not binary 0/255 (also holds {shown}) and no value is above {MASK_THRESHOLD}, "
                "so it would read as empty; save masks as 0/255",
                path,
            )
        return values > MASK_THRESHOLD


def _check_mask_header(img: Image.Image, path: Path, expected_size: tuple[int, int] | None) -> None:
    """The checks of :func:`read_mask` that need no decoding: size and mode."""
    if expected_size is not None and img.size != tuple(expected_size):
        w, h = img.size
        ew, eh = expected_size
        raise DataError(f"mask is {w}x{h} but its image is {ew}x{eh}", path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise DataError(f"mask is {img.mode} (16/32-bit); expected 8-bit 0/255", path)
    if img.mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA"):
        raise DataError(f"unsupported mask mode {img.mode}; expected 8-bit grayscale 0/255", path)


def check_mask_header(path: str | Path, expected_size: tuple[int, int] | None = None) -> None:
    """What :func:`read_mask` checks from the file's header alone, without decoding it.

    Raises:
        DataError: missing, empty, unreadable or not an image, too large, 16-bit or of
            another mode no mask has, or a size that differs from ``expected_size``.
    """
    with _open(Path(path)) as img:
        _check_mask_header(img, Path(path), expected_size)


def mask_values(path: str | Path) -> np.ndarray:
    """Distinct 8-bit values of a grayscale mask (for checking that it is binary 0/255)."""
    with _open(Path(path)) as img:
        img.load()
        if img.mode not in ("L", "P", "1"):
            img = img.convert("L")
        return np.unique(np.asarray(img.convert("L")))


def mask_image(mask: np.ndarray) -> Image.Image:
    """A ``(H, W)`` binary mask as the 8-bit 0/255 image dermseg writes masks as (PNG)."""
    m = np.asarray(mask)
    if m.dtype != bool:
        m = m > 0
    # 0/1 bytes times 255, in uint8: no wider temporary (a 12-megapixel mask in ~5 ms, not ~60)
    return Image.fromarray(np.multiply(m.view(np.uint8), np.uint8(255), dtype=np.uint8))


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a ``(H, W)`` binary mask as an 8-bit 0/255 PNG, atomically."""
    with atomic_path(path) as tmp:
        mask_image(mask).save(tmp, format="PNG")


def write_image(path: str | Path, image: np.ndarray, quality: int = 90) -> None:
    """Write an ``(H, W, 3)`` uint8 image atomically; JPEG for ``.jpg``/``.jpeg``, else by extension."""
    path = Path(path)
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None
    with atomic_path(path) as tmp:
        if fmt == "JPEG":
            img.save(tmp, format="JPEG", quality=quality)
        else:
            img.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
