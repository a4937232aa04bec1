from __future__ import annotations

import pytest
import torch
from torch import nn

from dermseg.errors import ConfigError
from dermseg.models.aspp import ASPP, group_norm


@pytest.mark.parametrize(("channels", "groups"), [(256, 32), (48, 24), (32, 16), (7, 1), (33, 11), (1, 1)])
def test_group_norm_uses_up_to_32_groups_of_at_least_two_channels(channels: int, groups: int) -> None:
    assert group_norm(channels).num_groups == groups


def test_one_by_one_bottleneck_trains_with_batch_of_one() -> None:
    aspp = ASPP(64, out_channels=32, rates=(2, 3, 4)).train()
    x = torch.randn(1, 64, 1, 1, requires_grad=True)
    y = aspp(x)
    assert y.shape == (1, 32, 1, 1)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in aspp.parameters())


def test_no_batchnorm_anywhere_and_no_norm_on_the_pooled_map() -> None:
    aspp = ASPP(16, 8)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in aspp.modules())
    assert not any(isinstance(m, nn.GroupNorm) for m in aspp.pooling.modules())


def test_keeps_odd_spatial_size_and_uses_the_rates() -> None:
    aspp = ASPP(16, 8, rates=(2, 5)).eval()
    assert aspp(torch.randn(2, 16, 3, 5)).shape == (2, 8, 3, 5)
    dilations = [m.dilation for m in aspp.branches.modules() if isinstance(m, nn.Conv2d)]
    assert dilations == [(1, 1), (2, 2), (5, 5)]


def test_pooling_branch_is_relu_of_a_conv_of_the_global_mean() -> None:
    aspp = ASPP(2, 3, rates=(2,))
    with torch.no_grad():
        aspp.pooling[1].weight.copy_(torch.tensor([1.0, 1.0, -1.0, 0.0, 0.0, 2.0]).reshape(3, 2, 1, 1))
        aspp.pooling[1].bias.zero_()
        x = torch.cat([torch.full((1, 1, 5, 7), 1.0), torch.arange(35.0).reshape(1, 1, 5, 7)], dim=1)
        pooled = aspp.pooling(x)  # channel means: 1 and 17
    assert pooled.shape == (1, 3, 1, 1)
    torch.testing.assert_close(pooled.flatten(), torch.tensor([18.0, 0.0, 34.0]))


@pytest.mark.parametrize(
    "kwargs", [{"rates": (0, 2)}, {"dropout": 1.0}, {"dropout": -0.1}, {"out_channels": 0}]
)
def test_bad_options_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        ASPP(8, **kwargs)
