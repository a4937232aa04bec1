"""A run that mixes mask-labelled synthetic images with real PH2 images labelled by their criteria."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dermseg.config import load_config
from dermseg.errors import DataError
from dermseg.training.loop import train
from tests.conftest import PH2_SAMPLE, QUICK_TRAIN, real_data

#: globules absent / typical, streaks absent / present among them
PH2_IMAGES = ("IMD003", "IMD016", "IMD058", "IMD022")


def _ph2_subset(tmp_path: Path) -> Path:
    """A PH2 ``labels.csv`` of four images of the real sample (their images stay where they are)."""
    lines = (PH2_SAMPLE / "labels.csv").read_text().splitlines()
    rows = [line for line in lines[1:] if line.split(",")[0] in PH2_IMAGES]
    assert len(rows) == len(PH2_IMAGES)
    path = tmp_path / "ph2_criteria.csv"
    path.write_text("\n".join([lines[0], *rows]) + "\n")
    return path


@real_data
@pytest.mark.parametrize("mil", ["topk", "max"])
def test_synthetic_masks_and_ph2_criteria_train_in_one_run(
    synth_dataset: Path, tmp_path: Path, mil: str
) -> None:
    overrides = [
        *QUICK_TRAIN,
        f"data.weak_labels={_ph2_subset(tmp_path)}",
        "data.weak_format=ph2",
        f"data.weak_images={PH2_SAMPLE}",
        "model.presence_head=true",
        f"loss.weak_mil={mil}",
    ]
    run = tmp_path / "run"
    result = train(load_config(None, overrides), synth_dataset, run)
    assert math.isfinite(result["train_loss"]) and result["train_loss"] > 0
    assert result["step"] == 4  # (12 synthetic + 4 PH2 images) / batch 4
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(record["val_loss"])  # validation: the masked images only


def test_a_missing_weak_image_fails_before_the_run_folder_is_written(
    synth_dataset: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "weak.csv"
    labels.write_text("image,attribute,present\nnot_there,streaks,1\n")
    cfg = load_config(None, [*QUICK_TRAIN, f"data.weak_labels={labels}", "model.presence_head=true"])
    with pytest.raises(DataError, match="image not_there listed here is not found"):
        train(cfg, synth_dataset, tmp_path / "run")
    assert not (tmp_path / "run").exists()
