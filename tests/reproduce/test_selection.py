"""`dermseg reproduce` never reports a score of the images that chose the epoch and the thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dermseg.cli import main
from dermseg.config import dump_config, load_config, resolve_config_path
from dermseg.errors import ConfigError
from dermseg.models.checkpoint import update_checkpoint_meta
from dermseg.report import write_report
from dermseg.reproduce import Reproduction, results_markdown
from tests.conftest import TINY_TRAIN, write_tiny_checkpoint


def test_a_recipe_selecting_on_the_official_validation_set_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(["reproduce", "isic2018", "--config", "seed", "--out", str(out), "--plan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed.yaml" in err[0] and "data.validation=holdout" in err[0]
    assert not out.exists()
    args = ["reproduce", "isic2018", "--dry-run", "--out", str(out), "--set", "data.validation=auto"]
    assert main(args) == 2
    assert not out.exists()  # refused before the dry run's archives are built
    # the library refuses it too; a hold-out or k folds select on training images and are accepted
    with pytest.raises(ConfigError, match="official validation set"):
        Reproduction(load_config(resolve_config_path("seed")), tmp_path / "d", out)
    for overrides in (["data.validation=holdout"], ["data.folds=2"]):
        Reproduction(load_config(resolve_config_path("seed"), overrides), tmp_path / "d", out)


def test_selection_split_from_split_json(tmp_path: Path) -> None:
    from dermseg.report.collect import selection_split

    path = tmp_path / "split.json"
    for source, words in (
        ("official", "the official validation set"),
        ("stratified", "a stratified hold-out of the training images"),
        ("fold 1 of 5", "fold 1 of 5 of the training images"),
    ):
        path.write_text(json.dumps({"source": source, "train": [], "val": []}))
        assert selection_split(path) == words


def _results(selected_on: str) -> dict:
    row = {"model": "m", "images": 4, "official_jaccard": 0.5, "per_attribute": {}}
    return {
        "rows": [{**row, "split": "validation", "selected_on": selected_on}, {**row, "split": "test"}],
        "wall_seconds": 60.0,
        "hardware": "CPU",
        "command": "dermseg reproduce isic2018",
    }


def test_results_md_says_what_chose_the_epoch_and_thresholds() -> None:
    held_out = results_markdown(_results("a stratified hold-out of the training images"))
    assert "selected and the thresholds tuned on a stratified hold-out of the training images" in held_out
    assert "no row's images chose anything" in held_out
    biased = results_markdown(_results("the official validation set"))
    assert "validation row's score is optimistic" in biased


def _fake_run(root: Path, data: Path, source: str) -> Path:
    """A finished training run folder on ``data`` without training: tiny weights, TTA-tuned thresholds."""
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg = load_config(None, [*TINY_TRAIN, f"data.root={data}"])
    (run / "config.yaml").write_text(dump_config(cfg))
    val = ["ISIC_0000010", "ISIC_0000011"]  # the official validation images of the fixture
    (run / "split.json").write_text(json.dumps({"source": source, "train": [], "val": val}))
    record = {"epoch": 0, "step": 1, "train_loss": 0.7, "val_loss": 0.6, "jaccard": 0.1}
    (run / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    ckpt = write_tiny_checkpoint(run / "checkpoints" / "best.safetensors")
    tuning = {"overall_at_default": 0.1, "overall_tuned": 0.2, "steps": [], "images": 2}
    update_checkpoint_meta(ckpt, {"epoch": 0, "tuning": {**tuning, "subset": "val", "tta": True}})
    return run


def test_the_report_card_says_what_chose_the_epoch_and_which_tta(
    official_dataset: Path, tmp_path: Path
) -> None:
    run = _fake_run(tmp_path, official_dataset, "official")
    html = write_report(run).read_text(encoding="utf-8")
    content = json.loads((run / "report.json").read_text())
    assert content["run"]["data"]["selection"] == "the official validation set"
    assert content["run"]["tta"] == {"used": True, "tuned": True, "description": "flip TTA: on (as tuned)"}
    assert "flip TTA: on (as tuned)" in html
    assert "The best epoch was selected and the thresholds tuned on the official validation set" in html
    # overridden: the report says so
    write_report(run, tta=False)
    assert (
        "flip TTA: off (overridden; the thresholds were tuned with it on)"
        in (run / "report.html").read_text()
    )
