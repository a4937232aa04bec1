"""Model factory: a name -> builder table and ``create_model(arch, **kwargs)``.

Every model it builds describes itself: ``model.dermseg_arch`` and
``model.dermseg_kwargs`` (a JSON-able dict) rebuild the same architecture with
``create_model(model.dermseg_arch, **model.dermseg_kwargs)``, so a checkpoint
needs nothing else. In that dict ``encoder_weights`` is always ``"none"``: a
checkpoint carries its trained weights, and rebuilding must neither download
nor look for a weights file that may have moved; what the encoder started from
is kept in ``model.dermseg_encoder_weights``.

The ``smp_*`` archs are segmentation_models_pytorch models on smp's timm-universal
encoders (``"tu-" + encoder_name``), built with ``encoder_weights=None`` and given our
weights through :mod:`dermseg.models.pretrained`. smp wants sides divisible by the
encoder's output stride (32); :class:`SmpSegmenter` pads the input (reflection) to a
multiple of 32 and crops the logits back, so every arch accepts any size >= 96 px.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from dermseg.attributes import NUM_ATTRIBUTES
from dermseg.errors import ConfigError
from dermseg.models.decoder import DEFAULT_DECODER_CHANNELS
from dermseg.models.encoders import check_timm_name
from dermseg.models.pretrained import NONE, load_encoder_weights, parse_weights_spec
from dermseg.models.unet_aspp import UNetASPP

__all__ = [
    "MODELS",
    "SmpSegmenter",
    "UnknownArchError",
    "create_model",
    "model_spec",
    "parameter_groups",
]

WeightsSpec = str | os.PathLike[str] | None


class UnknownArchError(ConfigError, KeyError):
    """An ``arch`` not in :data:`MODELS`; both a ``ConfigError`` and a ``KeyError``."""

    def __str__(self) -> str:  # KeyError would quote the message
        return ConfigError.__str__(self)


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
        raise ConfigError(f"{arch} cannot be built with encoder {encoder_name!r}: {err}") from err
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
    """smp U-Net (size-aligned upsampling, so Inception v3 works). Returns ``(B, classes, H, W)`` logits."""
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
    """smp U-Net++; needs an encoder whose maps halve exactly (not Inception v3)."""
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
    """smp FPN; ``decoder_channels`` is its pyramid width. Needs maps that halve exactly."""
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
    """smp DeepLabV3+ (output stride 16); needs a timm encoder that supports ``output_stride``."""
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


MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet_aspp": UNetASPP,
    "smp_unet": smp_unet,
    "smp_unetplusplus": smp_unetplusplus,
    "smp_fpn": smp_fpn,
    "smp_deeplabv3plus": smp_deeplabv3plus,
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def create_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build a segmentation model by name.

    Args:
        arch: one of :data:`MODELS` (``unet_aspp``, ``smp_unet``, ``smp_unetplusplus``,
            ``smp_fpn``, ``smp_deeplabv3plus``).
        **kwargs: the builder's keyword arguments (``encoder_name``, ``encoder_weights``,
            ``classes``, ``decoder_channels``, ...).

    Returns:
        a module mapping ``(B, in_channels, H, W)`` (``H, W >= 96``) to ``(B, classes, H, W)``
        logits, or to ``{"masks", "presence"}`` with ``presence_head=True``; it carries
        ``dermseg_arch``, ``dermseg_kwargs`` and ``dermseg_encoder_weights``.

    Raises:
        UnknownArchError: ``arch`` is unknown (the message lists the valid names).
        ConfigError: unknown keyword arguments (the message lists the accepted ones) or invalid values.
    """
    if arch not in MODELS:
        raise UnknownArchError(f"unknown model arch {arch!r}; valid archs: {', '.join(MODELS)}")
    builder = MODELS[arch]
    signature = inspect.signature(builder)
    try:
        bound = signature.bind(**kwargs)
    except TypeError as err:
        raise ConfigError(
            f"invalid options for arch {arch!r} ({err}); accepted: {', '.join(signature.parameters)}"
        ) from err
    bound.apply_defaults()
    described = {name: _jsonable(value) for name, value in bound.arguments.items()}
    described["encoder_weights"] = NONE
    try:
        json.dumps(described)
    except TypeError as err:
        raise ConfigError(
            f"options of arch {arch!r} must be plain data (numbers, strings, lists): {err}"
        ) from err
    model = builder(**kwargs)
    model.dermseg_arch = arch
    model.dermseg_kwargs = described
    weights = bound.arguments.get("encoder_weights")
    model.dermseg_encoder_weights = None if weights is None else str(weights)
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The JSON-able description of a model built by :func:`create_model`.

    Returns:
        ``{"arch": str, "kwargs": dict}``; ``create_model(spec["arch"], **spec["kwargs"])`` rebuilds it.

    Raises:
        ConfigError: the model was not built by :func:`create_model`.
    """
    if not hasattr(model, "dermseg_arch"):
        raise ConfigError(
            "this model was not built by dermseg.models.create_model; it cannot describe itself"
        )
    return {"arch": model.dermseg_arch, "kwargs": dict(model.dermseg_kwargs)}


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Split parameters for per-group learning rates.

    Args:
        model: any model with an ``encoder`` attribute (every arch of :data:`MODELS`).

    Returns:
        ``{"encoder": [...], "decoder": [...]}``; "decoder" holds everything that is not the
        encoder (ASPP, decoder, heads). Every parameter appears exactly once.

    Raises:
        ConfigError: the model has no ``encoder``.
    """
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(f"{type(model).__name__} has no .encoder; cannot split parameter groups")
    encoder_ids = {id(p) for p in encoder.parameters()}
    return {
        "encoder": list(encoder.parameters()),
        "decoder": [p for p in model.parameters() if id(p) not in encoder_ids],
    }
