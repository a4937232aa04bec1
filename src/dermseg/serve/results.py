"""One analysed image as the web app keeps it: encoded masks, a display image, the numbers.

Masks are kept as the 0/255 PNGs of the submission format at the image's size, one per label of
the model's label set and named as the set names them (``ISIC_<id>_attribute_<name>.png`` for
Task 2, ``<id>_lesion.png`` for PH2, ...); the page draws them in the labels' colours itself, and
the zip holds the very same files.
"""

from __future__ import annotations

import io
import secrets
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from dermseg.inference.segmenter import Prediction
from dermseg.labels import DEFAULT, LabelSet

#: Longest side of the image the page shows (the masks stay at full size).
DISPLAY_SIDE = 2048


@dataclass
class Result:
    """The analysis of one uploaded image.

    Attributes:
        id: random, unguessable key of this result.
        stem: ``<id>`` of the submission file names (``ISIC_0012345`` or a sanitised file stem).
        filename: the uploaded file's name, for display.
        width, height: the image size (EXIF rotation applied), which is the masks' size.
        presence: per label, the highest pixel probability in the image.
        area: per label, the percentage of the image's pixels in the mask.
        detected: per label, whether the mask has any pixel.
        display_jpeg: the image as the page shows it (long side at most :data:`DISPLAY_SIDE`).
        mask_pngs: per label, the mask as an 8-bit 0/255 PNG at the image size.
        labels: the model's label set (names, colours, mask file names).
    """

    id: str
    stem: str
    filename: str
    width: int
    height: int
    presence: dict[str, float]
    area: dict[str, float]
    detected: dict[str, bool]
    display_jpeg: bytes = field(repr=False)
    mask_pngs: dict[str, bytes] = field(repr=False)
    labels: LabelSet = field(default=DEFAULT, repr=False)

    def mask_name(self, label: str) -> str:
        """The submission name of a label's mask: ``<stem>_attribute_<name>.png`` for Task 2,
        ``<stem>_lesion.png`` for PH2, as the label set names it."""
        return self.labels.mask_name(self.stem, label)

    @property
    def zip_name(self) -> str:
        return f"{self.stem}_masks.zip"

    def to_json(self, base_url: str) -> dict:
        """What ``POST /api/predict`` answers; URLs are relative to the app root ``base_url``."""
        root = f"{base_url}api/results/{self.id}"
        return {
            "id": self.id,
            "stem": self.stem,
            "filename": self.filename,
            "width": self.width,
            "height": self.height,
            "image_url": f"{root}/image.jpg",
            "zip_url": f"{root}/masks.zip",
            "zip_name": self.zip_name,
            "attributes": [
                {
                    "name": info.name,
                    "display_name": info.display_name,
                    "colour": list(info.colour),
                    "presence": self.presence[info.name],
                    "area_percent": self.area[info.name],
                    "detected": self.detected[info.name],
                    "mask_url": f"{root}/masks/{info.name}.png",
                    "mask_name": self.mask_name(info.name),
                }
                for info in self.labels.labels
            ],
        }

    def submission_zip(self) -> bytes:
        """A zip of the masks in submission naming (stored: PNG is compressed already)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in self.labels.names:
                archive.writestr(self.mask_name(name), self.mask_pngs[name])
        return buffer.getvalue()


def _png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _display_jpeg(image: np.ndarray) -> bytes:
    img = Image.fromarray(image)
    if max(img.size) > DISPLAY_SIDE:
        img.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def build_result(
    image: np.ndarray, prediction: Prediction, stem: str, filename: str, labels: LabelSet = DEFAULT
) -> Result:
    """Encode a prediction for the page and the download.

    Args:
        image: ``(H, W, 3)`` uint8, the image that was segmented.
        prediction: its ``(C, H, W)`` probabilities and masks.
        stem: ``<id>`` of the submission names.
        filename: the uploaded name, for display.
        labels: the model's label set (``C`` labels; Task 2's five attributes by default).
    """
    h, w = image.shape[:2]
    names = labels.names
    presence = prediction.presence
    area = prediction.masks.reshape(len(names), -1).mean(axis=1) * 100.0
    return Result(
        id=secrets.token_urlsafe(16),
        stem=stem,
        filename=filename,
        width=w,
        height=h,
        presence={name: round(float(presence[k]), 4) for k, name in enumerate(names)},
        area={name: float(area[k]) for k, name in enumerate(names)},
        detected={name: bool(prediction.masks[k].any()) for k, name in enumerate(names)},
        display_jpeg=_display_jpeg(image),
        mask_pngs={name: _png(prediction.masks[k]) for k, name in enumerate(names)},
        labels=labels,
    )


class ResultStore:
    """The most recent results in memory, oldest dropped first; safe to use from several threads."""

    def __init__(self, capacity: int = 32) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, Result] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, result: Result) -> None:
        with self._lock:
            self._items[result.id] = result
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, result_id: str) -> Result | None:
        with self._lock:
            return self._items.get(result_id)
