"""``dermseg train``, ``tune`` and ``demo`` (cli/train_commands.py): options, help, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dermseg.cli import main
from dermseg.config import load_config
from dermseg.models.checkpoint import read_meta
from tests.conftest import TINY_TRAIN


def test_cli_train_user_errors(synth_dataset: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", "--data", str(synth_dataset)]) == 2
    assert "--out RUN_DIR is required" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    assert (
        main(["train", "--data", str(synth_dataset), "--out", str(tmp_path / "r"), "--config", str(bad)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "unknown key train.epoch" in err[0]
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2


def test_cli_seed_and_deterministic_are_recorded_and_resume_needs_no_data(
    synth_dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["train", "--data", str(synth_dataset), "--out", str(run), "--seed", "3", "--deterministic"]
    for item in [*TINY_TRAIN, "train.tune_thresholds=false"]:
        args += ["--set", item]
    assert main(args) == 0
    cfg = load_config(run / "config.yaml")
    assert cfg.seed == 3 and cfg.deterministic and Path(cfg.data.root) == synth_dataset.resolve()
    meta = read_meta(run / "checkpoints" / "last.safetensors")
    prov = json.loads((run / "provenance.json").read_text())
    assert meta["provenance"]["data"]["manifest_sha256"] == prov["data"]["manifest_sha256"]
    assert main(["train", "--resume", str(run), "--set", "train.epochs=2"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def test_tune_help_names_the_subsets(capsys: pytest.CaptureFixture) -> None:
    assert main(["tune", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("\u2502", " ").split())  # rich's box edges out
    assert "validation (the official validation folder)" in text and "Never test or all" in text


def test_demo_refuses_a_non_empty_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "keep.txt").write_text("x")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
