"""The faster folder paths write what the one-at-a-time loop writes: the read-ahead/write-behind
pipeline byte for byte (files, report, progress), a lower PNG compression level pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermseg import Segmenter
from dermseg.errors import OutputError
from dermseg.inference import folder as folder_module
from dermseg.inference.folder import collect_images, predict_images
from dermseg.inference.pipeline import ReadAhead, WriteBehind
from tests.inference import test_folder

checkpoint = test_folder.checkpoint  # the tiny untrained model, a module-scoped fixture


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for k in (0, 1, 2, 4, 5):
        shape = (40 + 7 * k, 60 - 3 * k, 3)
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(folder / f"ISIC_000000{k}.jpg")
    # in the middle: the images after it are still written, in order
    (folder / "ISIC_0000003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return collect_images([folder])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _run(segmenter: Segmenter, images: list[Path], out: Path, **kwargs: object) -> tuple[object, list[int]]:
    calls: list[int] = []
    report = predict_images(segmenter, images, out, progress=calls.append, **kwargs)
    return report, calls


@pytest.mark.parametrize("extras", [{}, {"overlays": True, "probabilities": True}])
def test_the_pipeline_writes_byte_identical_files_and_the_same_report(
    checkpoint: Path, images: list[Path], tmp_path: Path, extras: dict
) -> None:
    seg = Segmenter.from_checkpoint(checkpoint)
    seq, seq_calls = _run(seg, images, tmp_path / "seq", **extras)
    par, par_calls = _run(seg, images, tmp_path / "par", pipeline=True, **extras)
    assert _files(tmp_path / "par") == _files(tmp_path / "seq")
    assert len(_files(tmp_path / "seq")) >= 25  # 5 images x 5 masks at least
    assert par.written == seq.written
    assert [p.name for p in seq.written] == [f"ISIC_000000{k}.jpg" for k in (0, 1, 2, 4, 5)]
    assert par.failed == seq.failed and [p.name for p, _ in seq.failed] == ["ISIC_0000003.jpg"]
    assert par_calls == seq_calls == [1] * 6


def test_compress_level_1_writes_valid_pngs_of_the_same_pixels(
    checkpoint: Path, images: list[Path], tmp_path: Path
) -> None:
    seg = Segmenter.from_checkpoint(checkpoint)
    predict_images(seg, images, tmp_path / "six")
    predict_images(seg, images, tmp_path / "one", compress_level=1, pipeline=True)
    six, one = _files(tmp_path / "six"), _files(tmp_path / "one")
    assert six.keys() == one.keys()
    for name in six:
        with Image.open(tmp_path / "one" / name) as img:
            img.verify()  # checks the chunks' CRCs
        with Image.open(tmp_path / "one" / name) as a, Image.open(tmp_path / "six" / name) as b:
            assert a.format == "PNG" and a.mode == b.mode == "L"
            assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_full_disk_stops_the_pipeline_at_that_image(
    checkpoint: Path, images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = folder_module.write_together
    tried: list[str] = []

    def full_at_the_second(out_dir: Path, files: dict, compress_level: int | None = None) -> None:
        tried.append(next(iter(files)).split("_attribute_")[0])
        if len(tried) == 2:
            raise OutputError("no space left on device", out_dir / next(iter(files)))
        real(out_dir, files, compress_level)

    monkeypatch.setattr(folder_module, "write_together", full_at_the_second)
    with pytest.raises(OutputError):
        predict_images(Segmenter.from_checkpoint(checkpoint), images, tmp_path / "out", pipeline=True)
    assert tried == ["ISIC_0000000", "ISIC_0000001"]  # nothing written after the failure
    assert {p.name.split("_attribute_")[0] for p in (tmp_path / "out").glob("*.png")} == {"ISIC_0000000"}


def test_read_ahead_keeps_the_order_and_hands_each_error_to_its_item() -> None:
    def work(k: int) -> int:
        if k == 3:
            raise ValueError("three")
        return k * k

    results = []
    for k, future in ReadAhead(work, range(6), depth=2):
        try:
            results.append((k, future.result()))
        except ValueError as err:
            results.append((k, str(err)))
    assert results == [(0, 0), (1, 1), (2, 4), (3, "three"), (4, 16), (5, 25)]


def test_write_behind_runs_in_order_and_skips_the_jobs_after_a_failure() -> None:
    ran: list[int] = []

    def job(k: int) -> int:
        ran.append(k)
        if k == 2:
            raise OSError("disk")
        return k

    done = []
    with pytest.raises(OSError, match="disk"), WriteBehind[int](depth=2) as writer:
        for k in range(6):
            done += writer.submit(k, job, k)
        done += writer.settle()
    assert done == [(0, 0), (1, 1)]
    assert ran == [0, 1, 2]


@pytest.mark.parametrize("make", [lambda: ReadAhead(abs, [], depth=0), lambda: WriteBehind(depth=0)])
def test_depth_must_be_positive(make) -> None:
    with pytest.raises(ValueError, match="depth"):
        make()


def test_predict_command_options_reach_the_writer(
    checkpoint: Path, images: list[Path], tmp_path: Path
) -> None:
    from dermseg.cli import main

    folder = str(images[0].parent)
    base = ["predict", folder, "--checkpoint", str(checkpoint)]
    assert (
        main([*base, "--out", str(tmp_path / "plain"), "--no-pipeline", "--png-level", "9"]) == 2
    )  # one bad image
    assert main([*base, "--out", str(tmp_path / "fast"), "--pipeline", "--png-level", "0"]) == 2
    plain, fast = _files(tmp_path / "plain"), _files(tmp_path / "fast")
    masks = [name for name in plain if name.endswith(".png")]
    assert len(masks) == 25 and masks == [name for name in fast if name.endswith(".png")]
    for name in masks:
        assert len(fast[name]) > len(plain[name])  # level 0 stores, level 9 compresses
        with Image.open(tmp_path / "plain" / name) as a, Image.open(tmp_path / "fast" / name) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
