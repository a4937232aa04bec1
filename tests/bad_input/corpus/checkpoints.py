"""Bad checkpoints, made from the good one: edited descriptions, pickles with a payload, and files
that are not checkpoints at all."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

#: What a pickle payload creates when it is unpickled.
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
