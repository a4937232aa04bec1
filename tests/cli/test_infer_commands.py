"""``dermseg predict`` (cli/infer_commands.py): user errors are one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.cli import main
from tests.conftest import write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model saved as a dermseg checkpoint (prediction needs no training)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def test_predict_user_errors(checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert (
        main(["predict", str(tmp_path / "nope.jpg"), "--checkpoint", str(checkpoint), "--out", str(tmp_path)])
        == 2
    )
    assert "file not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert "no images found" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"x" * 20)
    img = tmp_path / "i.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    assert main(["predict", str(img), "--checkpoint", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert str(bad) in capsys.readouterr().err
