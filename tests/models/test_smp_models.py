"""The smp peers: any input size, the same output contract, our encoder weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from dermseg.errors import ConfigError
from dermseg.models import SmpSegmenter, create_model
from dermseg.models.smp_models import pad_to_multiple


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


@pytest.mark.parametrize(
    ("h", "w", "mode"),
    [
        (96, 128, "none"),  # already multiples of 32
        (97, 130, "reflect"),
        (113, 33, "reflect"),  # pad 31 on a 33 px side: still shorter than the side
        (20, 100, "reflect"),
        (10, 100, "replicate"),  # pad 22 >= 10: too long to reflect, so both sides replicate
        (1, 1, "replicate"),
    ],
)
def test_padding_is_reflection_or_replication_as_f_pad(h: int, w: int, mode: str) -> None:
    x = torch.randn(2, 3, h, w)
    got = pad_to_multiple(x, 32)
    pad = (0, -w % 32, 0, -h % 32)
    want = x if mode == "none" else F.pad(x, pad, mode=mode)
    assert got.shape == (2, 3, h + pad[3], w + pad[1])
    assert torch.equal(got, want)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:.*torch.jit.trace:FutureWarning")
@pytest.mark.parametrize("presence_head", [False, True])
def test_forward_traces_with_symbolic_sizes(presence_head: bool) -> None:
    """ONNX export traces ``forward``: padding and cropping must follow the input, not the traced size."""
    model = create_model(
        "smp_unet", encoder_name="resnet18", encoder_weights="none", presence_head=presence_head
    ).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 97, 130), check_trace=False, strict=False)
        for shape in [(2, 3, 128, 96), (1, 3, 113, 101)]:
            x = torch.randn(shape)
            torch.testing.assert_close(traced(x), model(x), atol=1e-5, rtol=0)


def test_arch_table_options_and_errors() -> None:
    import inspect

    from dermseg.models.smp_models import SMP_ARCHS

    assert list(inspect.signature(SMP_ARCHS["smp_deeplabv3plus"]).parameters) == [
        "encoder_name", "encoder_weights", "encoder_depth", "decoder_channels", "aspp_rates",
        "classes", "in_channels", "presence_head",
    ]  # fmt: skip
    assert "aspp_rates" not in inspect.signature(SMP_ARCHS["smp_unet"]).parameters
    with pytest.raises(ConfigError, match="needs 5 entries"):
        SMP_ARCHS["smp_unet"](encoder_weights="none", decoder_channels=[16, 8])
    with pytest.raises(TypeError, match="aspp_rates"):
        SMP_ARCHS["smp_fpn"](encoder_weights="none", aspp_rates=[1, 2])


@pytest.mark.parametrize("arch", ["smp_fpn", "smp_deeplabv3plus"])
def test_single_width_decoders_reject_a_channel_list(arch: str) -> None:
    with pytest.raises(ConfigError, match="one positive int"):
        create_model(arch, encoder_name="resnet34", encoder_weights="none", decoder_channels=[256, 128])


def test_smp_models_take_local_encoder_weights(tmp_path: Path) -> None:
    torch.manual_seed(1)
    full = timm.create_model("resnet18").state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(full, path)
    model = create_model("smp_unet", encoder_name="resnet18", encoder_weights=str(path))
    assert torch.equal(model.encoder.model.layer3[1].conv2.weight, full["layer3.1.conv2.weight"])
    assert model.dermseg_encoder_weights == str(path)
    assert model.dermseg_kwargs["encoder_weights"] == "none"
