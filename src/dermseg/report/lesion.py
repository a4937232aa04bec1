"""The report's evaluation pass for a lesion model (a label set scored with the ISIC 2018 Task 1 metric).

:func:`evaluate_lesion_for_report` runs the model once over the validation images and gathers
what a lesion report shows: the official Task 1 scores of its masks (exactly those of
:func:`dermseg.evaluation.lesion_model.evaluate_lesion_checkpoint`: same images, same masks, same
counts), every image's six scores, the mean Jaccard and the official thresholded Jaccard at every
threshold of a grid (before post-processing), and the thumbnails of the best and worst images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dermseg.data.imageio import full_pixels, read_mask
from dermseg.data.layout import IsicSample
from dermseg.evaluation.task1 import (
    JACCARD_THRESHOLD,
    SCORE_NAMES,
    confusion_counts,
    per_image_scores,
    scores_from_counts,
)
from dermseg.evaluation.task1_folders import Task1EvaluationResult
from dermseg.inference.postprocess import PostprocessSettings
from dermseg.inference.segmenter import Segmenter
from dermseg.report.evaluation import threshold_grid
from dermseg.report.gallery import THUMBNAIL_SIDE, GalleryKeeper, thumbnails

__all__ = ["evaluate_lesion_for_report", "threshold_counts"]

Progress = Callable[[int, int], None]


def threshold_counts(probs: np.ndarray, truth: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Confusion counts of one image's mask ``probs > t`` for every threshold ``t`` of ``grid``.

    Exact (sorted probabilities, no binning), compared in the probabilities' dtype as
    :func:`~dermseg.inference.postprocess.apply_postprocess` compares them.

    Args:
        probs: ``(H, W)`` float probabilities.
        truth: ``(H, W)`` bool.
        grid: ``(T,)`` thresholds.

    Returns:
        ``(T, 4)`` int64 ``[tp, fp, fn, tn]`` per threshold.
    """
    p = np.asarray(probs)
    t = np.asarray(truth, dtype=bool)
    cuts = np.asarray(grid, dtype=np.float64).astype(p.dtype)
    positives = np.sort(p[t], axis=None)
    everything = np.sort(p, axis=None)
    above_pos = positives.size - np.searchsorted(positives, cuts, side="right")
    above_all = everything.size - np.searchsorted(everything, cuts, side="right")
    tp = above_pos.astype(np.int64)
    fp = (above_all - above_pos).astype(np.int64)
    fn = positives.size - tp
    tn = p.size - tp - fp - fn
    return np.stack([tp, fp, fn, tn], axis=1)


def _image_entry(image_id: str, counts: np.ndarray) -> dict[str, Any]:
    scores = per_image_scores(counts)
    return {
        "id": image_id,
        **{name: float(scores[name][0]) for name in SCORE_NAMES},
        "has_truth": bool(counts[0] + counts[2] > 0),
        "predicted": bool(counts[0] + counts[1] > 0),
    }


def evaluate_lesion_for_report(
    segmenter: Segmenter,
    samples: list[IsicSample],
    progress: Progress | None = None,
    gallery_size: int = 4,
    thumbnail_side: int = THUMBNAIL_SIDE,
) -> dict[str, Any]:
    """Score ``samples`` once with the official Task 1 metric and gather everything the report shows.

    Args:
        segmenter: the run's best checkpoint (a one-label set scored with the Task 1 metric).
        samples: the validation images with their lesion masks, in split order.
        progress: called with ``(images done, images in all)`` after each image.
        gallery_size: images in each of the best and worst rows of the gallery.
        thumbnail_side: longest side of a gallery panel, pixels.

    Returns:
        ``scores`` (the official keys ``overall``, ``validation``, ``macro_average``, then
        ``images``, ``images_with_lesion`` and ``per_image``, as
        :meth:`~dermseg.evaluation.task1_folders.Task1EvaluationResult.to_dict`), ``thresholds``
        (``grid``, the mean ``jaccard`` and official ``threshold_jaccard`` at each threshold before
        post-processing, the checkpoint's threshold), ``per_image`` (the six scores of every image,
        ranked by Jaccard, best first) and ``gallery`` (``best`` and ``worst`` entries with base64
        JPEG panels).

    Raises:
        DataError: an image or mask cannot be read, or a mask is not its image's size.
    """
    labels = segmenter.labels
    checkpoint_threshold = float(segmenter.thresholds[0])
    grid = threshold_grid([checkpoint_threshold])
    gallery = GalleryKeeper(gallery_size)
    counts: list[np.ndarray] = []
    curve_counts = np.zeros((len(samples), len(grid), 4), dtype=np.int64)
    entries: list[dict[str, Any]] = []
    for done, sample in enumerate(samples, start=1):
        decoded = segmenter.read(sample.image_path)  # as predict reads it: a large JPEG reduced
        h, w = decoded.size
        truth = read_mask(sample.mask_paths[0], expected_size=(w, h))
        prediction = segmenter.predict(decoded)
        probs, pred = prediction.probabilities, prediction.masks
        image_counts = confusion_counts(pred[0], truth)
        counts.append(image_counts)
        curve_counts[done - 1] = threshold_counts(probs[0], truth, grid)
        entry = _image_entry(sample.isic_id, image_counts)
        entries.append(entry)
        gallery.offer(
            entry["jaccard"],
            sample.isic_id,
            lambda e=entry, d=decoded, s=sample, t=truth, p=pred: {
                **e,
                **thumbnails(full_pixels(d, s.image_path), t[None], p, thumbnail_side, labels=labels),
            },
        )
        if progress is not None:
            progress(done, len(samples))

    per_image_counts = np.stack(counts).astype(np.int64)
    result = Task1EvaluationResult(
        scores=scores_from_counts(per_image_counts),
        image_ids=tuple(s.isic_id for s in samples),
        per_image_counts=per_image_counts,
        images_with_lesion=int(np.count_nonzero(per_image_counts[:, 0] + per_image_counts[:, 2])),
    )
    jaccard_at = per_image_scores(curve_counts.reshape(-1, 4))["jaccard"].reshape(len(samples), len(grid))
    ranked = sorted(entries, key=lambda e: (-e["jaccard"], e["id"]))
    for rank, e in enumerate(ranked, start=1):
        e["rank"] = rank
    shown = gallery.result()
    for row in shown.values():
        for e in row:
            e["rank"] = next(r["rank"] for r in ranked if r["id"] == e["id"])
    return {
        "scores": result.to_dict(),
        "thresholds": {
            "grid": [float(t) for t in grid],
            "jaccard": [float(v) for v in jaccard_at.mean(axis=0)],
            "threshold_jaccard": [
                float(v) for v in np.where(jaccard_at >= JACCARD_THRESHOLD, jaccard_at, 0.0).mean(axis=0)
            ],
            "checkpoint": [checkpoint_threshold],
            "postprocessed": segmenter.postprocess
            != PostprocessSettings(thresholds=segmenter.postprocess.thresholds),
        },
        "per_image": ranked,
        "gallery": shown,
    }
