"""segmentation_models_pytorch peers of UNetASPP, on the same timm encoders and weights.

Each builder makes an smp model on smp's timm-universal encoder (``"tu-" + encoder_name``)
with ``encoder_weights=None``, then loads our weights through
:func:`dermseg.models.pretrained.load_encoder_weights`. smp wants sides divisible by the
encoder's output stride (32); :class:`SmpSegmenter` pads the input (reflection) to a
multiple of 32 and crops the logits back, so every arch accepts any size >= 96 px.

smp's U-Net upsamples to each skip's size and so takes Inception v3, whose maps are not
halves of each other; U-Net++, FPN and DeepLabV3+ upsample by exactly 2 (or need
``output_stride``) and refuse it with a ``ConfigError`` at build time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.errors import ConfigError
from dermseg.models.decoder import DEFAULT_DECODER_CHANNELS
from dermseg.models.encoders import check_timm_name
from dermseg.models.pretrained import load_encoder_weights, parse_weights_spec

__all__ = ["SmpSegmenter", "smp_deeplabv3plus", "smp_fpn", "smp_unet", "smp_unetplusplus"]

WeightsSpec = str | os.PathLike[str] | None


class SmpSegmenter(nn.Module):
    """An smp model that accepts any input size and returns dermseg's output contract.

    Args:
        model: an smp ``SegmentationModel`` (with ``aux_params`` when presence logits are wanted).
        multiple: sides are padded up to a multiple of this (the encoder's output stride).
    """

    def __init__(self, model: nn.Module, multiple: int = 32) -> None:
        super().__init__()
        self.model = model
        self.multiple = multiple

    @property
    def encoder(self) -> nn.Module:
        """The smp encoder, for :func:`parameter_groups`."""
        return self.model.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """Pad, segment, crop.

        Args:
            x: ``(B, C, H, W)`` images.

        Returns:
            ``(B, classes, H, W)`` logits, or ``{"masks": ..., "presence": (B, 5)}`` with a presence head.
        """
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        out = self.model(x)
        if isinstance(out, tuple):
            return {"masks": out[0][..., :h, :w], "presence": out[1]}
        return out[..., :h, :w]


def _build_smp(
    smp_class: type[nn.Module],
    arch: str,
    *,
    needs_halving: bool,
    encoder_name: str,
    encoder_weights: WeightsSpec,
    in_channels: int,
    classes: int,
    presence_head: bool,
    **arch_kwargs: Any,
) -> SmpSegmenter:
    check_timm_name(encoder_name)
    parse_weights_spec(encoder_weights)  # reject a bad spec before the slow build
    aux = {"classes": NUM_ATTRIBUTES, "pooling": "avg"} if presence_head else None
    try:
        model = smp_class(
            encoder_name=f"tu-{encoder_name}",
            encoder_weights=None,
            in_channels=in_channels,
            classes=classes,
            aux_params=aux,
            **arch_kwargs,
        )
    except (ValueError, TypeError, RuntimeError, KeyError) as err:
        raise ConfigError(
            f"{arch} cannot be built with encoder {encoder_name!r} ({err}); "
            "arch unet_aspp and smp_unet take any timm encoder with features_only"
        ) from err
    wrapped = SmpSegmenter(model)
    if needs_halving:
        _check_runs(wrapped, arch, encoder_name, in_channels)
    load_encoder_weights(model.encoder, encoder_weights, encoder_name)
    return wrapped


def _check_runs(model: nn.Module, arch: str, encoder_name: str, in_channels: int) -> None:
    """Decoders that upsample by exactly 2 fail on encoders whose maps are not halves (Inception v3)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, 128, 128))
    except RuntimeError as err:
        raise ConfigError(
            f"{arch} cannot use encoder {encoder_name!r}: its feature maps are not exact halves of each "
            f"other, which this decoder needs ({err}); use arch unet_aspp or smp_unet with this encoder"
        ) from err
    finally:
        model.train(was_training)


def _trim(decoder_channels: Sequence[int], depth: int) -> list[int]:
    if len(decoder_channels) < depth:
        raise ConfigError(
            f"decoder_channels needs {depth} entries (one per encoder stage), got {list(decoder_channels)}"
        )
    return [int(c) for c in decoder_channels[:depth]]


def _width(arch: str, decoder_channels: object) -> int:
    if isinstance(decoder_channels, bool) or not isinstance(decoder_channels, int) or decoder_channels < 1:
        raise ConfigError(
            f"{arch} takes decoder_channels as one positive int (its decoder width), got {decoder_channels!r}"
        )
    return decoder_channels


