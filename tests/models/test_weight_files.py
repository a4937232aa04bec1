"""Weight files: safe reading and key matching, through the public load_encoder_weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from dermseg.errors import ConfigError
from dermseg.models import UNetASPP, load_encoder_weights
from dermseg.models.encoders import TimmEncoder


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


def _assert_same(module: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    for key, value in module.state_dict().items():
        assert torch.equal(value, reference[key]), key


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
