"""End to end: a tiny trained run, its report through the CLI, and the report's contract."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.attributes import ATTRIBUTES
from dermseg.cli import main
from dermseg.config import load_config
from dermseg.data.imageio import read_image
from dermseg.evaluation.model import evaluate_checkpoint, select_samples
from dermseg.inference.segmenter import Segmenter, write_submission_masks
from dermseg.models.checkpoint import read_meta
from dermseg.report.figures import all_figures
from dermseg.report.html import SECTIONS, render_html
from dermseg.training.loop import train
from tests.conftest import TINY_TRAIN

SECTION_IDS = ("summary", "config", "curves", "attributes", "roc", "pr", "thresholds", "gallery")


class _Page(HTMLParser):
    """Tags with their attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def run(synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny epoch on the synthetic data, recording its data folder as data.root."""
    run_dir = tmp_path_factory.mktemp("report") / "tiny-run"
    train(load_config(None, [*TINY_TRAIN, f"data.root={synth_dataset}"]), synth_dataset, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def reported(run: Path) -> Path:
    """``dermseg report RUN_DIR`` as a user types it; returns the HTML file."""
    assert main(["report", str(run)]) == 0
    return run / "report.html"


def test_report_has_every_section_and_is_self_contained(reported: Path) -> None:
    page = parse(reported)
    ids = {attrs.get("id") for _, attrs in page.tags}
    assert set(SECTION_IDS) <= ids
    assert {key for key, _ in SECTIONS} == set(SECTION_IDS)
    nav = [a["href"] for tag, a in page.tags if tag == "a" and "href" in a]
    assert {f"#{key}" for key in SECTION_IDS} <= set(nav)
    for tag, attrs in page.tags:  # nothing is fetched: no external file, script, style or link
        assert tag not in ("script", "link", "iframe"), tag
        for name in ("src", "href"):
            value = attrs.get(name, "")
            assert not value.lower().startswith(("http:", "https:", "//", "file:")), value
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(images) >= 4 + 3  # four plots and at least one gallery image of three panels
    for src in images:
        assert src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")), src[:40]
        picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
        assert picture.shape[0] >= 32 and picture.shape[1] >= 32
        assert picture.std() > 5, "blank image"  # a plot or a photo, not a flat colour
    text = " ".join(page.text)
    for reference in ("0.473", "0.433", "0.0896"):
        assert reference in text
    assert "a different metric" in text.lower()  # the thesis number is flagged as another metric
    assert reported.stat().st_size < 3_000_000
    assert (reported.parent / "report.json").is_file()
    assert not list(reported.parent.glob(".report*"))  # no temporary file left


def test_table_numbers_are_those_of_evaluate_checkpoint(
    run: Path, reported: Path, synth_dataset: Path, tmp_path: Path
) -> None:
    checkpoint = run / "checkpoints" / "best.safetensors"
    samples = select_samples(synth_dataset, "val", read_meta(checkpoint))
    segmenter = Segmenter.from_checkpoint(checkpoint)
    expected = evaluate_checkpoint(segmenter, samples)
    saved = json.loads((run / "report.json").read_text())["evaluation"]["scores"]
    # the official numbers are the official scorer's for the model's masks of those images
    task2 = pytest.importorskip("isic_challenge_scoring.task2")
    for sample in samples:
        write_submission_masks(tmp_path, sample.isic_id, segmenter.masks(read_image(sample.image_path)))
    official = task2.score(synth_dataset / "ISIC2018_Task2_Validation_GroundTruth", tmp_path)
    assert saved["overall"] == pytest.approx(official["overall"], abs=1e-9)
    for name in ATTRIBUTES:
        assert saved[name]["jaccard"] == pytest.approx(official[name]["jaccard"], abs=1e-9), name
    for key in ("overall", "micro_average", "mean_attribute_jaccard", "pixel", "presence", "images"):
        assert saved[key] == expected[key], key
    for name in ATTRIBUTES:
        assert saved[name] == expected[name], name
    assert saved["per_image_mean_jaccard"]["mean"] == expected["per_image_mean_jaccard"]["mean"]

    # the rendered table: the full values sit in data-value, rounded ones are shown
    page = parse(reported)
    rows: dict[str, list[str]] = {}
    current = None
    for tag, attrs in page.tags:
        if tag == "tr":
            current = attrs.get("data-attribute") or attrs.get("data-reference")
            if current:
                rows[current] = []
        elif tag == "td" and current and "data-value" in attrs:
            rows[current].append(attrs["data-value"])

    def value(v: float | None) -> str:
        return "" if v is None else repr(float(v))

    for name in ATTRIBUTES:
        jaccard, dice, auc, ap, presence, threshold = rows[name]
        assert jaccard == value(expected[name]["jaccard"]) and dice == value(expected[name]["dice"])
        assert auc == value(expected["pixel"][name]["auc"]) and ap == value(expected["pixel"][name]["ap"])
        assert presence == value(expected["presence"][name]["auc"])
    assert rows["overall"] == [value(expected["overall"]), value(expected["micro_average"]["dice"])]
    assert rows["winner"] == ["0.473"] and rows["single"] == ["0.433"]


def test_gallery_is_sorted_by_per_image_jaccard(run: Path, reported: Path) -> None:
    evaluation = json.loads((run / "report.json").read_text())["evaluation"]
    scored = [e for e in evaluation["per_image"] if e["has_truth"]]
    assert [e["jaccard"] for e in scored] == sorted((e["jaccard"] for e in scored), reverse=True)
    best, worst = evaluation["gallery"]["best"], evaluation["gallery"]["worst"]
    assert 0 < len(best) + len(worst) <= min(8, len(scored))
    assert not {e["id"] for e in best} & {e["id"] for e in worst}
    shown = best + worst[::-1]  # best first, then the worst from the least bad
    assert [e["jaccard"] for e in shown] == sorted((e["jaccard"] for e in shown), reverse=True)
    page = parse(reported)
    items = [(a["data-id"], float(a["data-jaccard"])) for _, a in page.tags if "data-jaccard" in a]
    assert items == [(e["id"], e["jaccard"]) for e in best + worst]
    for e in best + worst:
        assert f"Jaccard {e['jaccard']:.3f}" in " ".join(page.text)


def test_rebuild_from_json_gives_the_same_page(run: Path, reported: Path, tmp_path: Path) -> None:
    out = tmp_path / "again.html"
    shutil.copy(run / "report.json", out.with_suffix(".json"))
    assert main(["report", str(run), "--out", str(out), "--rebuild"]) == 0
    assert out.read_bytes() == reported.read_bytes()
    # a report.json of another checkpoint is refused
    data = json.loads(out.with_suffix(".json").read_text())
    data["run"]["checkpoint_fingerprint"]["size"] += 1
    out.with_suffix(".json").write_text(json.dumps(data))
    out.unlink()
    assert main(["report", str(run), "--out", str(out), "--rebuild"]) == 2
    assert not out.exists()


def _partial_run(run: Path, folder: Path, leave_out: str | None = None, root: str | None = "keep") -> Path:
    """A run folder with the files of ``run`` (the checkpoint linked), less ``leave_out``."""
    folder.mkdir()
    for name in ("config.yaml", "split.json", "metrics.jsonl"):
        if name != leave_out:
            shutil.copy(run / name, folder / name)
    if root != "keep":
        text = (folder / "config.yaml").read_text().splitlines()
        at = text.index("data:") + 1
        text[at] = f"  root: {root}"  # data.root is the first key of the data section
        (folder / "config.yaml").write_text("\n".join(text) + "\n")
    if leave_out != "best.safetensors":
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "best.safetensors").symlink_to(run / "checkpoints" / "best.safetensors")
    return folder


@pytest.mark.parametrize("missing", ["folder", "metrics.jsonl", "best.safetensors", "config.yaml"])
def test_a_bad_run_folder_is_one_line_and_writes_nothing(
    missing: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "nothing" if missing == "folder" else _partial_run(run, tmp_path / "r", missing)
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dermseg: error:")
    assert (folder.name if missing == "folder" else missing) in err[0]
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert not (folder / "report.html").exists()


def test_data_folder_comes_from_the_config_or_data_option(
    run: Path, synth_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _partial_run(run, tmp_path / "r", root=str(tmp_path / "moved"))
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "moved" in err[0] and "--data" in err[0]
    assert not (folder / "report.html").exists()
    assert main(["report", str(folder), "--data", str(synth_dataset)]) == 0
    assert (folder / "report.html").is_file()


def test_synthetic_banner_and_escaping(run: Path, reported: Path) -> None:
    content = json.loads((run / "report.json").read_text())
    figures = all_figures(content)
    assert content["run"]["data"]["synthetic"] is True  # write_dataset marks its datasets
    assert "Synthetic data" in render_html(content, figures)
    content["run"]["data"]["synthetic"] = False
    assert "Synthetic data" not in render_html(content, figures)
    content["run"]["data"]["synthetic"] = True
    content["run"]["name"] = "<script>alert(1)</script>"
    page = render_html(content, figures)
    assert "Synthetic data" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
