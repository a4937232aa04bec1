"""An ensemble of fold models averages its members' probabilities, in the library and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermseg.attributes import ATTRIBUTES
from dermseg.cli import main
from dermseg.config import load_config
from dermseg.inference.ensemble import ensemble_segmenter
from dermseg.inference.segmenter import Segmenter
from dermseg.training.loop import train
from tests.conftest import QUICK_TRAIN


def test_ensemble_averages_the_members(
    synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paths = []
    for fold in range(2):
        cfg = load_config(None, [*QUICK_TRAIN, "data.folds=2", f"data.fold={fold}", f"seed={fold}"])
        train(cfg, synth_dataset, tmp_path / f"fold{fold}")
        assert (
            json.loads((tmp_path / f"fold{fold}" / "split.json").read_text())["source"] == f"fold {fold} of 2"
        )
        paths.append(tmp_path / f"fold{fold}" / "checkpoints" / "best.safetensors")
    image = np.asarray(np.random.default_rng(0).integers(0, 255, (120, 140, 3)), dtype=np.uint8)
    members = [Segmenter.from_checkpoint(p) for p in paths]
    ensemble = ensemble_segmenter(paths)
    assert ensemble.backend == "ensemble of 2"
    want = (members[0].probabilities(image) + members[1].probabilities(image)) / 2
    np.testing.assert_allclose(ensemble.probabilities(image), want, atol=1e-6)

    both = ["--checkpoint", str(paths[0]), "--checkpoint", str(paths[1])]
    pred = tmp_path / "pred"
    assert (
        main(["predict", str(synth_dataset / "ISIC2018_Task1-2_Validation_Input"), "--out", str(pred), *both])
        == 0
    )
    assert len(list(pred.glob("*.png"))) == 4 * 5

    # the ensemble is scored on an official folder, as the official scorer scores its masks;
    # each member's own hold-out is refused
    task2 = pytest.importorskip("isic_challenge_scoring.task2")
    official = task2.score(synth_dataset / "ISIC2018_Task2_Validation_GroundTruth", pred)
    scores = tmp_path / "scores.json"
    capsys.readouterr()
    evaluate = ["evaluate", "--data", str(synth_dataset), *both]
    assert main([*evaluate, "--subset", "validation", "--json", str(scores)]) == 0
    ours = json.loads(scores.read_text())
    assert ours["overall"] == pytest.approx(official["overall"], abs=1e-9)
    for name in ATTRIBUTES:
        assert ours[name]["jaccard"] == pytest.approx(official[name]["jaccard"], abs=1e-9), name
    assert main([*evaluate, "--subset", "val"]) == 2
    assert "own hold-out" in capsys.readouterr().err
