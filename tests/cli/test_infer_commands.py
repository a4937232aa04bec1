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


def test_predict_with_tiles(tmp_path: Path, capsys) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "crop64.safetensors", ["data.crop_size=64"])
    img = tmp_path / "ISIC_0000001.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    args = ["predict", str(img), "--checkpoint", str(ckpt), "--out", str(out), "--tiles"]
    assert main([*args, "--tile-scale", "0.5", "--tile-batch", "2"]) == 0
    printed = capsys.readouterr().out
    assert "tiles: 64 px, overlap 0.5, 2 per batch, short side 192 (scale 0.5" in printed
    assert len(list(out.glob("ISIC_0000001_attribute_*.png"))) == 5


def test_tile_settings_need_tiles_and_are_checked(checkpoint: Path, tmp_path: Path, capsys) -> None:
    img = tmp_path / "i.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    args = ["predict", str(img), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]
    assert main([*args, "--tile-scale", "0.5"]) == 2
    assert "need --tiles" in capsys.readouterr().err
    assert main([*args, "--tiles", "--tile-overlap", "1"]) == 2
    assert "tile overlap must be a number in [0, 0.9]" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(tmp_path), "--gt", str(tmp_path), "--tiles"]) == 2
    assert "go with --checkpoint" in capsys.readouterr().err


def test_evaluate_a_checkpoint_with_tiles(synth_dataset: Path, tmp_path: Path) -> None:
    import json

    ckpt = write_tiny_checkpoint(tmp_path / "crop64.safetensors", ["data.crop_size=64"])
    args = ["evaluate", "--checkpoint", str(ckpt), "--data", str(synth_dataset), "--subset", "validation"]
    assert main([*args, "--tiles", "--tile-overlap", "0.25", "--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["images"] == 4 and scores["prediction"].startswith("prediction: tiles: 64 px, overlap 0.25")
