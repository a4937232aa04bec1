"""`dermseg reproduce isic2018 --dry-run`: the whole chain on synthetic archives from 127.0.0.1."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.cli import main

STAGES = ("download", "cache", "train", "tune", "predict", "score", "report")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("repro") / "run"
    assert main(["reproduce", "isic2018", "--dry-run", "--out", str(out)]) == 0
    return out


def test_dry_run_writes_a_scored_submission_and_a_report(dry_run: Path) -> None:
    data = dry_run / "data"
    for split, folder in (("validation", "Validation"), ("test", "Test")):
        images = sorted((data / f"ISIC2018_Task1-2_{folder}_Input").glob("ISIC_*.jpg"))
        assert len(images) == 4
        sub = dry_run / "submission" / split
        for img in images:
            for a in ATTRIBUTES:
                mask = Image.open(sub / f"{img.stem}_attribute_{a}.png")
                assert mask.mode == "L" and mask.size == Image.open(img).size
                assert set(np.unique(np.asarray(mask))) <= {0, 255}
        with zipfile.ZipFile(dry_run / "submission" / f"{split}.zip") as zf:
            assert sorted(zf.namelist()) == sorted(p.name for p in sub.glob("*.png"))
        # the stored score is what the official scorer gives those masks against the ground truth
        task2 = pytest.importorskip("isic_challenge_scoring.task2")
        official = task2.score(data / f"ISIC2018_Task2_{folder}_GroundTruth", sub)
        stored = json.loads((dry_run / "scores" / f"{split}.json").read_text())
        assert stored["overall"] == pytest.approx(official["overall"], abs=1e-9)
        for key in (*ATTRIBUTES, "micro_average"):
            for sub_key in ("jaccard", "dice"):
                assert stored[key][sub_key] == pytest.approx(official[key][sub_key], abs=1e-9), key
    results = json.loads((dry_run / "results.json").read_text())
    assert [r["split"] for r in results["rows"]] == ["validation", "test"]
    assert "no GPU" in results["hardware"] or "x " in results["hardware"]
    assert "| validation (4 images) |" in (dry_run / "RESULTS.md").read_text()
    assert (dry_run / "train" / "report.html").stat().st_size > 10_000
    # selection and tuning used a hold-out of the training images, never the official sets
    split = json.loads((dry_run / "train" / "split.json").read_text())
    assert split["source"] == "stratified" and all(int(i[5:]) < 20 for i in split["val"])
    assert {p.stem for p in (dry_run / "stages").glob("*.json")} == set(STAGES)


def test_rerun_skips_every_finished_stage(dry_run: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    best = dry_run / "train" / "checkpoints" / "best.safetensors"
    before = best.stat().st_mtime_ns
    assert main(["reproduce", "isic2018", "--dry-run", "--out", str(dry_run)]) == 0
    out = capsys.readouterr().out
    assert best.stat().st_mtime_ns == before  # not trained again
    assert "running" not in out and out.count(" done ") >= 5


def test_a_lost_stage_output_is_redone_and_only_it(dry_run: Path, capsys: pytest.CaptureFixture) -> None:
    lost = sorted((dry_run / "submission" / "test").glob("*.png"))[:5]
    for p in lost:
        p.unlink()
    capsys.readouterr()
    assert main(["reproduce", "isic2018", "--dry-run", "--out", str(dry_run)]) == 0
    out = capsys.readouterr().out
    assert "test: 1 of 4 images to do" in out and "validation: 0 of 4" in out
    assert all(p.is_file() for p in lost)
    assert "train running" not in out


def test_plan_changes_nothing_and_a_other_config_is_refused(
    dry_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fresh = tmp_path / "fresh"
    assert main(["reproduce", "isic2018", "--plan", "--out", str(fresh)]) == 0
    out = capsys.readouterr().out
    assert "[to do]" in out and "GPU-hours" in out and "not measurements" in out and not fresh.exists()
    assert main(["reproduce", "isic2018", "--dry-run", "--plan", "--out", str(dry_run)]) == 0
    assert capsys.readouterr().out.count("[done]") == 7

    args = ["reproduce", "isic2018", "--dry-run", "--out", str(dry_run), "--set", "train.epochs=3"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another config" in err[0] and str(dry_run) in err[0]


def test_gpus_launch_torchrun_processes(tmp_path: Path) -> None:
    # --gpus N trains through torchrun; on CPU the processes use gloo, as on N GPUs they use NCCL
    out = tmp_path / "ddp"
    args = ["reproduce", "isic2018", "--dry-run", "--out", str(out), "--gpus", "2", "--device", "cpu"]
    assert main([*args, "--set", "train.epochs=1"]) == 0
    assert (out / "train_config.yaml").is_file()  # what the torchrun processes were given
    records = [json.loads(x) for x in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    # 16 training images over 2 processes of batch 4: 2 steps each, not 4 as in one process
    assert len(records) == 1 and records[0]["step"] == 2
    assert json.loads((out / "results.json").read_text())["rows"]


def test_folds_train_every_fold_and_predict_with_their_ensemble(tmp_path: Path) -> None:
    out = tmp_path / "folds"
    args = ["reproduce", "isic2018", "--dry-run", "--out", str(out)]
    assert main([*args, "--set", "data.folds=2", "--set", "train.epochs=1"]) == 0
    splits = [json.loads((out / f"train-fold{k}" / "split.json").read_text()) for k in range(2)]
    assert [s["source"] for s in splits] == ["fold 0 of 2", "fold 1 of 2"]
    assert set(splits[0]["val"]).isdisjoint(splits[1]["val"])
    assert all((out / f"train-fold{k}" / "report.html").is_file() for k in range(2))
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert rows and all("ensemble of 2 folds" in r["model"] for r in rows)
    assert len(list((out / "submission" / "test").glob("*.png"))) == 4 * len(ATTRIBUTES)
