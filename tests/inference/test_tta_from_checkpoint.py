"""Flip TTA defaults to how the checkpoint's thresholds were tuned, everywhere they are used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermseg.cli import main
from dermseg.errors import DataError
from dermseg.inference.ensemble import ensemble_segmenter
from dermseg.inference.segmenter import Segmenter
from dermseg.models.checkpoint import read_meta, update_checkpoint_meta
from tests.conftest import write_tiny_checkpoint


def _tuned(path: Path, tta: bool) -> Path:
    """Give the checkpoint at ``path`` a tuning record saying its thresholds were tuned with ``tta``."""
    record = {"overall_at_default": 0.1, "overall_tuned": 0.2, "steps": [], "images": 2, "subset": "val"}
    update_checkpoint_meta(path, {"tuning": {**record, "tta": tta}})
    return path


@pytest.fixture(scope="module")
def tta_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint whose thresholds were tuned with flip TTA (as the isic2018 recipe does)."""
    return _tuned(write_tiny_checkpoint(tmp_path_factory.mktemp("tta") / "tta.safetensors"), True)


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights, thresholds tuned without TTA."""
    return _tuned(write_tiny_checkpoint(tmp_path_factory.mktemp("plain") / "plain.safetensors"), False)


class _LeftToRight(torch.nn.Module):
    """Logits rising from left to right whatever the image: flip TTA changes its output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-4.0, 4.0, x.shape[-1])
        return ramp.expand(x.shape[0], 5, x.shape[-2], x.shape[-1]).clone()


def test_the_default_is_how_the_thresholds_were_tuned(tta_checkpoint: Path, tmp_path: Path) -> None:
    assert Segmenter.from_checkpoint(tta_checkpoint).tta is True
    assert Segmenter.from_path(tta_checkpoint).tta is True
    assert Segmenter.from_checkpoint(tta_checkpoint, tta=False).tta is False  # an explicit choice wins
    untuned = write_tiny_checkpoint(tmp_path / "untuned.safetensors")
    assert Segmenter.from_checkpoint(untuned).tta is False  # no tuning record: no TTA
    assert "as tuned" in Segmenter.from_checkpoint(tta_checkpoint).tta_description
    overridden = Segmenter.from_checkpoint(tta_checkpoint, tta=False).tta_description
    assert "off" in overridden and "overridden" in overridden

    # the probabilities are the flip average, by hand: (p + hflip(p) + vflip(p)) / 3 of a ramp
    meta = {
        "encoding": "multilabel",
        "input_size": 64,
        "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "thresholds": [0.5] * 5,
        "crop_background": False,
        "tuning": {"tta": True},
    }
    image = np.full((64, 96, 3), 120, np.uint8)
    plain = Segmenter.from_model(_LeftToRight(), meta, tta=False).probabilities(image)
    default = Segmenter.from_model(_LeftToRight(), meta).probabilities(image)
    np.testing.assert_allclose(default, (2 * plain + plain[:, :, ::-1]) / 3, atol=1e-5)


def _probability_maps(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.rglob("*prob*.png"))}


def test_predict_uses_the_tuned_tta_unless_told(tta_checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "ISIC_0000001.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((72, 100, 3)) * 255).astype(np.uint8)).save(image)
    outputs = {}
    for name, flag in (("default", []), ("on", ["--tta"]), ("off", ["--no-tta"])):
        args = ["predict", str(image), "--checkpoint", str(tta_checkpoint), "--out", str(tmp_path / name)]
        assert main([*args, "--probabilities", *flag]) == 0
        outputs[name] = _probability_maps(tmp_path / name)
    assert outputs["default"] and outputs["default"].keys() == outputs["on"].keys()
    for key, value in outputs["default"].items():
        np.testing.assert_array_equal(value, outputs["on"][key])
    assert any(not np.array_equal(v, outputs["off"][k]) for k, v in outputs["default"].items())


def test_evaluate_reports_the_tta_it_used(
    tta_checkpoint: Path, official_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["evaluate", "--checkpoint", str(tta_checkpoint), "--data", str(official_dataset)]
    args += ["--subset", "validation"]
    assert main([*args, "--json", str(tmp_path / "default.json")]) == 0
    assert "flip TTA: on (as tuned)" in capsys.readouterr().out
    assert json.loads((tmp_path / "default.json").read_text())["tta"] is True
    assert main([*args, "--no-tta", "--json", str(tmp_path / "off.json")]) == 0
    assert json.loads((tmp_path / "off.json").read_text())["tta"] is False


def test_tune_keeps_the_checkpoint_setting_and_records_it(
    tta_checkpoint: Path, official_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "retuned.safetensors"
    args = ["tune", "--checkpoint", str(tta_checkpoint), "--data", str(official_dataset), "--out", str(out)]
    assert main(args) == 0
    assert read_meta(out)["tuning"]["tta"] is True
    assert Segmenter.from_checkpoint(out).tta is True
    # an untuned checkpoint of a TTA recipe is tuned with TTA; --no-tta chooses otherwise
    recipe = write_tiny_checkpoint(tmp_path / "recipe.safetensors", ["predict.tta=true"])
    assert main(["tune", "--checkpoint", str(recipe), "--data", str(official_dataset)]) == 0
    assert read_meta(recipe)["tuning"]["tta"] is True
    assert main(["tune", "--checkpoint", str(recipe), "--data", str(official_dataset), "--no-tta"]) == 0
    assert read_meta(recipe)["tuning"]["tta"] is False


def test_ensemble_members_must_agree_unless_overridden(
    tta_checkpoint: Path, plain_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert ensemble_segmenter([tta_checkpoint, tta_checkpoint]).tta is True
    assert ensemble_segmenter([plain_checkpoint, plain_checkpoint]).tta is False
    with pytest.raises(DataError, match="tuned with flip TTA") as err:
        ensemble_segmenter([tta_checkpoint, plain_checkpoint])
    assert err.value.path == plain_checkpoint
    assert ensemble_segmenter([tta_checkpoint, plain_checkpoint], tta=False).tta is False

    image = tmp_path / "ISIC_0000001.jpg"
    Image.fromarray(np.full((72, 100, 3), 90, np.uint8)).save(image)
    both = ["--checkpoint", str(tta_checkpoint), "--checkpoint", str(plain_checkpoint)]
    capsys.readouterr()
    assert main(["predict", str(image), *both, "--out", str(tmp_path / "pred")]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and str(plain_checkpoint) in err_lines[0] and "--no-tta" in err_lines[0]
    assert main(["predict", str(image), *both, "--out", str(tmp_path / "pred"), "--tta"]) == 0


def test_serve_panel_says_which_tta(tta_checkpoint: Path) -> None:
    from dermseg.serve.app import describe_model

    fields = dict(
        describe_model(Segmenter.from_checkpoint(tta_checkpoint), read_meta(tta_checkpoint))["fields"]
    )
    assert fields["Test-time augmentation"] == "flip TTA: on (as tuned)"


def test_an_onnx_export_carries_the_tuned_tta(tta_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from dermseg.inference.export import export_onnx

    exported = export_onnx(tta_checkpoint, tmp_path / "model.onnx")
    assert Segmenter.from_onnx(exported).tta is True
    assert Segmenter.from_onnx(exported, tta=False).tta is False
