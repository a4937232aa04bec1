"""UNetASPP: the thesis architecture, a U-Net on a timm encoder with ASPP on its deepest map.

The thesis started from a ResNet101 U-Net, added ASPP (rates 2, 3, 4) on the last
encoder volume, and finally swapped the encoder for Inception v3 (fewer parameters
for the same accuracy on Colab). This module is wiring only; the blocks live in
``encoders``, ``aspp``, ``decoder`` and ``heads``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.models.aspp import ASPP
from dermseg.models.decoder import DEFAULT_DECODER_CHANNELS, UNetDecoder
from dermseg.models.encoders import TimmEncoder
from dermseg.models.heads import PresenceHead, SegmentationHead
from dermseg.models.pretrained import load_encoder_weights

__all__ = ["UNetASPP"]


class UNetASPP(nn.Module):
    """U-Net with a timm encoder and ASPP on the bottleneck; returns logits at the input size.

    Accepts any input whose sides are at least 96 px, square or not, odd or even; no
    padding to a multiple of 32 is needed because every decoder stage upsamples to the
    exact size of its skip. One limit comes from the encoder, not from this wiring: in
    training mode with a batch of 1, the encoder's own BatchNorm needs more than one
    position in its deepest map. Inception v3's is 1 x 1 at 96 x 96 (1 x 2 at 97 x 130,
    2 x 2 at 107 x 107), so train it on batches of 2 or more, or on larger crops, there;
    ASPP itself uses GroupNorm and works on a 1 x 1 map.

    ``forward`` traces with symbolic sizes (no ``int()`` on shapes, no branch on a shape), so
    :mod:`dermseg.inference.export` exports it as it is, for any input size.

    Args:
        encoder_name: timm model name (``"inception_v3"``, the thesis's final choice).
        encoder_weights: ``"imagenet"``, ``"none"``/``None`` or a ``.safetensors``/``.pth`` path.
        encoder_depth: encoder stages used; ``None`` for all the backbone has (5 for CNNs).
        aspp_rates: dilation rates of ASPP's 3x3 branches.
        aspp_channels: channels of every ASPP branch and of its output.
        aspp_dropout: dropout after the ASPP projection.
        decoder_channels: channels of the decoder blocks, deep -> shallow, trimmed to the
            number of encoder stages.
        classes: logit channels (5 for multilabel attributes, 6 for multiclass with background).
        in_channels: image channels.
        presence_head: add image-level presence logits, one per attribute.

    Raises:
        ConfigError: any invalid option (the message names it and, where finite, the valid choices).
    """

    def __init__(
        self,
        encoder_name: str = "inception_v3",
        encoder_weights: str | os.PathLike[str] | None = "imagenet",
        encoder_depth: int | None = None,
        aspp_rates: Sequence[int] = (2, 3, 4),
        aspp_channels: int = 256,
        aspp_dropout: float = 0.1,
        decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
        classes: int = NUM_ATTRIBUTES,
        in_channels: int = 3,
        presence_head: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = TimmEncoder(encoder_name, in_channels=in_channels, depth=encoder_depth)
        load_encoder_weights(self.encoder, encoder_weights, encoder_name)
        self.aspp = ASPP(self.encoder.out_channels[-1], aspp_channels, aspp_rates, aspp_dropout)
        self.decoder = UNetDecoder([*self.encoder.out_channels[:-1], aspp_channels], decoder_channels)
        self.segmentation_head = SegmentationHead(self.decoder.out_channels, classes)
        # Presence reads the ASPP output: the deepest map, with image-level context already pooled in.
        self.presence_head = PresenceHead(aspp_channels, NUM_ATTRIBUTES) if presence_head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """Segment a batch.

        Args:
            x: images, ``(B, in_channels, H, W)`` with ``H, W >= 96``.

        Returns:
            ``(B, classes, H, W)`` logits; with ``presence_head``, a dict
            ``{"masks": (B, classes, H, W), "presence": (B, 5)}`` of logits.
        """
        features = self.encoder(x)
        features[-1] = self.aspp(features[-1])
        # The decoder's last block resizes to the input size, so the head needs no resize of its own.
        masks = self.segmentation_head(self.decoder(features, x.shape[-2:]))
        if self.presence_head is None:
            return masks
        return {"masks": masks, "presence": self.presence_head(features[-1])}
