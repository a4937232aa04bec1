"""The prediction folder's manifest (inference/run_manifest.py): recorded once, shared by shards,
another run refused unless told, a replaced manifest making earlier masks stale."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from dermseg import Segmenter
from dermseg.errors import ConfigError, DataError
from dermseg.inference.run_manifest import (
    MANIFEST_NAME,
    claim_folder,
    differences,
    model_file,
    predict_manifest,
    predict_settings,
)
from dermseg.inference.tiling import Tiling
from tests.inference import test_folder

checkpoint = test_folder.checkpoint  # the tiny untrained model, a module-scoped fixture

SETTINGS = {"backend": "torch", "tta": False, "overlays": False}


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"model a")
    b.write_bytes(b"model b, longer")
    return a, b


def test_a_model_file_is_known_by_its_size_and_sha256(models: tuple[Path, Path]) -> None:
    record = model_file(models[0])
    assert record == {
        "path": str(models[0].absolute()),
        "size": 7,
        "sha256": hashlib.sha256(b"model a").hexdigest(),
    }
    with pytest.raises(DataError, match="cannot read"):
        model_file(models[0].parent / "missing.safetensors")


def test_the_settings_come_from_the_segmenter_as_it_runs(checkpoint: Path) -> None:
    segmenter = Segmenter.from_checkpoint(checkpoint, tta=True)
    settings = predict_settings(segmenter, overlays=True, probabilities=False)
    assert settings == {
        "backend": "torch",
        "tta": True,
        "labels": "isic2018_task2",
        "lesion_margin": None,
        "outside_lesion": None,
        "max_aspect_ratio": 8.0,
        "max_side_factor": 8.0,
        "tiles": None,
        "decode_side": None,  # full-scale decoding by default
        "overlays": True,
        "probabilities": False,
    }
    segmenter.draft_decode = True  # --draft-decode: at the tiny model's working size, as training
    assert predict_settings(segmenter, overlays=True, probabilities=False)["decode_side"] == 96
    segmenter.tiling = Tiling(scale=0.5)
    tiled = predict_settings(segmenter, overlays=True, probabilities=False)
    assert tiled["tiles"] == {"scale": 0.5, "overlap": 0.5, "batch": 4, "size": None}
    assert tiled["decode_side"] is None  # tiles look at the image's own resolution


def test_the_first_run_records_the_manifest_and_the_same_run_again_goes_on(
    models: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    manifest = predict_manifest([models[0]], SETTINGS)
    since = claim_folder(out, manifest)
    path = out / MANIFEST_NAME
    assert json.loads(path.read_text()) == manifest and since == path.stat().st_mtime_ns
    # the same models moved elsewhere are the same run; the manifest is left as it was
    moved = tmp_path / "moved.safetensors"
    moved.write_bytes(models[0].read_bytes())
    assert claim_folder(out, predict_manifest([moved], SETTINGS)) == since
    assert json.loads(path.read_text()) == manifest


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"checkpoints": 1}, "checkpoint sha256"),
        ({"lesion": 1}, "lesion checkpoint sha256"),
        ({"settings": {**SETTINGS, "tta": True}}, "tta false, not true"),
        ({"settings": {**SETTINGS, "tiles": 512}}, "tiles null, not 512"),
    ],
)
def test_another_run_is_refused_in_one_line_unless_told_to_overwrite(
    models: tuple[Path, Path], tmp_path: Path, change: dict, said: str
) -> None:
    out = tmp_path / "out"
    first = predict_manifest([models[0]], SETTINGS)
    before = claim_folder(out, first)
    other = predict_manifest(
        [models[change.get("checkpoints", 0)]],
        change.get("settings", SETTINGS),
        lesion_checkpoint=models[1] if "lesion" in change else None,
    )
    with pytest.raises(ConfigError, match="give --overwrite") as err:
        claim_folder(out, other)
    assert said in str(err.value) and "\n" not in str(err.value)
    assert err.value.path == out / MANIFEST_NAME
    assert json.loads((out / MANIFEST_NAME).read_text()) == first  # untouched
    after = claim_folder(out, other, overwrite=True)
    assert json.loads((out / MANIFEST_NAME).read_text()) == other
    assert after >= before


def test_another_dermseg_version_is_another_run(models: tuple[Path, Path]) -> None:
    manifest = predict_manifest([models[0]], SETTINGS)
    assert differences({**manifest, "dermseg": "0.0.1"}, manifest) == [
        f"dermseg 0.0.1, not {manifest['dermseg']}"
    ]


def test_a_file_that_is_no_manifest_is_refused_unless_told(models: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST_NAME).write_text("{half a manif")
    manifest = predict_manifest([models[0]], SETTINGS)
    with pytest.raises(DataError, match="not a dermseg predict manifest"):
        claim_folder(out, manifest)
    claim_folder(out, manifest, overwrite=True)
    assert json.loads((out / MANIFEST_NAME).read_text()) == manifest


def test_shards_starting_together_share_one_manifest(models: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = predict_manifest([models[0]], SETTINGS)
    times: list[int] = []
    errors: list[BaseException] = []

    def shard() -> None:
        try:
            times.append(claim_folder(out, manifest))
        except BaseException as err:  # pragma: no cover - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=shard) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(times)) == 1  # one wrote it, the others found it identical
    assert sorted(os.listdir(out)) == [MANIFEST_NAME]  # no temporary file left
