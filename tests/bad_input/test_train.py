"""``dermseg train`` on a few malformed datasets of the corpus (training is slow) and bad configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bad_input.corpus import case_named
from tests.bad_input.corpus.base import Case, Err, Ok
from tests.bad_input.corpus.configs import CONFIGS, MARKER, OVERRIDES
from tests.bad_input.harness import assert_failed, assert_succeeded, build, leftovers, params, run
from tests.conftest import TINY_TRAIN

#: The tiny model, and no threshold tuning at the end (it reads the same files again).
FAST = [arg for item in [*TINY_TRAIN, "train.tune_thresholds=false"] for arg in ("--set", item)]


def _checkpoints(run_dir: Path) -> list[str]:
    folder = run_dir / "checkpoints"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


@pytest.mark.parametrize("case, outcome", params("train"))
def test_train_on_bad_data(case: Case, outcome: Ok | Err, base_dataset: Path, tmp_path: Path, capsys) -> None:
    data, offending = build(case, base_dataset, tmp_path)
    run_dir = tmp_path / "run"
    result = run(capsys, "train", "--data", data, "--out", run_dir, *FAST)
    if isinstance(outcome, Err):
        assert_failed(result, offending, outcome.words, one_line=True)
        assert _checkpoints(run_dir) == []
    else:
        assert_succeeded(result)
        assert "best.safetensors" in _checkpoints(run_dir)
    assert not leftovers(tmp_path)


def test_error_in_a_dataloader_worker_is_one_line(base_dataset: Path, tmp_path: Path, capsys) -> None:
    """PyTorch re-raises a worker's error with the worker's traceback as its message."""
    data, offending = build(case_named("image_truncated_jpeg"), base_dataset, tmp_path)
    run_dir = tmp_path / "run"
    result = run(capsys, "train", "--data", data, "--out", run_dir, *FAST, "--set", "data.workers=1")
    assert_failed(result, offending, ("truncated",), one_line=True)
    assert _checkpoints(run_dir) == []


def test_a_run_that_fails_on_its_data_leaves_no_run_folder(
    base_dataset: Path, tmp_path: Path, capsys
) -> None:
    data, _ = build(case_named("image_zero_bytes"), base_dataset, tmp_path)
    run_dir = tmp_path / "run"
    assert run(capsys, "train", "--data", data, "--out", run_dir, *FAST).code == 2
    assert not run_dir.exists()


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bad_config_file(name: str, base_dataset: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # where the YAML payload would write its marker
    content, words = CONFIGS[name]
    path = tmp_path / "run.yaml"
    if content == "folder":
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)
    elif content == "device":
        path.symlink_to("/dev/zero")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    run_dir = tmp_path / "run"
    result = run(capsys, "train", "--data", base_dataset, "--out", run_dir, "--config", path, *FAST)
    assert_failed(result, path, words, one_line=True)
    assert len(result.err) < len(str(path)) + 300, result  # a value is echoed cut short
    assert not run_dir.exists()
    assert not (tmp_path / MARKER).exists()  # configs are data: nothing in them runs


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_bad_override(name: str, base_dataset: Path, tmp_path: Path, capsys) -> None:
    override, words = OVERRIDES[name]
    run_dir = tmp_path / "run"
    result = run(capsys, "train", "--data", base_dataset, "--out", run_dir, *FAST, "--set", override)
    assert_failed(result, None, (f"--set {override[:40]}", *words), one_line=True)
    assert len(result.err) < 300, result
    assert not run_dir.exists()
