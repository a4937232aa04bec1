from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dermseg.errors import ConfigError
from dermseg.models import (
    MODELS,
    SmpSegmenter,
    UnknownArchError,
    create_model,
    model_spec,
    parameter_groups,
)

ARCHS = ["unet_aspp", "smp_unet", "smp_unetplusplus", "smp_fpn", "smp_deeplabv3plus"]


def test_the_registry_holds_the_documented_archs() -> None:
    assert sorted(MODELS) == sorted(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_and_runs_at_any_size(arch: str) -> None:
    model = create_model(arch, encoder_name="resnet34", encoder_weights="none", classes=5).eval()
    with torch.no_grad():
        for h, w in [(128, 96), (97, 130)]:
            out = model(torch.randn(1, 3, h, w))
            assert out.shape == (1, 5, h, w)
    groups = parameter_groups(model)
    assert len(groups["encoder"]) > 0 and len(groups["decoder"]) > 0
    assert len(groups["encoder"]) + len(groups["decoder"]) == len(list(model.parameters()))


def test_smp_presence_head_returns_the_same_contract() -> None:
    model = create_model(
        "smp_fpn", encoder_name="resnet34", encoder_weights="none", presence_head=True
    ).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 100, 100))
    assert out["masks"].shape == (2, 5, 100, 100)
    assert out["presence"].shape == (2, 5)


def test_smp_unet_takes_inception_v3() -> None:
    model = create_model("smp_unet", encoder_name="inception_v3", encoder_weights="none").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 97, 130)).shape == (1, 5, 97, 130)


@pytest.mark.parametrize("arch", ["smp_fpn", "smp_deeplabv3plus"])
def test_inception_on_power_of_two_decoders_is_a_clear_config_error(arch: str) -> None:
    with pytest.raises(ConfigError, match="inception_v3"):
        create_model(arch, encoder_name="inception_v3", encoder_weights="none")


class _EchoSmp(nn.Module):
    """Stands in for an smp model: insists on sides divisible by 32 and returns its input."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0
        return x


def test_smp_wrapper_pads_then_crops_back_to_the_original_pixels() -> None:
    x = torch.randn(1, 2, 97, 130)
    out = SmpSegmenter(_EchoSmp())(x)
    assert torch.equal(out, x)


def test_unknown_arch_lists_the_valid_names() -> None:
    with pytest.raises(UnknownArchError) as err:
        create_model("segformer")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ConfigError)
    for name in ARCHS:
        assert name in str(err.value)
    assert not str(err.value).startswith(("'", '"'))


def test_unknown_option_lists_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match="aspp_rates"):
        create_model("unet_aspp", encoder_name="resnet34", encoder_weights="none", asp_rates=(1, 2))


def test_model_rebuilds_from_its_json_description() -> None:
    model = create_model(
        "unet_aspp",
        encoder_name="tf_efficientnet_lite0",
        encoder_weights="none",
        aspp_rates=(1, 2),
        decoder_channels=(64, 32, 16, 16, 8),
        classes=6,
    ).eval()
    spec = json.loads(json.dumps(model_spec(model)))
    assert spec["arch"] == "unet_aspp" == model.dermseg_arch
    assert spec["kwargs"]["aspp_rates"] == [1, 2]
    assert spec["kwargs"]["encoder_weights"] == "none"
    assert model.dermseg_encoder_weights == "none"
    rebuilt = create_model(spec["arch"], **spec["kwargs"]).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.parametrize("arch", ["smp_fpn", "smp_deeplabv3plus"])
def test_single_width_decoders_reject_a_channel_list(arch: str) -> None:
    with pytest.raises(ConfigError, match="one positive int"):
        create_model(arch, encoder_name="resnet34", encoder_weights="none", decoder_channels=[256, 128])
