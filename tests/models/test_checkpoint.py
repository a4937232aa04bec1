from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dermseg.errors import DataError
from dermseg.models.checkpoint import (
    load_checkpoint,
    load_train_state,
    read_meta,
    save_checkpoint,
    save_train_state,
)
from dermseg.models.factory import create_model

META = {
    "encoding": "multilabel",
    "input_size": 96,
    "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "thresholds": [0.4, 0.5, 0.5, 0.5, 0.6],
}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(
        "unet_aspp",
        encoder_name="resnet18",
        encoder_weights="none",
        classes=5,
        decoder_channels=[32, 16, 16, 8, 8],
        aspp_rates=[1, 2],
    ).eval()


def test_checkpoint_describes_itself_and_rebuilds_the_same_model(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, META)
    meta = read_meta(path)
    assert meta["arch"] == "unet_aspp" and meta["model_kwargs"]["encoder_name"] == "resnet18"
    assert meta["attributes"][0] == "globules" and meta["thresholds"] == META["thresholds"]
    assert "dermseg_version" in meta
    rebuilt = load_checkpoint(path).build_model()
    x = torch.randn(1, 3, 96, 112)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left


class _Payload:
    def __reduce__(self):  # executed by a plain pickle.load
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/dermseg_pickle_payload_ran")


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    MARKER.unlink(missing_ok=True)
    evil = tmp_path / "last_state.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"epoch": 1, "x": _Payload()}, fh)
    with pytest.raises(DataError, match="cannot load training state safely"):
        load_train_state(evil)
    with pytest.raises(DataError, match="not a safetensors checkpoint"):
        load_checkpoint(evil)
    assert not MARKER.exists()


def test_train_state_round_trip(tmp_path: Path) -> None:
    state = {"epoch": 3, "rng": torch.get_rng_state(), "records": [{"loss": 0.5}], "t": (1, 2)}
    save_train_state(tmp_path / "s.pt", state)
    back = load_train_state(tmp_path / "s.pt")
    assert (
        back["epoch"] == 3 and torch.equal(back["rng"], state["rng"]) and back["records"] == [{"loss": 0.5}]
    )


@pytest.mark.parametrize("case", ["empty", "folder", "missing", "no_meta", "garbage"])
def test_bad_checkpoints_name_the_file(tmp_path: Path, case: str) -> None:
    path = tmp_path / "c.safetensors"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "folder":
        path.mkdir()
    elif case == "no_meta":
        save_file({"w": torch.zeros(2)}, str(path))
    elif case == "garbage":
        path.write_bytes(os.urandom(64))
    with pytest.raises(DataError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(str(path))
