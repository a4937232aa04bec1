"""A full disk at an epoch's end: one line naming the file, and a state/weights pair a resume completes."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import dermseg.models.checkpoint as checkpoint_module
from dermseg.cli import main
from dermseg.config import load_config
from dermseg.errors import OutputError
from dermseg.models.checkpoint import load_train_state, read_meta
from dermseg.training.loop import train
from tests.conftest import QUICK_TRAIN


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_writing_the_weights_then_resume_completes_them(
    synth_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    monkeypatch.setattr(checkpoint_module, "save_file", _disk_full)
    with pytest.raises(OutputError, match="no space left on device") as err:
        train(load_config(None, QUICK_TRAIN), synth_dataset, run, device="cpu")
    ckpt = run / "checkpoints"
    assert err.value.path == ckpt / "best.safetensors"  # the state is already written
    state = load_train_state(ckpt / "last_state.pt")
    assert state["position"]["epoch"] == 0 and state["best_epoch"] == 0
    assert not (ckpt / "last.safetensors").exists() and not list(ckpt.glob(".*"))
    monkeypatch.undo()

    train(load_config(None, QUICK_TRAIN), synth_dataset, run, resume=True, device="cpu")
    for name in ("best.safetensors", "last.safetensors"):
        assert read_meta(ckpt / name)["epoch"] == 0, name
        weights = load_file(str(ckpt / name))
        assert all(torch.equal(weights[k], v) for k, v in state["model"].items()), name


def test_full_disk_in_torch_save_is_one_line_naming_the_state(
    synth_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def short_write(obj: object, f: object) -> None:
        Path(str(f)).write_bytes(b"PK\x03\x04")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4160 vs 4054")

    monkeypatch.setattr(torch, "save", short_write)
    run = tmp_path / "run"
    args = ["train", "--data", str(synth_dataset), "--out", str(run), "--device", "cpu"]
    assert main([*args, *(x for o in QUICK_TRAIN for x in ("--set", o))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(run / "checkpoints" / "last_state.pt") in err[0] and "disk" in err[0]
    # nothing half-written, and no weights file ahead of the (missing) state
    assert not list((run / "checkpoints").iterdir())
