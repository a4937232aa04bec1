from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.cli import main
from tests.conftest import TINY_TRAIN


def test_demo_runs_end_to_end(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--minutes", "0.2", "--n-train", "8", "--image-size", "128"]
    for item in TINY_TRAIN:
        args += ["--set", item]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    jac = summary["official_jaccard"]
    assert jac["empty_prediction"] == 0.0
    assert 0.0 <= jac["untrained"] <= 1.0 and 0.0 <= jac["trained"] <= 1.0
    # submission format: five 0/255 masks per held-out image, each the image's size
    test_images = sorted((out / "data" / "ISIC2018_Task1-2_Test_Input").glob("*.jpg"))
    assert len(test_images) == summary["test_images"] == 4
    for image in test_images:
        w, h = Image.open(image).size
        for name in ATTRIBUTES:
            mask = np.asarray(Image.open(out / "predictions" / f"{image.stem}_attribute_{name}.png"))
            assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 4 and Image.open(overlays[0]).size[0] > 3 * 128
    printed = capsys.readouterr().out
    assert "empty prediction" in printed and "untrained" in printed


def test_demo_refuses_a_non_empty_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "keep.txt").write_text("x")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
