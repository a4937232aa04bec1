"""``predict`` into a folder: an image's files all or none, leftovers of a kill removed, a full disk
named, and its own outputs never read back as inputs."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg import Segmenter
from dermseg.cli import main
from dermseg.errors import OutputError
from dermseg.inference.folder import collect_images, predict_images
from tests.inference import test_folder

checkpoint = test_folder.checkpoint  # the tiny untrained model, a module-scoped fixture


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for k in range(2):
        Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8)).save(folder / f"ISIC_000000{k}.jpg")
    return folder


def test_a_rerun_removes_the_temporary_files_a_kill_left(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    ours = [
        out / ".ISIC_0000000_attribute_milia_like_cyst.png.k2x_9abc.tmp.png",
        out / ".ISIC_0000001_overlay.png.a1b2c3d4.tmp.png",
    ]
    theirs = [out / ".notes.tmp.png", out / ".ISIC_0000000.png.short.tmp.png", out / "x.a1b2c3d4.tmp.png"]
    for path in [*ours, *theirs]:
        path.write_bytes(b"half")
    predict_images(Segmenter.from_checkpoint(checkpoint), collect_images([images]), out)
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in theirs)  # not dermseg's pattern: not dermseg's to remove


def test_a_full_disk_leaves_none_of_the_images_files_and_names_the_file(
    checkpoint: Path,
    images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    real_save = Image.Image.save
    saved: list[str] = []

    def fills_the_disk(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        saved.append(str(fp))
        if len(saved) == 8:  # the 8th of 11 files of the first image (5 probabilities, overlay, 5 masks)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fills_the_disk)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="no space left on device") as err:
        predict_images(
            Segmenter.from_checkpoint(checkpoint),
            collect_images([images]),
            out,
            probabilities=True,
            overlays=True,
        )
    assert err.value.path == out / "ISIC_0000000_attribute_milia_like_cyst.png"
    assert list(out.iterdir()) == []  # all or none, and no temporary file

    saved.clear()
    args = ["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "cli")]
    assert main([*args, "--probabilities", "--overlays"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        len(lines) == 1 and str(tmp_path / "cli" / "ISIC_0000000_attribute_milia_like_cyst.png") in lines[0]
    )


def test_a_rerun_into_the_input_folder_does_not_read_its_own_outputs(
    checkpoint: Path, images: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(images)]
    for said in ("wrote masks of 2 image(s)", "2 of 2 image(s) already predicted"):
        assert main([*args, "--probabilities", "--overlays"]) == 0
        assert said in capsys.readouterr().out
    assert len(list(images.iterdir())) == 2 * (1 + 5 + 5 + 1) + 1  # and the manifest
    assert [p.name for p in collect_images([images])] == ["ISIC_0000000.jpg", "ISIC_0000001.jpg"]
