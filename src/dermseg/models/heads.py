"""Output heads. Both return logits: sigmoid/softmax live in losses, metrics and the predictor."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dermseg.errors import ConfigError

__all__ = ["PresenceHead", "SegmentationHead"]


class SegmentationHead(nn.Module):
    """A convolution from decoder features to per-pixel logits.

    Args:
        in_channels: channels of the decoder output.
        out_channels: logit channels (5 for multilabel attributes, 6 for multiclass with background).
        kernel_size: 1 or 3.

    Raises:
        ConfigError: ``out_channels < 1`` or an even ``kernel_size``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if out_channels < 1:
            raise ConfigError(f"classes must be >= 1, got {out_channels}")
        if kernel_size not in (1, 3):
            raise ConfigError(f"segmentation head kernel_size must be 1 or 3, got {kernel_size}")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        """Compute logits, resized (bilinear) to ``size`` when one is given.

        The resize runs whenever ``size`` is given, also to the same size (exact), so that it
        traces with symbolic shapes; a caller whose features are already at the output size
        passes ``None``.

        Args:
            x: ``(B, in_channels, h, w)``.
            size: ``(H, W)`` wanted (e.g. ``image.shape[-2:]``), or ``None`` to keep ``(h, w)``.

        Returns:
            ``(B, out_channels, H, W)`` logits.
        """
        logits = self.conv(x)
        if size is not None:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


class PresenceHead(nn.Module):
    """Image-level presence logits: global average pooling then a linear layer.

    Args:
        in_channels: channels of the (deepest) map it reads.
        num_classes: one logit per attribute.
        dropout: dropout before the linear layer.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"presence head needs num_classes >= 1, got {num_classes}")
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool and classify.

        Args:
            x: ``(B, in_channels, h, w)``.

        Returns:
            ``(B, num_classes)`` logits.
        """
        return self.linear(self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))
