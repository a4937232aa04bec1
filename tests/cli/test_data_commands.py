"""``dermseg check``, ``synth`` and ``prepare`` (cli/data_commands.py): exit codes, what they print,
one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dermseg.cli import main
from dermseg.data.imageio import read_image
from dermseg.data.synthetic import SynthConfig, render_sample, sample_rng, split_folders
from tests.conftest import break_flat_dataset


def test_cli_check_exit_codes_and_json(flat_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "summary.json"
    assert main(["check", str(flat_dataset), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["splits"]["all"]["images"] == 3
    break_flat_dataset(flat_dataset)
    assert main(["check", str(flat_dataset)]) == 2
    err = capsys.readouterr().err
    assert "8 problem(s) found" in err
    assert f"{flat_dataset / 'ISIC_0000002.jpg'}:" in err


def test_cli_user_errors_are_one_line(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope"
    assert main(["check", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dermseg: error: {missing}: folder not found"]


def test_synth_into_a_file_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    assert main(["synth", str(target), "--n", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dermseg: error: {target}: is a file, expected a folder to write the dataset into"]


def test_synth_look_real_writes_the_real_look_and_rejects_unknown_looks(tmp_path: Path, capsys) -> None:
    assert main(["synth", str(tmp_path / "r"), "--n", "1", "--size", "64", "--look", "real"]) == 0
    written = tmp_path / "r" / split_folders("training")[0] / "ISIC_0000000.jpg"
    expected = render_sample(sample_rng(0, "training", 0), SynthConfig.real(size=64)).image
    difference = np.abs(read_image(written).astype(int) - expected.astype(int)).mean()
    assert difference < 8  # the same picture, JPEG'd
    assert main(["synth", str(tmp_path / "x"), "--n", "1", "--look", "photo"]) == 2
    assert "--look: expected one of classic, real" in capsys.readouterr().err


def test_cli_prepare_is_a_no_op_the_second_time(synth_dataset: Path, tmp_path: Path, capsys) -> None:
    from dermseg.cli import main

    out = tmp_path / "cache"
    assert main(["prepare", str(synth_dataset), "--out", str(out), "--size", "96", "--workers", "1"]) == 0
    assert "16 image(s) decoded" in " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert main(["prepare", str(synth_dataset), "--out", str(out), "--size", "96", "--workers", "1"]) == 0
    assert "nothing changed" in " ".join(capsys.readouterr().out.split())
    assert main(["prepare", str(tmp_path / "nope"), "--out", str(out), "--size", "96"]) == 2
