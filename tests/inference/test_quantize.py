"""INT8 export (``dermseg export --int8 --calibration DIR``): a really quantised graph whose
probabilities stay close to the float model's, run by ``predict`` like any export; a bad
calibration folder is one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.cli import main
from dermseg.errors import DataError
from dermseg.inference.onnx_runtime import META_KEYS
from dermseg.inference.quantize import calibration_images
from dermseg.inference.segmenter import Segmenter
from tests.conftest import write_tiny_checkpoint

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")


def _images(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for k in range(count):
        image = (rng.random((120 + 4 * k, 160, 3)) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"ISIC_{k:07d}.jpg")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny checkpoint, its INT8 export through the command line, and the calibration folder."""
    root = tmp_path_factory.mktemp("int8")
    checkpoint = write_tiny_checkpoint(root / "tiny.safetensors")
    calibration = _images(root / "train", 5, seed=0)
    out = root / "tiny_int8.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--int8"]
    assert main([*args, "--calibration", str(calibration), "--calibration-images", "4"]) == 0
    return checkpoint, out, calibration


def test_the_int8_graph_is_quantised_and_keeps_the_dermseg_description(models) -> None:
    checkpoint, int8, _ = models
    proto = onnx.load(str(int8))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    props = {p.key: p.value for p in proto.metadata_props}
    assert set(META_KEYS) <= set(props)
    assert json.loads(props["dermseg_quantization"])["calibration_images"] == 4
    assert json.loads(props["attributes"]) == list(ATTRIBUTES)
    # int8 weights: well under half the float graph (4 bytes a weight -> 1)
    float_path = int8.parent / "tiny_float.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(float_path)]) == 0
    assert int8.stat().st_size < 0.4 * float_path.stat().st_size
    assert not list(int8.parent.glob(".*.tmp*")), "atomic write left a temporary file"


def test_int8_probabilities_are_close_to_the_float_model(models, tmp_path: Path) -> None:
    checkpoint, int8, _ = models
    reference, quantised = Segmenter.from_checkpoint(checkpoint), Segmenter.from_path(int8)
    assert quantised.backend == "onnxruntime"
    for path in sorted(_images(tmp_path / "unseen", 2, seed=7).iterdir()):  # not calibration images
        image = np.asarray(Image.open(path).convert("RGB"))
        diff = np.abs(reference.probabilities(image) - quantised.probabilities(image))
        # 8-bit activations: far from the float model would be a broken graph, equal a float one
        assert 0 < diff.max() <= 0.05, (path.name, float(diff.max()))
    out = tmp_path / "masks"
    assert main(["predict", str(tmp_path / "unseen"), "--checkpoint", str(int8), "--out", str(out)]) == 0
    assert len(list(out.glob("*_attribute_*.png"))) == 2 * len(ATTRIBUTES)


def test_calibration_images_are_evenly_spaced_by_name(tmp_path: Path) -> None:
    folder = _images(tmp_path / "train", 10, seed=1)
    assert [p.name for p in calibration_images(folder, 4)] == [
        "ISIC_0000000.jpg",
        "ISIC_0000002.jpg",  # 10 / 4 = 2.5: 0, 2.5, 5, 7.5
        "ISIC_0000005.jpg",
        "ISIC_0000007.jpg",
    ]
    assert len(calibration_images(folder, 50)) == 10


@pytest.mark.parametrize("problem", ["missing", "empty", "a file", "unreadable image"])
def test_a_bad_calibration_folder_is_one_line_exit_2(
    models, tmp_path: Path, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = models[0]
    folder = tmp_path / "calibration"
    named = folder
    if problem == "empty":
        folder.mkdir()
    elif problem == "a file":
        folder.write_text("not a folder")
    elif problem == "unreadable image":
        _images(folder, 1, seed=3)
        named = folder / "ISIC_0000001.jpg"
        named.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "m.onnx"
    code = main(
        ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--int8", "--calibration", str(folder)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(named) in err, err
    assert not out.exists()


def test_int8_and_calibration_go_together(models, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint, _, calibration = models
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err
    assert (
        main(
            ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--calibration", str(calibration)]
        )
        == 2
    )
    assert not out.exists()
    with pytest.raises(DataError, match="calibration folder not found"):
        calibration_images(tmp_path / "nowhere")
