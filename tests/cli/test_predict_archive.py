"""``dermseg predict`` over archives (cli/infer_commands.py): resumed after a kill with the same
bytes, a folder of another run refused, ``--shard i/N`` and torchrun ranks splitting the images."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg.cli import main
from dermseg.inference.run_manifest import MANIFEST_NAME
from tests.conftest import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different untrained tiny models at a 32 px working size."""
    folder = tmp_path_factory.mktemp("ckpt")
    small = ["data.size=32", "data.crop_size=32"]
    return (
        write_tiny_checkpoint(folder / "a.safetensors", small),
        write_tiny_checkpoint(folder / "b.safetensors", [*small, "model.aspp_rates=[1,3]"]),
    )


def _images(folder: Path, count: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(3)
    for k in range(count):
        Image.fromarray((rng.random((30, 38, 3)) * 255).astype(np.uint8)).save(folder / f"ISIC_{k:07d}.jpg")
    return folder


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _predict(images: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), *extra])


def test_a_rerun_skips_what_is_done_and_another_checkpoint_is_refused_unless_told(
    checkpoints: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, out = _images(tmp_path / "in", 3), tmp_path / "out"
    assert _predict(images, checkpoints[0], out) == 0
    first = _files(out)
    mask = out / "ISIC_0000001_attribute_streaks.png"
    written = mask.stat().st_mtime_ns
    (out / "ISIC_0000002_attribute_globules.png").unlink()  # as a kill between renames leaves it
    capsys.readouterr()
    assert _predict(images, checkpoints[0], out) == 0
    said = capsys.readouterr().out
    assert "2 of 3 image(s) already predicted" in said and "wrote masks of 1 image(s)" in said
    assert _files(out) == first and mask.stat().st_mtime_ns == written  # done images not rewritten

    assert _predict(images, checkpoints[1], out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{out / MANIFEST_NAME}: " in err[0]
    assert "another run (checkpoint sha256" in err[0] and "--overwrite" in err[0]
    assert _predict(images, checkpoints[0], out, "--probabilities") == 2
    assert "probabilities false, not true" in capsys.readouterr().err
    assert _files(out) == first  # nothing touched

    assert _predict(images, checkpoints[1], out, "--overwrite") == 0
    assert "wrote masks of 3 image(s)" in capsys.readouterr().out  # all again, none skipped
    assert mask.stat().st_mtime_ns > written
    # a restart of the overwriting run, without --overwrite, goes on with it
    assert _predict(images, checkpoints[1], out) == 0
    assert "3 of 3 image(s) already predicted" in capsys.readouterr().out


def test_two_shards_give_the_whole_set_exactly_once(
    checkpoints: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = _images(tmp_path / "in", 5)
    assert _predict(images, checkpoints[0], tmp_path / "whole") == 0
    whole = _files(tmp_path / "whole")
    parts = []
    for k in range(2):
        assert _predict(images, checkpoints[0], tmp_path / f"part{k}", "--shard", f"{k}/2") == 0
        assert f"shard {k}/2: {3 - k} of 5 image(s)" in capsys.readouterr().out
        parts.append(_files(tmp_path / f"part{k}"))
        parts[-1].pop(MANIFEST_NAME)
    assert not set(parts[0]) & set(parts[1])
    assert {**parts[0], **parts[1], MANIFEST_NAME: whole[MANIFEST_NAME]} == whole
    # shards sharing one folder and its manifest
    for k in range(2):
        assert _predict(images, checkpoints[0], tmp_path / "shared", "--shard", f"{k}/2") == 0
    assert _files(tmp_path / "shared") == whole
    assert _predict(images, checkpoints[0], tmp_path / "x", "--shard", "2/2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shard must be i/N" in err[0]


def test_torchrun_ranks_split_the_images_by_themselves(
    checkpoints: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _images(tmp_path / "in", 3)
    stems = []
    for rank in range(2):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        out = tmp_path / f"rank{rank}"
        assert _predict(images, checkpoints[0], out) == 0
        stems.append({p.name.split("_attribute_")[0] for p in out.glob("*_attribute_*.png")})
    assert stems == [{"ISIC_0000000", "ISIC_0000002"}, {"ISIC_0000001"}]


def _run(images: Path, checkpoint: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = ["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out)]
    return subprocess.Popen(
        [sys.executable, "-m", "dermseg", *args, "--overlays", "--probabilities"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_run_killed_mid_way_and_restarted_ends_byte_identical(
    checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    images, out = _images(tmp_path / "in", 24), tmp_path / "killed"
    proc = _run(images, checkpoints[0], out)
    deadline = time.monotonic() + 300
    # kill it once its first image's files are being written: mid-way, and often mid-image
    while proc.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and len(os.listdir(out)) > 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert len(list(out.glob("*_attribute_*.png"))) < 5 * 24
    for run_out in (out, tmp_path / "whole"):
        assert _run(images, checkpoints[0], run_out).wait() == 0
    assert _files(out) == _files(tmp_path / "whole")
