from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dermseg.cli import main
from dermseg.config import load_config, resolve_config_path
from dermseg.data.imageio import read_image
from dermseg.inference.postprocess import PostprocessSettings
from dermseg.inference.segmenter import Segmenter, write_submission_masks
from dermseg.models.checkpoint import load_train_state, read_meta
from dermseg.training.loop import train
from dermseg.training.setup import lr_lambda
from tests.conftest import TINY_TRAIN


def _official_overall(checkpoint: Path, thresholds: list[float], data: Path, out: Path) -> float:
    """The official scorer's overall Jaccard of ``checkpoint``'s masks at ``thresholds`` on the
    validation images of ``data``."""
    task2 = pytest.importorskip("isic_challenge_scoring.task2")
    segmenter = Segmenter.from_checkpoint(checkpoint)
    segmenter.postprocess = PostprocessSettings(thresholds=thresholds)
    for image in sorted((data / "ISIC2018_Task1-2_Validation_Input").glob("*.jpg")):
        write_submission_masks(out, image.stem, segmenter.masks(read_image(image)))
    return float(task2.score(data / "ISIC2018_Task2_Validation_GroundTruth", out)["overall"])


def test_one_epoch_writes_a_complete_run_and_resumes(synth_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = load_config(None, TINY_TRAIN)
    result = train(cfg, synth_dataset, run)
    assert result["epoch"] == 0 and 0.0 <= result["jaccard"] <= 1.0
    for name in ("config.yaml", "split.json", "metrics.jsonl", "curves.png"):
        assert (run / name).is_file(), name
    split = json.loads((run / "split.json").read_text())
    assert split["source"] == "official" and len(split["train"]) == 12 and len(split["val"]) == 4
    meta = read_meta(run / "checkpoints" / "best.safetensors")
    assert meta["encoding"] == "multilabel" and meta["input_size"] == 96
    # thresholds were tuned on the validation images at the end and stored in the best checkpoint;
    # the two scores the tuning reports are what the official scorer gives the best model's masks
    # on those 4 images at 0.5 and at the stored thresholds
    assert meta["tuning"]["subset"] == "val" and meta["tuning"]["images"] == 4
    assert meta["postprocess"]["thresholds"] == meta["thresholds"]
    best = run / "checkpoints" / "best.safetensors"
    for key, thresholds in (("overall_at_default", [0.5] * 5), ("overall_tuned", meta["thresholds"])):
        official = _official_overall(best, thresholds, synth_dataset, tmp_path / key)
        assert meta["tuning"][key] == pytest.approx(official, abs=1e-9), key
    assert meta["config"]["model"]["encoder_name"] == "resnet18"
    state = load_train_state(run / "checkpoints" / "last_state.pt")
    assert state["position"]["epoch"] == 0 and state["position"]["step"] == 3  # 12 images / batch 4
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["versions"]["torch"] and prov["data"]["files"] == 16 * 6
    assert len(prov["data"]["manifest_sha256"]) == 64

    # --resume continues at the next epoch with the stored optimiser and schedule
    assert main(["train", "--resume", str(run), "--data", str(synth_dataset), "--set", "train.epochs=2"]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert lines[1]["step"] == 6
    assert load_train_state(run / "checkpoints" / "last_state.pt")["position"]["epoch"] == 1


def test_multiclass_weighted_ce_trains(synth_dataset: Path, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            *TINY_TRAIN,
            "model.encoding=multiclass",
            "loss.terms={ce: 1.0, focal: 0.5}",
            "loss.class_weights=inverse_frequency",
        ],
    )
    result = train(cfg, synth_dataset, tmp_path / "run")
    weights = json.loads((tmp_path / "run" / "class_weights.json").read_text())["weights"]
    assert len(weights) == 6 and abs(sum(weights) - 1) < 1e-5
    assert weights[0] == min(weights)  # background is the most frequent class
    assert result["train_loss"] > 0


def test_schedule_warms_up_then_decays() -> None:
    f = lr_lambda(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_ddp_two_cpu_processes(synth_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dermseg",
        "train",
        "--data",
        str(synth_dataset),
        "--out",
        str(run),
        "--device",
        "cpu",
    ]
    for item in TINY_TRAIN:
        args += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # rank 0 alone writes; 12 images over 2 ranks of batch 4 -> 1 step each (drop_last), not 3
    assert len(lines) == 1 and lines[0]["step"] == 1
    assert (run / "checkpoints" / "best.safetensors").is_file()


def test_loader_worker_processes_train_on_the_same_batches(synth_dataset: Path, tmp_path: Path) -> None:
    # workers are forked processes: anything that deadlocks in a fresh worker hangs training, and
    # each item's augmentation is seeded by its key, so a worker draws what the main process would
    results = [
        train(
            load_config(None, [*TINY_TRAIN, f"data.workers={n}", "data.limit=4"]),
            synth_dataset,
            tmp_path / f"{n}",
        )
        for n in (1, 0)
    ]
    assert [r["step"] for r in results] == [1, 1]
    assert results[0]["train_loss"] == pytest.approx(results[1]["train_loss"], rel=1e-6)
    assert results[0]["val_loss"] == pytest.approx(results[1]["val_loss"], rel=1e-6)


@pytest.mark.parametrize("name", ["seed", "isic2018", "demo"])
def test_each_shipped_config_trains(name: str, synth_dataset: Path, tmp_path: Path) -> None:
    # the shipped recipe as it is, only made small (and without a download for ImageNet weights)
    small = [
        "data.size=128",
        "data.crop_size=96",
        "data.workers=0",
        "data.limit=4",
        "train.epochs=1",
        "train.batch_size=2",
        "train.max_steps_per_epoch=2",
    ]
    if name != "demo":  # the demo's lite0 ImageNet weights come from a package, not the network
        small.append("model.encoder_weights=none")
    cfg = load_config(resolve_config_path(name), small)
    result = train(cfg, synth_dataset, tmp_path / name)
    assert result["step"] == 2 and 0.0 <= result["jaccard"] <= 1.0
    meta = read_meta(tmp_path / name / "checkpoints" / "last.safetensors")
    assert meta["model_kwargs"]["encoder_name"] == cfg.model.encoder_name
    assert meta["encoding"] == cfg.model.encoding
