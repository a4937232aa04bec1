"""Validation during training: the label set's official metric at the working resolution.

* ``isic2018_task2`` (the five attributes, or a user's set scored like them): the pooled Task 2
  Jaccard (:class:`~dermseg.evaluation.metrics.IsicTask2Metric`); the model is selected on its
  ``overall`` (micro-averaged) Jaccard.
* ``isic2018_task1`` (a lesion: ``isic2018_task1``, ``ph2``): the official Task 1 metric
  (:class:`~dermseg.evaluation.task1.IsicTask1Metric`), one row of counts per image; the model
  is selected on the **mean per-image Jaccard** (``macro_average["jaccard"]``), which rewards
  every image's improvement, whereas the leaderboard's thresholded Jaccard (0 below 0.65) moves
  in steps on a small validation set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dermseg.encoding import output_probabilities
from dermseg.evaluation.metrics import IsicTask2Metric, scores_from_counts
from dermseg.evaluation.task1 import SCORE_NAMES, IsicTask1Metric
from dermseg.labels import DEFAULT, LabelSet
from dermseg.training import distributed


def model_logits(output: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return output["masks"] if isinstance(output, dict) else output


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    encoding: str,
    thresholds: list[float],
    device: torch.device,
    dtype: torch.dtype | None = None,
    info: distributed.DistInfo | None = None,
    labels: LabelSet = DEFAULT,
) -> dict[str, Any]:
    """The official scores of ``model`` on ``loader`` and its mean loss (summed over DDP ranks).

    Scored at the working resolution (every image weighs the same, as officially); the
    evaluator scores at the original size.

    Args:
        model: returns ``(B, K, H, W)`` logits (or a dict with them under ``masks``).
        loader: validation batches of ``image (B, 3, H, W)``, ``masks (B, C, H, W)``,
            ``labelled (B, C)``.
        loss_fn: the training loss.
        encoding: ``multilabel`` or ``multiclass``.
        thresholds: one per label (C).
        device, dtype: where and in which autocast dtype the model runs.
        info: the DDP place of this process (``None``: one process).
        labels: the run's label set; its ``metric`` decides the scores.

    Returns:
        ``{"loss": float, "scores": dict}``: for ``isic2018_task2`` the official Task 2 dict
        (per label ``jaccard``/``dice``, ``micro_average``, ``overall``); for ``isic2018_task1``
        the official Task 1 dict (``overall`` = thresholded Jaccard, ``validation``,
        ``macro_average``: the means over images of ``accuracy``, ``sensitivity``,
        ``specificity``, ``jaccard``, ``threshold_jaccard``, ``dice``).
    """
    model.eval()
    task1 = labels.metric == "isic2018_task1"
    n_labels = labels.num_labels
    task2 = None if task1 else IsicTask2Metric(thresholds=thresholds, names=labels.names)
    lesion = IsicTask1Metric(threshold=thresholds[0]) if task1 else None
    loss_sum, n = 0.0, 0
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        masks = batch["masks"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            output = model(images)
        logits = model_logits(output).float()
        # The mask logits alone: the validation loss is the segmentation loss, without a presence term.
        loss_sum += float(loss_fn(logits, masks, labelled=batch["labelled"].to(device))) * len(images)
        n += len(images)
        probs = output_probabilities(output, encoding, n_labels).cpu()
        if lesion is not None:
            for b in range(len(images)):  # one row of raw counts per image: the metric is per image
                lesion.update(probs[b, 0], masks[b, 0].cpu())
        else:
            assert task2 is not None
            task2.update(probs, masks.cpu())
    totals = torch.tensor([loss_sum, float(n)], dtype=torch.float64)
    if info is not None and info.enabled:
        totals = distributed.all_reduce_sum(totals.to(info.device), info).cpu()
    loss = float(totals[0] / max(1.0, float(totals[1])))
    if lesion is not None:
        return {"loss": loss, "scores": _task1_scores(lesion, info)}
    assert task2 is not None
    counts = torch.tensor(
        task2.counts_sum if task2.num_images else np.zeros((n_labels, 4)), dtype=torch.float64
    )
    if info is not None and info.enabled:
        counts = distributed.all_reduce_sum(counts.to(info.device), info).cpu()
    return {"loss": loss, "scores": scores_from_counts(counts.numpy(), labels.names)}


def _task1_scores(metric: IsicTask1Metric, info: distributed.DistInfo | None) -> dict[str, Any]:
    """The official Task 1 dict of the images every rank scored.

    One process: :meth:`IsicTask1Metric.compute`, the scorer's numbers exactly. Under DDP the
    ranks' per-image scores are summed and divided by the number of images (the same means,
    up to the order of the float additions).
    """
    if info is None or not info.enabled:
        if metric.num_images == 0:
            raise ValueError("no validation image was scored")
        return metric.compute()
    per_image = metric.per_image_scores()
    sums = torch.tensor(
        [float(np.sum(per_image[name])) for name in SCORE_NAMES] + [float(metric.num_images)],
        dtype=torch.float64,
    )
    sums = distributed.all_reduce_sum(sums.to(info.device), info).cpu()
    images = max(1.0, float(sums[-1]))
    macro = {name: float(sums[k]) / images for k, name in enumerate(SCORE_NAMES)}
    overall = macro["threshold_jaccard"]
    return {"overall": overall, "validation": overall, "macro_average": macro}
