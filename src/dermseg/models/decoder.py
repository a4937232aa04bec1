"""The U-Net decoder: upsample to each skip's exact size, concatenate, two conv-BN-ReLU.

Skip sizes are taken from the skip tensors themselves, never computed from strides:
Inception v3's maps (253, 124, 61, 30, 14 px at 512 input) are not halves of each
other, and odd inputs (97x130) give odd maps for every backbone.

The forward passes are trace-friendly (ONNX export traces them): sizes stay the tensors'
own ``shape`` entries, never ``int()``-converted, and every block resizes unconditionally
(a bilinear resize to the same size is exact), so no Python branch on a shape is frozen
into a traced graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dermseg.errors import ConfigError

__all__ = ["DEFAULT_DECODER_CHANNELS", "Conv2dBNReLU", "DecoderBlock", "UNetDecoder"]

DEFAULT_DECODER_CHANNELS: tuple[int, ...] = (256, 128, 64, 32, 16)


class Conv2dBNReLU(nn.Sequential):
    """3x3 convolution (no bias), BatchNorm, ReLU; keeps the spatial size.

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DecoderBlock(nn.Module):
    """Bilinear upsampling to a target size, optional skip concatenation, two conv-BN-ReLU.

    Args:
        in_channels: channels of the incoming (deeper) map.
        skip_channels: channels of the skip map; 0 for the last block, which has none.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = Conv2dBNReLU(in_channels + skip_channels, out_channels)
        self.conv2 = Conv2dBNReLU(out_channels, out_channels)

    def forward(self, x: torch.Tensor, size: Sequence[int], skip: torch.Tensor | None = None) -> torch.Tensor:
        """Upsample, fuse, convolve.

        Args:
            x: ``(B, in_channels, h, w)``.
            size: target ``(H', W')``, e.g. ``skip.shape[-2:]``; must equal ``skip.shape[-2:]`` when a
                skip is given. Pass shape entries as they are (not ``int()``-converted) to keep them
                symbolic when traced.
            skip: ``(B, skip_channels, H', W')`` or ``None``.

        Returns:
            ``(B, out_channels, H', W')``.
        """
        # Always resized, even to the same size (exact): a shape test would be frozen by tracing.
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """One :class:`DecoderBlock` per encoder stage: one per skip, then one to the input size.

    Args:
        encoder_channels: channels of the feature maps, shallow -> deep, as they reach the
            decoder (the deepest one after ASPP).
        decoder_channels: output channels of the blocks, deep -> shallow; trimmed to the
            number of stages.

    Raises:
        ConfigError: fewer ``decoder_channels`` than stages, or a non-positive entry.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
    ) -> None:
        super().__init__()
        stages = len(encoder_channels)
        if stages < 1:
            raise ConfigError("the decoder needs at least one encoder stage")
        if len(decoder_channels) < stages or any(c < 1 for c in decoder_channels):
            raise ConfigError(
                f"decoder_channels needs {stages} positive entries (one per encoder stage), "
                f"got {list(decoder_channels)}"
            )
        decoder_channels = [int(c) for c in decoder_channels[:stages]]
        skip_channels = list(encoder_channels[-2::-1]) + [0]  # deep -> shallow, none for the last block
        in_channels = [encoder_channels[-1]] + decoder_channels[:-1]
        self.out_channels = decoder_channels[-1]
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o)
            for i, s, o in zip(in_channels, skip_channels, decoder_channels, strict=True)
        )

    def forward(self, features: Sequence[torch.Tensor], input_size: Sequence[int]) -> torch.Tensor:
        """Decode a feature pyramid back to the input resolution.

        Args:
            features: maps shallow -> deep, map ``i`` being ``(B, encoder_channels[i], h_i, w_i)``.
            input_size: ``(H, W)`` of the image the features came from.

        Returns:
            ``(B, decoder_channels[stages - 1], H, W)``.
        """
        x = features[-1]
        skips = list(features[-2::-1]) + [None]
        for block, skip in zip(self.blocks, skips, strict=True):
            size = skip.shape[-2:] if skip is not None else input_size
            x = block(x, size, skip)
        return x