def smp_unet(
    encoder_name: str = "resnet34",
    encoder_weights: WeightsSpec = "imagenet",
    encoder_depth: int = 5,
    decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
    classes: int = NUM_ATTRIBUTES,
    in_channels: int = 3,
    presence_head: bool = False,
) -> SmpSegmenter:
    """smp U-Net; it upsamples to each skip's size, so Inception v3 works.

    Args:
        encoder_name: timm model name (smp builds it as ``"tu-" + encoder_name``).
        encoder_weights: ``"imagenet"``, ``"none"``/``None`` or a ``.safetensors``/``.pth`` path.
        encoder_depth: encoder stages, 1..5.
        decoder_channels: decoder block widths, deep -> shallow, trimmed to ``encoder_depth``.
        classes: logit channels.
        in_channels: image channels.
        presence_head: add ``(B, 5)`` presence logits (smp's classification head on the deepest map).

    Returns:
        a :class:`SmpSegmenter`: ``(B, in_channels, H, W)`` -> ``(B, classes, H, W)`` logits,
        or ``{"masks", "presence"}`` with ``presence_head``.

    Raises:
        ConfigError: an invalid option or encoder.
    """
    return _build_smp(
        smp.Unet,
        "smp_unet",
        needs_halving=False,
        encoder_name=encoder_name,
        encoder_weights=encoder_weights,
        in_channels=in_channels,
        classes=classes,
        presence_head=presence_head,
        encoder_depth=encoder_depth,
        decoder_channels=_trim(decoder_channels, encoder_depth),
    )


def smp_unetplusplus(
    encoder_name: str = "resnet34",
    encoder_weights: WeightsSpec = "imagenet",
    encoder_depth: int = 5,
    decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
    classes: int = NUM_ATTRIBUTES,
    in_channels: int = 3,
    presence_head: bool = False,
) -> SmpSegmenter:
    """smp U-Net++; needs an encoder whose maps halve exactly (not Inception v3).

    Args, Returns and Raises as :func:`smp_unet`.
    """
    return _build_smp(
        smp.UnetPlusPlus,
        "smp_unetplusplus",
        needs_halving=True,
        encoder_name=encoder_name,
        encoder_weights=encoder_weights,
        in_channels=in_channels,
        classes=classes,
        presence_head=presence_head,
        encoder_depth=encoder_depth,
        decoder_channels=_trim(decoder_channels, encoder_depth),
    )


def smp_fpn(
    encoder_name: str = "resnet34",
    encoder_weights: WeightsSpec = "imagenet",
    encoder_depth: int = 5,
    decoder_channels: int = 256,
    classes: int = NUM_ATTRIBUTES,
    in_channels: int = 3,
    presence_head: bool = False,
) -> SmpSegmenter:
    """smp FPN; needs an encoder whose maps halve exactly (not Inception v3).

    Args, Returns and Raises as :func:`smp_unet`, except ``decoder_channels``: one int, the pyramid width.
    """
    return _build_smp(
        smp.FPN,
        "smp_fpn",
        needs_halving=True,
        encoder_name=encoder_name,
        encoder_weights=encoder_weights,
        in_channels=in_channels,
        classes=classes,
        presence_head=presence_head,
        encoder_depth=encoder_depth,
        decoder_pyramid_channels=_width("smp_fpn", decoder_channels),
    )


def smp_deeplabv3plus(
    encoder_name: str = "resnet34",
    encoder_weights: WeightsSpec = "imagenet",
    encoder_depth: int = 5,
    decoder_channels: int = 256,
    aspp_rates: Sequence[int] = (12, 24, 36),
    classes: int = NUM_ATTRIBUTES,
    in_channels: int = 3,
    presence_head: bool = False,
) -> SmpSegmenter:
    """smp DeepLabV3+ (output stride 16); needs a timm encoder that supports ``output_stride``.

    Args, Returns and Raises as :func:`smp_unet`, except ``decoder_channels`` (one int, the
    ASPP/decoder width) and ``aspp_rates`` (the dilation rates of smp's ASPP).
    """
    return _build_smp(
        smp.DeepLabV3Plus,
        "smp_deeplabv3plus",
        needs_halving=True,
        encoder_name=encoder_name,
        encoder_weights=encoder_weights,
        in_channels=in_channels,
        classes=classes,
        presence_head=presence_head,
        encoder_depth=encoder_depth,
        decoder_channels=_width("smp_deeplabv3plus", decoder_channels),
        decoder_atrous_rates=tuple(int(r) for r in aspp_rates),
    )
