"""Every config field with a value it refuses, through the CLI: one line naming the ``--set``
argument or the config file, exit 2, no traceback, no run folder.

The fields come from the config's own dataclasses, so that a new field without a bad value in
:data:`tests.bad_input.corpus.configs.BAD_VALUES` fails here.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from dermseg.config import Config
from tests.bad_input.corpus.configs import BAD_VALUES
from tests.bad_input.harness import PREFIX, assert_failed, run


def _fields(cls: type, prefix: str = "") -> list[str]:
    """``section.name`` of every field of ``cls``, nested dataclasses walked."""
    hints = typing.get_type_hints(cls)
    return [
        key
        for f in dataclasses.fields(cls)
        for key in (
            _fields(hints[f.name], f"{prefix}{f.name}.")
            if dataclasses.is_dataclass(hints[f.name])
            else [f"{prefix}{f.name}"]
        )
    ]


FIELDS = _fields(Config)


def test_every_field_has_a_bad_value() -> None:
    assert sorted(set(FIELDS) - set(BAD_VALUES)) == [], "add a bad value for each new config field"
    assert sorted(set(BAD_VALUES) - set(FIELDS)) == [], "a bad value for a field that is gone"


@pytest.mark.parametrize("key", FIELDS)
def test_a_bad_value_with_set_names_the_set_argument(key: str, tmp_path: Path, capsys) -> None:
    item = f"{key}={BAD_VALUES[key]}"
    result = run(capsys, "train", "--out", tmp_path / "run", "--set", item)
    assert_failed(result, None, (), one_line=True)
    assert result.err_lines[0].startswith(f"{PREFIX}--set {item}: "), result
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key", FIELDS)
def test_a_bad_value_in_a_file_names_the_file_and_field(key: str, tmp_path: Path, capsys) -> None:
    *sections, name = key.split(".")
    path = tmp_path / "run.yaml"
    path.write_text("".join(f"{'  ' * i}{s}:\n" for i, s in enumerate(sections)))
    with path.open("a") as fh:
        fh.write(f"{'  ' * len(sections)}{name}: {BAD_VALUES[key]}\n")
    result = run(capsys, "train", "--out", tmp_path / "run", "--config", path)
    assert_failed(result, path, (key,), one_line=True)
    assert not (tmp_path / "run").exists()


def test_set_errors_name_the_set_argument_not_the_shipped_config(tmp_path: Path, capsys) -> None:
    result = run(capsys, "train", "--out", tmp_path / "run", "--config", "demo", "--set", "train.lr=0")
    assert_failed(result, None, ("--set train.lr=0: train.lr must be > 0",), one_line=True)
    assert "demo.yaml" not in result.err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--set", "train.lr=0.1", "--set", "train.lr.x=2"],
            "--set train.lr.x=2: train.lr: expected a number",
        ),
        (
            ["--set", "seed=100000000000000000000000"],
            "--set seed=100000000000000000000000: expected an integer",
        ),
        (
            ["--set", "loss.terms={bce: .nan}"],
            "--set loss.terms={bce: .nan}: loss.terms.bce: expected a finite",
        ),
        (["--set", "loss.terms={bce: 0.0}"], "to weights >= 0, at least one > 0"),
        (
            ["--set", "loss.terms={ce: 1.0}"],
            "--set loss.terms={ce: 1.0}: ce needs model.encoding multiclass",
        ),
        (
            ["--set", "data.fold=2", "--set", "data.folds=2"],
            "--set data.fold=2: data.fold must be in 0..data.folds-1",
        ),
        (["--seed", "-1"], "--seed: seed must be in 0..4294967295, got -1"),
    ],
)
def test_issue_cases(args: list[str], words: str, tmp_path: Path, capsys) -> None:
    result = run(capsys, "train", "--out", tmp_path / "run", *args)
    assert_failed(result, None, (words,), one_line=True)
    assert not (tmp_path / "run").exists()


def test_data_commands_check_their_seed(base_dataset: Path, tmp_path: Path, capsys) -> None:
    result = run(capsys, "synth", tmp_path / "synth", "--n", "1", "--size", "64", "--seed", "-1")
    assert_failed(result, None, ("--seed: seed must be in 0..4294967295, got -1",), one_line=True)
    assert not (tmp_path / "synth").exists()
    result = run(capsys, "split", base_dataset, "--out", tmp_path / "split.json", "--seed", "-1")
    assert_failed(result, None, ("--seed: data.split_seed must be in 0..4294967295",), one_line=True)
    assert not (tmp_path / "split.json").exists()
