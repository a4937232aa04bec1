from __future__ import annotations

import pytest
import torch

from dermseg.errors import ConfigError
from dermseg.models.decoder import DecoderBlock, UNetDecoder

# Inception v3's maps for a 97 x 130 input (measured with timm), shallow -> deep.
INCEPTION_97x130 = [(46, 62), (20, 28), (9, 13), (4, 6), (1, 2)]


def test_block_upsamples_to_exact_odd_skip_size() -> None:
    block = DecoderBlock(in_channels=4, skip_channels=2, out_channels=3)
    out = block(torch.randn(1, 4, 3, 3), size=(7, 5), skip=torch.randn(1, 2, 7, 5))
    assert out.shape == (1, 3, 7, 5)


def test_decoder_aligns_inception_sizes_and_returns_input_size() -> None:
    channels = [8, 8, 16, 16, 32]
    features = [torch.randn(2, c, h, w) for c, (h, w) in zip(channels, INCEPTION_97x130, strict=True)]
    decoder = UNetDecoder(channels, decoder_channels=(16, 8, 8, 8, 4)).eval()
    out = decoder(features, (97, 130))
    assert out.shape == (2, 4, 97, 130)
    assert decoder.out_channels == 4


def test_decoder_channels_are_trimmed_to_the_stage_count() -> None:
    decoder = UNetDecoder([8, 16, 32])
    assert [b.conv2[0].out_channels for b in decoder.blocks] == [256, 128, 64]
    assert decoder.out_channels == 64


def test_too_few_decoder_channels_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="decoder_channels"):
        UNetDecoder([8, 16, 32], decoder_channels=(16, 8))
