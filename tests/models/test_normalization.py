"""Input normalisation: each encoder gets the mean/std its pretrained weights were trained with,
training and the checkpoint agree on it, and old checkpoints keep what they recorded.

Expected values are the published ones, written out by hand: ImageNet's statistics
(0.485, 0.456, 0.406) / (0.229, 0.224, 0.225); inputs in [-1, 1] (mean = std = 0.5) for the
torchvision Inception v3 port; the TensorFlow EfficientNet-Lite reference preprocessing
``(x - 127) / 128``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermseg.config import load_config
from dermseg.data.dataset import IsicDataset
from dermseg.data.layout import discover
from dermseg.inference.segmenter import Segmenter
from dermseg.models.checkpoint import save_checkpoint
from dermseg.training.loop import train
from dermseg.training.setup import build_model, checkpoint_meta, input_normalization
from tests.conftest import TINY_TRAIN

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def _meta_normalization(encoder: str) -> dict[str, list[float]]:
    return checkpoint_meta(load_config(None, [*TINY_TRAIN, f"model.encoder_name={encoder}"]))["normalization"]


def test_inception_v3_checkpoints_record_inputs_in_minus_one_to_one() -> None:
    assert _meta_normalization("inception_v3") == HALF


def test_lite0_checkpoints_record_the_tensorflow_lite_preprocessing() -> None:
    norm = _meta_normalization("tf_efficientnet_lite0")
    # TF reference: (x - 127) / 128 on 0-255 pixels, i.e. mean 127/255 and std 128/255 on 0-1
    np.testing.assert_allclose(norm["mean"], [127 / 255] * 3, atol=0.003)
    np.testing.assert_allclose(norm["std"], [128 / 255] * 3, atol=0.003)


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34", "efficientnet_b0", "inception_v3.gluon_in1k"])
def test_imagenet_trained_encoders_keep_imagenet_statistics(encoder: str) -> None:
    norm = _meta_normalization(encoder)
    np.testing.assert_allclose(norm["mean"], IMAGENET["mean"])
    np.testing.assert_allclose(norm["std"], IMAGENET["std"])


def test_a_resumed_run_keeps_the_normalisation_it_started_with() -> None:
    cfg = load_config(None, [*TINY_TRAIN, "model.encoder_name=inception_v3"])
    assert input_normalization(cfg) == HALF
    # a state written before dermseg recorded the normalisation: those runs used ImageNet's
    assert input_normalization(cfg, {"position": {}}) == IMAGENET
    recorded = {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    assert input_normalization(cfg, {"position": {}, "normalization": recorded}) == recorded


def test_an_old_checkpoint_predicts_with_what_it_recorded(tmp_path: Path) -> None:
    # an inception_v3 checkpoint of an older dermseg, trained (and recorded) with ImageNet statistics
    cfg = load_config(None, [*TINY_TRAIN, "model.encoder_name=inception_v3"])
    model = build_model(cfg)
    path = tmp_path / "old.safetensors"
    save_checkpoint(path, model, {**checkpoint_meta(cfg), "normalization": IMAGENET})
    seg = Segmenter.from_checkpoint(path)
    assert list(seg.mean) == IMAGENET["mean"] and list(seg.std) == IMAGENET["std"]


def test_dataset_items_are_normalised_with_the_given_statistics(flat_dataset: Path) -> None:
    samples = discover(flat_dataset).samples
    ds = IsicDataset(samples, None, crop_background=False, **HALF)
    item = ds[0]
    with Image.open(samples[0].image_path) as img:
        image = np.asarray(img.convert("RGB"))
    # by hand: (x / 255 - 0.5) / 0.5
    expected = (image.astype(np.float64) / 255 - 0.5) / 0.5
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_training_feeds_the_network_what_the_checkpoint_records(
    synth_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Lite0 run: every training and validation image is normalised with mean = std = 0.5,
    and the checkpoint says so, so prediction gives the network the same inputs."""
    import dermseg.data.dataset as dataset_module
    from dermseg.models.checkpoint import read_meta

    used: set[tuple[tuple[float, ...], tuple[float, ...]]] = set()
    to_tensor = dataset_module.to_tensor

    def spy(image, masks=None, mean=None, std=None):  # type: ignore[no-untyped-def]
        used.add((tuple(mean), tuple(std)))
        return to_tensor(image, masks, mean, std)

    monkeypatch.setattr(dataset_module, "to_tensor", spy)
    overrides = [
        *TINY_TRAIN,
        "model.encoder_name=tf_efficientnet_lite0",
        "data.limit=4",
        "train.tune_thresholds=false",
    ]
    torch.manual_seed(0)
    train(load_config(None, overrides), synth_dataset, tmp_path / "run")
    assert used == {((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
    assert read_meta(tmp_path / "run" / "checkpoints" / "best.safetensors")["normalization"] == HALF
    state = torch.load(tmp_path / "run" / "checkpoints" / "last_state.pt", weights_only=True)
    assert state["normalization"] == HALF
