"""Bad checkpoints given to every command that reads one: predict, evaluate --checkpoint, export.

Nothing in a checkpoint runs: a pickle with a payload is refused unread, and a checkpoint whose
description does not match its weights is one error line, not a tensor-size traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bad_input.corpus.base import IMAGES
from tests.bad_input.corpus.checkpoints import CHECKPOINTS, MARKER
from tests.bad_input.harness import assert_failed, leftovers, run


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
