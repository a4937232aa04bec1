"""Evaluating a lesion checkpoint on a dataset with the official ISIC 2018 Task 1 metric.

The Task 1 path of ``dermseg evaluate --checkpoint C --data D`` for models whose label set is
scored with the Task 1 metric (``ph2``, ``isic2018_task1``, or a user's one-label set):
:func:`~dermseg.evaluation.model.select_samples` picks the images with the model's label set,
and :func:`evaluate_lesion_checkpoint` runs the model on each at its own size (thresholds and
post-processing as the checkpoint says) and scores its mask against the truth exactly as the
official scorer scores a prediction folder (:mod:`dermseg.evaluation.task1`): the result is the
:class:`~dermseg.evaluation.task1_folders.Task1EvaluationResult` that
:func:`~dermseg.evaluation.task1_folders.evaluate_task1_folders` gives for the same masks
written to PNG files.

:mod:`dermseg.evaluation.model` is the Task 2 path (pooled Jaccard, pixel AUC/AP).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dermseg.data.imageio import read_mask
from dermseg.data.layout import IsicSample
from dermseg.data.shape_limits import naming
from dermseg.errors import ConfigError, DataError
from dermseg.evaluation.task1 import confusion_counts, scores_from_counts
from dermseg.evaluation.task1_folders import Task1EvaluationResult
from dermseg.inference.segmenter import Segmenter

__all__ = ["evaluate_lesion_checkpoint"]


def evaluate_lesion_checkpoint(
    segmenter: Segmenter, samples: list[IsicSample], progress: Callable[[int], None] | None = None
) -> Task1EvaluationResult:
    """The official ISIC 2018 Task 1 scores of a lesion model's masks on ``samples``.

    Each image is segmented at its own size (the segmenter's thresholds, post-processing and
    flip TTA) and its ``(H, W)`` mask counted against the truth (``> 128`` of the 8-bit mask, as
    the scorer reads it): the scores equal those of the official scorer on the same masks written
    as PNGs.

    Args:
        segmenter: a model of a one-label set scored with the Task 1 metric.
        samples: images with their lesion masks (:func:`~dermseg.evaluation.model.select_samples`).
        progress: called with 1 after each image.

    Returns:
        The scores (``overall``, ``validation``, ``macro_average`` of the six official scores)
        with the per-image counts, in the order of ``samples``.

    Raises:
        ConfigError: the segmenter's label set is not scored with the Task 1 metric.
        DataError: an image or mask cannot be read, or a mask is not the size of its image.
    """
    labels = segmenter.labels
    if labels.metric != "isic2018_task1":
        raise ConfigError(f"label set {labels.name} is scored with {labels.metric}, not the Task 1 metric")
    if not samples:
        raise DataError("no images to score")
    counts = []
    for sample in samples:
        decoded = segmenter.read(sample.image_path)  # as predict reads it: a large JPEG reduced
        h, w = decoded.size
        truth = read_mask(sample.mask_paths[0], expected_size=(w, h))
        with naming(sample.image_path):
            mask = segmenter.predict(decoded).masks[0]
        counts.append(confusion_counts(mask, truth))
        if progress is not None:
            progress(1)
    per_image = np.stack(counts).astype(np.int64)
    return Task1EvaluationResult(
        scores=scores_from_counts(per_image),
        image_ids=tuple(s.isic_id for s in samples),
        per_image_counts=per_image,
        images_with_lesion=int(np.count_nonzero(per_image[:, 0] + per_image[:, 2])),
    )
