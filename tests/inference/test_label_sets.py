"""Inference follows the checkpoint's label set: C channels, the set's file names, colours and legend,
ensembles of one set only, ONNX exports that keep the set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.cli import main
from dermseg.errors import DataError
from dermseg.inference.ensemble import ensemble_segmenter
from dermseg.inference.overlay import overlay, with_legend
from dermseg.inference.postprocess import PostprocessSettings
from dermseg.inference.run_manifest import MANIFEST_NAME
from dermseg.inference.segmenter import Segmenter, write_submission_masks
from dermseg.labels import ISIC2018_TASK1, ISIC2018_TASK2, PH2, LabelSet
from dermseg.models.checkpoint import read_meta, save_checkpoint
from dermseg.models.factory import create_model
from tests.conftest import write_tiny_checkpoint
from tests.label_set_models import LESION_CASES, lesion_meta, write_lesion_checkpoint, write_lesion_folder

LESION_RGB = (255, 64, 64)  # the colour of ph2's and isic2018_task1's one label, written out by hand


@pytest.fixture(scope="module")
def ph2_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lesion_checkpoint(tmp_path_factory.mktemp("ph2") / "ph2.safetensors")


@pytest.fixture(scope="module")
def task2_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("task2") / "task2.safetensors")


def test_segmenter_carries_the_label_set(ph2_ckpt: Path) -> None:
    seg = Segmenter.from_checkpoint(ph2_ckpt)
    assert seg.labels == PH2 and seg.postprocess.thresholds == (0.5,)
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), np.uint8)
    pred = seg(image)
    assert pred.probabilities.shape == (1, 70, 90) and pred.masks.shape == (1, 70, 90)
    assert pred.presence.shape == (1,)


def test_old_checkpoint_is_task2() -> None:
    old = Path(__file__).parents[1] / "fixtures" / "pre_wings_checkpoint.safetensors"  # before label sets
    assert "labels" not in read_meta(old)
    assert Segmenter.from_checkpoint(old).labels == ISIC2018_TASK2


def test_channels_must_match_the_label_set(tmp_path: Path) -> None:
    model = create_model("unet_aspp", encoder_name="resnet18", encoder_weights="none", classes=5)
    path = tmp_path / "five.safetensors"
    save_checkpoint(path, model, lesion_meta())  # five channels, a one-label set
    with pytest.raises(DataError, match="5 output channel") as info:
        Segmenter.from_checkpoint(path)
    assert info.value.path == path and "\n" not in str(info.value)


def test_postprocess_has_one_value_per_label() -> None:
    assert PostprocessSettings(thresholds=[0.3]).to_dict() == {
        "thresholds": [0.3],
        "opening": [0],
        "min_area": [0],
        "presence": [0.0],
    }
    assert PostprocessSettings(thresholds=0.4).thresholds == (0.4,) * 5  # a single value: Task 2's five
    with pytest.raises(ValueError, match="same length"):
        PostprocessSettings(thresholds=[0.5], opening=[0, 0])


@pytest.mark.parametrize(
    ("labels", "names"),
    [
        (PH2, ["IMD003_lesion.png"]),
        (ISIC2018_TASK1, ["IMD003_segmentation.png"]),
        (
            ISIC2018_TASK2,
            [
                f"IMD003_attribute_{a}.png"
                for a in ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks")
            ],
        ),
    ],
)
def test_submission_names(tmp_path: Path, labels: LabelSet, names: list[str]) -> None:
    masks = np.zeros((labels.num_labels, 4, 6), bool)
    masks[:, 1:3, 2:5] = True
    paths = write_submission_masks(tmp_path, "IMD003", masks, labels)
    assert [p.name for p in paths] == names
    for p in paths:
        assert np.array_equal(np.asarray(Image.open(p)) > 0, masks[0])


def test_overlay_and_legend_use_the_set_colours() -> None:
    image = np.zeros((8, 10, 3), np.uint8)
    mask = np.zeros((1, 8, 10), bool)
    mask[0, 2:6, 3:7] = True
    out = overlay(image, mask, alpha=1.0, outline=False, labels=PH2)
    assert tuple(out[3, 4]) == LESION_RGB and tuple(out[0, 0]) == (0, 0, 0)
    with pytest.raises(ValueError, match="do not match"):
        overlay(image, np.zeros((5, 8, 10), bool), labels=PH2)
    panel = np.full((40, 400, 3), 255, np.uint8)
    strip = with_legend(panel, np.array([True]), labels=PH2)[40:]
    colours = {tuple(c) for c in strip.reshape(-1, 3)}
    assert LESION_RGB in colours and (230, 25, 75) not in colours  # not Task 2's globules


def test_predict_writes_the_set_names_at_the_image_size(tmp_path: Path, ph2_ckpt: Path) -> None:
    data = write_lesion_folder(tmp_path / "ph2")
    out = tmp_path / "pred"
    args = ["predict", str(data / "images"), "--checkpoint", str(ph2_ckpt), "--out", str(out)]
    assert main([*args, "--overlays", "--probabilities", "--labels", "ph2"]) == 0
    names = set()
    for image_id, (_, (w, h), _, _) in LESION_CASES.items():
        mask = Image.open(out / f"{image_id}_lesion.png")
        assert mask.size == (w, h) and mask.mode == "L"
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        prob = Image.open(out / f"{image_id}_probability_lesion.png")
        assert prob.size == (w, h) and np.asarray(prob).dtype == np.uint16
        overlay_png = Image.open(out / f"{image_id}_overlay.png")
        assert overlay_png.size[0] > 2 * w and overlay_png.size[1] > h
        names |= {f"{image_id}_lesion.png", f"{image_id}_probability_lesion.png", f"{image_id}_overlay.png"}
    assert {p.name for p in out.iterdir()} == {*names, MANIFEST_NAME}  # none named after Task 2 attributes


def test_predict_of_a_folder_with_masks_beside_skips_them(tmp_path: Path, ph2_ckpt: Path) -> None:
    data = write_lesion_folder(tmp_path / "ph2")
    for mask in (data / "masks").iterdir():
        mask.rename(data / "images" / mask.name)  # images and masks in one folder
    out = tmp_path / "pred"
    assert main(["predict", str(data / "images"), "--checkpoint", str(ph2_ckpt), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(f"{i}_lesion.png" for i in LESION_CASES), MANIFEST_NAME]
    )


def test_predict_refuses_another_label_set(tmp_path: Path, task2_ckpt: Path, capsys) -> None:
    data = write_lesion_folder(tmp_path / "ph2")
    args = ["predict", str(data / "images"), "--checkpoint", str(task2_ckpt), "--out", str(tmp_path / "o")]
    assert main([*args, "--labels", "ph2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and task2_ckpt.name in err
    assert "isic2018_task2" in err and "ph2" in err
    assert not (tmp_path / "o").exists()


def test_ensemble_refuses_members_of_different_sets(ph2_ckpt: Path, task2_ckpt: Path) -> None:
    with pytest.raises(DataError, match="same label set") as info:
        ensemble_segmenter([task2_ckpt, ph2_ckpt])
    assert info.value.path == ph2_ckpt and "\n" not in str(info.value)
    assert "ph2 (lesion) here but isic2018_task2" in str(info.value)


def test_ensemble_of_one_set_averages(ph2_ckpt: Path, tmp_path: Path) -> None:
    other = write_lesion_checkpoint(tmp_path / "other.safetensors", constant=10.0)
    seg = ensemble_segmenter([ph2_ckpt, other])
    assert seg.labels == PH2
    image = np.random.default_rng(1).integers(0, 256, (64, 80, 3), np.uint8)
    first = Segmenter.from_checkpoint(ph2_ckpt).probabilities(image)
    second = Segmenter.from_checkpoint(other).probabilities(image)
    np.testing.assert_allclose(seg.probabilities(image), (first + second) / 2, atol=1e-6)


def test_onnx_round_trip_keeps_the_label_set(tmp_path: Path, ph2_ckpt: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "ph2.onnx"
    assert main(["export", "--checkpoint", str(ph2_ckpt), "--out", str(path)]) == 0
    assert "(B, 1, H, W) of label set ph2 (lesion)" in " ".join(capsys.readouterr().out.split())
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["labels"]) == PH2.to_meta()
    assert json.loads(props["attributes"]) == ["lesion"]
    onnx_seg = Segmenter.from_onnx(path)
    assert onnx_seg.labels == PH2
    image = np.random.default_rng(2).integers(0, 256, (75, 101, 3), np.uint8)
    torch_probs = Segmenter.from_checkpoint(ph2_ckpt).probabilities(image)
    np.testing.assert_allclose(onnx_seg.probabilities(image), torch_probs, atol=1e-4)
    out = tmp_path / "pred"
    data = write_lesion_folder(tmp_path / "ph2", ids=("IMD003",))
    assert main(["predict", str(data / "images"), "--checkpoint", str(path), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["IMD003_lesion.png", MANIFEST_NAME]


def test_onnx_export_without_labels_is_task2(tmp_path: Path) -> None:
    """An export written before label sets (no ``labels`` key) still loads, as a Task 2 model."""
    pytest.importorskip("onnxruntime")
    from dermseg.inference.onnx_runtime import read_onnx_meta

    ckpt = write_tiny_checkpoint(tmp_path / "t2.safetensors")
    from dermseg.inference.export import onnx_metadata

    props = onnx_metadata(read_meta(ckpt))
    del props["labels"]
    meta = read_onnx_meta(props, tmp_path / "old.onnx")
    assert meta["labels"] == ISIC2018_TASK2.to_meta()
