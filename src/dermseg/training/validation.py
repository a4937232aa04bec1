"""Validation during training: the official ISIC 2018 Task 2 metric at the working resolution."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dermseg.encoding import output_probabilities
from dermseg.evaluation.metrics import IsicTask2Metric, scores_from_counts
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
) -> dict[str, Any]:
    """Official ISIC Task 2 scores and mean loss of ``model`` on ``loader`` (summed over DDP ranks).

    Scored at the working resolution (every image weighs the same, as officially);
    the evaluator scores at the original size.

    Returns:
        ``{"loss": float, "scores": official dict (per attribute, micro_average, overall)}``.
    """
    model.eval()
    metric = IsicTask2Metric(thresholds=thresholds)
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
        metric.update(output_probabilities(output, encoding).cpu(), masks.cpu())
    counts = torch.tensor(metric.counts_sum if metric.num_images else np.zeros((5, 4)), dtype=torch.float64)
    totals = torch.tensor([loss_sum, float(n)], dtype=torch.float64)
    if info is not None and info.enabled:
        counts = distributed.all_reduce_sum(counts.to(info.device), info).cpu()
        totals = distributed.all_reduce_sum(totals.to(info.device), info).cpu()
    return {
        "loss": float(totals[0] / max(1.0, float(totals[1]))),
        "scores": scores_from_counts(counts.numpy()),
    }
