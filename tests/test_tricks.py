"""The 2018 winners' tricks as config options: each trains and changes what it should."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dermseg.attributes import ATTRIBUTES
from dermseg.cli import main
from dermseg.config import load_config
from dermseg.data.layout import discover
from dermseg.data.splits import split_layout, stratified_folds
from dermseg.data.transforms import TransformConfig, apply, build_train_transform
from dermseg.errors import ConfigError
from dermseg.inference.ensemble import ensemble_segmenter
from dermseg.inference.segmenter import Segmenter
from dermseg.losses.presence import presence_loss, presence_targets
from dermseg.models.checkpoint import load_checkpoint, read_meta
from dermseg.training.loop import train
from tests.conftest import TINY_TRAIN

QUICK = [*TINY_TRAIN, "train.tune_thresholds=false"]


@pytest.fixture(scope="module")
def lesion_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 training + 4 validation synthetic images with Task 1 lesion masks."""
    from dermseg.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("lesions")
    write_dataset(root, 12, size=128, seed=2, split="training", lesion_masks=True)
    write_dataset(root, 4, size=128, seed=2, split="validation", start_id=12, lesion_masks=True)
    return root


# --- auxiliary presence head ---------------------------------------------------------------


def test_presence_targets_and_loss_by_hand() -> None:
    masks = torch.zeros(2, 5, 2, 2)
    masks[0, 1, 0, 0] = 1
    assert presence_targets(masks).tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]
    logits = torch.zeros(2, 5)  # sigmoid 0.5: BCE ln 2 whatever the target
    assert presence_loss(logits, masks).item() == pytest.approx(np.log(2))
    labelled = torch.zeros(2, 5, dtype=torch.bool)
    assert presence_loss(logits, masks, labelled).item() == 0.0  # nothing labelled, nothing learnt
    confident = torch.full((2, 5), -20.0)
    confident[0, 1] = 20.0
    assert presence_loss(confident, masks).item() < 1e-6


def test_presence_head_trains_and_gates_the_masks(synth_dataset: Path, tmp_path: Path) -> None:
    cfg = load_config(None, [*QUICK, "model.presence_head=true", "loss.presence_weight=1.0"])
    train(cfg, synth_dataset, tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "best.safetensors"
    assert read_meta(path)["model_kwargs"]["presence_head"] is True
    assert any(k.startswith("presence_head.") for k in load_checkpoint(path).state_dict)

    # the presence head set by hand to logits ln(1/3), 0, 30, -30, ln 3 whatever the image: the
    # masks are the ungated probabilities times 1/4, 1/2, 1, 0 and 3/4
    segmenter = Segmenter.from_checkpoint(path)
    head = segmenter.model.presence_head
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([math.log(1 / 3), 0.0, 30.0, -30.0, math.log(3)]))
    x = torch.randn(1, 3, 96, 96)
    gated = segmenter.network_probabilities(x)
    segmenter.model.presence_head = None  # the same network without its head: plain sigmoids
    plain = segmenter.network_probabilities(x)
    assert 0.05 < plain.mean() < 0.95  # so that the factors below are visible
    gate = torch.tensor([0.25, 0.5, 1.0, 0.0, 0.75]).view(1, 5, 1, 1)
    torch.testing.assert_close(gated, plain * gate, atol=1e-6, rtol=1e-5)


def test_presence_head_is_refused_on_smp_models() -> None:
    with pytest.raises(ConfigError, match="unet_aspp only, not smp_unet"):
        load_config(None, [*QUICK, "model.arch=smp_unet", "model.presence_head=true"])


# --- attribute-balanced sampling -----------------------------------------------------------


def test_balanced_sampling_draws_rare_attribute_images_more_often(
    synth_dataset: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, [*QUICK, "data.balance=1.0"])
    train(cfg, synth_dataset, tmp_path / "run")
    presence = np.array(json.loads((tmp_path / "run" / "sampling_presence.json").read_text())["presence"])
    from dermseg.data.sampling import ResumableSampler, attribute_balance_weights

    rarest = int(np.argmin(np.where(presence.sum(0) > 0, presence.sum(0), 10**9)))
    holders = presence[:, rarest].astype(bool)

    def share(weights: np.ndarray | None) -> float:
        s = ResumableSampler(len(presence), seed=0, batch_size=4, weights=weights)
        drawn = []
        for epoch in range(200):
            s.set_epoch(epoch)
            drawn += [i for i, _ in s]
        return float(holders[drawn].mean())

    assert share(attribute_balance_weights(presence, 1.0)) > share(None) + 0.05


# --- lesion-centred crops ------------------------------------------------------------------


def test_lesion_centred_crop_lands_on_the_lesion() -> None:
    image = np.zeros((256, 512, 3), np.uint8)
    masks = np.zeros((6, 256, 512), np.uint8)
    masks[5, 200:210, 480:490] = 1  # a small lesion in a corner, the last channel

    def hits(p: float) -> int:
        t = build_train_transform(TransformConfig(size=256, crop_size=64, lesion_crop=p), seed=0)
        count = 0
        for seed in range(40):
            t.reseed(seed)
            _, out = apply(t, image, masks)
            count += int(out[5].any())
        return count

    assert hits(1.0) == 40 and hits(0.0) < 10


