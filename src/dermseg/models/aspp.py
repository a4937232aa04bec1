"""Atrous Spatial Pyramid Pooling (DeepLab v3) on the deepest encoder map.

The thesis added ASPP with dilation rates 2, 3 and 4 to the last encoder volume
of its U-Net. That volume is tiny: at the thesis's 128 px crops it is 4x4 for
ResNet and 2x2 for Inception v3, and at 96 px Inception gives 1x1. BatchNorm
over one position of one image is undefined in training mode and very noisy over
a handful, so the convolution branches normalise with GroupNorm, which needs no batch,
and the image-pooling branch (always 1x1) has no norm at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dermseg.errors import ConfigError

__all__ = ["ASPP", "group_norm"]


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the most groups (``<= max_groups``) that divide ``channels`` into groups of >= 2.

    Groups of at least two channels keep the norm defined on a 1x1 map (one value per
    group cannot be normalised).

    Args:
        channels: channels to normalise.
        max_groups: upper bound on the group count (32, as in Wu & He 2018).

    Returns:
        an ``nn.GroupNorm`` for ``(B, channels, H, W)`` maps.
    """
    fits = [g for g in range(1, max_groups + 1) if channels % g == 0 and channels // g >= 2]
    groups = max(fits, default=1)
    return nn.GroupNorm(groups, channels)


def _conv_gn_relu(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        group_norm(out_channels),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """ASPP: a 1x1 branch, one dilated 3x3 branch per rate, an image-pooling branch, a 1x1 projection.

    Convolution branches and the projection are conv-GroupNorm-ReLU; the pooling branch is
    global average pooling, 1x1 conv (with bias), ReLU, bilinear upsampling.

    Args:
        in_channels: channels of the input map (the deepest encoder stage).
        out_channels: channels of every branch and of the output.
        rates: dilation rates of the 3x3 branches; ``(2, 3, 4)`` in the thesis.
        dropout: dropout probability after the projection.

    Raises:
        ConfigError: non-positive channels or rates, or dropout outside ``[0, 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (2, 3, 4),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ConfigError(
                f"ASPP channels must be >= 1, got in_channels={in_channels}, aspp_channels={out_channels}"
            )
        rates = tuple(int(r) for r in rates)
        if any(r < 1 for r in rates):
            raise ConfigError(f"aspp_rates must be positive integers, got {list(rates)}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"aspp_dropout must be in [0, 1), got {dropout}")
        self.rates = rates
        self.branches = nn.ModuleList(
            [_conv_gn_relu(in_channels, out_channels, 1)]
            + [_conv_gn_relu(in_channels, out_channels, 3, dilation=r) for r in rates]
        )
        # Image pooling works on a (B, C, 1, 1) map: BatchNorm is undefined there at B=1 and GroupNorm
        # over a few values is nearly a sign function, so this branch has no norm, only a bias.
        self.pooling = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=True),
            nn.ReLU(inplace=True),
        )
        self.project = nn.Sequential(
            _conv_gn_relu(out_channels * (len(rates) + 2), out_channels, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ASPP.

        Args:
            x: ``(B, in_channels, h, w)``, any ``h, w >= 1``.

        Returns:
            ``(B, out_channels, h, w)``.
        """
        size = x.shape[-2:]
        pooled = F.interpolate(self.pooling(x), size=size, mode="bilinear", align_corners=False)
        return self.project(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))
