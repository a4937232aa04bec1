"""The report's evaluation pass: one run of the model over the validation images.

:func:`evaluate_for_report` computes exactly what
:func:`dermseg.evaluation.model.evaluate_checkpoint` computes (same images in the same order, same
masks, same accumulators, so the same numbers) and, from the same predictions, what only the
report shows: ROC and precision-recall points per attribute, the official Jaccard at every
threshold of a grid, each image's own Jaccard, and the thumbnails of the best and worst images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dermseg.attributes import ATTRIBUTES
from dermseg.data.imageio import full_pixels, read_mask
from dermseg.data.layout import IsicSample
from dermseg.evaluation.metrics import IsicTask2Metric, jaccard_from_counts
from dermseg.evaluation.model import summarise_scores
from dermseg.evaluation.ranking import PresenceAUC, StreamingRanking
from dermseg.evaluation.tuning import ThresholdTuner
from dermseg.inference.postprocess import PostprocessSettings
from dermseg.inference.segmenter import Segmenter
from dermseg.report.gallery import THUMBNAIL_SIDE, GalleryKeeper, thumbnails

#: Points kept per ROC or precision-recall curve (plots need no more; the AUC/AP are exact).
CURVE_POINTS = 400

Progress = Callable[[int, int], None]


def threshold_grid(extra: np.ndarray | list[float]) -> np.ndarray:
    """0.01, 0.02, ..., 0.99 plus the given thresholds (the checkpoint's), sorted and unique."""
    grid = np.round(np.arange(1, 100) / 100, 2)
    return np.unique(np.concatenate([grid, np.clip(np.asarray(extra, dtype=np.float64), 0.0, 1.0)]))


def thin(x: np.ndarray, y: np.ndarray, points: int = CURVE_POINTS) -> tuple[list[float], list[float]]:
    """At most ``points`` points of a curve, evenly spaced along its length (ends kept).

    Plotting 4,097 points per curve would only make the report heavier; spacing by arc length
    keeps the steep parts of a ROC curve that spacing by threshold would lose.
    """
    if len(x) <= points:
        return [float(v) for v in x], [float(v) for v in y]
    step = np.hypot(np.diff(x), np.diff(y))
    length = np.concatenate([[0.0], np.cumsum(step)])
    idx = np.unique(np.searchsorted(length, np.linspace(0.0, length[-1], points - 1)))
    idx = np.unique(np.concatenate([idx.clip(0, len(x) - 1), [0, len(x) - 1]]))
    return [float(v) for v in x[idx]], [float(v) for v in y[idx]]


def _ranking_curves(ranking: StreamingRanking, scores: dict, thresholds: np.ndarray) -> tuple[dict, dict]:
    """ROC and PR entries per attribute (None where undefined) with the operating point.

    The operating point counts the pixels whose probability, rounded to the ranking's cells,
    lies above the checkpoint's threshold: the masks before any post-processing.
    """
    values = np.arange(ranking.bins + 1, dtype=np.float64) / ranking.bins
    roc: dict[str, Any] = {}
    pr: dict[str, Any] = {}
    for k, (name, points) in enumerate(ranking.curves().items()):
        neg, pos = ranking.histograms[k].astype(np.float64)
        above = values > thresholds[k]
        tp, fp = pos[above].sum(), neg[above].sum()
        n_pos, n_neg = pos.sum(), neg.sum()
        roc[name] = None
        if points["fpr"].size:
            fpr, tpr = thin(points["fpr"], points["tpr"])
            roc[name] = {
                "fpr": fpr,
                "tpr": tpr,
                "auc": scores["pixel"][name]["auc"],
                "operating_point": {"fpr": fp / n_neg, "tpr": tp / n_pos},
            }
        pr[name] = None
        if points["recall"].size:
            recall, precision = thin(points["recall"], points["precision"])
            pr[name] = {
                "recall": recall,
                "precision": precision,
                "ap": scores["pixel"][name]["ap"],
                "prevalence": float(n_pos / (n_pos + n_neg)),
                "operating_point": {
                    "recall": tp / n_pos,
                    "precision": tp / (tp + fp) if tp + fp > 0 else None,
                },
            }
    return roc, pr


def _image_entry(isic_id: str, counts: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Per-image scores: the official Jaccard of the image alone (attributes pooled) and per attribute."""
    per_attribute = {}
    for k, name in enumerate(ATTRIBUTES):
        empty = counts[k, :3].sum() == 0  # neither in the truth nor predicted
        per_attribute[name] = {
            "truth": bool(truth[k].any()),
            "predicted": bool(pred[k].any()),
            "jaccard": None if empty else float(jaccard_from_counts(counts[k])),
        }
    return {
        "id": isic_id,
        "jaccard": float(jaccard_from_counts(counts.sum(axis=0))),
        "has_truth": bool(truth.any()),
        "attributes": per_attribute,
    }


def evaluate_for_report(
    segmenter: Segmenter,
    samples: list[IsicSample],
    progress: Progress | None = None,
    gallery_size: int = 4,
    thumbnail_side: int = THUMBNAIL_SIDE,
) -> dict[str, Any]:
    """Score ``samples`` once and gather everything the report shows.

    Args:
        segmenter: the run's best checkpoint, as loaded for prediction.
        samples: the validation images (with all five masks), in split order.
        progress: called with ``(images done, images in all)`` after each image.
        gallery_size: images in each of the best and worst rows of the gallery.
        thumbnail_side: longest side of a gallery panel, pixels.

    Returns:
        ``scores`` (the dict of :func:`~dermseg.evaluation.model.evaluate_checkpoint`), ``roc`` and
        ``pr`` ({attribute: points, AUC/AP, operating point, or None}), ``thresholds`` (grid,
        per-attribute and common-threshold official Jaccard, the checkpoint's thresholds),
        ``per_image`` (id, own Jaccard, per-attribute detail; sorted best first) and ``gallery``
        (``best`` and ``worst`` entries with base64 JPEG panels).

    Raises:
        DataError: an image or mask cannot be read.
    """
    metric = IsicTask2Metric()
    ranking = StreamingRanking()
    presence = PresenceAUC()
    checkpoint_thresholds = segmenter.thresholds
    tuner = ThresholdTuner(threshold_grid(checkpoint_thresholds))
    gallery = GalleryKeeper(gallery_size)
    with_attribute = np.zeros(len(ATTRIBUTES), dtype=int)
    per_image: list[dict[str, Any]] = []
    for done, sample in enumerate(samples, start=1):
        decoded = segmenter.read(sample.image_path)  # as predict reads it: a large JPEG reduced
        h, w = decoded.size
        truth = np.stack([read_mask(p, expected_size=(w, h)) for p in sample.mask_paths])
        prediction = segmenter.predict(decoded)
        probs, pred = prediction.probabilities, prediction.masks
        counts = metric.update(pred[None], truth[None])[0]
        ranking.update(probs, truth)
        presence.update(probs, truth)
        tuner.update(probs, truth)
        with_attribute += truth.any(axis=(1, 2))
        entry = _image_entry(sample.isic_id, counts, truth, pred)
        per_image.append(entry)
        if entry["has_truth"]:  # an image without any structure has nothing to show
            gallery.offer(
                entry["jaccard"],
                sample.isic_id,
                lambda e=entry, d=decoded, s=sample, t=truth, p=pred: {
                    **e,
                    **thumbnails(full_pixels(d, s.image_path), t, p, thumbnail_side),
                },
            )
        if progress is not None:
            progress(done, len(samples))

    scores = summarise_scores(metric, ranking, presence, with_attribute)  # as evaluate_checkpoint
    # the thesis's metric once more, skipping the images where an attribute is neither present nor predicted
    scores["per_image_mean_jaccard_skip_empty"] = metric.per_image_mean_jaccard(empty_score=None)

    roc, pr = _ranking_curves(ranking, scores, checkpoint_thresholds)
    jaccard = tuner.jaccard()
    grid = tuner.thresholds
    ranked = sorted(per_image, key=lambda e: (not e["has_truth"], -e["jaccard"], e["id"]))
    for rank, e in enumerate(ranked, start=1):
        e["rank"] = rank
    shown = gallery.result()
    for row in shown.values():
        for e in row:
            e["rank"] = next(r["rank"] for r in ranked if r["id"] == e["id"])
    return {
        "scores": scores,
        "roc": roc,
        "pr": pr,
        "thresholds": {
            "grid": [float(t) for t in grid],
            "per_attribute": {a: [float(v) for v in jaccard[k]] for k, a in enumerate(ATTRIBUTES)},
            "overall_common": [tuner.overall_at(float(t)) for t in grid],
            "checkpoint": [float(t) for t in checkpoint_thresholds],
            "postprocessed": segmenter.postprocess
            != PostprocessSettings(thresholds=segmenter.postprocess.thresholds),
        },
        "per_image": ranked,
        "gallery": shown,
    }
