"""The light commands start without the heavy libraries: each runs in a fresh interpreter, which
then lists what it imported (``sys.modules``). Speed is measured in benchmarks/startup.py; this
only pins which libraries are loaded, so a module-level ``import torch`` on their path fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dermseg
from dermseg.attributes import ATTRIBUTES

#: Libraries none of these commands uses.
HEAVY = ("torch", "timm", "segmentation_models_pytorch", "albumentations", "onnxruntime")

#: Runs ``dermseg.cli.main(argv)`` and writes its exit code and the heavy modules it loaded to a file.
_PROBE = """
import json, sys
out, argv = sys.argv[1], sys.argv[2:]
if argv == ["import-only"]:
    import dermseg
    code = 0
else:
    from dermseg.cli import main
    code = main(argv)
heavy = sorted(m for m in ("torch", "timm", "segmentation_models_pytorch", "albumentations",
                           "onnxruntime", "cv2") if m in sys.modules)
with open(out, "w") as fh:
    json.dump({"code": code, "heavy": heavy}, fh)
"""


def _loaded(tmp_path: Path, argv: list[str]) -> dict:
    """Exit code and heavy modules of ``dermseg argv`` in a fresh interpreter."""
    out = tmp_path / "probe.json"
    src = str(Path(dermseg.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def _mask_folders(root: Path, names: list[str]) -> tuple[Path, Path]:
    """A prediction and a ground-truth folder with one small 0/255 mask per file name."""
    pred, gt = root / "pred", root / "gt"
    for folder in (pred, gt):
        folder.mkdir(parents=True)
    mask = np.zeros((12, 16), np.uint8)
    mask[2:9, 3:12] = 255
    for name in names:
        Image.fromarray(mask).save(gt / name)
        Image.fromarray(np.roll(mask, 1, axis=0)).save(pred / name)
    return pred, gt


def test_import_dermseg_is_light(tmp_path: Path) -> None:
    assert _loaded(tmp_path, ["import-only"])["heavy"] == []


def test_help_is_light(tmp_path: Path) -> None:
    assert _loaded(tmp_path, ["--help"]) == {"code": 0, "heavy": []}


def test_evaluate_task2_folders_is_light(tmp_path: Path) -> None:
    pred, gt = _mask_folders(tmp_path, [f"ISIC_0000000_attribute_{name}.png" for name in ATTRIBUTES])
    assert _loaded(tmp_path, ["evaluate", "--pred", str(pred), "--gt", str(gt)]) == {"code": 0, "heavy": []}


def test_evaluate_task1_folders_is_light(tmp_path: Path) -> None:
    pred, gt = _mask_folders(tmp_path, ["IMD000_lesion.png", "IMD001_lesion.png"])
    result = _loaded(tmp_path, ["evaluate", "--pred", str(pred), "--gt", str(gt)])
    # OpenCV decodes the masks (faster than Pillow): it is used here, the rest is not
    assert result["code"] == 0
    assert not set(result["heavy"]) & set(HEAVY)


def test_check_and_split_are_light(tmp_path: Path, flat_dataset: Path) -> None:
    assert _loaded(tmp_path, ["check", str(flat_dataset)]) == {"code": 0, "heavy": []}
    split = _loaded(tmp_path, ["split", str(flat_dataset), "--out", str(tmp_path / "split.json")])
    assert split == {"code": 0, "heavy": []}


@pytest.mark.parametrize("argv", [["synth", "syn", "--n", "1", "--size", "64"], ["predict", "--help"]])
def test_synth_and_command_help_skip_torch(tmp_path: Path, argv: list[str]) -> None:
    result = _loaded(tmp_path, argv)  # synth draws with OpenCV
    assert result["code"] == 0
    assert not set(result["heavy"]) & set(HEAVY)
