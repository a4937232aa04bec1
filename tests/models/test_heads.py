from __future__ import annotations

import pytest
import torch

from dermseg.errors import ConfigError
from dermseg.models.heads import PresenceHead, SegmentationHead


def test_segmentation_head_resizes_to_requested_size() -> None:
    head = SegmentationHead(8, 5)
    assert head(torch.randn(2, 8, 10, 12)).shape == (2, 5, 10, 12)
    assert head(torch.randn(2, 8, 10, 12), size=(21, 25)).shape == (2, 5, 21, 25)


def test_presence_head_gives_one_logit_per_class() -> None:
    assert PresenceHead(16, 5)(torch.randn(3, 16, 1, 2)).shape == (3, 5)


@pytest.mark.parametrize("kwargs", [{"out_channels": 0}, {"out_channels": 5, "kernel_size": 2}])
def test_bad_head_options(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SegmentationHead(8, **kwargs)
