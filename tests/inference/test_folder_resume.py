"""Resuming ``predict`` into a folder (inference/folder.py): which images are done, and a run
stopped at any rename and restarted ends with exactly the files of an uninterrupted run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg import Segmenter
from dermseg.inference.folder import collect_images, mask_names, pending_images, predict_images
from dermseg.labels import DEFAULT
from tests.conftest import write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model at a 32 px working size: quick enough to run twenty times."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny32.safetensors"
    return write_tiny_checkpoint(path, ["data.size=32", "data.crop_size=32"])


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for k in range(2):
        Image.fromarray((rng.random((36, 44, 3)) * 255).astype(np.uint8)).save(folder / f"ISIC_000000{k}.jpg")
    return collect_images([folder])


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_an_image_is_done_when_all_its_masks_are_there_and_new(images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert pending_images(images, out, DEFAULT) == images
    for path in images:
        for name in mask_names(path.stem, DEFAULT):
            (out / name).write_bytes(b"png")
    assert pending_images(images, out, DEFAULT) == []
    first, second = images
    (out / mask_names(first.stem, DEFAULT)[-1]).unlink()  # one mask missing
    assert pending_images(images, out, DEFAULT) == [first]
    # masks older than the run's manifest are another run's
    when = 1_700_000_000_000_000_000
    for k, name in enumerate(mask_names(second.stem, DEFAULT)):
        os.utime(out / name, ns=(when, when + k))
    assert pending_images([second], out, DEFAULT, since_ns=when + 1) == [second]
    assert pending_images([second], out, DEFAULT, since_ns=when) == []
    (out / mask_names(second.stem, DEFAULT)[0]).unlink()
    (out / mask_names(second.stem, DEFAULT)[0]).mkdir()  # a folder is no mask
    assert pending_images(images, out, DEFAULT) == [first, second]


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in dermseg catches it."""


def test_a_run_stopped_at_any_rename_and_restarted_writes_what_an_uninterrupted_run_does(
    checkpoint: Path, images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segmenter = Segmenter.from_checkpoint(checkpoint)
    extras = {"overlays": True}  # the overlay is renamed before the masks
    predict_images(segmenter, images, tmp_path / "whole", **extras)
    expected = _files(tmp_path / "whole")
    renames = len(expected)  # each file is renamed onto its name once
    real_replace = os.replace
    for stop in range(renames):
        out = tmp_path / f"stopped{stop}"
        done = 0

        def replace(src: str | Path, dst: str | Path, stop: int = stop) -> None:
            nonlocal done
            if done == stop:
                raise _Killed
            done += 1
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(_Killed):
            predict_images(segmenter, images, out, **extras)
        monkeypatch.setattr(os, "replace", real_replace)
        todo = pending_images(images, out, segmenter.labels)
        assert len(todo) == len(images) - stop // (renames // len(images))  # done = its masks renamed
        predict_images(segmenter, todo, out, **extras)
        assert _files(out) == expected, f"stopped before rename {stop}"
