"""Training follows the config's label set: the lesion recipe on a PH2 folder, Task 1 validation
scored as the official scorer scores, and a folder of another set refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from dermseg.cli import main
from dermseg.config import load_config
from dermseg.data.dataset import IsicDataset
from dermseg.data.layout import discover
from dermseg.data.transforms import TransformConfig, build_eval_transform
from dermseg.labels import ISIC2018_TASK1, PH2
from dermseg.losses import build_loss
from dermseg.models.checkpoint import load_checkpoint, read_meta
from dermseg.training.data import training_layout
from dermseg.training.setup import model_kwargs
from dermseg.training.validation import validate
from tests.conftest import QUICK_TRAIN, TINY_TRAIN, write_sample
from tests.ph2_synth import write_ph2_flat


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def test_the_lesion_recipe_trains_on_a_ph2_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_ph2_flat(tmp_path / "ph2", n=12)
    run = tmp_path / "run"
    args = ["train", "--config", "lesion", "--data", str(data), "--out", str(run), *_sets(TINY_TRAIN)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mean Jaccard" in out
    best = run / "checkpoints" / "best.safetensors"
    meta = read_meta(best)
    # the checkpoint carries its label set: PH2's one lesion label, scored with the Task 1 metric
    assert meta["labels"]["name"] == "ph2" and meta["labels"]["metric"] == "isic2018_task1"
    assert [lab["name"] for lab in meta["labels"]["labels"]] == ["lesion"]
    assert meta["labels"]["mask_pattern"] == "{id}_lesion.png"
    assert meta["model_kwargs"]["classes"] == 1 and meta["encoding"] == "multilabel"
    model = load_checkpoint(best).build_model()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)  # one output channel
    # one threshold, tuned on the hold-out for the mean per-image Jaccard
    assert len(meta["postprocess"]["thresholds"]) == 1 and len(meta["thresholds"]) == 1
    assert meta["tuning"]["objective"].startswith("mean per-image Jaccard")
    assert meta["tuning"]["subset"] == "val" and meta["tuning"]["images"] == 2  # 15 % of 12, stratified
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1
    for key in ("jaccard", "threshold_jaccard", "dice"):
        assert 0.0 <= records[0][key] <= 1.0
    assert records[0]["threshold_jaccard"] <= records[0]["jaccard"]  # 0 below 0.65, else equal
    assert meta["jaccard"] == records[0]["jaccard"]  # the selection key
    split = json.loads((run / "split.json").read_text())
    assert split["source"] == "stratified on diagnosis" and len(split["val"]) == 2
    cfg = load_config(run / "config.yaml")
    assert cfg.data.labels == "ph2" and cfg.augment.rotate == 30 and cfg.augment.scale == 0.2


class DarkIsLesion(nn.Module):
    """Logits from the image alone: darker pixels are more likely lesion (a fixed, imperfect rule)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -4.0 * x.mean(dim=1, keepdim=True) - 0.3


