from __future__ import annotations

import json

import pytest
import torch

from dermseg.errors import ConfigError
from dermseg.models import (
    MODELS,
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
