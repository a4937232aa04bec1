"""The prepared-data cache: same items as the uncached path, stale caches refused, crash-safe."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dermseg.config import load_config
from dermseg.data import cache as cache_mod
from dermseg.data.cache import CachedIsicDataset, open_cache, prepare_cache
from dermseg.data.dataset import IsicDataset
from dermseg.data.layout import discover
from dermseg.data.synthetic import SynthConfig, write_dataset
from dermseg.data.transforms import TransformConfig, apply, build_eval_transform
from dermseg.errors import ConfigError, DataError
from dermseg.training.loop import train
from tests.conftest import TINY_TRAIN

SIZE = 64


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 training and 2 validation synthetic images of 128x96 px (not square), never modified."""
    root = tmp_path_factory.mktemp("cache_src")
    config = SynthConfig(height=96)
    write_dataset(root, 5, size=128, seed=3, split="training", config=config)
    write_dataset(root, 2, size=128, seed=3, split="validation", start_id=5, config=config)
    return root


@pytest.fixture
def data(source: Path, tmp_path: Path) -> Path:
    """A copy of ``source`` that a test may change (mtimes preserved)."""
    return Path(shutil.copytree(source, tmp_path / "data"))


def _stat(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def _uncached(data: Path, size: int) -> dict[str, tuple]:
    """``IsicDataset.load`` followed by the eval resize, per id (the uncached training path)."""
    samples = discover(data).samples
    ds = IsicDataset(samples, None, decode_side=size, allow_missing_masks=True)
    resize = build_eval_transform(TransformConfig(size=size, crop_size=size))
    out = {}
    for i, s in enumerate(samples):
        image, masks, labelled, box, full = ds.load(i)
        image, masks = apply(resize, image, masks)
        out[s.isic_id] = (image, masks, labelled, box, full)
    return out


def test_items_equal_the_uncached_path(data: Path, tmp_path: Path) -> None:
    manifest = prepare_cache(data, tmp_path / "cache", SIZE, workers=1)
    assert sorted(manifest.splits) == ["training", "validation"]
    assert len(manifest.rebuilt) == 7
    expected = _uncached(data, SIZE)
    ids = sorted(expected)
    ds = CachedIsicDataset(open_cache(tmp_path / "cache", data), ids)
    for i, isic_id in enumerate(ids):
        image, masks, labelled, box, full = ds.load(i)
        e_image, e_masks, e_labelled, e_box, e_full = expected[isic_id]
        assert min(image.shape[:2]) == SIZE and image.dtype == np.uint8
        assert np.abs(image.astype(int) - e_image.astype(int)).max() <= 1
        np.testing.assert_array_equal(masks, e_masks)
        assert labelled.tolist() == e_labelled.tolist() == [True] * 5
        assert box == e_box and full == e_full == (96, 128)
    item = ds[0]
    h, w = item["masks"].shape[1:]
    assert item["image"].shape == (3, h, w) and item["image"].dtype == torch.float32
    assert item["masks"].dtype == torch.uint8 and item["masks"].max() <= 1
    assert item["labelled"].dtype == torch.bool and item["id"] == ids[0]
    assert item["crop"].dtype == torch.int64 and item["size"].tolist() == [96, 128]
    # the manifest records every source file with size and mtime
    record = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    sample = record["splits"]["training"]["samples"][0]
    assert record["size"] == SIZE and record["version"] == cache_mod.FORMAT_VERSION
    assert {"path", "size", "mtime_ns"} <= set(sample["image"]) and len(sample["masks"]) == 5


def test_dataset_works_in_loader_worker_processes(data: Path, tmp_path: Path) -> None:
    cache = prepare_cache(data, tmp_path / "cache", SIZE, workers=1)
    ds = CachedIsicDataset(cache, ["ISIC_0000000", "ISIC_0000005"])
    direct = [ds[i]["masks"] for i in range(len(ds))]
    loaded = list(DataLoader(ds, batch_size=1, num_workers=1))
    for a, b in zip(direct, loaded, strict=True):
        assert torch.equal(a, b["masks"][0])


def test_parallel_preparation_gives_the_same_cache(data: Path, tmp_path: Path) -> None:
    one = prepare_cache(data, tmp_path / "one", SIZE, workers=1)
    two = prepare_cache(data, tmp_path / "two", SIZE, workers=2)
    for name in one.splits:
        a, b = one.splits[name], two.splits[name]
        assert (tmp_path / "one" / a.images_file).read_bytes() == (
            tmp_path / "two" / b.images_file
        ).read_bytes()
        assert (tmp_path / "one" / a.masks_file).read_bytes() == (
            tmp_path / "two" / b.masks_file
        ).read_bytes()


def test_rerun_on_unchanged_data_is_a_no_op(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_cache(data, out, SIZE, workers=1)
    before = _stat(out)
    again = prepare_cache(data, out, SIZE, workers=1)
    assert again.rebuilt == [] and _stat(out) == before


def test_changed_sources_are_detected_and_only_their_part_rebuilt(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    first = prepare_cache(data, out, SIZE, workers=1)
    image = data / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000001.jpg"
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched
    with pytest.raises(DataError, match="changed since the cache was prepared") as err:
        open_cache(out, data)
    assert err.value.path == image and "dermseg prepare" in str(err.value)
    open_cache(out)  # without the data folder only the cache's own files are checked

    second = prepare_cache(data, out, SIZE, workers=1)
    assert second.rebuilt == ["ISIC_0000001"]
    assert second.splits["validation"].images_file == first.splits["validation"].images_file
    assert second.splits["training"].images_file != first.splits["training"].images_file
    assert not (out / first.splits["training"].images_file).exists()  # old files removed
    open_cache(out, data)

    # replaced by another picture: the cache holds the new one
    shutil.copyfile(data / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000002.jpg", image)
    with pytest.raises(DataError) as err:
        open_cache(out, data)
    assert err.value.path == image
    third = prepare_cache(data, out, SIZE, workers=1)
    assert third.rebuilt == ["ISIC_0000001"]
    ds = CachedIsicDataset(open_cache(out, data), ["ISIC_0000001", "ISIC_0000002"])
    np.testing.assert_array_equal(ds.load(0)[0], ds.load(1)[0])


def test_added_and_removed_files_are_detected(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_cache(data, out, SIZE, workers=1)
    mask = data / "ISIC2018_Task2_Training_GroundTruth_v3" / "ISIC_0000003_attribute_streaks.png"
    mask.unlink()
    with pytest.raises(DataError, match="removed") as err:
        open_cache(out, data)
    assert err.value.path == mask
    manifest = prepare_cache(data, out, SIZE, workers=1)
    entry = next(s for s in manifest.samples if s.isic_id == "ISIC_0000003")
    assert entry.labelled == (True, True, True, True, False)
    with pytest.raises(DataError, match="lacks masks"):
        CachedIsicDataset(manifest, ["ISIC_0000003"])

    write_dataset(data, 1, size=64, seed=9, split="validation", start_id=20)
    with pytest.raises(DataError, match="not in the cache") as err:
        open_cache(out, data)
    assert err.value.path.name == "ISIC_0000020.jpg"
    assert prepare_cache(data, out, SIZE, workers=1).rebuilt == ["ISIC_0000020"]
    open_cache(out, data)


def test_damaged_cache_files_are_refused_and_rebuilt(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    manifest = prepare_cache(data, out, SIZE, workers=1)
    images = out / manifest.splits["training"].images_file
    with open(images, "r+b") as fh:
        fh.truncate(images.stat().st_size - 10)
    with pytest.raises(DataError, match="truncated") as err:
        open_cache(out)
    assert err.value.path == images
    assert len(prepare_cache(data, out, SIZE, workers=1).rebuilt) == 7  # a damaged cache is rebuilt
    masks = out / open_cache(out).splits["validation"].masks_file
    masks.unlink()
    with pytest.raises(DataError, match="missing") as err:
        open_cache(out)
    assert err.value.path == masks
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable cache manifest"):
        open_cache(out)
    with pytest.raises(DataError, match="no manifest.json"):
        open_cache(tmp_path / "nothing")


def test_an_interrupted_rebuild_leaves_the_previous_cache_valid(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cache"
    prepare_cache(data, out, SIZE, workers=1)
    manifest_before = (out / "manifest.json").read_bytes()
    real = cache_mod._process
    calls = []

    def crash_on_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(cache_mod, "_process", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(data, out, 96, workers=1)  # another size: everything is redone
    assert (out / "manifest.json").read_bytes() == manifest_before
    assert open_cache(out, data).size == SIZE
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # temporary files removed


def test_training_from_a_cache(synth_dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    prepare_cache(synth_dataset, cache, 96, workers=1)
    overrides = [*TINY_TRAIN, f"data.cache={cache}", "train.tune_thresholds=false"]
    result = train(load_config(None, overrides), synth_dataset, tmp_path / "run")
    # the cache holds what reading the images gives: the same training, loss for loss
    uncached = train(
        load_config(None, [*TINY_TRAIN, "train.tune_thresholds=false"]), synth_dataset, tmp_path / "r0"
    )
    assert result["epoch"] == uncached["epoch"] == 0
    for key in ("train_loss", "val_loss", "jaccard"):
        assert result[key] == pytest.approx(uncached[key], rel=1e-6), key
    with pytest.raises(ConfigError, match="prepared at size 96 but data.size is 128"):
        train(load_config(None, [*overrides, "data.size=128"]), synth_dataset, tmp_path / "run2")