def _official(pairs: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """``SegmentationScore(...).to_dict()`` of (image id, 8-bit truth, 8-bit prediction) arrays."""
    segmentation = pytest.importorskip("isic_challenge_scoring.segmentation")
    load_image = pytest.importorskip("isic_challenge_scoring.load_image")
    image_pairs = []
    for image_id, truth, pred in pairs:
        pair = load_image.ImagePair(truth_file=Path(f"{image_id}.png"))
        pair.image_id, pair.truth_image, pair.prediction_image = image_id, truth, pred
        image_pairs.append(pair)
    return segmentation.SegmentationScore(image_pairs).to_dict()


def test_task1_validation_scores_are_the_official_scorers(tmp_path: Path) -> None:
    data = write_ph2_flat(tmp_path / "ph2", n=9, seed=3)
    samples = discover(data, PH2).samples
    dataset = IsicDataset(
        samples,
        build_eval_transform(TransformConfig(size=48, crop_size=48)),
        labels=PH2,
        crop_background=False,
    )
    model = DarkIsLesion()
    loss = build_loss({"bce": 1.0, "soft_jaccard": 1.0}, "multilabel", num_labels=1)
    loader = DataLoader(dataset, batch_size=1)
    ours = validate(model, loader, loss, "multilabel", [0.5], torch.device("cpu"), labels=PH2)["scores"]
    pairs = []
    for item in dataset:
        with torch.no_grad():
            prob = torch.sigmoid(model(item["image"][None]))[0, 0].numpy()
        pred = np.where(prob > 0.5, 255, 0).astype(np.uint8)
        pairs.append((item["id"], item["masks"][0].numpy().astype(np.uint8) * 255, pred))
    official = _official(pairs)
    assert 0.0 < official["macro_average"]["jaccard"] < 1.0  # imperfect masks: a real comparison
    assert list(ours) == list(official)
    assert ours["overall"] == pytest.approx(official["overall"], abs=1e-12)
    for key, value in official["macro_average"].items():
        assert ours["macro_average"][key] == pytest.approx(value, abs=1e-12), key


def test_a_task2_config_on_a_ph2_folder_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    data = write_ph2_flat(tmp_path / "ph2", n=6)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *_sets(QUICK_TRAIN)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(data) in err[0]
    assert "holds ph2 data" in err[0] and "data.labels" in err[0]
    assert not run.exists()  # refused before the run folder is written


def test_a_lesion_config_on_a_task2_folder_is_one_line_exit_2(
    flat_dataset: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    args = [
        "train",
        "--config",
        "lesion",
        "--data",
        str(flat_dataset),
        "--out",
        str(run),
        *_sets(QUICK_TRAIN),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(flat_dataset) in err[0] and "holds isic2018_task2 data" in err[0]


def test_a_folder_holding_task1_and_task2_is_read_as_the_config_says(official_dataset: Path) -> None:
    # the official layout with the Task 1 lesion masks beside Task 2's: a lesion config reads them
    for split, ids in (("Training", range(4)), ("Validation", range(10, 12))):
        folder = official_dataset / f"ISIC2018_Task1_{split}_GroundTruth"
        folder.mkdir()
        for k in ids:
            Image.fromarray(np.full((30, 40), 255, np.uint8)).save(folder / f"ISIC_{k:07d}_segmentation.png")
    layout = training_layout(official_dataset, ISIC2018_TASK1)
    assert layout.labels.name == "isic2018_task1"
    assert sorted(s.isic_id for s in layout.samples if s.has_masks) == [
        "ISIC_0000000",
        "ISIC_0000001",
        "ISIC_0000002",
        "ISIC_0000003",
        "ISIC_0000010",
        "ISIC_0000011",
    ]


def test_output_channels_follow_the_label_set(tmp_path: Path) -> None:
    assert model_kwargs(load_config(None, ["data.labels=ph2"]))["classes"] == 1
    assert model_kwargs(load_config(None))["classes"] == 5
    softmax = ["model.encoding=multiclass", "loss.terms={ce: 1.0}"]  # bce is for multilabel only
    assert model_kwargs(load_config(None, softmax))["classes"] == 6
    two = tmp_path / "two.yaml"
    two.write_text("name: two\nlabels: [veil, regression]\nmask_pattern: '{id}_{label}.png'\n")
    assert model_kwargs(load_config(None, [f"data.labels={two}"]))["classes"] == 2
    assert model_kwargs(load_config(None, [f"data.labels={two}", *softmax]))["classes"] == 3


def test_a_user_set_of_two_labels_trains_one_step(tmp_path: Path) -> None:
    # a user's set scored with the Task 2 metric: two channels, validated with the pooled Jaccard
    from dermseg.training.loop import train

    two = tmp_path / "two.yaml"
    two.write_text("name: two\nlabels: [veil, regression]\nmask_pattern: '{id}_{label}.png'\n")
    data = tmp_path / "data"
    block = np.zeros((30, 40), np.uint8)
    block[5:20, 5:25] = 255
    for k in range(6):
        write_sample(data, f"case{k}", seed=k)  # the image (and Task 2 masks, removed below)
        for p in data.glob(f"case{k}_attribute_*.png"):
            p.unlink()
        Image.fromarray(block if k % 2 else np.zeros_like(block)).save(data / f"case{k}_veil.png")
        Image.fromarray(np.zeros_like(block)).save(data / f"case{k}_regression.png")
    cfg = load_config(None, [*QUICK_TRAIN, f"data.labels={two}", "data.val_fraction=0.34"])
    result = train(cfg, data, tmp_path / "run", device="cpu")
    assert set(result["jaccard_per_attribute"]) == {"veil", "regression"}
    assert read_meta(tmp_path / "run" / "checkpoints" / "last.safetensors")["model_kwargs"]["classes"] == 2


def test_dermseg_tune_a_lesion_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.conftest import write_tiny_checkpoint

    data = write_ph2_flat(tmp_path / "ph2", n=12)
    ckpt = write_tiny_checkpoint(tmp_path / "lesion.safetensors", ["data.labels=ph2"])
    assert main(["tune", "--checkpoint", str(ckpt), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "mean per-image Jaccard" in out and "Lesion" in out and "thresholded Jaccard" in out
    meta = read_meta(ckpt)
    assert len(meta["thresholds"]) == 1 and meta["tuning"]["subset"] == "val"
    assert meta["tuning"]["images"] == 1  # the checkpoint's own hold-out: 10 % of 12 images
