"""Bounds on an image's shape, so that no image can make the working image unbounded.

Images are resized so that their short side is the working size. Memory and time then grow
with the long side: a 2x20000 PNG (120 KB) became a 192 x 1,920,000 working image and took
more than 6 GB. Two limits refuse such images before they cost anything:

* the **aspect ratio** of the whole image (long side / short side), checked from its size
  alone (the file header: before it is decoded);
* the **long side of the working image**, in multiples of the working size, checked on the
  part the network sees (the field of view after the background crop, resized so its short
  side is the working size).

Defaults: aspect ratio <= 8 and working long side <= 8 x the working size. Real dermoscopy
images are at most about 2:1 (ISIC 2016-2020 mostly 3:2 and 4:3, PH2 768x560, HAM10000
600x450, square BCN/panorama crops 1:1), so 8 leaves a fourfold margin and no real image is
refused; at 8 x the working size the network runs on at most 8 working-size squares, and
the long-side limit only fires for a field of view that the crop made longer than 8:1.

Both are settings: the error names the setting to change (a command-line option or a config
field, whichever the caller was given).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dermseg.data.transforms import resized_shape
from dermseg.errors import DataError

#: Default largest ratio of an image's long side to its short side.
DEFAULT_MAX_ASPECT_RATIO: float = 8.0

#: Default largest long side of the working image, in multiples of the working size.
DEFAULT_MAX_SIDE_FACTOR: float = 8.0


class ImageShapeError(DataError):
    """An image beyond the shape limits (an HTTP server answers 413)."""


@dataclass(frozen=True)
class ShapeLimits:
    """The shape limits, and the names of the settings that change them (for the messages).

    Attributes:
        max_aspect_ratio: largest long side / short side of an image (>= 1).
        max_side_factor: largest long side of the working image, in multiples of the working size (>= 1).
        aspect_setting: what a user changes to raise ``max_aspect_ratio`` (``--max-aspect-ratio``).
        side_setting: what a user changes to raise ``max_side_factor`` (``--max-side-factor``).

    Raises:
        ValueError: a limit below 1 (or not a number).
    """

    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO
    max_side_factor: float = DEFAULT_MAX_SIDE_FACTOR
    aspect_setting: str = "--max-aspect-ratio"
    side_setting: str = "--max-side-factor"

    def __post_init__(self) -> None:
        for name in ("max_aspect_ratio", "max_side_factor"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 1:  # `not >=` also refuses NaN
                raise ValueError(f"{name} must be a number >= 1, got {value!r}")

    def check_image(self, height: int, width: int, path: str | Path | None = None) -> None:
        """Refuse an image whose aspect ratio exceeds :attr:`max_aspect_ratio`.

        Args:
            height, width: the image's size in pixels (from its header or its array).
            path: the image file, named in the error.

        Raises:
            ImageShapeError: e.g. ``x.png: image is 2x20000 (aspect ratio 10000:1), beyond the
                limit of 8:1 (--max-aspect-ratio)``.
        """
        ratio = max(height, width) / max(1, min(height, width))
        if ratio > self.max_aspect_ratio:
            raise ImageShapeError(
                f"image is {width}x{height} (aspect ratio {ratio:.3g}:1), beyond the limit of "
                f"{self.max_aspect_ratio:g}:1; to accept it, raise {self.aspect_setting}",
                path,
            )

    def check_working(self, height: int, width: int, size: int, path: str | Path | None = None) -> None:
        """Refuse a field of view whose working image would be longer than :attr:`max_side_factor` x ``size``.

        Args:
            height, width: the part of the image the network sees (after the background crop).
            size: the working size its short side is resized to.
            path: the image file, named in the error.

        Raises:
            ImageShapeError: the working image's long side is beyond the limit.
        """
        rh, rw = resized_shape(height, width, size)
        limit = self.max_side_factor * size
        if max(rh, rw) > limit:
            raise ImageShapeError(
                f"its field of view {width}x{height} becomes a {rw}x{rh} working image, longer than "
                f"the limit of {limit:g} px ({self.max_side_factor:g} x the working size {size}); "
                f"to accept it, raise {self.side_setting}",
                path,
            )


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Name ``path`` in an :class:`ImageShapeError` raised in the ``with`` block without a file
    (a segmenter checks the array it is given, and knows no file)."""
    try:
        yield
    except ImageShapeError as err:
        if err.path is not None:
            raise
        raise ImageShapeError(err.message, path) from None
