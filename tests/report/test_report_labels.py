"""The report of a lesion run: the ISIC 2018 Task 1 score table (hand-computed values), no Task 2
leaderboard, the lesion colour; a data folder of another label set is refused."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from dermseg.cli import main
from dermseg.report.lesion import threshold_counts
from dermseg.report.lesion_html import LESION_SECTIONS
from tests.label_set_models import LESION_CASES, lesion_area, write_lesion_checkpoint, write_lesion_folder


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids += [v or "" for k, v in attrs if k == "id"]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _lesion_run(root: Path, data: Path, val: list[str]) -> Path:
    """A run folder as training writes one, by hand: its best checkpoint segments everything."""
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    write_lesion_checkpoint(run / "checkpoints" / "best.safetensors", constant=10.0)
    (run / "config.yaml").write_text(f"data:\n  root: {data}\n  labels: ph2\nmodel:\n  arch: unet_aspp\n")
    (run / "split.json").write_text(
        json.dumps({"train": [], "val": val, "source": "stratified on diagnosis"})
    )
    records = [{"epoch": 0, "train_loss": 0.9, "val_loss": 0.8, "jaccard": 0.4}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_lesion_report(tmp_path: Path) -> None:
    data = write_lesion_folder(tmp_path / "ph2")
    val = ["IMD008", "IMD003"]
    run = _lesion_run(tmp_path, data, val)
    assert main(["report", str(run)]) == 0
    content = json.loads((run / "report.json").read_text())
    assert content["labels"]["name"] == "ph2" and content["references"] == {}
    scores = content["evaluation"]["scores"]
    # a mask of the whole image: Jaccard = lesion / image, Dice = 2 lesion / (lesion + image)
    jaccard = {i: lesion_area(i)[0] / lesion_area(i)[1] for i in val}
    dice = {i: 2 * lesion_area(i)[0] / (lesion_area(i)[0] + lesion_area(i)[1]) for i in val}
    assert scores["macro_average"]["jaccard"] == pytest.approx(np.mean(list(jaccard.values())), abs=1e-12)
    assert scores["macro_average"]["dice"] == pytest.approx(np.mean(list(dice.values())), abs=1e-12)
    assert scores["overall"] == pytest.approx(jaccard["IMD008"] / 2, abs=1e-12)  # IMD003's is below 0.65
    assert [e["id"] for e in content["evaluation"]["per_image"]] == ["IMD008", "IMD003"]  # best first
    curve = content["evaluation"]["thresholds"]
    at_half = curve["grid"].index(0.5)
    assert curve["jaccard"][at_half] == pytest.approx(scores["macro_average"]["jaccard"], abs=1e-12)
    page = _Page()
    page.feed((run / "report.html").read_text(encoding="utf-8"))
    for key, _ in LESION_SECTIONS:
        assert key in page.ids
    text = " ".join(" ".join(page.text).split())
    assert "Thresholded Jaccard (official)" in text and "lesion segmentation run report" in text
    assert "winner" not in text and "Per attribute" not in text
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "background:rgb(255,64,64)" in html  # the lesion chip
    assert main(["report", str(run), "--rebuild"]) == 0
    (run / "report.html").unlink()
    ckpt = run / "checkpoints" / "best.safetensors"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--subset", "all"]) == 0
    assert (run / "report.html").is_file()  # evaluate refreshes the run's report, as for Task 2


def test_report_refuses_data_of_another_set(tmp_path: Path, flat_dataset: Path, capsys) -> None:
    data = write_lesion_folder(tmp_path / "ph2")
    run = _lesion_run(tmp_path, data, ["IMD003"])
    assert main(["report", str(run), "--data", str(flat_dataset)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "segments label set ph2" in err and "isic2018_task2" in err
    assert not (run / "report.html").exists()


def test_threshold_counts_by_hand() -> None:
    probs = np.array([[0.1, 0.5, 0.7], [0.9, 0.5, 0.2]], np.float32)
    truth = np.array([[False, True, True], [True, False, False]])
    got = threshold_counts(probs, truth, np.array([0.0, 0.5, 0.8, 1.0]))
    # > 0.0: all 6 positive (tp 3, fp 3); > 0.5: 0.7, 0.9 (tp 2); > 0.8: 0.9 (tp 1); > 1.0: none
    expected = [[3, 3, 0, 0], [2, 0, 1, 3], [1, 0, 2, 3], [0, 0, 3, 3]]
    assert got.tolist() == expected


def test_lesion_cases_are_what_the_report_reads(tmp_path: Path) -> None:
    """The hand numbers above describe the folder written (a guard on the test data itself)."""
    data = write_lesion_folder(tmp_path / "ph2")
    from PIL import Image

    for image_id in LESION_CASES:
        mask = np.asarray(Image.open(data / "masks" / f"{image_id}_lesion.png")) > 128
        assert (int(mask.sum()), mask.size) == lesion_area(image_id)
    shutil.rmtree(data)
