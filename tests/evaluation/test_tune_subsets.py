"""`dermseg tune` never sees the test images nor the images the model was trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermseg.cli import main
from dermseg.errors import ConfigError
from dermseg.models.checkpoint import read_meta
from tests.conftest import write_sample, write_tiny_checkpoint


@pytest.fixture
def labelled_test(official_dataset: Path) -> Path:
    """The official layout with the test ground truth present (as after the 2018 release)."""
    test_input = official_dataset / "ISIC2018_Task1-2_Test_Input"
    for p in test_input.glob("*.jpg"):
        p.unlink()
    write_sample(test_input, "ISIC_0000020", mask_dir=official_dataset / "ISIC2018_Task2_Test_GroundTruth")
    return official_dataset


@pytest.mark.parametrize("subset", ["all", "test", "auto"])
def test_tune_refuses_every_subset_holding_test_or_training_images(
    subset: str, labelled_test: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "model.safetensors")
    before = ckpt.read_bytes()
    assert main(["tune", "--checkpoint", str(ckpt), "--data", str(labelled_test), "--subset", subset]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--subset must be val" in err[0] and "Traceback" not in err[0]
    assert ckpt.read_bytes() == before  # nothing was tuned


def test_tuning_samples_are_the_held_out_images_only(labelled_test: Path) -> None:
    from dermseg.evaluation.model import TUNE_SUBSETS, tuning_samples

    assert TUNE_SUBSETS == ("val", "validation")
    auto = {"config": {"data": {"validation": "auto"}}}
    # the fixture's official validation folder holds ISIC_0000010 and ISIC_0000011
    assert [s.isic_id for s in tuning_samples(labelled_test, "validation", auto)] == [
        "ISIC_0000010",
        "ISIC_0000011",
    ]
    assert [s.isic_id for s in tuning_samples(labelled_test, "val", auto)] == ["ISIC_0000010", "ISIC_0000011"]
    # a hold-out of the four training images: never the test image, never a training image it kept
    holdout = {"config": {"data": {"validation": "holdout", "val_fraction": 0.25}}}
    ids = [s.isic_id for s in tuning_samples(labelled_test, "val", holdout)]
    assert len(ids) == 1 and ids[0] in {f"ISIC_{k:07d}" for k in range(4)}
    for subset in ("all", "test", "training"):
        with pytest.raises(ConfigError):
            tuning_samples(labelled_test, subset, auto)


def test_tune_on_the_official_validation_folder_is_recorded(labelled_test: Path, tmp_path: Path) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "model.safetensors")
    args = ["tune", "--checkpoint", str(ckpt), "--data", str(labelled_test), "--subset", "validation"]
    assert main(args) == 0
    tuning = read_meta(ckpt)["tuning"]
    assert tuning["subset"] == "validation" and tuning["images"] == 2
