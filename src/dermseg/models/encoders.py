"""Encoders: any timm backbone that supports ``features_only``, never ported by hand.

The encoder returns its feature maps shallow -> deep. Their sizes are whatever the
backbone produces: Inception v3 uses unpadded convolutions, so a 512 px input gives
maps of 253, 124, 61, 30 and 14 px rather than 256 ... 16. Decoders must therefore
align on the actual skip sizes, never on ``input_size / reduction``.
"""

from __future__ import annotations

import difflib

import timm
import torch
from torch import nn

from dermseg.errors import ConfigError

__all__ = ["TimmEncoder", "check_timm_name"]


def check_timm_name(name: str) -> None:
    """Fail early, and helpfully, on a name timm does not know.

    Args:
        name: a timm model name, optionally with a pretrained tag (``"resnet34.a1_in1k"``).

    Raises:
        ConfigError: timm has no such model; the message suggests close names.
    """
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models() for the valid names"
    raise ConfigError(f"unknown encoder_name {name!r}: timm has no model of that name{hint}")


def _stage_indices(name: str) -> list[int]:
    """The ``out_indices`` of every feature stage timm reports for ``name``.

    Raises:
        ConfigError: timm cannot build ``name`` with ``features_only=True``.
    """
    try:
        # The meta device reads the stage layout without allocating or initialising weights;
        # a few models cannot be built there, so fall back to an ordinary (CPU) build.
        try:
            with torch.device("meta"):
                probe = timm.create_model(name, features_only=True, pretrained=False)
        except (NotImplementedError, RuntimeError):
            probe = timm.create_model(name, features_only=True, pretrained=False)
    except Exception as err:  # timm raises RuntimeError/ValueError/TypeError for unsupported models
        raise ConfigError(
            f"encoder_name {name!r} cannot be used as an encoder: timm cannot build it with "
            f"features_only=True ({type(err).__name__}: {err})"
        ) from err
    return list(probe.feature_info.out_indices)


class TimmEncoder(nn.Module):
    """A timm backbone in ``features_only`` mode, randomly initialised.

    Weights are loaded afterwards with :func:`dermseg.models.pretrained.load_encoder_weights`,
    so that building a model never touches the network.

    Args:
        name: timm model name, e.g. ``"inception_v3"``, ``"resnet34"``, ``"tf_efficientnet_lite0"``.
        in_channels: channels of the input image.
        depth: number of feature stages to return, counted from the shallowest; ``None``
            returns every stage the backbone reports (5 for the CNNs above).

    Attributes:
        out_channels: channels of each returned feature map, shallow -> deep.
        reductions: nominal stride of each feature map (e.g. ``[2, 4, 8, 16, 32]``); the
            actual sizes can be a few pixels smaller (Inception v3).

    Raises:
        ConfigError: unknown name, a backbone without ``features_only`` support, or a
            ``depth`` outside ``1..stages``.
    """

    def __init__(self, name: str, in_channels: int = 3, depth: int | None = None) -> None:
        super().__init__()
        check_timm_name(name)
        if in_channels < 1:
            raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
        all_indices = _stage_indices(name)
        if depth is None:
            depth = len(all_indices)
        if not 1 <= depth <= len(all_indices):
            raise ConfigError(
                f"encoder_depth must be between 1 and {len(all_indices)} for {name!r}, got {depth}"
            )
        self.model = timm.create_model(
            name,
            features_only=True,
            pretrained=False,
            in_chans=in_channels,
            out_indices=tuple(all_indices[:depth]),
        )
        self.name = name
        self.in_channels = in_channels
        self.depth = depth
        self.out_channels: list[int] = list(self.model.feature_info.channels())
        self.reductions: list[int] = list(self.model.feature_info.reduction())
        # Some backbones (Swin, ...) return NHWC maps; the decoder wants NCHW.
        self._nhwc = str(getattr(self.model, "output_fmt", "NCHW")) == "NHWC"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Extract the feature pyramid.

        Args:
            x: images, ``(B, in_channels, H, W)``.

        Returns:
            ``depth`` maps, shallow -> deep; map ``i`` is ``(B, out_channels[i], h_i, w_i)``
            with ``h_i`` about ``H / reductions[i]``.
        """
        features = self.model(x)
        if self._nhwc:
            features = [f.permute(0, 3, 1, 2) for f in features]
        return list(features)
