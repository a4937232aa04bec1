"""Evaluating a lesion checkpoint on a dataset with the official ISIC 2018 Task 1 metric.

The Task 1 path of ``dermseg evaluate --checkpoint C --data D`` for models whose label set is
scored with the Task 1 metric (``ph2``, ``isic2018_task1``, or a user's one-label set):
:func:`select_lesion_samples` picks the images with the model's label set, and
:func:`evaluate_lesion_checkpoint` runs the model on each at its own size (thresholds and
post-processing as the checkpoint says) and scores its mask against the truth exactly as the
official scorer scores a prediction folder (:mod:`dermseg.evaluation.task1`): the result is the
:class:`~dermseg.evaluation.task1_folders.Task1EvaluationResult` that
:func:`~dermseg.evaluation.task1_folders.evaluate_task1_folders` gives for the same masks
written to PNG files.

:mod:`dermseg.evaluation.model` is the Task 2 path (pooled Jaccard, pixel AUC/AP).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dermseg.data.imageio import read_image, read_mask
from dermseg.data.layout import IsicSample, discover
from dermseg.data.shape_limits import naming
from dermseg.data.splits import split_from_config
from dermseg.errors import ConfigError, DataError
from dermseg.evaluation.task1 import confusion_counts, scores_from_counts
from dermseg.evaluation.task1_folders import Task1EvaluationResult
from dermseg.inference.segmenter import Segmenter
from dermseg.labels import LabelSet

__all__ = ["evaluate_lesion_checkpoint", "lesion_auto_subset", "select_lesion_samples"]

#: What ``--subset`` may name.
SUBSETS: tuple[str, ...] = ("auto", "val", "validation", "test", "all")


def lesion_auto_subset(data_dir: str | Path, labels: LabelSet) -> str:
    """``test`` when the official Task 1 test ground truth is there, else ``val`` for the official
    layout, else ``all`` (a flat folder or PH2 is taken as the set to score).

    Raises:
        DataError: ``data_dir`` holds no image of ``labels``.
    """
    layout = discover(data_dir, labels)
    if layout.kind != "official":
        return "all"
    test = layout.splits.get("test")
    return "test" if test is not None and test.mask_dir is not None else "val"


def select_lesion_samples(
    data_dir: str | Path, subset: str, meta: dict[str, Any], labels: LabelSet
) -> list[IsicSample]:
    """The samples of a lesion label set to score.

    Args:
        data_dir: dataset folder (PH2, the ISIC 2018 Task 1 layout, or a flat folder).
        subset: ``auto`` (:func:`lesion_auto_subset`), ``val`` (the hold-out the checkpoint was
            selected on, from its config's split settings), ``validation`` or ``test`` (the
            official folders), or ``all`` (every image with a mask).
        meta: the checkpoint's description (its config gives the split's fraction and seed).
        labels: the label set (the checkpoint's, which the data must hold).

    Returns:
        The samples, each with its one lesion mask.

    Raises:
        ConfigError: an unknown ``subset``.
        DataError: no labelled image in that subset, or an image lacks its mask (named).
    """
    if subset not in SUBSETS:
        raise ConfigError(f"--subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    layout = discover(data_dir, labels)
    if subset == "auto":
        subset = lesion_auto_subset(data_dir, labels)
    if subset == "all":
        samples = [s for split in layout.splits.values() if split.mask_dir is not None for s in split.samples]
    elif subset in ("test", "validation"):
        official = layout.splits.get(subset)
        samples = official.samples if official is not None and official.mask_dir is not None else []
    else:  # val: the checkpoint's own hold-out, read with its label set
        data = dict((meta.get("config") or {}).get("data") or {})
        data["labels"] = labels.to_meta()
        split = split_from_config(data_dir, data)
        by_id = {s.isic_id: s for s in layout.samples}
        samples = [by_id[i] for i in split.val]
    if not samples:
        raise DataError(f"no images with ground truth in the {subset!r} subset", Path(data_dir))
    for s in samples:
        if s.missing_labels:
            raise DataError(f"missing mask {s.mask_name(s.missing_labels[0])}", s.image_path)
    return samples


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
        samples: images with their lesion masks (:func:`select_lesion_samples`).
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
        image = read_image(sample.image_path)
        h, w = image.shape[:2]
        truth = read_mask(sample.mask_paths[0], expected_size=(w, h))
        with naming(sample.image_path):
            mask = segmenter.masks(image)[0]
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
