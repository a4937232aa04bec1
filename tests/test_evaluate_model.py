from __future__ import annotations

import json
from pathlib import Path

import pytest

from dermseg.checkpoint import read_meta
from dermseg.cli import main
from dermseg.config import load_config
from dermseg.train import train
from tests.conftest import TINY_TRAIN


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


def test_tune_stores_thresholds_that_do_not_lower_the_score(
    trained: Path, synth_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tuned.safetensors"
    report = tmp_path / "tune.json"
    before = trained.read_bytes()
    assert (
        main(
            [
                "tune",
                "--checkpoint",
                str(trained),
                "--data",
                str(synth_dataset),
                "--out",
                str(out),
                "--json",
                str(report),
            ]
        )
        == 0
    )
    tuned = json.loads(report.read_text())
    assert tuned["overall_tuned"] >= tuned["overall_at_default"] - 1e-12
    meta = read_meta(out)
    assert meta["postprocess"]["thresholds"] == tuned["thresholds"]
    assert meta["tuning"]["subset"] == "val"
    assert trained.read_bytes() == before  # --out leaves the original alone


def test_evaluate_and_tune_user_errors(trained: Path, synth_dataset: Path, capsys) -> None:
    assert main(["tune", "--checkpoint", str(trained), "--data", str(synth_dataset), "--subset", "test"]) == 2
    assert "leak" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(trained)]) == 2
    assert main(["evaluate", "--pred", str(synth_dataset)]) == 2
