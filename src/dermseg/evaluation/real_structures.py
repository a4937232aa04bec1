"""Measuring a Task 2 model's structures on real photographs, with the truth real data has.

Two kinds of truth exist for real dermoscopy at hand:

* **masks of one attribute** (the six ISIC 2018 Task 2 images of the shared sample hold only
  their pigment-network masks): :func:`pooled_attribute_jaccard` scores that attribute alone
  with the official pooled metric (:class:`~dermseg.evaluation.metrics.IsicTask2Metric`, per-image
  counts normalised by the pixel count and summed), predictions at the image's original size.
  The other attributes are never scored: a missing mask is unknown, not empty.
* **image-level criteria** (PH2, Derm7pt: :mod:`dermseg.data.weak_labels`):
  :func:`presence_scores` gives every image its presence scores and :func:`presence_rows` their
  ROC AUC per labelled attribute (:mod:`dermseg.evaluation.presence_auc`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermseg.attributes import ATTRIBUTES, attribute_index
from dermseg.data.imageio import read_mask
from dermseg.data.weak_labels import WeakLabels
from dermseg.errors import DataError
from dermseg.evaluation.metrics import IsicTask2Metric
from dermseg.evaluation.presence_auc import (
    SCORE_DESCRIPTIONS,
    percentile_presence,
    predict_with_presence_head,
    presence_auc,
)
from dermseg.inference.segmenter import Segmenter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """One row of the real-structure table.

    Attributes:
        measurement: what was measured, e.g. ``ISIC pigment_network pooled Jaccard`` or
            ``PH2 globules presence AUC``.
        n_images: images it rests on.
        n_positive: images where the attribute is present (truth mask not empty, or labelled present).
        value: the number; None when undefined (an AUC without positives or negatives).
        score: how the prediction was turned into the number (threshold, or presence score).
        interval: the value's 95 % bootstrap interval, where one is computed (presence AUCs).
    """

    measurement: str
    n_images: int
    n_positive: int
    value: float | None
    score: str
    interval: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return asdict(self)


def attribute_mask_pairs(folder: str | Path, attribute: str) -> list[tuple[Path, Path]]:
    """The ``(image, mask)`` pairs of one attribute in a flat ISIC Task 2 folder.

    Args:
        folder: holds ``ISIC_<id>.jpg`` (or ``.png``) and ``ISIC_<id>_attribute_<attribute>.png``.
        attribute: a Task 2 attribute name.

    Returns:
        The pairs sorted by image name; images without that attribute's mask are left out.

    Raises:
        DataError: the folder is missing, or no image in it has a mask of ``attribute``.
        ValueError: ``attribute`` is not a Task 2 attribute.
    """
    attribute_index(attribute)
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("folder not found", folder)
    pairs = []
    for mask in sorted(folder.glob(f"ISIC_*_attribute_{attribute}.png")):
        stem = mask.name[: -len(f"_attribute_{attribute}.png")]
        found = [
            folder / f"{stem}{s}" for s in (".jpg", ".jpeg", ".png") if (folder / f"{stem}{s}").is_file()
        ]
        image = found[0] if found else None
        if image is None:
            raise DataError(f"no image {stem}.jpg for this mask", mask)
        pairs.append((image, mask))
    if not pairs:
        raise DataError(f"no ISIC_<id>_attribute_{attribute}.png mask here", folder)
    return pairs


def pooled_attribute_jaccard(
    segmenter: Segmenter, pairs: Sequence[tuple[Path, Path]], attribute: str
) -> Measurement:
    """Official pooled (ISIC 2018 Task 2) Jaccard of one attribute, predicted at the original size.

    Args:
        segmenter: a Task 2 segmenter (five attribute channels); its thresholds and
            post-processing make the masks, as ``dermseg predict`` does.
        pairs: ``(image, truth mask)`` of ``attribute``, e.g. :func:`attribute_mask_pairs`.
        attribute: the one attribute scored.

    Returns:
        The Jaccard, with the number of images and of images whose truth mask is not empty.

    Raises:
        DataError: an unreadable image or mask, or a mask of another size than its image.
    """
    if attribute not in segmenter.labels.names:
        raise ValueError(
            f"the model does not segment {attribute!r} (its labels: {', '.join(segmenter.labels.names)})"
        )
    k = segmenter.labels.names.index(attribute)
    metric = IsicTask2Metric(names=(attribute,))
    positives = 0
    for image_path, mask_path in pairs:
        prediction = segmenter(image_path)  # read as predict reads it: a large JPEG reduced
        h, w = prediction.masks.shape[1:]
        truth = read_mask(mask_path, expected_size=(w, h))
        metric.update(prediction.masks[None, k : k + 1], truth[None, None])
        positives += int(truth.any())
        log.info("%s: %s scored", image_path.name, attribute)
    jaccard = metric.compute()[attribute]["jaccard"]
    threshold = float(segmenter.thresholds[k])
    return Measurement(
        f"ISIC {attribute} pooled Jaccard (official)",
        len(pairs),
        positives,
        jaccard,
        f"mask: probability > {threshold:g} at the original size, the checkpoint's post-processing",
    )


def presence_scores(segmenter: Segmenter, images: Mapping[str, Path]) -> dict[str, dict[str, np.ndarray]]:
    """Every image's presence scores (:mod:`dermseg.evaluation.presence_auc`).

    Args:
        segmenter: a Task 2 segmenter.
        images: ``{image key: path}``.

    Returns:
        ``{score name: {image key: (5,) float64 per attribute}}``: ``p99`` always, ``head`` when
        the model has a presence head.

    Raises:
        DataError: an image cannot be read.
    """
    out: dict[str, dict[str, np.ndarray]] = {"p99": {}}
    for key, path in images.items():
        prediction, head = predict_with_presence_head(segmenter, path)
        out["p99"][key] = percentile_presence(prediction.probabilities, prediction.field)
        if head is not None:
            out.setdefault("head", {})[key] = head
    return out


def presence_rows(
    dataset: str, scores: Mapping[str, Mapping[str, np.ndarray]], weak: WeakLabels
) -> list[Measurement]:
    """Presence AUC rows: one per attribute ``weak`` labels and per presence score.

    Args:
        dataset: the dataset's name in the row (``PH2``, ``Derm7pt``).
        scores: :func:`presence_scores`' output (channels in Task 2 order).
        weak: the image-level labels, keyed as ``scores`` are.

    Returns:
        Rows in Task 2 attribute order, then score order.
    """
    rows = []
    for attribute in weak.attributes:
        labels = weak.of_attribute(attribute)
        c = ATTRIBUTES.index(attribute)
        for name, per_image in scores.items():
            result = presence_auc({k: float(v[c]) for k, v in per_image.items()}, labels)
            rows.append(
                Measurement(
                    f"{dataset} {attribute} presence AUC",
                    result.n,
                    result.n_positive,
                    result.auc,
                    f"{name}: {SCORE_DESCRIPTIONS[name]}",
                    result.interval,
                )
            )
    return rows


__all__ = [
    "Measurement",
    "attribute_mask_pairs",
    "pooled_attribute_jaccard",
    "presence_rows",
    "presence_scores",
]
