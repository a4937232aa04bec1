from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from dermseg.errors import ConfigError
from dermseg.models import UNetASPP
from dermseg.models.encoders import TimmEncoder
from tests.models.conftest import ENCODERS


@pytest.mark.parametrize("name", ENCODERS)
def test_features_match_declared_channels_and_shrink(name: str, unet_aspp: Callable[[str], UNetASPP]) -> None:
    encoder = unet_aspp(name).encoder.eval()
    assert isinstance(encoder, TimmEncoder)
    assert len(encoder.out_channels) == len(encoder.reductions) == 5
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, 97, 130))
    assert [f.shape[1] for f in features] == encoder.out_channels
    sizes = [tuple(f.shape[-2:]) for f in features]
    for (h, w), r in zip(sizes, encoder.reductions, strict=True):
        assert 1 <= h <= math.ceil(97 / r) and 1 <= w <= math.ceil(130 / r)
    assert all(a[0] > b[0] and a[1] > b[1] for a, b in zip(sizes, sizes[1:], strict=False))


def test_inception_maps_are_not_halves(unet_aspp: Callable[[str], UNetASPP]) -> None:
    # The reason the decoder aligns on actual skip sizes: 512 px -> 253, 124, 61, 30, 14.
    encoder = unet_aspp("inception_v3").encoder.eval()
    with torch.no_grad():
        sizes = [f.shape[-1] for f in encoder(torch.zeros(1, 3, 128, 128))]
    assert sizes != [128 // r for r in encoder.reductions]


def test_depth_and_in_channels() -> None:
    encoder = TimmEncoder("resnet34", in_channels=1, depth=3)
    features = encoder(torch.randn(1, 1, 96, 96))
    assert len(features) == 3 == len(encoder.out_channels)
    assert encoder.reductions == [2, 4, 8]


def test_unknown_name_is_a_config_error_with_suggestions() -> None:
    with pytest.raises(ConfigError, match="resnet35") as err:
        TimmEncoder("resnet35")
    assert "resnet34" in str(err.value)


@pytest.mark.parametrize("depth", [0, 6])
def test_bad_depth(depth: int) -> None:
    with pytest.raises(ConfigError, match="encoder_depth"):
        TimmEncoder("resnet34", depth=depth)


def test_backbone_without_features_only_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("features_only not implemented for this model")

    monkeypatch.setattr(timm, "create_model", refuse)
    with pytest.raises(ConfigError, match="cannot be used as an encoder"):
        TimmEncoder("resnet34")