def test_training_with_lesion_crops_reads_the_lesion_masks(lesion_dataset: Path, tmp_path: Path) -> None:
    assert all(s.lesion_mask_path is not None for s in discover(lesion_dataset).samples)
    result = train(
        load_config(None, [*QUICK, "augment.lesion_crop=1.0", "data.crop_size=64"]),
        lesion_dataset,
        tmp_path / "r",
    )
    assert result["step"] == 3 and np.isfinite(result["train_loss"])
    # from a prepared cache, which holds the lesion masks too
    cache = tmp_path / "cache"
    assert main(["prepare", str(lesion_dataset), "--size", "96", "--out", str(cache)]) == 0
    cfg = load_config(None, [*QUICK, "augment.lesion_crop=1.0", "data.crop_size=64", f"data.cache={cache}"])
    assert train(cfg, lesion_dataset, tmp_path / "r2")["step"] == 3


# --- k folds, hold-out validation and ensembles --------------------------------------------


def test_stratified_folds_partition_the_ids() -> None:
    rng = np.random.default_rng(0)
    ids = [f"ISIC_{i:07d}" for i in range(50)]
    presence = rng.random((50, 5)) < [0.2, 0.3, 0.1, 0.6, 0.1]
    folds = stratified_folds(ids, presence, 5, seed=1)
    assert sorted(i for f in folds for i in f) == ids and all(len(f) == 10 for f in folds)
    assert folds == stratified_folds(list(reversed(ids)), presence[::-1], 5, seed=1)


def test_fold_and_holdout_splits_of_a_dataset(synth_dataset: Path) -> None:
    official = split_layout(synth_dataset)
    assert official.source == "official" and len(official.val) == 4
    holdout = split_layout(synth_dataset, val_fraction=0.25, holdout=True)
    assert (
        holdout.source == "stratified" and set(holdout.val) <= set(official.train) and len(holdout.val) == 3
    )
    folds = [split_layout(synth_dataset, folds=3, fold=k) for k in range(3)]
    assert sorted(i for f in folds for i in f.val) == sorted(official.train)
    assert all(set(f.val).isdisjoint(f.train) for f in folds)


def test_ensemble_averages_the_members(
    synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paths = []
    for fold in range(2):
        cfg = load_config(None, [*QUICK, "data.folds=2", f"data.fold={fold}", f"seed={fold}"])
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


def test_a_broken_lesion_mask_stops_lesion_crop_training_before_it_starts(
    lesion_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(lesion_dataset, data)
    broken = sorted((data / "ISIC2018_Task1_Training_GroundTruth").glob("*.png"))[0]
    from PIL import Image

    Image.new("L", (7, 7)).save(broken)  # a readable mask of the wrong size
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--set", "augment.lesion_crop=1.0"]
    for item in [*QUICK, "data.crop_size=64"]:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and broken.name in err[0] and "7x7" in err[0]
    assert not (tmp_path / "run").exists()  # nothing written
    # without lesion crops the lesion masks are not read, so they do not stop training
    args[args.index("augment.lesion_crop=1.0")] = "augment.lesion_crop=0.0"
    assert main(args) == 0


# --- flip TTA ------------------------------------------------------------------------------


class _LeftToRight(torch.nn.Module):
    """Logits that rise from left to right whatever the image: not flip-invariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-4.0, 4.0, x.shape[-1])
        return ramp.expand(x.shape[0], 5, x.shape[-2], x.shape[-1]).clone()


def test_flip_tta_averages_the_flipped_predictions() -> None:
    meta = {
        "encoding": "multilabel",
        "input_size": 64,
        "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "thresholds": [0.5] * 5,
        "crop_background": False,
    }
    image = np.full((64, 96, 3), 120, np.uint8)
    plain = Segmenter.from_model(_LeftToRight(), meta).probabilities(image)
    tta = Segmenter.from_model(_LeftToRight(), meta, tta=True).probabilities(image)
    # plain: (p + p + p) / 3 without flips; TTA: (p + hflip(p) + vflip(p)) / 3, by hand
    np.testing.assert_allclose(tta, (2 * plain + plain[:, :, ::-1]) / 3, atol=1e-5)
    assert plain[0, 0, -1] - plain[0, 0, 0] > 0.9  # the ramp...
    assert abs(tta[0, 0, -1] - tta[0, 0, 0]) < plain[0, 0, -1] - plain[0, 0, 0]  # ...flattened by TTA


def test_the_isic2018_recipe_uses_the_tricks() -> None:
    # what the shipped recipe promises in its comments: >= 512 px crops and each trick switched on
    from dermseg.config import resolve_config_path

    cfg = load_config(resolve_config_path("isic2018"))
    assert cfg.data.crop_size >= 512 and cfg.data.size >= cfg.data.crop_size
    assert cfg.model.presence_head and cfg.loss.presence_weight > 0
    assert cfg.data.balance > 0 and cfg.augment.lesion_crop > 0 and cfg.predict.tta
    assert cfg.data.validation == "holdout" and cfg.data.folds == 1  # one model is the headline
