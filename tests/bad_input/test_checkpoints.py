"""Bad checkpoints given to every command that reads one: predict, evaluate --checkpoint, export.

Nothing in a checkpoint runs: a pickle with a payload is refused unread, and a checkpoint whose
description does not match its weights is one error line, not a tensor-size traceback.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.bad_input.corpus import IMAGES
from tests.bad_input.harness import assert_failed, leftovers, run

MARKER = "pickle_payload_ran"


class Payload:
    """Unpickling this creates the marker file: proof that the pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _edited(edit: Callable[[dict], None]) -> Callable[[Path, Path], Path]:
    """A checkpoint with the good one's weights and its description edited."""

    def make(good: Path, tmp_path: Path) -> Path:
        with safe_open(str(good), framework="pt") as fh:
            meta = json.loads(fh.metadata()["dermseg"])
        edit(meta)
        path = tmp_path / "edited.safetensors"
        save_file(load_file(str(good)), str(path), metadata={"dermseg": json.dumps(meta)})
        return path

    return make


def _encoder(meta: dict) -> None:
    meta["model_kwargs"]["encoder_name"] = "resnet34"


def _arch(meta: dict) -> None:
    meta["arch"] = "smp_unet"
    kwargs = meta["model_kwargs"]
    meta["model_kwargs"] = {k: kwargs[k] for k in ("encoder_name", "decoder_channels", "classes")}


def _pickle(good: Path, tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"state_dict": {}, "x": Payload(tmp_path / MARKER)}))
    return path


def _torch_save(good: Path, tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    torch.save({"state_dict": load_file(str(good)), "x": Payload(tmp_path / MARKER)}, path)
    return path


def _truncated(good: Path, tmp_path: Path) -> Path:
    path = tmp_path / "truncated.safetensors"
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _raw(metadata: dict[str, str] | None) -> Callable[[Path, Path], Path]:
    def make(good: Path, tmp_path: Path) -> Path:
        path = tmp_path / "raw.safetensors"
        save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
        return path

    return make


def _file(content: bytes | None, folder: bool = False) -> Callable[[Path, Path], Path]:
    def make(good: Path, tmp_path: Path) -> Path:
        path = tmp_path / "c.safetensors"
        if folder:
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        return path

    return make


#: name -> (how to make it from the good checkpoint, words of the error)
CHECKPOINTS: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...]]] = {
    "other_encoder": (_edited(_encoder), ("weights do not match", "resnet34")),
    "other_arch": (_edited(_arch), ("weights do not match", "smp_unet")),
    "unknown_arch": (_edited(lambda m: m.update(arch="unet_foo")), ("cannot build", "unet_foo")),
    "unknown_model_argument": (
        _edited(lambda m: m["model_kwargs"].update(asp_rates=[1, 2])),
        ("cannot build", "asp_rates"),
    ),
    "other_attributes": (
        _edited(lambda m: m.update(attributes=["globules", "streaks"])),
        ("trained for attributes",),
    ),
    "no_input_size": (_edited(lambda m: m.pop("input_size")), ("lacks 'input_size'",)),
    "pickle_payload": (_pickle, ("not a safetensors checkpoint",)),
    "torch_save_payload": (_torch_save, ("not a safetensors checkpoint",)),
    "truncated": (_truncated, ("not a safetensors checkpoint", "incomplete")),
    "zero_bytes": (_file(b""), ("empty file",)),
    "garbage": (_file(b"\x08" + bytes(63)), ("not a safetensors checkpoint",)),
    "folder": (_file(None, folder=True), ("is a folder",)),
    "missing": (_file(None), ("checkpoint not found",)),
    "no_metadata": (_raw(None), ("not a dermseg checkpoint",)),
    "metadata_not_json": (_raw({"dermseg": "{not json"}), ("not valid JSON",)),
}


def _command(name: str, ckpt: Path, data: Path, out: Path) -> list:
    if name == "predict":
        return ["predict", data / IMAGES, "--checkpoint", ckpt, "--out", out]
    if name == "evaluate":
        return ["evaluate", "--checkpoint", ckpt, "--data", data, "--json", out]
    return ["export", "--checkpoint", ckpt, "--out", out]


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_bad_checkpoint(
    name: str, command: str, base_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    make, words = CHECKPOINTS[name]
    ckpt = make(tiny_checkpoint, tmp_path)
    out = tmp_path / {"predict": "masks", "evaluate": "scores.json", "export": "model.onnx"}[command]
    result = run(capsys, *_command(command, ckpt, base_dataset, out))
    assert_failed(result, ckpt, words, one_line=True)
    assert not out.exists()
    assert not (tmp_path / MARKER).exists()  # the pickle was never unpickled
    assert not leftovers(tmp_path)


@pytest.mark.parametrize("device", ["gpu", "cuda:99"])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_unusable_device(
    command: str, device: str, base_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / ("masks" if command == "predict" else "scores.json")
    result = run(capsys, *_command(command, tiny_checkpoint, base_dataset, out), "--device", device)
    assert_failed(result, None, ("--device", device), one_line=True)
    assert not out.exists() and not os.listdir(tmp_path)
