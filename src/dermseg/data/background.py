"""Background elimination: find the dermoscope's field of view and crop to it.

Many dermoscopy photographs have a dark frame around the useful picture: the
black surround of a circular dermoscope field, a dark vignette, or dark corners
only. This module finds that frame **from the image alone** (ground-truth masks
are never looked at) and returns the rectangle to keep.

How the field is found (on a copy whose longest side is :data:`DETECT_SIDE`):

1. A pixel is *background-like* when it is near-black (brightest channel
   ``<= t / 2``), or dark (``<= t``) **and** grey (low chroma) **and** smooth
   (low local standard deviation). ``t`` is ``dark_threshold``, lowered for dim
   photographs to a fraction of the image's bright-skin level.
2. Background is only the background-like pixels **connected to the frame
   border**: a dark lesion in the middle of the picture is never background.
3. The field is the largest connected region of the rest (specks such as text
   printed on a black border are dropped).
4. The crop is the bounding box of the field, a row or column being kept as
   soon as about 1% of it belongs to the field. So only rows and columns that are
   (nearly) entirely background are removed: dark corners alone never shrink the
   box, a circle cut by the frame keeps the whole frame, and a dark lesion that
   touches one edge cannot be cropped away unless it fills that edge completely
   and is as smooth and grey as a dermoscope border.
5. Each cropped side is then refined at full resolution within one detection
   pixel, so the box is accurate to a few pixels at any image size.

A thin strip along the frame (:data:`EDGE_MARGIN_FRACTION` of the longest side)
is left out of the detection: some ISIC images carry a one-pixel white frame
line that would otherwise cut the dark border off from the frame.

Layouts: dermseg images are ``(H, W, 3)`` (channels last) and mask stacks and
predictions are ``(5, H, W)`` (channels first). :func:`crop` and :func:`uncrop`
accept both and ``(H, W)``; see :func:`crop` for how the layout is inferred.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dermseg.errors import DataError

logger = logging.getLogger(__name__)

#: Longest side of the copy the detection runs on.
DETECT_SIDE: int = 256

#: Default darkness threshold on the brightest channel (0-255).
DEFAULT_DARK_THRESHOLD: int = 60

#: For dim photographs the threshold is at most this fraction of the bright-skin level.
RELATIVE_DARKNESS: float = 0.3

#: Percentile of the brightest channel taken as the bright-skin level.
_REFERENCE_PERCENTILE: float = 90.0

#: Largest local standard deviation (grey levels, 5x5 window) of a dark background pixel.
MAX_BACKGROUND_STD: float = 4.0

#: Largest chroma (max - min channel) of a dark background pixel, as a fraction of its value.
MAX_BACKGROUND_CHROMA: float = 0.5

#: Frame strip ignored by detection, as a fraction of the longest side (at least 2 pixels).
EDGE_MARGIN_FRACTION: float = 0.005

#: A row/column belongs to the field when at least this fraction of it is field.
MIN_FIELD_FRACTION: float = 0.01

_EPS = 1e-6


@dataclass(frozen=True)
class CropBox:
    """A rectangle of an image, half-open, in that image's pixel coordinates.

    Rows ``top <= y < bottom`` and columns ``left <= x < right`` are inside.

    Attributes:
        top: first row kept.
        left: first column kept.
        bottom: one past the last row kept.
        right: one past the last column kept.

    Raises:
        ValueError: a coordinate is not an integer, negative, or the box is empty.
    """

    top: int
    left: int
    bottom: int
    right: int

    def __post_init__(self) -> None:
        for name in ("top", "left", "bottom", "right"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"CropBox.{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.top < 0 or self.left < 0:
            raise ValueError(f"CropBox has a negative coordinate: {self}")
        if self.bottom <= self.top or self.right <= self.left:
            raise ValueError(f"CropBox is empty: {self}")

    @classmethod
    def full(cls, height: int, width: int) -> CropBox:
        """The box covering a whole ``height`` x ``width`` image."""
        return cls(0, 0, int(height), int(width))

    @property
    def height(self) -> int:
        """Number of rows in the box."""
        return self.bottom - self.top

    @property
    def width(self) -> int:
        """Number of columns in the box."""
        return self.right - self.left

    @property
    def area(self) -> int:
        """Number of pixels in the box."""
        return self.height * self.width

    def is_full(self, height: int, width: int) -> bool:
        """Whether the box covers a whole ``height`` x ``width`` image."""
        return (self.top, self.left, self.bottom, self.right) == (0, 0, height, width)

    def fits(self, height: int, width: int) -> bool:
        """Whether the box lies inside a ``height`` x ``width`` image."""
        return self.bottom <= height and self.right <= width

    def clipped(self, height: int, width: int) -> CropBox:
        """The box limited to a ``height`` x ``width`` image.

        Raises:
            ValueError: nothing of the box lies inside the image.
        """
        return CropBox(
            min(self.top, height - 1),
            min(self.left, width - 1),
            min(self.bottom, height),
            min(self.right, width),
        )

    def scaled(self, sx: float, sy: float) -> CropBox:
        """Map the box to an image resized by ``sx`` horizontally and ``sy`` vertically.

        Coordinates are rounded outwards (``top``/``left`` down, ``bottom``/``right``
        up, ignoring float noise), so the mapped box never loses pixels it covered.
        With ``sx = W2 / W1`` and ``sy = H2 / H1`` a box inside the first image lies
        inside the second; use :meth:`clipped` for other factors.

        Args:
            sx: horizontal factor (new width / old width), > 0.
            sy: vertical factor (new height / old height), > 0.

        Returns:
            The box in the resized image's coordinates (at least one pixel each way).
        """
        if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
            raise ValueError(f"scale factors must be positive and finite, got sx={sx}, sy={sy}")
        top = math.floor(self.top * sy + _EPS)
        left = math.floor(self.left * sx + _EPS)
        bottom = max(top + 1, math.ceil(self.bottom * sy - _EPS))
        right = max(left + 1, math.ceil(self.right * sx - _EPS))
        return CropBox(top, left, bottom, right)

    def to_dict(self) -> dict[str, int]:
        """JSON-able form: ``{"top", "left", "bottom", "right"}``, plain ints."""
        return {"top": self.top, "left": self.left, "bottom": self.bottom, "right": self.right}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CropBox:
        """Inverse of :meth:`to_dict`.

        Raises:
            DataError: a key is missing, a value is not an integer, or the box is empty.
        """
        if not isinstance(data, Mapping):
            raise DataError(
                f"crop box must be a mapping with top/left/bottom/right, got {type(data).__name__}"
            )
        missing = [k for k in ("top", "left", "bottom", "right") if k not in data]
        if missing:
            raise DataError(f"crop box is missing {', '.join(missing)}")
        values = []
        for key in ("top", "left", "bottom", "right"):
            value = data[key]
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            values.append(value)
        try:
            return cls(*values)
        except ValueError as err:
            raise DataError(f"invalid crop box: {err}") from None


# --------------------------------------------------------------------------- detection


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def _downscale(image: np.ndarray) -> np.ndarray:
    """Area-averaged copy of ``image`` whose longest side is at most :data:`DETECT_SIDE`.

    Large images are first decimated (nearest neighbour) to about four times the
    target size, then area-averaged: a 12-megapixel image takes about 1.5 ms.

    Args:
        image: ``(H, W, 3)`` uint8.

    Returns:
        ``(h, w, 3)`` uint8, ``h / H == w / W`` up to rounding.
    """
    h, w = image.shape[:2]
    longest = max(h, w)
    if longest <= DETECT_SIDE:
        return image
    if image.strides[1:] != (3, 1):  # OpenCV needs contiguous pixels (row padding is fine)
        image = np.ascontiguousarray(image)
    if longest > 4 * DETECT_SIDE:
        f = 4 * DETECT_SIDE / longest
        size = (max(1, round(w * f)), max(1, round(h * f)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
    size = (max(1, round(w * DETECT_SIDE / longest)), max(1, round(h * DETECT_SIDE / longest)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _value(image: np.ndarray) -> np.ndarray:
    """Brightest channel of ``(..., 3)`` pixels (much faster than ``max(axis=-1)``)."""
    return np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])


def _threshold(value: np.ndarray, dark_threshold: float) -> float:
    """Darkness threshold for one image: ``dark_threshold``, lowered for dim images.

    The bright-skin level is a high percentile of the pixels brighter than
    ``dark_threshold`` (so a large black surround does not drag it down), or of
    all pixels when hardly any are that bright.
    """
    bright = value[value > dark_threshold]
    sample = bright if bright.size >= 0.01 * value.size else value.ravel()
    reference = float(np.percentile(sample, _REFERENCE_PERCENTILE))
    return min(float(dark_threshold), RELATIVE_DARKNESS * reference)


def _field_small(small: np.ndarray, dark_threshold: float) -> tuple[np.ndarray, float]:
    """The field of view of a small image.

    Args:
        small: ``(h, w, 3)`` uint8.
        dark_threshold: see :func:`detect_field_of_view`.

    Returns:
        ``(field, t)``: ``(h, w)`` bool mask, True inside the field, and the
        darkness threshold used.
    """
    pixels = small.astype(np.float32)
    value = _value(pixels)
    chroma = value - np.minimum(np.minimum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])
    gray = (pixels[..., 0] + pixels[..., 1] + pixels[..., 2]) / 3.0
    mean = cv2.blur(gray, (5, 5), borderType=cv2.BORDER_REFLECT)
    mean_sq = cv2.blur(gray * gray, (5, 5), borderType=cv2.BORDER_REFLECT)
    std = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))

    t = _threshold(value, dark_threshold)
    near_black = value <= 0.5 * t
    grey = chroma <= MAX_BACKGROUND_CHROMA * value + 4.0
    dark_grey_smooth = (value <= t) & grey & (std <= MAX_BACKGROUND_STD)
    candidate = (near_black | dark_grey_smooth).astype(np.uint8)

    count, labels = cv2.connectedComponents(candidate, connectivity=8)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge_labels = edge_labels[edge_labels > 0]
    background = np.isin(labels, edge_labels) if edge_labels.size else np.zeros(value.shape, bool)

    field = (~background).astype(np.uint8)
    if min(field.shape) >= 8:
        field = cv2.morphologyEx(field, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(field, connectivity=8)
    if count <= 1:
        return np.zeros(value.shape, bool), t
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest, t


def _extent(counts: np.ndarray, minimum: float) -> tuple[int, int] | None:
    """First and one-past-last index where ``counts >= minimum``, or None."""
    hits = np.flatnonzero(counts >= minimum)
    if hits.size == 0:
        return None
    return int(hits[0]), int(hits[-1]) + 1


def _refine_start(bright: np.ndarray, minimum: float) -> int | None:
    """Index of the first row of ``bright`` (outside first) holding enough field pixels."""
    counts = bright.sum(axis=1)
    hits = np.flatnonzero(counts >= minimum)
    return int(hits[0]) if hits.size else None


def _refine(image: np.ndarray, box: CropBox, small_box: CropBox, sy: float, sx: float, t: float) -> CropBox:
    """Move each cropped side of ``box`` to the exact full-resolution edge of the field.

    Each side is searched within one detection pixel of where the small image
    put it, on a column (or row) subsample; a side that was not cropped stays.
    """
    h, w = image.shape[:2]
    top, left, bottom, right = box.top, box.left, box.bottom, box.right
    cstep = max(1, box.width // 512)
    rstep = max(1, box.height // 512)
    cols = slice(box.left, box.right, cstep)
    rows = slice(box.top, box.bottom, rstep)
    min_cols = max(2.0, MIN_FIELD_FRACTION * len(range(*cols.indices(w))))
    min_rows = max(2.0, MIN_FIELD_FRACTION * len(range(*rows.indices(h))))

    if top > 0:
        r0 = max(0, math.floor((small_box.top - 1) * sy))
        r1 = min(h, math.ceil((small_box.top + 2) * sy))
        found = _refine_start(_value(image[r0:r1, cols]) > t, min_cols)
        top = r0 + found if found is not None else top
    if bottom < h:
        r0 = max(0, math.floor((small_box.bottom - 2) * sy))
        r1 = min(h, math.ceil((small_box.bottom + 1) * sy))
        found = _refine_start(_value(image[r0:r1, cols][::-1]) > t, min_cols)
        bottom = r1 - found if found is not None else bottom
    if left > 0:
        c0 = max(0, math.floor((small_box.left - 1) * sx))
        c1 = min(w, math.ceil((small_box.left + 2) * sx))
        found = _refine_start((_value(image[rows, c0:c1]) > t).T, min_rows)
        left = c0 + found if found is not None else left
    if right < w:
        c0 = max(0, math.floor((small_box.right - 2) * sx))
        c1 = min(w, math.ceil((small_box.right + 1) * sx))
        found = _refine_start((_value(image[rows, c0:c1][:, ::-1]) > t).T, min_rows)
        right = c1 - found if found is not None else right
    if bottom <= top or right <= left:
        return box
    return CropBox(top, left, bottom, right)


def _edge_margin(h: int, w: int) -> int:
    """Width of the outermost frame strip ignored by detection (0 for tiny images)."""
    margin = max(2, math.ceil(EDGE_MARGIN_FRACTION * max(h, w)))
    return margin if min(h, w) > 8 * margin else 0


def _detect(image: np.ndarray, dark_threshold: float) -> CropBox | None:
    """Field bounding box of ``image`` (no edge margin handling), or None if no field."""
    h, w = image.shape[:2]
    small = _downscale(image)
    field, t = _field_small(small, dark_threshold)
    sh, sw = field.shape
    row_extent = _extent(field.sum(axis=1), max(1.0, MIN_FIELD_FRACTION * sw))
    col_extent = _extent(field.sum(axis=0), max(1.0, MIN_FIELD_FRACTION * sh))
    if row_extent is None or col_extent is None:
        return None
    small_box = CropBox(row_extent[0], col_extent[0], row_extent[1], col_extent[1])
    if small_box.is_full(sh, sw):
        return CropBox.full(h, w)
    sy, sx = h / sh, w / sw
    box = small_box.scaled(sx, sy).clipped(h, w)
    return _refine(image, box, small_box, sy, sx, t)


def detect_field_of_view(
    image: np.ndarray, *, dark_threshold: int = DEFAULT_DARK_THRESHOLD, min_keep: float = 0.5
) -> CropBox:
    """The rectangle of ``image`` to keep: the bounding box of the dermoscope's field.

    Removes only rows and columns that are (nearly) entirely dark border connected
    to the frame; returns the full frame when there is none, when the border is
    only dark corners, or when the field found is implausibly small. A thin strip
    along the frame (:data:`EDGE_MARGIN_FRACTION`) is ignored while detecting, so
    the one-pixel white or grey frame lines of some ISIC images do not hide the
    dark border behind them; it is removed with the border when a side is cropped.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        dark_threshold: brightest-channel level (0-255) at or below which a
            smooth grey pixel may be dermoscope border; lowered automatically to
            30% of the bright-skin level for dim images.
        min_keep: if the box would keep less than this fraction of the frame's
            area, detection is assumed to have failed and the full frame is returned.

    Returns:
        The crop box in ``image``'s pixel coordinates.

    Raises:
        ValueError: ``image`` is not ``(H, W, 3)`` uint8, or an argument is out of range.
    """
    image = _check_image(image)
    if not 0 <= dark_threshold <= 255:
        raise ValueError(f"dark_threshold must be in 0..255, got {dark_threshold}")
    if not 0.0 <= min_keep <= 1.0:
        raise ValueError(f"min_keep must be in [0, 1], got {min_keep}")
    h, w = image.shape[:2]
    m = _edge_margin(h, w)
    inner = _detect(image[m : h - m, m : w - m], dark_threshold)
    if inner is None:
        logger.warning("no field of view found (image almost entirely dark); keeping the full frame")
        return CropBox.full(h, w)
    ih, iw = h - 2 * m, w - 2 * m
    box = CropBox(
        0 if inner.top == 0 else inner.top + m,
        0 if inner.left == 0 else inner.left + m,
        h if inner.bottom == ih else inner.bottom + m,
        w if inner.right == iw else inner.right + m,
    )
    if box.area < min_keep * h * w:
        logger.warning(
            "field of view %s keeps %.0f%% of the %dx%d frame (< min_keep %.0f%%); keeping the full frame",
            box.to_dict(),
            100.0 * box.area / (h * w),
            w,
            h,
            100.0 * min_keep,
        )
        return CropBox.full(h, w)
    return box


def field_of_view_mask(image: np.ndarray, *, dark_threshold: int = DEFAULT_DARK_THRESHOLD) -> np.ndarray:
    """Pixels inside the dermoscope's field (not dark border connected to the frame).

    Computed at detection resolution and enlarged (nearest neighbour), so its
    outline is accurate to about ``max(H, W) / 256`` pixels. The thin frame strip
    ignored by detection takes the value of the pixels just inside it.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        dark_threshold: as for :func:`detect_field_of_view`.

    Returns:
        ``(H, W)`` bool, True inside the field. All True when there is no border,
        and all True when no field could be found (an almost entirely dark image).
    """
    image = _check_image(image)
    h, w = image.shape[:2]
    m = _edge_margin(h, w)
    field, _ = _field_small(_downscale(image[m : h - m, m : w - m]), dark_threshold)
    if not field.any():
        return np.ones((h, w), bool)
    field = field.astype(np.uint8)
    if field.shape != (h - 2 * m, w - 2 * m):
        field = cv2.resize(field, (w - 2 * m, h - 2 * m), interpolation=cv2.INTER_NEAREST)
    if m:
        field = cv2.copyMakeBorder(field, m, m, m, m, cv2.BORDER_REPLICATE)
    return field.astype(bool)


# --------------------------------------------------------------------------- crop / uncrop


def _channels_last(array: np.ndarray, channels_last: bool | None) -> bool:
    """Resolve the layout of a 3-D array (see :func:`crop`)."""
    if channels_last is not None:
        return bool(channels_last)
    first, last = array.shape[0], array.shape[-1]
    small = (1, 3, 4)
    if last in small and first not in small:
        return True
    if last not in small:
        return False
    raise ValueError(
        f"cannot tell whether an array of shape {array.shape} is (H, W, C) or (C, H, W); "
        "pass channels_last explicitly"
    )


def _spatial(array: np.ndarray, channels_last: bool | None) -> tuple[tuple[int, int], bool]:
    if array.ndim == 2:
        return (array.shape[0], array.shape[1]), False
    if array.ndim != 3:
        raise ValueError(f"expected a 2-D or 3-D array, got shape {array.shape}")
    last = _channels_last(array, channels_last)
    return ((array.shape[0], array.shape[1]) if last else (array.shape[1], array.shape[2])), last


def crop(image_or_mask: np.ndarray, box: CropBox, *, channels_last: bool | None = None) -> np.ndarray:
    """Cut ``box`` out of an image, a mask or a stack of masks.

    Layouts: ``(H, W)``; ``(H, W, C)`` (images); ``(C, H, W)`` (mask stacks and
    predictions). For 3-D arrays the layout is inferred unless ``channels_last``
    is given: channels last when the last axis has 1, 3 or 4 entries and the
    first does not, channels first when the last axis has any other length
    (so ``(H, W, 3)`` images and ``(5, H, W)`` / ``(3, H, W)`` stacks are
    recognised); an ambiguous shape raises ``ValueError``.

    Args:
        image_or_mask: the array to crop.
        box: the rectangle, in the array's pixel coordinates.
        channels_last: layout of a 3-D array; None to infer it.

    Returns:
        A view of the array, same layout, spatial size ``(box.height, box.width)``.

    Raises:
        ValueError: unsupported shape, ambiguous layout, or a box that does not fit.
    """
    array = np.asarray(image_or_mask)
    (h, w), last = _spatial(array, channels_last)
    if not box.fits(h, w):
        raise ValueError(f"crop box {box.to_dict()} does not fit an image of {h}x{w} (HxW)")
    rows, cols = slice(box.top, box.bottom), slice(box.left, box.right)
    if array.ndim == 2:
        return array[rows, cols]
    return array[rows, cols, :] if last else array[:, rows, cols]


def uncrop(
    pred: np.ndarray,
    box: CropBox,
    full_size: tuple[int, int],
    fill: float | int | bool = 0,
    *,
    channels_last: bool | None = None,
) -> np.ndarray:
    """Place a prediction made on a crop back into the original frame.

    The prediction must already be at the crop's resolution (resize it to
    ``(box.height, box.width)`` first if the model ran on a resized crop).

    Args:
        pred: ``(C, h, w)``, ``(h, w)`` or ``(h, w, C)`` with ``(h, w) == (box.height, box.width)``;
            the layout of a 3-D array is inferred as in :func:`crop`.
        box: where the crop was taken, in original coordinates.
        full_size: ``(H, W)`` of the original frame.
        fill: value of the pixels outside the box.
        channels_last: layout of a 3-D ``pred``; None to infer it.

    Returns:
        A new array of ``pred``'s dtype and layout, spatial size ``(H, W)``.

    Raises:
        ValueError: sizes do not match, or the box does not fit the frame.
    """
    array = np.asarray(pred)
    (h, w), last = _spatial(array, channels_last)
    full_h, full_w = int(full_size[0]), int(full_size[1])
    if (h, w) != (box.height, box.width):
        raise ValueError(
            f"prediction is {h}x{w} (HxW) but the crop box is {box.height}x{box.width}; "
            "resize the prediction to the crop size first"
        )
    if not box.fits(full_h, full_w):
        raise ValueError(f"crop box {box.to_dict()} does not fit a frame of {full_h}x{full_w} (HxW)")
    if array.ndim == 2:
        shape: tuple[int, ...] = (full_h, full_w)
    elif last:
        shape = (full_h, full_w, array.shape[2])
    else:
        shape = (array.shape[0], full_h, full_w)
    out = np.full(shape, fill, dtype=array.dtype)
    crop(out, box, channels_last=last if array.ndim == 3 else None)[...] = array
    return out
