"""segmentation_models_pytorch peers of UNetASPP, on the same timm encoders and weights.

Every arch is one row of :data:`SMP_ARCHS`: the smp class and how dermseg's options map onto
its keywords. Building one makes the smp model on smp's timm-universal encoder
(``"tu-" + encoder_name``) with ``encoder_weights=None``, then loads our weights through
:func:`dermseg.models.pretrained.load_encoder_weights`. smp wants sides divisible by the
encoder's output stride (32); :class:`SmpSegmenter` pads the input (reflection) to a
multiple of 32 and crops the logits back, so every arch accepts any size >= 96 px.

smp's U-Net upsamples to each skip's size and so takes Inception v3, whose maps are not
halves of each other; U-Net++, FPN and DeepLabV3+ upsample by exactly 2 (or need
``output_stride``) and refuse it with a ``ConfigError`` at build time.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.errors import ConfigError
from dermseg.models.decoder import DEFAULT_DECODER_CHANNELS
from dermseg.models.encoders import check_timm_name
from dermseg.models.pretrained import load_encoder_weights, parse_weights_spec

__all__ = ["SMP_ARCHS", "SmpArch", "SmpSegmenter", "pad_to_multiple"]

WeightsSpec = str | os.PathLike[str] | None


def _pad_index(
    n: torch.Tensor, pad: torch.Tensor, reflect: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Source rows of a side of ``n`` padded by ``pad`` at its end: reflected, or the last row repeated."""
    idx = torch.arange(n + pad, device=device)
    beyond = torch.where(reflect, 2 * (n - 1) - idx, n - 1)
    return torch.where(idx < n, idx, beyond)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right of images up to sides that are multiples of ``multiple``.

    Reflection padding, as ``F.pad(x, (0, -W % multiple, 0, -H % multiple), mode="reflect")``;
    where a pad would be as long as its side (sides below ``multiple``), edge replication for
    both sides, as ``mode="replicate"``. Written as index gathers whose amounts are computed
    from ``x.shape`` with tensor ops, so the padding follows the input size when traced.

    Args:
        x: ``(B, C, H, W)``.
        multiple: the side multiple wanted (the encoder's output stride).

    Returns:
        ``(B, C, H + (-H % multiple), W + (-W % multiple))``; ``x``'s values in the top-left ``H x W``.
    """
    h, w = (torch.as_tensor(side) for side in x.shape[-2:])  # tensors when traced, ints otherwise
    pad_h, pad_w = torch.remainder(-h, multiple), torch.remainder(-w, multiple)
    reflect = (pad_h < h) & (pad_w < w)  # F.pad's reflection needs pads shorter than the side
    x = x.index_select(2, _pad_index(h, pad_h, reflect, x.device))
    return x.index_select(3, _pad_index(w, pad_w, reflect, x.device))


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
        """The smp encoder, for :func:`dermseg.models.factory.parameter_groups`."""
        return self.model.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """Pad, segment, crop; trace-friendly (pad and crop follow the input's symbolic size).

        Args:
            x: ``(B, C, H, W)`` images.

        Returns:
            ``(B, classes, H, W)`` logits, or ``{"masks": ..., "presence": (B, 5)}`` with a presence head.
        """
        h, w = x.shape[-2:]
        out = self.model(pad_to_multiple(x, self.multiple))
        if isinstance(out, tuple):
            return {"masks": out[0][..., :h, :w], "presence": out[1]}
        return out[..., :h, :w]


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


@dataclass(frozen=True)
class SmpArch:
    """One smp architecture: its class and how dermseg's options map onto its keywords.

    Calling it builds the model. Its options, in this order, with :data:`SMP_ARCHS`' defaults:

    - ``encoder_name`` (``"resnet34"``): timm model name (smp builds it as ``"tu-" + encoder_name``);
    - ``encoder_weights`` (``"imagenet"``): ``"imagenet"``, ``"none"``/``None`` or a
      ``.safetensors``/``.pth`` path;
    - ``encoder_depth`` (5): encoder stages, 1..5;
    - ``decoder_channels``: per-stage widths, deep -> shallow, trimmed to ``encoder_depth``
      (U-Net, U-Net++), or one int, the decoder width (FPN, DeepLabV3+);
    - ``aspp_rates``, only for archs with ASPP (DeepLabV3+): its dilation rates;
    - ``classes`` (5): logit channels; ``in_channels`` (3): image channels;
    - ``presence_head`` (False): add ``(B, 5)`` presence logits (smp's classification head on
      the deepest map).

    ``inspect.signature`` of an arch gives these options, so
    :func:`dermseg.models.factory.create_model` checks and records them as for a class.

    Attributes:
        name: the arch name, for messages (``smp_unet``, ...).
        smp_class: the smp model class.
        decoder_channels: default ``decoder_channels``: a tuple (one width per stage) or an int (one width).
        decoder_keyword: smp's keyword for ``decoder_channels``.
        aspp_rates: default ASPP rates (smp's ``decoder_atrous_rates``); ``None``: the arch has no ASPP.
        needs_halving: the decoder upsamples by exactly 2; a dry run at build time refuses
            encoders whose maps are not exact halves.
    """

    name: str
    smp_class: type[nn.Module]
    decoder_channels: tuple[int, ...] | int
    decoder_keyword: str = "decoder_channels"
    aspp_rates: tuple[int, ...] | None = None
    needs_halving: bool = True

    def __post_init__(self) -> None:
        # An instance attribute (not a property, which would break inspect.signature of the class).
        object.__setattr__(self, "__signature__", self.signature())

    def signature(self) -> inspect.Signature:
        """The options the arch accepts, keyword-only, with their defaults (see the class docstring)."""
        keyword = inspect.Parameter.KEYWORD_ONLY
        per_stage = isinstance(self.decoder_channels, tuple)
        options: list[tuple[str, Any, Any]] = [
            ("encoder_name", "resnet34", str),
            ("encoder_weights", "imagenet", WeightsSpec),
            ("encoder_depth", 5, int),
            ("decoder_channels", self.decoder_channels, Sequence[int] if per_stage else int),
        ]
        if self.aspp_rates is not None:
            options.append(("aspp_rates", self.aspp_rates, Sequence[int]))
        options += [("classes", NUM_ATTRIBUTES, int), ("in_channels", 3, int), ("presence_head", False, bool)]
        return inspect.Signature(
            [inspect.Parameter(n, keyword, default=d, annotation=a) for n, d, a in options],
            return_annotation=SmpSegmenter,
        )

    def __call__(self, **options: Any) -> SmpSegmenter:
        """Build the arch.

        Args:
            **options: see the class docstring; missing ones take their defaults.

        Returns:
            a :class:`SmpSegmenter`: ``(B, in_channels, H, W)`` -> ``(B, classes, H, W)`` logits,
            or ``{"masks", "presence"}`` with ``presence_head``.

        Raises:
            TypeError: an option the arch does not take.
            ConfigError: an invalid option or encoder.
        """
        bound = self.signature().bind(**options)
        bound.apply_defaults()
        o = bound.arguments
        if isinstance(self.decoder_channels, tuple):
            decoder = _trim(o["decoder_channels"], o["encoder_depth"])
        else:
            decoder = _width(self.name, o["decoder_channels"])
        arch_kwargs: dict[str, Any] = {"encoder_depth": o["encoder_depth"], self.decoder_keyword: decoder}
        if self.aspp_rates is not None:
            arch_kwargs["decoder_atrous_rates"] = tuple(int(r) for r in o["aspp_rates"])
        encoder_name = o["encoder_name"]
        check_timm_name(encoder_name)
        parse_weights_spec(o["encoder_weights"])  # reject a bad spec before the slow build
        aux = {"classes": NUM_ATTRIBUTES, "pooling": "avg"} if o["presence_head"] else None
        try:
            model = self.smp_class(
                encoder_name=f"tu-{encoder_name}",
                encoder_weights=None,
                in_channels=o["in_channels"],
                classes=o["classes"],
                aux_params=aux,
                **arch_kwargs,
            )
        except (ValueError, TypeError, RuntimeError, KeyError) as err:
            raise ConfigError(
                f"{self.name} cannot be built with encoder {encoder_name!r} ({err}); "
                "arch unet_aspp and smp_unet take any timm encoder with features_only"
            ) from err
        wrapped = SmpSegmenter(model)
        if self.needs_halving:
            _check_runs(wrapped, self.name, encoder_name, o["in_channels"])
        load_encoder_weights(model.encoder, o["encoder_weights"], encoder_name)
        return wrapped


#: The smp archs by name; :data:`dermseg.models.factory.MODELS` takes them as they are.
SMP_ARCHS: dict[str, SmpArch] = {
    arch.name: arch
    for arch in (
        # U-Net upsamples to each skip's size: the one smp decoder that takes Inception v3.
        SmpArch("smp_unet", smp.Unet, DEFAULT_DECODER_CHANNELS, needs_halving=False),
        SmpArch("smp_unetplusplus", smp.UnetPlusPlus, DEFAULT_DECODER_CHANNELS),
        SmpArch("smp_fpn", smp.FPN, 256, decoder_keyword="decoder_pyramid_channels"),
        # DeepLabV3+ (output stride 16) needs a timm encoder that supports ``output_stride``.
        SmpArch("smp_deeplabv3plus", smp.DeepLabV3Plus, 256, aspp_rates=(12, 24, 36)),
    )
}
