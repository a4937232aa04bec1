"""The report's gallery: the best and worst validation images, as small embedded thumbnails.

While the evaluation pass runs, :class:`GalleryKeeper` keeps only the thumbnails of the images
that are currently among the ``size`` best or ``size`` worst (by per-image Jaccard), so memory
stays bounded whatever the number of images. A thumbnail is three JPEG panels of at most
``side`` pixels: the image, the ground truth over it and the prediction over it, each label
in its colour (:mod:`dermseg.inference.overlay`; the model's label set says which).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from PIL import Image

from dermseg.inference.overlay import overlay
from dermseg.labels import DEFAULT, LabelSet

#: Longest side of a gallery panel, pixels.
THUMBNAIL_SIDE = 256
#: JPEG quality of the panels (photographs: JPEG keeps the report small; masks are never saved so).
JPEG_QUALITY = 85


def jpeg_base64(image: np.ndarray, quality: int = JPEG_QUALITY) -> str:
    """``(H, W, 3)`` uint8 RGB -> base64 text of a JPEG (no ``data:`` prefix)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def shrink(image: np.ndarray, masks: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image and its ``(C, H, W)`` masks so the longest side is at most ``side``.

    The image is area-averaged; a thumbnail mask pixel is on where at least half of the area it
    covers is on.

    Returns:
        ``(h, w, 3)`` uint8 and ``(C, h, w)`` bool.
    """
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return image, masks.astype(bool)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_masks = np.stack(
        [cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5 for m in masks]
    )
    return small, small_masks


def thumbnails(
    image: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    side: int = THUMBNAIL_SIDE,
    labels: LabelSet = DEFAULT,
) -> dict:
    """The three gallery panels of one image as base64 JPEG text.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        truth: ``(C, H, W)`` bool ground truth, one mask per label of ``labels``.
        pred: ``(C, H, W)`` bool predicted masks (as scored).
        side: longest side of the panels.
        labels: the label set (its colours); Task 2's five attributes by default.

    Returns:
        ``{"image", "truth", "prediction"}`` base64 JPEG strings, ``"width"`` and ``"height"``.
    """
    both = np.concatenate([truth, pred]).astype(bool)
    small, masks = shrink(image, both, side)
    k = len(truth)
    return {
        "image": jpeg_base64(small),
        "truth": jpeg_base64(overlay(small, masks[:k], labels=labels)),
        "prediction": jpeg_base64(overlay(small, masks[k:], labels=labels)),
        "width": int(small.shape[1]),
        "height": int(small.shape[0]),
    }


class GalleryKeeper:
    """Keeps the entries of the ``size`` highest- and ``size`` lowest-scoring images seen.

    Images are ordered by score, ties by id, so the choice does not depend on the order in which
    they come.

    Args:
        size: images shown on each side (best, worst), >= 1.

    Raises:
        ValueError: ``size < 1``.
    """

    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1; got {size}")
        self.size = size
        self.offered = 0
        self._best: list[tuple[float, str, dict]] = []
        self._worst: list[tuple[float, str, dict]] = []

    @staticmethod
    def _rank(item: tuple[float, str, dict]) -> tuple[float, str]:
        """Sort key of the gallery order: higher score first, then by id."""
        return (-item[0], item[1])

    def offer(self, score: float, isic_id: str, make_entry: Callable[[], dict[str, Any]]) -> None:
        """Consider one image; ``make_entry`` (the thumbnails) is called only when it is kept."""
        self.offered += 1
        rank = self._rank((float(score), isic_id, {}))
        # best: the first `size` of the order; worst: its last `size`, kept last first
        into_best = len(self._best) < self.size or rank < self._rank(self._best[-1])
        into_worst = len(self._worst) < self.size or rank > self._rank(self._worst[-1])
        if not (into_best or into_worst):
            return
        item = (float(score), isic_id, make_entry())
        for kept, wanted, last_first in ((self._best, into_best, False), (self._worst, into_worst, True)):
            if wanted:
                kept.append(item)
                kept.sort(key=self._rank, reverse=last_first)
                del kept[self.size :]

    def result(self) -> dict[str, list[dict[str, Any]]]:
        """``{"best": [...], "worst": [...]}`` entries, best first and worst first, never overlapping.

        With fewer than ``2 * size`` images offered, they are shared out: the better half
        (rounded up) are "best", the others "worst".
        """
        n_best = min(self.size, math.ceil(self.offered / 2))
        best = self._best[:n_best]
        shown = {i for _, i, _ in best}
        n_worst = min(self.size, self.offered - n_best)
        worst = [item for item in self._worst if item[1] not in shown][:n_worst]
        return {"best": [entry for *_, entry in best], "worst": [entry for *_, entry in worst]}
