from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from dermseg.errors import ConfigError
from dermseg.models import UNetASPP, parameter_groups
from tests.models.conftest import ENCODERS

SIZES = [(96, 96), (97, 130)]
Builder = Callable[[str], UNetASPP]


@pytest.mark.parametrize("name", ENCODERS)
def test_logits_at_input_size(name: str, unet_aspp: Builder) -> None:
    model = unet_aspp(name).eval()
    with torch.no_grad():
        for h, w in SIZES:
            out = model(torch.randn(2, 3, h, w))
            assert out.shape == (2, 5, h, w)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ENCODERS)
def test_train_batch_of_one_backward_gives_finite_grads(name: str, unet_aspp: Builder) -> None:
    model = unet_aspp(name).train()
    model.zero_grad()
    out = model(torch.randn(1, 3, 97, 130))
    assert out.shape == (1, 5, 97, 130)
    out.logsumexp(dim=1).mean().backward()
    params = list(model.parameters())
    assert all(p.grad is not None for p in params)
    assert all(torch.isfinite(p.grad).all() for p in params)
    assert any(p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_inception_trains_at_96px_with_batch_two(unet_aspp: Builder) -> None:
    # With batch 1 at 96 x 96, Inception's own BatchNorm sees a 1 x 1 map (see UNetASPP's docstring);
    # with 2 images it trains: full-size logits, and finite gradients that reach the encoder.
    model = unet_aspp("inception_v3").train()
    model.zero_grad()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert model.encoder(x)[-1].shape[-2:] == (1, 1)  # the case in question: a 1 x 1 deepest map
    out = model(x)
    assert out.shape == (2, 5, 96, 96) and torch.isfinite(out).all()
    out.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_presence_head_and_multiclass() -> None:
    model = UNetASPP(encoder_name="resnet34", encoder_weights="none", classes=6, presence_head=True).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 112))
    assert set(out) == {"masks", "presence"}
    assert out["masks"].shape == (2, 6, 96, 112)
    assert out["presence"].shape == (2, 5)


def test_channels_last_matches_contiguous(unet_aspp: Builder) -> None:
    model = unet_aspp("resnet34").eval()
    x = torch.randn(1, 3, 97, 130)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.to(memory_format=torch.channels_last))
    model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_smaller_encoder_depth_and_other_timm_backbone() -> None:
    model = UNetASPP(encoder_name="resnet34", encoder_weights="none", encoder_depth=4).eval()
    assert len(model.decoder.blocks) == 4
    # ConvNeXt: four stages starting at stride 4, flattened module names; any features_only backbone works.
    convnext = UNetASPP(encoder_name="convnext_atto", encoder_weights="none", aspp_channels=64).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 128)).shape == (1, 5, 96, 128)
        assert convnext(torch.randn(1, 3, 97, 130)).shape == (1, 5, 97, 130)


def test_parameter_groups_split_every_parameter_once(unet_aspp: Builder) -> None:
    model = unet_aspp("tf_efficientnet_lite0")
    groups = parameter_groups(model)
    enc, dec = groups["encoder"], groups["decoder"]
    assert {id(p) for p in enc} == {id(p) for p in model.encoder.parameters()}
    assert not {id(p) for p in enc} & {id(p) for p in dec}
    assert len(enc) + len(dec) == len(list(model.parameters()))
    assert {id(p) for p in model.aspp.parameters()} <= {id(p) for p in dec}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"aspp_rates": (0,)},
        {"decoder_channels": (16, 8)},
        {"classes": 0},
        {"encoder_name": "not_a_model"},
        {"encoder_weights": "weights.ckpt"},
    ],
)
def test_bad_options_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        UNetASPP(**{"encoder_name": "resnet34", "encoder_weights": "none", **kwargs})


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:.*torch.jit.trace:FutureWarning")
@pytest.mark.parametrize("name", ["inception_v3", "resnet34"])
def test_forward_traces_with_symbolic_sizes(name: str, unet_aspp: Builder) -> None:
    """ONNX export traces ``forward``: traced at one size, the graph must follow other sizes."""
    model = unet_aspp(name).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 97, 130), check_trace=False)
        for shape in [(2, 3, 128, 96), (1, 3, 113, 101)]:
            x = torch.randn(shape)
            torch.testing.assert_close(traced(x), model(x), atol=1e-5, rtol=0)
