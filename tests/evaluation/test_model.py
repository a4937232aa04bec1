from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermseg.attributes import ATTRIBUTES
from dermseg.cli import main
from dermseg.config import load_config
from dermseg.inference.segmenter import Segmenter
from dermseg.models.checkpoint import read_meta
from dermseg.training.loop import train
from tests.conftest import TINY_TRAIN, write_sample, write_tiny_checkpoint


@pytest.fixture(scope="module")
def trained(synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained for one epoch on the synthetic dataset; returns its best checkpoint."""
    run = tmp_path_factory.mktemp("run")
    train(load_config(None, [*TINY_TRAIN, "train.epochs=2"]), synth_dataset, run)
    return run / "checkpoints" / "best.safetensors"


def test_predict_then_evaluate_equals_evaluate_checkpoint(
    trained: Path, synth_dataset: Path, tmp_path: Path
) -> None:
    pred = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                str(synth_dataset / "ISIC2018_Task1-2_Validation_Input"),
                "--checkpoint",
                str(trained),
                "--out",
                str(pred),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(pred),
                "--gt",
                str(synth_dataset / "ISIC2018_Task2_Validation_GroundTruth"),
                "--json",
                str(tmp_path / "files.json"),
                "--csv",
                str(tmp_path / "files.csv"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(trained),
                "--data",
                str(synth_dataset),
                "--subset",
                "val",
                "--json",
                str(tmp_path / "model.json"),
            ]
        )
        == 0
    )
    files = json.loads((tmp_path / "files.json").read_text())
    model = json.loads((tmp_path / "model.json").read_text())
    assert model["images"] == files["images"] == 4
    assert model["overall"] == pytest.approx(files["overall"], abs=1e-9)
    for name in ("globules", "pigment_network"):
        assert model[name]["jaccard"] == pytest.approx(files[name]["jaccard"], abs=1e-9)
    # the checkpoint run adds threshold-free ranking metrics
    for name, ranked in model["pixel"].items():
        assert ranked["auc"] is None or 0.0 <= ranked["auc"] <= 1.0, name
    assert (tmp_path / "files.csv").read_text().startswith("attribute,jaccard")


#: Per attribute, the probability above which the crafted ground truth is positive (none is 0.5).
CUTS = (0.3, 0.2, 0.65, 0.4, 0.8)


def _column_ramp(
    self: Segmenter, image: np.ndarray, field: object = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Stands in for the network: every attribute's probability is (x + 0.5) / W in column x."""
    h, w = image.shape[:2] if size is None else size
    ramp = (np.arange(w, dtype=np.float32) + 0.5) / np.float32(w)
    return np.broadcast_to(ramp, (len(ATTRIBUTES), h, w)).copy()


def test_tune_finds_the_thresholds_known_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 columns with probabilities 0.0125, 0.0375, ..., 0.9875; attribute k is true where the
    # probability exceeds CUTS[k], so CUTS[k] (a grid value) is its only Jaccard-1 threshold.
    data = tmp_path / "data"
    for i, height in enumerate((30, 20)):
        columns = (np.arange(40) + 0.5) / 40
        masks = {
            a: np.broadcast_to(columns > cut, (height, 40)) for a, cut in zip(ATTRIBUTES, CUTS, strict=True)
        }
        write_sample(
            data / "ISIC2018_Task1-2_Validation_Input",
            f"ISIC_{i:07d}",
            size=(40, height),
            masks=masks,
            mask_dir=data / "ISIC2018_Task2_Validation_GroundTruth",
            seed=i,
        )
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.safetensors")
    before = checkpoint.read_bytes()
    monkeypatch.setattr(Segmenter, "probabilities", _column_ramp)
    out, report = tmp_path / "tuned.safetensors", tmp_path / "tune.json"
    args = ["tune", "--checkpoint", str(checkpoint), "--data", str(data), "--subset", "validation"]
    assert main([*args, "--out", str(out), "--json", str(report)]) == 0
    tuned = json.loads(report.read_text())
    assert tuned["thresholds"] == pytest.approx(CUTS, abs=1e-12)
    assert tuned["overall_tuned"] == 1.0
    assert all(j == 1.0 for j in tuned["per_attribute_tuned"].values())
    # at 0.5 the 20 right-hand columns are positive; the truths hold 28, 32, 14, 24 and 8 columns:
    # overlap 20 + 20 + 14 + 20 + 8 = 82, union 28 + 32 + 20 + 24 + 20 = 124 (every image alike)
    assert tuned["overall_at_default"] == pytest.approx(82 / 124, abs=1e-12)
    meta = read_meta(out)
    assert meta["postprocess"]["thresholds"] == pytest.approx(CUTS, abs=1e-12)
    assert meta["tuning"]["subset"] == "validation" and meta["tuning"]["images"] == 2
    assert checkpoint.read_bytes() == before  # --out leaves the original alone


def test_evaluate_and_tune_user_errors(trained: Path, synth_dataset: Path, capsys) -> None:
    assert main(["tune", "--checkpoint", str(trained), "--data", str(synth_dataset), "--subset", "test"]) == 2
    assert "leak" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(trained)]) == 2
    assert main(["evaluate", "--pred", str(synth_dataset)]) == 2
