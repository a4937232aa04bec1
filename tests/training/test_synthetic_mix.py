"""A run with synthetic draws in every training batch (``data.synthetic_mix``) on a "real" folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dermseg.config import load_config
from dermseg.training.distributed import DistInfo
from dermseg.training.loop import train
from dermseg.training.setup import build_run
from tests.conftest import QUICK_TRAIN

CPU = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
MIX = [*QUICK_TRAIN, "data.synthetic_mix=0.5"]  # 2 of every 4 images


def _first_batch(overrides: list[str], data: Path, run_dir: Path) -> dict:
    run = build_run(load_config(None, overrides), data, run_dir, CPU)
    run.sampler.set_epoch(0)
    return next(iter(run.train_loader))


def test_a_mixed_run_finishes_with_a_finite_loss(synth_dataset: Path, tmp_path: Path) -> None:
    result = train(load_config(None, MIX), synth_dataset, tmp_path / "run")
    assert math.isfinite(result["train_loss"]) and result["train_loss"] > 0
    assert result["step"] == 6  # 12 real images, 2 per batch: an epoch is one pass over them
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(record["val_loss"])


def test_batches_hold_the_draws_and_validation_never_does(synth_dataset: Path, tmp_path: Path) -> None:
    run = build_run(load_config(None, MIX), synth_dataset, tmp_path / "run", CPU)
    run.sampler.set_epoch(0)
    batches = list(run.train_loader)
    assert len(batches) == run.steps_per_epoch == 6
    for b, batch in enumerate(batches):
        assert batch["id"][2:] == [f"synthetic_{2 * b}", f"synthetic_{2 * b + 1}"]
        assert all(i in run.split.train for i in batch["id"][:2])
        assert tuple(batch["image"].shape) == (4, 3, 96, 96) and batch["labelled"].all()
    val_ids = [item["id"][0] for item in run.val_loader]
    assert sorted(val_ids) == sorted(run.split.val) and len(val_ids) == 4
    assert [s.isic_id for s in run.val_samples] == run.split.val  # what thresholds are tuned on


def test_the_same_seed_gives_byte_identical_draws_whatever_the_workers(
    synth_dataset: Path, tmp_path: Path
) -> None:
    a = _first_batch(MIX, synth_dataset, tmp_path / "a")
    b = _first_batch([*MIX, "data.workers=1"], synth_dataset, tmp_path / "b")
    assert a["id"] == b["id"] and a["image"].numpy().tobytes() == b["image"].numpy().tobytes()
    other = _first_batch([*MIX, "seed=1"], synth_dataset, tmp_path / "c")
    assert other["image"][2:].numpy().tobytes() != a["image"][2:].numpy().tobytes()


@pytest.mark.parametrize("extra", [["augment.lesion_crop=0.5"], ["data.synthetic_rare_only=true"]])
def test_draws_follow_the_real_items_options(synth_dataset: Path, tmp_path: Path, extra: list[str]) -> None:
    batch = _first_batch([*MIX, "data.synthetic_size=64", *extra], synth_dataset, tmp_path / "run")
    assert tuple(batch["masks"].shape) == (4, 5, 96, 96)  # resized like the real images; no lesion channel
    if "data.synthetic_rare_only=true" in extra:
        rare = batch["masks"][2:, [2, 4]].flatten(1).any(dim=1)  # negative_network, streaks
        assert rare.all()


def test_draws_join_a_run_with_weak_labels(synth_dataset: Path, tmp_path: Path) -> None:
    labels = tmp_path / "weak.csv"
    images = synth_dataset / "ISIC2018_Task1-2_Validation_Input"
    # two validation files reused as weak images: only the batches are looked at
    labels.write_text("image,attribute,present\nISIC_0000012,streaks,1\nISIC_0000013,streaks,0\n")
    overrides = [*MIX, f"data.weak_labels={labels}", f"data.weak_images={images}", "model.presence_head=true"]
    run = build_run(load_config(None, overrides), synth_dataset, tmp_path / "run", CPU)
    run.sampler.set_epoch(0)
    batches = list(run.train_loader)
    assert len(batches) == 7  # (12 masked + 2 weak) / 2 real per batch
    assert all(not batch["weak"][2:].any() for batch in batches)  # draws have masks, not weak labels
    assert sum(int(batch["weak"].any(dim=1).sum()) for batch in batches) == 2
