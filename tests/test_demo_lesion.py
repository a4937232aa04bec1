"""``dermseg demo --task lesion --data PH2_DIR``: the stratified split, prediction of the held-out
images at their size, the official Task 1 scores (hand-computed), overlays and the report; without
``--data`` a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dermseg.demo
from dermseg.cli import main
from dermseg.data.ph2 import read_ph2
from tests.conftest import TINY_TRAIN
from tests.data.label_set_data import PH2_CSV_HEADER, ph2_csv_row
from tests.label_set_models import write_lesion_checkpoint

#: id -> (clinical code, (width, height), lesion pixels): 4 common nevi, 4 atypical nevi, 2 melanomas.
CASES = {
    f"IMD{100 + k:03d}": (code, (100 + 3 * k, 96 + 2 * k), 5 * (k + 1) * 10)
    for k, code in enumerate([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
}


def write_ph2(root: Path) -> Path:
    """A flat PH2 folder of :data:`CASES`: each lesion a block of ``5 (k + 1)`` rows by 10 columns."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, (image_id, (_, (w, h), area)) in enumerate(CASES.items()):
        image = np.random.default_rng(k).integers(0, 256, (h, w, 3), np.uint8)
        Image.fromarray(image).save(root / "images" / f"{image_id}.jpg")
        mask = np.zeros((h, w), np.uint8)
        mask[: area // 10, :10] = 255
        Image.fromarray(mask).save(root / "masks" / f"{image_id}_lesion.png")
    rows = [ph2_csv_row(i, c[0]) for i, c in CASES.items()]
    (root / "labels.csv").write_text("\n".join([PH2_CSV_HEADER, *rows]) + "\n", encoding="utf-8")
    return root


def test_lesion_demo_needs_ph2(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--task", "lesion", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "PH2" in err and "--data" in err
    assert main(["demo", "--data", str(tmp_path), "--out", str(tmp_path / "d")]) == 2
    assert main(["demo", "--task", "lesions", "--out", str(tmp_path / "d")]) == 2


def test_lesion_demo_pipeline(tmp_path: Path, monkeypatch, capsys) -> None:
    """Everything around training, with a stand-in for it: a run whose model segments everything."""
    data = write_ph2(tmp_path / "ph2")
    trained: dict = {}

    def stand_in_train(cfg, data_dir, run_dir, **_: object) -> dict:
        trained["data"] = Path(data_dir)
        run = Path(run_dir)
        (run / "checkpoints").mkdir(parents=True)
        write_lesion_checkpoint(run / "checkpoints" / "best.safetensors", constant=10.0)
        (run / "config.yaml").write_text(f"data:\n  root: {data_dir}\n  labels: ph2\n")
        val = sorted(p.stem for p in (Path(data_dir) / "images").iterdir())[:2]
        (run / "split.json").write_text(json.dumps({"val": val, "source": "stratified on diagnosis"}))
        (run / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "train_loss": 1.0, "jaccard": 0.3}) + "\n")
        return {"epoch": 0, "step": 1}

    monkeypatch.setattr(dermseg.demo, "train", stand_in_train)
    out = tmp_path / "demo"
    args = ["demo", "--task", "lesion", "--data", str(data), "--out", str(out), "--minutes", "1"]
    assert main([*args, "--config", "lesion", *[a for s in TINY_TRAIN for a in ("--set", s)]]) == 0

    summary = json.loads((out / "summary.json").read_text())
    train_ids, test_ids = summary["split"]["train"], summary["split"]["test"]
    assert sorted(train_ids + test_ids) == sorted(CASES) and not set(train_ids) & set(test_ids)
    assert [CASES[i][0] for i in test_ids].count(2) == 1 and len(test_ids) == 3  # 30 %, every diagnosis
    assert trained["data"] == out / "data" / "train"
    assert sorted(s.id for s in read_ph2(out / "data" / "train")) == sorted(train_ids)
    # masks of the held-out images, at their size, named as PH2 names them
    for image_id in test_ids:
        w, h = CASES[image_id][1]
        mask = Image.open(out / "predictions" / f"{image_id}_lesion.png")
        assert mask.size == (w, h) and np.asarray(mask).min() == 255  # the stand-in segments everything
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [
        f"{i}_lesion.png" for i in sorted(test_ids)
    ]
    # the official Task 1 scores of a whole-image mask: Jaccard = lesion / image, by hand
    jaccard = [CASES[i][2] / (CASES[i][1][0] * CASES[i][1][1]) for i in test_ids]
    scores = summary["scores"]
    assert scores["macro_average"]["jaccard"] == pytest.approx(np.mean(jaccard), abs=1e-12)
    assert scores["macro_average"]["sensitivity"] == 1.0 and scores["macro_average"]["specificity"] == 0.0
    assert scores["overall"] == 0.0  # every Jaccard is below 0.65
    assert len(list((out / "overlays").glob("*_overlay.png"))) == 3
    assert (out / "run" / "report.html").is_file()
    printed = " ".join(capsys.readouterr().out.split())
    assert "Official ISIC 2018 Task 1 scores on 3 held-out PH2 images" in printed
    assert f"{scores['macro_average']['jaccard']:.4f}" in printed


def test_lesion_demo_trains(tmp_path: Path) -> None:
    """The real thing, tiny: the shipped lesion recipe on the synthetic PH2 folder for one epoch."""
    data = write_ph2(tmp_path / "ph2")
    out = tmp_path / "demo"
    tiny = [*TINY_TRAIN, "train.batch_size=2", "data.val_fraction=0.3"]
    args = ["demo", "--task", "lesion", "--data", str(data), "--out", str(out), "--minutes", "2"]
    assert main([*args, *[a for s in tiny for a in ("--set", s)]]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_images"] == 3 and 0.0 <= summary["scores"]["overall"] <= 1.0
    for image_id in summary["split"]["test"]:
        assert Image.open(out / "predictions" / f"{image_id}_lesion.png").size == CASES[image_id][1]
