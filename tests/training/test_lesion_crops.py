"""Training with lesion-centred crops or on lesion boxes (``data.field: lesion``) reads the Task 1
lesion masks, and refuses a broken one; a lesion model then gives a structure model its field."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.cli import main
from dermseg.config import load_config
from dermseg.data.background import detect_field_of_view
from dermseg.data.dataset import IsicDataset
from dermseg.data.imageio import read_image, read_mask
from dermseg.data.layout import discover
from dermseg.data.lesion_box import lesion_box
from dermseg.data.synthetic import write_dataset
from dermseg.models.checkpoint import read_meta
from dermseg.training.loop import train
from tests.conftest import QUICK_TRAIN


@pytest.fixture(scope="module")
def lesion_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 training + 4 validation synthetic images with Task 1 lesion masks."""
    root = tmp_path_factory.mktemp("lesions")
    write_dataset(root, 12, size=128, seed=2, split="training", lesion_masks=True)
    write_dataset(root, 4, size=128, seed=2, split="validation", start_id=12, lesion_masks=True)
    return root


def test_training_with_lesion_crops_reads_the_lesion_masks(lesion_dataset: Path, tmp_path: Path) -> None:
    assert all(s.lesion_mask_path is not None for s in discover(lesion_dataset).samples)
    result = train(
        load_config(None, [*QUICK_TRAIN, "augment.lesion_crop=1.0", "data.crop_size=64"]),
        lesion_dataset,
        tmp_path / "r",
    )
    assert result["step"] == 3 and np.isfinite(result["train_loss"])
    # from a prepared cache, which holds the lesion masks too
    cache = tmp_path / "cache"
    assert main(["prepare", str(lesion_dataset), "--size", "96", "--out", str(cache)]) == 0
    cfg = load_config(
        None, [*QUICK_TRAIN, "augment.lesion_crop=1.0", "data.crop_size=64", f"data.cache={cache}"]
    )
    assert train(cfg, lesion_dataset, tmp_path / "r2")["step"] == 3


def test_a_broken_lesion_mask_stops_lesion_crop_training_before_it_starts(
    lesion_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "data"
    shutil.copytree(lesion_dataset, data)
    broken = sorted((data / "ISIC2018_Task1_Training_GroundTruth").glob("*.png"))[0]
    Image.new("L", (7, 7)).save(broken)  # a readable mask of the wrong size
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--set", "augment.lesion_crop=1.0"]
    for item in [*QUICK_TRAIN, "data.crop_size=64"]:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and broken.name in err[0] and "7x7" in err[0]
    assert not (tmp_path / "run").exists()  # nothing written
    # without lesion crops the lesion masks are not read, so they do not stop training
    args[args.index("augment.lesion_crop=1.0")] = "augment.lesion_crop=0.0"
    assert main(args) == 0


def test_a_lesion_field_dataset_resizes_the_ground_truth_lesion_box(lesion_dataset: Path) -> None:
    samples = discover(lesion_dataset).samples
    plain = IsicDataset(samples, None)
    boxed = IsicDataset(samples, None, lesion_field=0.1)
    smaller = 0
    for k, sample in enumerate(samples):
        lesion = read_mask(sample.lesion_mask_path)
        want = lesion_box(lesion, 0.1, within=detect_field_of_view(read_image(sample.image_path)))
        image, masks, _, box, _ = boxed.load(k)
        assert box.to_dict() == want.to_dict() and image.shape[:2] == (want.height, want.width)
        # the structure masks are cut from the same place as the image
        full_masks = plain.load(k)[1]
        fov = plain.load(k)[3]
        np.testing.assert_array_equal(
            masks,
            full_masks[
                :, want.top - fov.top : want.bottom - fov.top, want.left - fov.left : want.right - fov.left
            ],
        )
        smaller += want.area < fov.area
    assert smaller >= len(samples) // 2  # the lesion is usually smaller than the field


def test_a_structure_model_trained_on_lesion_boxes_predicts_with_a_lesion_model(
    lesion_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    def train_args(out: Path, *items: str) -> list[str]:
        args = ["train", "--data", str(lesion_dataset), "--out", str(out)]
        for item in [*QUICK_TRAIN, "data.crop_size=64", *items]:
            args += ["--set", item]
        return args

    assert main(train_args(tmp_path / "structures", "data.field=lesion", "data.field_margin=0.3")) == 0
    structures = tmp_path / "structures" / "checkpoints" / "best.safetensors"
    assert read_meta(structures)["field"] == {"kind": "lesion", "margin": 0.3}
    assert (
        main(train_args(tmp_path / "lesion", "data.labels=isic2018_task1", "postprocess.thresholds=[0.5]"))
        == 0
    )
    lesion = tmp_path / "lesion" / "checkpoints" / "best.safetensors"
    images = lesion_dataset / "ISIC2018_Task1-2_Validation_Input"
    capsys.readouterr()
    out = tmp_path / "pred"
    args = ["predict", str(images), "--checkpoint", str(structures), "--out", str(out)]
    assert main([*args, "--lesion-checkpoint", str(lesion), "--outside-lesion", "empty"]) == 0
    said = capsys.readouterr().out
    assert "field: lesion box from" in said and "margin 0.3" in said and "(as trained)" in said
    assert len(list(out.glob("*_attribute_*.png"))) == 4 * 5
    # without the lesion model the run is told that the model sees another scale than it was trained on
    assert main([*args[:-1], str(tmp_path / "pred2")]) == 0
    assert "trained on lesion boxes" in capsys.readouterr().out
    # the structure model cannot be the lesion model, nor the other way round
    assert main([*args, "--lesion-checkpoint", str(structures)]) == 2
    assert "is not a lesion model" in capsys.readouterr().err


def test_a_lesion_field_needs_the_images_not_a_prepared_cache(lesion_dataset: Path, tmp_path: Path) -> None:
    from dermseg.errors import ConfigError

    with pytest.raises(ConfigError, match="data.field=lesion reads the images"):
        load_config(None, [*QUICK_TRAIN, "data.field=lesion", f"data.cache={tmp_path}"])
    with pytest.raises(ConfigError, match="data.field must be fov or lesion"):
        load_config(None, [*QUICK_TRAIN, "data.field=lesions"])


@pytest.mark.parametrize("labels", ["ph2", "isic2018_task1"])
def test_a_lesion_model_cannot_train_on_its_own_ground_truth_box(labels: str) -> None:
    from dermseg.errors import ConfigError

    with pytest.raises(ConfigError, match="trained and selected on its own answer"):
        load_config(
            None, [*QUICK_TRAIN, "data.field=lesion", f"data.labels={labels}", "loss.terms={bce: 1.0}"]
        )
